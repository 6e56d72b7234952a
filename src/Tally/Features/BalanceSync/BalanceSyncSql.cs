using Microsoft.EntityFrameworkCore.Infrastructure;
using Tally.Data;
using Tally.Features.Users;
using Tally.Jobs.Lanes;

namespace Tally.Features.BalanceSync;

/// <summary>
/// Balance sync's SQL for PostgreSQL and SQLite, side by side. Where the two databases take different
/// steps, a statement is null on the one that does not take it, and that is the capability the code
/// reads: <see cref="SaveAccounts"/> set means one hand-written round trip, null means EF Core's
/// SaveChanges; <see cref="QueueLogin"/> is for the shared lanes, which only PostgreSQL has.
/// </summary>
/// <param name="Provider">The database these statements are written for.</param>
/// <param name="SaveAccounts">
/// PostgreSQL: one user's recorded accounts in one statement (arrays of their values). Sent in ONE
/// round trip with the outbox's insert of their events (Outbox.InsertMany), a batch that Npgsql sends
/// with a single sync, so both run in one implicit transaction: both or neither. The login path
/// touches no EF Core context at all. Null on SQLite (EF Core writes the tracked accounts).
/// </param>
/// <param name="RelaxCommit">
/// PostgreSQL's asynchronous mirror commit (<see cref="BalanceSyncOptions.MirrorCommit"/> <c>async</c>):
/// <c>synchronous_commit = off</c> for the write's own transaction only, the first statement of its
/// batch. The commit is visible to every reader at once, so a login answers with exactly what is
/// stored, but it does not wait for the WAL flush. Null on SQLite (<see cref="RelaxConnection"/>).
/// </param>
/// <param name="RelaxConnection">
/// SQLite's asynchronous mirror commit: <c>synchronous = NORMAL</c> on the connection, which in WAL
/// mode skips the fsync per commit, set before the write's transaction (SQLite refuses to change the
/// safety level inside one, so it is not among the statements prepared in a transaction by the
/// conformance test). It lasts until the connection is next opened, when
/// <see cref="SqliteSetup.PragmaInterceptor"/> sets FULL again. Null on PostgreSQL.
/// </param>
/// <param name="QueueLogin">
/// PostgreSQL's shared lanes: a login's first step in ONE statement (<see cref="PostgresLaneStore.EnqueueClaimingAsync"/>):
/// the user's eligibility, the upsert of their entry on the priority lane, and, when a priority worker
/// here is idle, its claim together with the user's accounts. Null on SQLite, whose lanes are in memory.
/// </param>
public sealed record BalanceSyncSql(
    StorageProvider Provider, string? SaveAccounts, string? RelaxCommit, BalanceSyncSql.ConnectionSetting? RelaxConnection, string? QueueLogin) : Dialect(Provider)
{
    public static readonly BalanceSyncSql Postgres = new(
        StorageProvider.Postgres,
        SaveAccounts: """
            UPDATE core_accounts a
            SET working_balance = v.working, available_balance = v.available, bank_as_of = v.as_of, last_synced_at = v.synced_at,
                last_attempt_at = v.attempted_at, last_error = v.error, updated_at = v.attempted_at
            FROM unnest($1::uuid[], $2::numeric[], $3::numeric[], $4::timestamptz[], $5::timestamptz[], $6::timestamptz[], $7::text[])
                 AS v(id, working, available, as_of, synced_at, attempted_at, error)
            WHERE a.id = v.id
            """,
        RelaxCommit: PostgresLaneSql.AsynchronousCommit,
        RelaxConnection: null,
        QueueLogin: PostgresLaneSql.EnqueueClaiming(
            BalanceSyncLanes.Table,
            BalanceSyncLanes.KeyColumn,
            check: $"SELECT id, is_active AND context = '{UserContexts.MobileBanking}' AS eligible FROM users WHERE id = $1",
            handedColumns: CoreAccountRows.Columns,
            handedJoin: """
                LEFT JOIN core_accounts a ON q.claimed AND a.user_id = u.id
                ORDER BY a.is_primary DESC, a.account_number
                """));

    public static readonly BalanceSyncSql Sqlite = new(
        StorageProvider.Sqlite,
        SaveAccounts: null,
        RelaxCommit: null,
        RelaxConnection: new ConnectionSetting("PRAGMA synchronous = NORMAL"),
        QueueLogin: null);

    public static BalanceSyncSql For(DatabaseFacade db) => db.Pick(Postgres, Sqlite);

    /// <summary>A statement that sets the connection up outside any transaction, before the step it serves.</summary>
    public sealed record ConnectionSetting(string Sql);
}
