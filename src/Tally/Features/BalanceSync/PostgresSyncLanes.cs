using System.Collections.Concurrent;
using Microsoft.Extensions.Options;
using Npgsql;
using NpgsqlTypes;
using Tally.Data;
using Tally.Features.Users;
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
/// sync is spared two disk flushes. Balances and events commit asynchronously as well, on their own
/// connections (<see cref="PostgresBalanceWriter"/>): an entry is removed only after its balances
/// committed, so a crash that forgets the balances forgets the removal too.
/// </summary>
/// <remarks>
/// A login's entry is queued by ONE statement (<see cref="QueueLoginAsync"/>) that checks the user,
/// upserts the row and, when a priority worker of this instance is idle, claims it for that worker
/// and reads the user's accounts; the entry is handed to the worker in memory. So a login on
/// PostgreSQL costs one round trip before the core call, and the sync's save one after it.
/// Why not RabbitMQ lanes: a broker queue cannot answer "is this user already queued?" or move a
/// message from one queue to another, so it would still need this table (or Redis) for dedup and
/// promotion, and its depth would count duplicates. With the table the broker adds nothing here.
/// A priority entry is claimed by the instance whose login asked for it (that instance is told at
/// once and answers the login); other instances take it only once it is older than
/// <see cref="StealAfter"/>, in case the asking instance runs no worker.
/// </remarks>
public sealed class PostgresSyncLanes(StorageSettings storage, IOptions<BalanceSyncOptions> options, IOptions<TallyOptions> tally, TimeProvider clock)
    : ISyncLanes, ILoginQueue, IAsyncDisposable
{
    public static readonly TimeSpan StealAfter = TimeSpan.FromMilliseconds(500);

    /// <summary>How often an instance looks for claims of dead instances: well inside the 30 s in which they must be free again.</summary>
    private static readonly TimeSpan ReapEvery = TimeSpan.FromSeconds(5);

    private readonly string _instance = tally.Value.ResolvedInstanceId;

    /// <summary>
    /// Who asks for a login's entry first: this instance, when it has priority workers of its own
    /// (they get it for <see cref="StealAfter"/>); nobody, on an instance without the worker role,
    /// so any instance's worker takes it at once.
    /// </summary>
    private readonly string? _requester = tally.Value.IsWorker ? tally.Value.ResolvedInstanceId : null;
    private readonly WorkSignal _prioritySignal = new();
    private readonly WorkSignal _backgroundSignal = new();
    // Its own connections: asynchronous commit (see above), the few fixed statements prepared once per
    // connection, and no session reset when a connection is reused (these statements leave no session state).
    private readonly NpgsqlDataSource _dataSource = NpgsqlDataSource.Create(
        new NpgsqlConnectionStringBuilder(storage.ConnectionString) { Options = "-c synchronous_commit=off", MaxAutoPrepare = 16, NoResetOnClose = true }.ConnectionString);
    private readonly ConcurrentQueue<SyncEntry> _handedOver = new();
    private DateTime _lastReap = DateTime.MinValue;
    private int _idlePriorityTakers;

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
                upsert.Parameters.Add(new NpgsqlParameter { Value = lane == SyncLane.Priority && _requester is not null ? _requester : DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text });
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

    /// <summary>
    /// A login's first step in one statement: the user's eligibility; the upsert of their entry on
    /// the priority lane (a waiting background entry is promoted in place); and, when a priority
    /// worker here is idle and nobody runs the entry yet, its claim for that worker together with the
    /// user's accounts. The claimed entry is handed to the worker in memory. Each claim carries a new
    /// token: the row's token equal to ours is what tells this claim from an earlier one.
    /// </summary>
    public async Task<LoginQueued> QueueLoginAsync(Guid userId, CancellationToken ct)
    {
        const string Queue = $"""
            WITH u AS (
                SELECT id, is_active AND context = '{UserContexts.MobileBanking}' AS eligible FROM users WHERE id = $1
            ), q AS (
                INSERT INTO balance_sync_queue AS q (user_id, lane, ticket, attempt, enqueued_at, not_before, requested_by, claimed_by, claimed_at, claim)
                SELECT id, 'PRIORITY', $2, 0, $3, $3, $4, $5, $6, $7 FROM u WHERE eligible
                ON CONFLICT (user_id) DO UPDATE SET
                    lane = 'PRIORITY', not_before = LEAST(q.not_before, excluded.not_before), requested_by = excluded.requested_by,
                    claimed_by = COALESCE(q.claimed_by, excluded.claimed_by),
                    claimed_at = CASE WHEN q.claimed_by IS NULL THEN excluded.claimed_at ELSE q.claimed_at END,
                    claim = CASE WHEN q.claimed_by IS NULL THEN excluded.claim ELSE q.claim END
                    WHERE q.lane = 'BACKGROUND' OR (q.claimed_by IS NULL AND excluded.claim IS NOT NULL)
                RETURNING q.ticket, q.attempt, q.enqueued_at, xmax = 0 AS inserted, q.claimed_by IS NOT NULL AS running, q.claim = $7 AS claimed
            )
            SELECT u.eligible, q.ticket, q.attempt, q.enqueued_at, q.inserted, q.running, COALESCE(q.claimed, false),
                   e.ticket, e.claimed_by IS NOT NULL,
                   {CoreAccountRows.Columns}
            FROM u
            LEFT JOIN q ON true
            LEFT JOIN balance_sync_queue e ON q.ticket IS NULL AND e.user_id = u.id
            LEFT JOIN core_accounts a ON q.claimed AND a.user_id = u.id
            ORDER BY a.is_primary DESC, a.account_number
            """;
        for (var attempt = 0; attempt < 3; attempt++)
        {
            var now = Now();
            Guid? claim = Volatile.Read(ref _idlePriorityTakers) > _handedOver.Count ? Guid.CreateVersion7() : null;
            await using var command = _dataSource.CreateCommand(Queue);
            command.Parameters.Add(new NpgsqlParameter { Value = userId });
            command.Parameters.Add(new NpgsqlParameter { Value = Guid.CreateVersion7() });
            command.Parameters.Add(new NpgsqlParameter { Value = now, NpgsqlDbType = NpgsqlDbType.TimestampTz });
            command.Parameters.Add(new NpgsqlParameter { Value = _requester is null ? DBNull.Value : _requester, NpgsqlDbType = NpgsqlDbType.Text });
            command.Parameters.Add(new NpgsqlParameter { Value = claim is null ? DBNull.Value : _instance, NpgsqlDbType = NpgsqlDbType.Text });
            command.Parameters.Add(new NpgsqlParameter { Value = claim is null ? DBNull.Value : now, NpgsqlDbType = NpgsqlDbType.TimestampTz });
            command.Parameters.Add(new NpgsqlParameter { Value = claim is { } token ? token : DBNull.Value, NpgsqlDbType = NpgsqlDbType.Uuid });
            await using var reader = await command.ExecuteReaderAsync(ct);
            if (!await reader.ReadAsync(ct))
            {
                return LoginQueued.Unknown;
            }
            if (!reader.GetBoolean(0))
            {
                return LoginQueued.NotEligible;
            }
            if (reader.IsDBNull(1) && reader.IsDBNull(7))
            {
                continue; // Settled and removed between the upsert and its look-up: queue afresh.
            }
            if (reader.IsDBNull(1))
            {
                // Already on the priority lane: join it.
                var running = reader.GetBoolean(8);
                return new LoginQueued(LoginUser.Eligible, new EnqueueResult(running ? EnqueueOutcome.InFlight : EnqueueOutcome.AlreadyQueued, reader.GetGuid(7)));
            }
            var ticket = reader.GetGuid(1);
            var claimed = reader.GetBoolean(6);
            // Not inserted and not running elsewhere: promoted from the background lane (or a waiting priority entry claimed).
            var outcome = reader.GetBoolean(4) ? EnqueueOutcome.Queued
                : reader.GetBoolean(5) && !claimed ? EnqueueOutcome.InFlight
                : EnqueueOutcome.Promoted;
            if (claimed)
            {
                var entry = new SyncEntry(userId, SyncLane.Priority, ticket, reader.GetInt32(2), reader.GetFieldValue<DateTime>(3), await CoreAccountRows.ReadAllAsync(reader, 9, ct));
                _handedOver.Enqueue(entry);
            }
            else if (outcome != EnqueueOutcome.InFlight)
            {
                // No priority worker here took it (none idle, or this instance has none): wake every
                // instance's, rather than leave it to their next poll.
                await reader.DisposeAsync();
                await WakeEveryInstanceAsync(ct);
            }
            _prioritySignal.Set();
            return new LoginQueued(LoginUser.Eligible, new EnqueueResult(outcome, ticket));
        }
        throw new InvalidOperationException("The user's queue entry kept disappearing while being queued.");
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
            UPDATE balance_sync_queue q SET claimed_by = $2, claimed_at = $3, claim = $5
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
        command.Parameters.Add(new NpgsqlParameter { Value = Guid.CreateVersion7() });
        await using var reader = await command.ExecuteReaderAsync(ct);
        if (!await reader.ReadAsync(ct))
        {
            return null;
        }
        return new SyncEntry(reader.GetGuid(0), lane, reader.GetGuid(1), reader.GetInt32(2), reader.GetFieldValue<DateTime>(3));
    }

    /// <summary>A waiting priority entry: every instance's idle priority workers look now (<see cref="PostgresSyncSignals"/>).</summary>
    private async Task WakeEveryInstanceAsync(CancellationToken ct)
    {
        await using var command = _dataSource.CreateCommand($"SELECT pg_notify('{PostgresSyncSignals.Channel}', '{PostgresSyncSignals.PriorityWork}')");
        await command.ExecuteNonQueryAsync(ct);
    }

    /// <summary>Another instance queued priority work: this instance's idle priority workers look now.</summary>
    internal void Wake() => _prioritySignal.Set();

    /// <summary>
    /// Releases claims of instances that died mid-sync (at most every few seconds per instance): an
    /// instance gone quiet for three of its heartbeats, or stopped, or started again since it claimed
    /// (a new process under the same <c>Tally:InstanceId</c> holds nothing of the old one's); and, for
    /// a holder that never registered, after <see cref="BalanceSyncOptions.ClaimTimeout"/>.
    /// </summary>
    private async Task ReapAsync(DateTime now, CancellationToken ct)
    {
        if (now - _lastReap < ReapEvery)
        {
            return;
        }
        _lastReap = now;
        await using var command = _dataSource.CreateCommand("""
            UPDATE balance_sync_queue q SET claimed_by = NULL, claimed_at = NULL, claim = NULL
            WHERE claimed_by IS NOT NULL
              AND (claimed_at < $1
                   OR EXISTS (SELECT 1 FROM instances i WHERE i.id = q.claimed_by
                              AND (i.stopped_at IS NOT NULL OR i.started_at > q.claimed_at
                                   OR i.last_seen_at < $2 - make_interval(secs => 3 * i.heartbeat_seconds))))
            """);
        command.Parameters.Add(new NpgsqlParameter { Value = now - options.Value.ClaimTimeout, NpgsqlDbType = NpgsqlDbType.TimestampTz });
        command.Parameters.Add(new NpgsqlParameter { Value = now, NpgsqlDbType = NpgsqlDbType.TimestampTz });
        await command.ExecuteNonQueryAsync(ct);
    }

    public async Task CompleteAsync(SyncEntry entry, CancellationToken ct)
    {
        // A priority entry may have a login waiting on another instance: tell every instance (delivered at commit).
        await using var command = _dataSource.CreateCommand($"""
            WITH done AS (DELETE FROM balance_sync_queue WHERE user_id = $1 AND ticket = $2 RETURNING user_id, lane)
            SELECT pg_notify('{PostgresSyncSignals.Channel}', '{PostgresSyncSignals.Settled}' || user_id::text) FROM done WHERE lane = 'PRIORITY'
            """);
        command.Parameters.Add(new NpgsqlParameter { Value = entry.UserId });
        command.Parameters.Add(new NpgsqlParameter { Value = entry.Ticket });
        await command.ExecuteNonQueryAsync(ct);
    }

    public async Task RetryAsync(SyncEntry entry, SyncLane lane, int attempt, DateTime notBefore, CancellationToken ct)
    {
        // A login that joined the running sync made the row PRIORITY; keep that.
        await using var command = _dataSource.CreateCommand("""
            UPDATE balance_sync_queue
            SET claimed_by = NULL, claimed_at = NULL, claim = NULL, attempt = $3, not_before = $4,
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
        if (lane == SyncLane.Background)
        {
            return await PollAsync(lane, ct);
        }
        // An idle priority taker may be handed a login's entry that was claimed for it.
        Interlocked.Increment(ref _idlePriorityTakers);
        try
        {
            return await PollAsync(lane, ct);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            await ReleaseHandedOverAsync();
            throw;
        }
        finally
        {
            Interlocked.Decrement(ref _idlePriorityTakers);
        }
    }

    private async Task<SyncEntry> PollAsync(SyncLane lane, CancellationToken ct)
    {
        while (true)
        {
            var next = SignalFor(lane).Next;
            if (lane == SyncLane.Priority && _handedOver.TryDequeue(out var handed))
            {
                return handed;
            }
            if (await ClaimAsync(lane, ct) is { } entry)
            {
                return entry;
            }
            await WorkSignal.WaitAsync(next, options.Value.PollInterval, clock, ct);
        }
    }

    /// <summary>Shutting down with logins' entries claimed but not yet taken: release them for any instance.</summary>
    private async Task ReleaseHandedOverAsync()
    {
        while (_handedOver.TryDequeue(out var entry))
        {
            try
            {
                await RetryAsync(entry, SyncLane.Priority, entry.Attempt, Now(), CancellationToken.None);
            }
            catch (NpgsqlException)
            {
                // The database is gone too: the claim is released after the claim timeout.
            }
        }
    }

    private DateTime Now() => clock.GetUtcNow().UtcDateTime;

    private static string LaneName(SyncLane lane) => lane == SyncLane.Priority ? "PRIORITY" : "BACKGROUND";

    private WorkSignal SignalFor(SyncLane lane) => lane == SyncLane.Priority ? _prioritySignal : _backgroundSignal;
}
