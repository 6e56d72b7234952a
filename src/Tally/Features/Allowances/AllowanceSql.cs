using Microsoft.EntityFrameworkCore.Infrastructure;
using Tally.Data;

namespace Tally.Features.Allowances;

/// <summary>
/// The allowances' SQL for PostgreSQL and SQLite, side by side. A statement over many rows is one
/// <see cref="RowsStatement"/>, run alike for one delivery and for a batch; where both databases
/// read the same text, it is written once below.
/// </summary>
/// <param name="ClaimCredits">
/// The claim, the exactly-once record of each payment: insert the PAID credit, or turn an earlier
/// FAILED record into PAID (a replayed dead letter). The unique (schedule_id, run_at) makes it a
/// no-op for an occurrence settled already, so the count it answers tells the caller to roll back.
/// Rows <c>(id, schedule_id, run_at, amount_minor, currency, transfer_id)</c>; <c>{0}</c> the time.
/// </param>
/// <param name="AdvanceSchedules">
/// Moves <c>last_run_at</c> and <c>next_run_at</c> forward past an occurrence, never back: rows
/// <c>(id, run_at, next)</c>, one per schedule; <c>{0}</c> the time. PostgreSQL locks the schedules in
/// id order first, as the producer's mark does, so the two never wait for each other in a cycle.
/// The lock is FOR NO KEY UPDATE, the one an UPDATE takes anyway: it does not block the key-share
/// locks that inserting credits for the same schedules takes (their foreign key).
/// </param>
/// <param name="MarkEnqueued">What the producer enqueued, per schedule: rows <c>(id, through)</c>; <c>{0}</c> the time.</param>
/// <param name="LockGuardian">
/// Queues a guardian's schedule creates one behind the other, so concurrent ones cannot pass the
/// limit together: on PostgreSQL the guardian's row; SQLite's write transactions
/// (<c>BEGIN IMMEDIATE</c>) queue already, so there it only reads the row.
/// </param>
public sealed record AllowanceSql(
    StorageProvider Provider, RowsStatement ClaimCredits, RowsStatement AdvanceSchedules, RowsStatement MarkEnqueued, string LockGuardian) : Dialect(Provider)
{
    public static readonly AllowanceSql Postgres = new(
        StorageProvider.Postgres,
        ClaimCredits: new(StorageProvider.Postgres, """
            INSERT INTO allowance_credits (id, schedule_id, run_at, amount_minor, currency, outcome, transaction_id, reason, credited_at)
            SELECT v.id, v.schedule_id, v.run_at, v.amount_minor, v.currency, 'PAID', v.transfer_id, NULL, {0}::timestamptz
            FROM unnest({1}::uuid[], {2}::uuid[], {3}::timestamptz[], {4}::bigint[], {5}::text[], {6}::uuid[])
                 AS v(id, schedule_id, run_at, amount_minor, currency, transfer_id)
            ON CONFLICT (schedule_id, run_at) DO UPDATE
                SET outcome = excluded.outcome, transaction_id = excluded.transaction_id, amount_minor = excluded.amount_minor,
                    reason = NULL, credited_at = excluded.credited_at
                WHERE allowance_credits.outcome = 'FAILED'
            """, Columns: 6),
        AdvanceSchedules: new(StorageProvider.Postgres, """
            WITH locked AS (
                SELECT id FROM allowance_schedules WHERE id = ANY ({1}::uuid[]) ORDER BY id FOR NO KEY UPDATE)
            UPDATE allowance_schedules AS s
            SET last_run_at = CASE WHEN s.last_run_at IS NULL OR s.last_run_at < v.run_at THEN v.run_at ELSE s.last_run_at END,
                next_run_at = CASE WHEN s.next_run_at IS NOT NULL AND s.next_run_at <= v.run_at THEN v.next ELSE s.next_run_at END,
                updated_at = {0}
            FROM unnest({1}::uuid[], {2}::timestamptz[], {3}::timestamptz[]) AS v(id, run_at, next), locked
            WHERE s.id = v.id AND locked.id = v.id
            """, Columns: 3),
        MarkEnqueued: new(StorageProvider.Postgres, """
            WITH locked AS (
                SELECT id FROM allowance_schedules WHERE id = ANY ({1}::uuid[]) ORDER BY id FOR NO KEY UPDATE)
            UPDATE allowance_schedules AS s SET enqueued_through = v.through, enqueued_at = {0}
            FROM unnest({1}::uuid[], {2}::timestamptz[]) AS v(id, through), locked
            WHERE s.id = v.id AND locked.id = v.id
            """, Columns: 2),
        LockGuardian: "SELECT 1 FROM users WHERE id = {0} FOR NO KEY UPDATE");

    // The same statements over a VALUES list. (WHERE true: before ON CONFLICT, an INSERT ... SELECT
    // needs a WHERE for SQLite to parse it.)
    public static readonly AllowanceSql Sqlite = new(
        StorageProvider.Sqlite,
        ClaimCredits: new(StorageProvider.Sqlite, """
            WITH v(id, schedule_id, run_at, amount_minor, currency, transfer_id) AS (VALUES {rows})
            INSERT INTO allowance_credits (id, schedule_id, run_at, amount_minor, currency, outcome, transaction_id, reason, credited_at)
            SELECT v.id, v.schedule_id, v.run_at, v.amount_minor, v.currency, 'PAID', v.transfer_id, NULL, {0}
            FROM v WHERE true
            ON CONFLICT (schedule_id, run_at) DO UPDATE
                SET outcome = excluded.outcome, transaction_id = excluded.transaction_id, amount_minor = excluded.amount_minor,
                    reason = NULL, credited_at = excluded.credited_at
                WHERE allowance_credits.outcome = 'FAILED'
            """, Columns: 6),
        AdvanceSchedules: new(StorageProvider.Sqlite, """
            WITH v(id, run_at, next) AS (VALUES {rows})
            UPDATE allowance_schedules AS s
            SET last_run_at = CASE WHEN s.last_run_at IS NULL OR s.last_run_at < v.run_at THEN v.run_at ELSE s.last_run_at END,
                next_run_at = CASE WHEN s.next_run_at IS NOT NULL AND s.next_run_at <= v.run_at THEN v.next ELSE s.next_run_at END,
                updated_at = {0}
            FROM v
            WHERE s.id = v.id
            """, Columns: 3),
        MarkEnqueued: new(StorageProvider.Sqlite, """
            WITH v(id, through) AS (VALUES {rows})
            UPDATE allowance_schedules AS s SET enqueued_through = v.through, enqueued_at = {0}
            FROM v
            WHERE s.id = v.id
            """, Columns: 2),
        LockGuardian: "SELECT 1 FROM users WHERE id = {0}");

    /// <summary>
    /// An occurrence that used up its retries: recorded FAILED with the reason, unless it is settled
    /// (a FAILED record only takes the newer reason). <c>{0}</c>..<c>{6}</c>: id, schedule_id, run_at,
    /// amount_minor, currency, reason, credited_at.
    /// </summary>
    public string RecordFailedCredit => """
        INSERT INTO allowance_credits (id, schedule_id, run_at, amount_minor, currency, outcome, transaction_id, reason, credited_at)
        VALUES ({0}, {1}, {2}, {3}, {4}, 'FAILED', NULL, {5}, {6})
        ON CONFLICT (schedule_id, run_at) DO UPDATE SET reason = excluded.reason, credited_at = excluded.credited_at
            WHERE allowance_credits.outcome = 'FAILED'
        """;

    /// <summary>The occurrences beyond the catch-up cap, as ONE SKIPPED record at the newest of them; arguments as <see cref="RecordFailedCredit"/>.</summary>
    public string RecordSkippedCredit => """
        INSERT INTO allowance_credits (id, schedule_id, run_at, amount_minor, currency, outcome, transaction_id, reason, credited_at)
        VALUES ({0}, {1}, {2}, {3}, {4}, 'SKIPPED', NULL, {5}, {6})
        ON CONFLICT (schedule_id, run_at) DO NOTHING
        """;

    /// <summary>
    /// Moves a schedule past the catch-up cap (<c>active_from</c> and <c>next_run_at</c> to <c>{0}</c>,
    /// <c>{1}</c> the time), only if it is as it was read: id <c>{2}</c>, <c>next_run_at</c> <c>{3}</c>, <c>active_from</c> <c>{4}</c>.
    /// </summary>
    public string MoveBeyondCap => """
        UPDATE allowance_schedules SET active_from = {0}, next_run_at = {0}, updated_at = {1}
        WHERE id = {2} AND next_run_at = {3} AND active_from = {4}
          AND status = 'ON' AND deleted_at IS NULL
        """;

    /// <summary>
    /// The producer's page: due, active schedules after the keyset cursor (<c>next_run_at</c> <c>{1}</c>,
    /// id <c>{2}</c>) not enqueued yet, or enqueued before <c>{3}</c>; <c>{0}</c> now, <c>{4}</c> the page size.
    /// The cursor is a row comparison, so the due index starts each page at the cursor; spelled out as
    /// <c>a &gt; x OR (a = x AND b &gt; y)</c> it is only a filter, every page scans the index from its
    /// start, and a million schedules (due at one instant) take quadratic time.
    /// </summary>
    public string DuePage => """
        SELECT * FROM allowance_schedules
        WHERE status = 'ON' AND deleted_at IS NULL AND next_run_at <= {0}
          AND (next_run_at, id) > ({1}, {2})
          AND (enqueued_through IS NULL OR enqueued_through < next_run_at OR enqueued_at < {3})
        ORDER BY next_run_at, id
        LIMIT {4}
        """;

    public static AllowanceSql For(DatabaseFacade db) => db.Pick(Postgres, Sqlite);

    protected override IEnumerable<(string Name, string Sql)> Examples() => RowsStatement.ExamplesOf(this);
}
