using Microsoft.Extensions.Options;
using Npgsql;
using NpgsqlTypes;
using Tally.Data;
using Tally.Hosting;

namespace Tally.Features.BalanceSync;

/// <summary>
/// The scale-out lanes: one table, <c>balance_sync_queue</c>, that every instance enqueues into and
/// claims from. The table alone gives all three things the lanes need across instances:
/// deduplication (the primary key on <c>user_id</c>; a login promotes in place with an upsert), shared
/// FIFO lanes (claims with <c>FOR UPDATE SKIP LOCKED</c>, so two workers never take the same user),
/// and true status counts (a count over the table). It survives restarts, and a claim whose instance
/// died is released after <see cref="BalanceSyncOptions.ClaimTimeout"/>. Raw SQL on purpose: this is
/// the hot path of every worker. Queue rows commit asynchronously (<c>synchronous_commit = off</c> on
/// this class's own connections): a PostgreSQL crash may forget the last moments of queue changes,
/// which costs at most a repeated sync (the periodic job re-derives every user), while a login's
/// sync is spared two disk flushes. Balances and events always commit synchronously.
/// </summary>
/// <remarks>
/// Why not RabbitMQ lanes: a broker queue cannot answer "is this user already queued?" or move a
/// message from one queue to another, so it would still need this table (or Redis) for dedup and
/// promotion, and its depth would count duplicates. With the table the broker adds nothing here.
/// A priority entry is claimed by the instance whose login asked for it (that instance is told at
/// once and answers the login); other instances take it only once it is older than
/// <see cref="StealAfter"/>, in case the asking instance runs no worker.
/// </remarks>
public sealed class PostgresSyncLanes(StorageSettings storage, IOptions<BalanceSyncOptions> options, IOptions<TallyOptions> tally, TimeProvider clock)
    : ISyncLanes, IAsyncDisposable
{
    public static readonly TimeSpan StealAfter = TimeSpan.FromMilliseconds(500);

    private readonly string _instance = tally.Value.ResolvedInstanceId;
    private readonly WorkSignal _prioritySignal = new();
    private readonly WorkSignal _backgroundSignal = new();
    private readonly NpgsqlDataSource _dataSource = NpgsqlDataSource.Create(
        new NpgsqlConnectionStringBuilder(storage.ConnectionString) { Options = "-c synchronous_commit=off" }.ConnectionString);
    private DateTime _lastReap = DateTime.MinValue;

    public ValueTask DisposeAsync() => _dataSource.DisposeAsync();

    public string Name => "postgres";

    public async Task<EnqueueResult> EnqueueAsync(Guid userId, SyncLane lane, CancellationToken ct)
    {
        var now = Now();
        // Insert, or promote a waiting (or running) background entry to priority, due now. A row
        // that is already where it should be is returned by the second statement.
        const string Upsert = """
            INSERT INTO balance_sync_queue AS q (user_id, lane, ticket, attempt, enqueued_at, not_before, requested_by)
            VALUES ($1, $2, $3, 0, $4, $4, $5)
            ON CONFLICT (user_id) DO UPDATE SET lane = 'PRIORITY', not_before = LEAST(q.not_before, excluded.not_before), requested_by = excluded.requested_by
                WHERE excluded.lane = 'PRIORITY' AND q.lane = 'BACKGROUND'
            RETURNING q.ticket, (xmax = 0) AS inserted, q.claimed_by IS NOT NULL AS running
            """;
        for (var attempt = 0; ; attempt++)
        {
            await using (var upsert = _dataSource.CreateCommand(Upsert))
            {
                upsert.Parameters.Add(new NpgsqlParameter { Value = userId });
                upsert.Parameters.Add(new NpgsqlParameter { Value = LaneName(lane) });
                upsert.Parameters.Add(new NpgsqlParameter { Value = Guid.CreateVersion7() });
                upsert.Parameters.Add(new NpgsqlParameter { Value = now, NpgsqlDbType = NpgsqlDbType.TimestampTz });
                upsert.Parameters.Add(new NpgsqlParameter { Value = lane == SyncLane.Priority ? _instance : DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text });
                await using var reader = await upsert.ExecuteReaderAsync(ct);
                if (await reader.ReadAsync(ct))
                {
                    var ticket = reader.GetGuid(0);
                    var outcome = reader.GetBoolean(1) ? EnqueueOutcome.Queued : reader.GetBoolean(2) ? EnqueueOutcome.InFlight : EnqueueOutcome.Promoted;
                    SignalFor(lane).Set();
                    return new EnqueueResult(outcome, ticket);
                }
            }
            await using (var existing = _dataSource.CreateCommand("SELECT ticket, claimed_by IS NOT NULL FROM balance_sync_queue WHERE user_id = $1"))
            {
                existing.Parameters.Add(new NpgsqlParameter { Value = userId });
                await using var reader = await existing.ExecuteReaderAsync(ct);
                if (await reader.ReadAsync(ct))
                {
                    return new EnqueueResult(reader.GetBoolean(1) ? EnqueueOutcome.InFlight : EnqueueOutcome.AlreadyQueued, reader.GetGuid(0));
                }
            }
            if (attempt >= 3)
            {
                throw new InvalidOperationException("The user's queue entry kept disappearing while being queued.");
            }
            // Settled between the two statements: queue afresh.
        }
    }

    public async Task<int> EnqueueBackgroundAsync(IReadOnlyList<Guid> userIds, CancellationToken ct)
    {
        if (userIds.Count == 0)
        {
            return 0;
        }
        await using var command = _dataSource.CreateCommand("""
            INSERT INTO balance_sync_queue (user_id, lane, ticket, attempt, enqueued_at, not_before)
            SELECT u, 'BACKGROUND', gen_random_uuid(), 0, $2, $2 FROM unnest($1::uuid[]) WITH ORDINALITY AS t(u, n) ORDER BY n
            ON CONFLICT (user_id) DO NOTHING
            """);
        command.Parameters.Add(new NpgsqlParameter { Value = userIds.ToArray() });
        command.Parameters.Add(new NpgsqlParameter { Value = Now(), NpgsqlDbType = NpgsqlDbType.TimestampTz });
        var queued = await command.ExecuteNonQueryAsync(ct);
        if (queued > 0)
        {
            _backgroundSignal.Set();
        }
        return queued;
    }

    public async Task<SyncEntry?> ClaimAsync(SyncLane lane, CancellationToken ct)
    {
        var now = Now();
        await ReapAsync(now, ct);
        await using var command = _dataSource.CreateCommand("""
            UPDATE balance_sync_queue q SET claimed_by = $2, claimed_at = $3
            FROM (SELECT user_id FROM balance_sync_queue
                  WHERE lane = $1 AND claimed_by IS NULL AND not_before <= $3
                    AND ($1 = 'BACKGROUND' OR requested_by IS NULL OR requested_by = $2 OR not_before <= $4)
                  ORDER BY not_before, seq
                  LIMIT 1
                  FOR UPDATE SKIP LOCKED) c
            WHERE q.user_id = c.user_id
            RETURNING q.user_id, q.ticket, q.attempt, q.enqueued_at
            """);
        command.Parameters.Add(new NpgsqlParameter { Value = LaneName(lane) });
        command.Parameters.Add(new NpgsqlParameter { Value = _instance });
        command.Parameters.Add(new NpgsqlParameter { Value = now, NpgsqlDbType = NpgsqlDbType.TimestampTz });
        command.Parameters.Add(new NpgsqlParameter { Value = now - StealAfter, NpgsqlDbType = NpgsqlDbType.TimestampTz });
        await using var reader = await command.ExecuteReaderAsync(ct);
        if (!await reader.ReadAsync(ct))
        {
            return null;
        }
        return new SyncEntry(reader.GetGuid(0), lane, reader.GetGuid(1), reader.GetInt32(2), reader.GetFieldValue<DateTime>(3));
    }

    /// <summary>Releases claims of instances that died mid-sync (at most every few seconds per instance).</summary>
    private async Task ReapAsync(DateTime now, CancellationToken ct)
    {
        if (now - _lastReap < TimeSpan.FromSeconds(5))
        {
            return;
        }
        _lastReap = now;
        await using var command = _dataSource.CreateCommand(
            "UPDATE balance_sync_queue SET claimed_by = NULL, claimed_at = NULL WHERE claimed_by IS NOT NULL AND claimed_at < $1");
        command.Parameters.Add(new NpgsqlParameter { Value = now - options.Value.ClaimTimeout, NpgsqlDbType = NpgsqlDbType.TimestampTz });
        await command.ExecuteNonQueryAsync(ct);
    }

    public async Task CompleteAsync(SyncEntry entry, CancellationToken ct)
    {
        await using var command = _dataSource.CreateCommand("DELETE FROM balance_sync_queue WHERE user_id = $1 AND ticket = $2");
        command.Parameters.Add(new NpgsqlParameter { Value = entry.UserId });
        command.Parameters.Add(new NpgsqlParameter { Value = entry.Ticket });
        await command.ExecuteNonQueryAsync(ct);
    }

    public async Task RetryAsync(SyncEntry entry, SyncLane lane, int attempt, DateTime notBefore, CancellationToken ct)
    {
        // A login that joined the running sync made the row PRIORITY; keep that.
        await using var command = _dataSource.CreateCommand("""
            UPDATE balance_sync_queue
            SET claimed_by = NULL, claimed_at = NULL, attempt = $3, not_before = $4,
                lane = CASE WHEN lane = 'PRIORITY' THEN 'PRIORITY' ELSE $5 END
            WHERE user_id = $1 AND ticket = $2
            """);
        command.Parameters.Add(new NpgsqlParameter { Value = entry.UserId });
        command.Parameters.Add(new NpgsqlParameter { Value = entry.Ticket });
        command.Parameters.Add(new NpgsqlParameter { Value = attempt });
        command.Parameters.Add(new NpgsqlParameter { Value = notBefore, NpgsqlDbType = NpgsqlDbType.TimestampTz });
        command.Parameters.Add(new NpgsqlParameter { Value = LaneName(lane) });
        await command.ExecuteNonQueryAsync(ct);
    }

    public async Task DemoteAsync(Guid userId, Guid ticket, CancellationToken ct)
    {
        await using var command = _dataSource.CreateCommand("""
            UPDATE balance_sync_queue SET lane = 'BACKGROUND', requested_by = NULL
            WHERE user_id = $1 AND ticket = $2 AND lane = 'PRIORITY' AND claimed_by IS NULL
            """);
        command.Parameters.Add(new NpgsqlParameter { Value = userId });
        command.Parameters.Add(new NpgsqlParameter { Value = ticket });
        await command.ExecuteNonQueryAsync(ct);
    }

    public async Task<bool> IsPendingAsync(Guid userId, Guid ticket, CancellationToken ct)
    {
        await using var command = _dataSource.CreateCommand("SELECT EXISTS (SELECT 1 FROM balance_sync_queue WHERE user_id = $1 AND ticket = $2)");
        command.Parameters.Add(new NpgsqlParameter { Value = userId });
        command.Parameters.Add(new NpgsqlParameter { Value = ticket });
        return await command.ExecuteScalarAsync(ct) is true;
    }

    public async Task<LaneCounts> CountAsync(CancellationToken ct)
    {
        await using var command = _dataSource.CreateCommand("""
            SELECT count(*) FILTER (WHERE claimed_by IS NULL AND lane = 'PRIORITY'),
                   count(*) FILTER (WHERE claimed_by IS NULL AND lane = 'BACKGROUND'),
                   count(*) FILTER (WHERE claimed_by IS NOT NULL),
                   count(*) FILTER (WHERE claimed_by IS NULL AND not_before > $1)
            FROM balance_sync_queue
            """);
        command.Parameters.Add(new NpgsqlParameter { Value = Now(), NpgsqlDbType = NpgsqlDbType.TimestampTz });
        await using var reader = await command.ExecuteReaderAsync(ct);
        await reader.ReadAsync(ct);
        return new LaneCounts(reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2), reader.GetInt64(3));
    }

    public async Task<SyncEntry> TakeAsync(SyncLane lane, CancellationToken ct)
    {
        while (true)
        {
            var next = SignalFor(lane).Next;
            if (await ClaimAsync(lane, ct) is { } entry)
            {
                return entry;
            }
            await WorkSignal.WaitAsync(next, options.Value.PollInterval, clock, ct);
        }
    }

    private DateTime Now() => clock.GetUtcNow().UtcDateTime;

    private static string LaneName(SyncLane lane) => lane == SyncLane.Priority ? "PRIORITY" : "BACKGROUND";

    private WorkSignal SignalFor(SyncLane lane) => lane == SyncLane.Priority ? _prioritySignal : _backgroundSignal;
}
