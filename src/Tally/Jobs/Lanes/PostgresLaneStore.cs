using System.Collections.Concurrent;
using System.Data;
using System.Data.Common;
using Microsoft.Extensions.Options;
using Npgsql;
using NpgsqlTypes;
using Tally.Hosting;

namespace Tally.Jobs.Lanes;

/// <summary>
/// How a feature sets up its <see cref="PostgresLaneStore"/>: its name, its table, its <c>NOTIFY</c> channel,
/// how often idle workers look for work queued elsewhere, when a claim surely belongs to a dead
/// instance, and whether the table's rows commit asynchronously.
/// </summary>
/// <param name="Name">The lanes' name in log lines (<c>balance-sync</c>).</param>
/// <param name="Table">A table of the lanes' shape (see <c>balance_sync_queue</c> in the migrations): the key column as primary key, then <c>lane</c>, <c>ticket</c>, <c>attempt</c>, <c>seq</c>, <c>enqueued_at</c>, <c>not_before</c>, <c>requested_by</c>, <c>claimed_by</c>, <c>claimed_at</c>, <c>claim</c>.</param>
/// <param name="KeyColumn">The primary key column, a uuid: the deduplication.</param>
/// <param name="Channel">The channel instances sharing the table signal each other on (<see cref="PostgresLaneSignals"/>).</param>
/// <param name="PollInterval">How often idle workers look for work queued by other instances.</param>
/// <param name="ClaimTimeout">A claim older than this belongs to an instance that died, even one that never registered.</param>
/// <param name="AsynchronousCommit">
/// The rows commit with <c>synchronous_commit = off</c>: a crash of PostgreSQL itself may forget the
/// last moments of lane changes. Only for a feature to which a forgotten change costs at most a
/// repeated run (its work is idempotent and its keys are queued again), never for work that must
/// not be lost.
/// </param>
public sealed record PostgresLaneOptions(string Name, string Table, string KeyColumn, string Channel, TimeSpan PollInterval, TimeSpan ClaimTimeout, bool AsynchronousCommit);

/// <summary>Whether a key asked for on the priority lane may be queued at all, as the feature's check said.</summary>
public enum KeyCheck
{
    /// <summary>No such key.</summary>
    Unknown,

    /// <summary>The key exists but the feature does not run it: not queued.</summary>
    Refused,

    /// <summary>Queued (or promoted, or joined).</summary>
    Accepted,
}

/// <summary>What <see cref="PostgresLaneStore.EnqueueClaimingAsync"/> did; <see cref="Enqueued"/> is set for an accepted key.</summary>
public sealed record ClaimingEnqueue(KeyCheck Check, EnqueueResult? Enqueued);

/// <summary>
/// The scale-out lanes: one table that every instance enqueues into and claims from. The table alone
/// gives all three things the lanes need across instances: deduplication (the primary key on the
/// key; a priority request promotes in place with an upsert), shared FIFO lanes (claims with
/// <c>FOR UPDATE SKIP LOCKED</c>, so two workers never take the same key), and true status counts (a
/// count over the table). It survives restarts, and a claim whose instance died is released (see
/// <see cref="ReapAsync"/>). Raw SQL on purpose: this is the hot path of every worker. It borrows the
/// process's one connection pool; with <see cref="PostgresLaneOptions.AsynchronousCommit"/> each
/// write runs in a round trip that first sets <c>synchronous_commit = off</c> for its own
/// transaction only, so nothing else on the pool commits asynchronously.
/// </summary>
/// <remarks>
/// A priority request can be queued by ONE statement (<see cref="EnqueueClaimingAsync"/>) that checks
/// the key, upserts the row and, when a priority worker of this instance is idle, claims it for that
/// worker and reads what the feature needs; the entry is handed to the worker in memory. So a login
/// on PostgreSQL costs one round trip before its work, and the work's save one after it.
/// Why not RabbitMQ lanes: a broker queue cannot answer "is this key already queued?" or move a
/// message from one queue to another, so it would still need this table (or Redis) for dedup and
/// promotion, and its depth would count duplicates. With the table the broker adds nothing here.
/// A priority entry is claimed by the instance that asked for it (that instance is told at once and
/// answers whoever waits); other instances take it only once it is older than <see cref="StealAfter"/>,
/// in case the asking instance runs no worker.
/// </remarks>
public sealed class PostgresLaneStore(NpgsqlDataSource dataSource, PostgresLaneOptions lanes, IOptions<TallyOptions> tally, TimeProvider clock) : ILaneStore
{
    public static readonly TimeSpan StealAfter = TimeSpan.FromMilliseconds(500);

    /// <summary>How often an instance looks for claims of dead instances: well inside the 30 s in which they must be free again.</summary>
    private static readonly TimeSpan ReapEvery = TimeSpan.FromSeconds(5);

    private readonly string _instance = tally.Value.ResolvedInstanceId;

    /// <summary>
    /// Who asks for a priority entry first: this instance, when it has priority workers of its own
    /// (they get it for <see cref="StealAfter"/>); nobody, on an instance without the worker role,
    /// so any instance's worker takes it at once.
    /// </summary>
    private readonly string? _requester = tally.Value.IsWorker ? tally.Value.ResolvedInstanceId : null;

    private readonly WorkSignal _prioritySignal = new();
    private readonly WorkSignal _backgroundSignal = new();
    private readonly ConcurrentQueue<LaneEntry> _handedOver = new();
    private readonly string _enqueue = PostgresLaneSql.Enqueue(lanes.Table, lanes.KeyColumn);
    private readonly string _existing = PostgresLaneSql.Existing(lanes.Table, lanes.KeyColumn);
    private readonly string _enqueueBackground = PostgresLaneSql.EnqueueBackground(lanes.Table, lanes.KeyColumn);
    private readonly string _claim = PostgresLaneSql.Claim(lanes.Table, lanes.KeyColumn);
    private readonly string _reap = PostgresLaneSql.Reap(lanes.Table);
    private readonly string _complete = PostgresLaneSql.Complete(lanes.Table, lanes.KeyColumn, lanes.Channel);
    private readonly string _retry = PostgresLaneSql.Retry(lanes.Table, lanes.KeyColumn);
    private readonly string _demote = PostgresLaneSql.Demote(lanes.Table, lanes.KeyColumn);
    private readonly string _isPending = PostgresLaneSql.IsPending(lanes.Table, lanes.KeyColumn);
    private readonly string _count = PostgresLaneSql.Count(lanes.Table);
    private readonly string _wake = PostgresLaneSql.Wake(lanes.Channel);
    private DateTime _lastReap = DateTime.MinValue;
    private int _idlePriorityTakers;

    public string Name => "postgres";

    public PostgresLaneOptions Options => lanes;

    public async Task<EnqueueResult> EnqueueAsync(Guid key, Lane lane, CancellationToken ct)
    {
        var now = Now();
        for (var attempt = 0; ; attempt++)
        {
            // Insert, or promote a waiting (or running) background entry to priority, due now. A row
            // that is already where it should be is returned by the second statement.
            await using (var upsert = Write(_enqueue, out var command))
            {
                command.Parameters.Add(new NpgsqlParameter { Value = key });
                command.Parameters.Add(new NpgsqlParameter { Value = LaneName(lane) });
                command.Parameters.Add(new NpgsqlParameter { Value = Guid.CreateVersion7() });
                command.Parameters.Add(new NpgsqlParameter { Value = now, NpgsqlDbType = NpgsqlDbType.TimestampTz });
                command.Parameters.Add(new NpgsqlParameter { Value = lane == Lane.Priority && _requester is not null ? _requester : DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text });
                await using var reader = await ReadAsync(upsert, ct);
                if (await reader.ReadAsync(ct))
                {
                    var ticket = reader.GetGuid(0);
                    var outcome = reader.GetBoolean(1) ? EnqueueOutcome.Queued : reader.GetBoolean(2) ? EnqueueOutcome.InFlight : EnqueueOutcome.Promoted;
                    SignalFor(lane).Set();
                    return new EnqueueResult(outcome, ticket);
                }
            }
            await using (var existing = Read(_existing, out var look))
            {
                look.Parameters.Add(new NpgsqlParameter { Value = key });
                await using var reader = await ReadAsync(existing, ct);
                if (await reader.ReadAsync(ct))
                {
                    return new EnqueueResult(reader.GetBoolean(1) ? EnqueueOutcome.InFlight : EnqueueOutcome.AlreadyQueued, reader.GetGuid(0));
                }
            }
            if (attempt >= 3)
            {
                throw new InvalidOperationException("The key's lane entry kept disappearing while being queued.");
            }
            // Settled between the two statements: queue afresh.
        }
    }

    /// <summary>
    /// A priority request in ONE statement, <paramref name="sql"/> (built by
    /// <see cref="PostgresLaneSql.EnqueueClaiming"/> from the feature's check and reads): the key's
    /// check; the upsert of its entry on the priority lane (a waiting background entry is promoted in
    /// place); and, when a priority worker here is idle and nobody runs the entry yet, its claim for
    /// that worker together with what <paramref name="readHanded"/> reads from the statement's columns
    /// after the lanes' own. The claimed entry is handed to the worker in memory
    /// (<see cref="LaneEntry.Handed"/>). Each claim carries a new token: the row's token equal to ours
    /// is what tells this claim from an earlier one.
    /// </summary>
    public async Task<ClaimingEnqueue> EnqueueClaimingAsync(
        string sql, Guid key, Func<DbDataReader, int, CancellationToken, Task<object?>> readHanded, CancellationToken ct)
    {
        for (var attempt = 0; attempt < 3; attempt++)
        {
            var now = Now();
            Guid? claim = Volatile.Read(ref _idlePriorityTakers) > _handedOver.Count ? Guid.CreateVersion7() : null;
            await using var batch = Write(sql, out var command);
            command.Parameters.Add(new NpgsqlParameter { Value = key });
            command.Parameters.Add(new NpgsqlParameter { Value = Guid.CreateVersion7() });
            command.Parameters.Add(new NpgsqlParameter { Value = now, NpgsqlDbType = NpgsqlDbType.TimestampTz });
            command.Parameters.Add(new NpgsqlParameter { Value = _requester is null ? DBNull.Value : _requester, NpgsqlDbType = NpgsqlDbType.Text });
            command.Parameters.Add(new NpgsqlParameter { Value = claim is null ? DBNull.Value : _instance, NpgsqlDbType = NpgsqlDbType.Text });
            command.Parameters.Add(new NpgsqlParameter { Value = claim is null ? DBNull.Value : now, NpgsqlDbType = NpgsqlDbType.TimestampTz });
            command.Parameters.Add(new NpgsqlParameter { Value = claim is { } token ? token : DBNull.Value, NpgsqlDbType = NpgsqlDbType.Uuid });
            await using var reader = await ReadAsync(batch, ct);
            if (!await reader.ReadAsync(ct))
            {
                return new ClaimingEnqueue(KeyCheck.Unknown, null);
            }
            if (!reader.GetBoolean(0))
            {
                return new ClaimingEnqueue(KeyCheck.Refused, null);
            }
            if (reader.IsDBNull(1) && reader.IsDBNull(7))
            {
                continue; // Settled and removed between the upsert and its look-up: queue afresh.
            }
            if (reader.IsDBNull(1))
            {
                // Already on the priority lane: join it.
                var running = reader.GetBoolean(8);
                return new ClaimingEnqueue(KeyCheck.Accepted, new EnqueueResult(running ? EnqueueOutcome.InFlight : EnqueueOutcome.AlreadyQueued, reader.GetGuid(7)));
            }
            var ticket = reader.GetGuid(1);
            var claimed = reader.GetBoolean(6);
            // Not inserted and not running elsewhere: promoted from the background lane (or a waiting priority entry claimed).
            var outcome = reader.GetBoolean(4) ? EnqueueOutcome.Queued
                : reader.GetBoolean(5) && !claimed ? EnqueueOutcome.InFlight
                : EnqueueOutcome.Promoted;
            if (claimed)
            {
                var entry = new LaneEntry(key, Lane.Priority, ticket, reader.GetInt32(2), reader.GetFieldValue<DateTime>(3),
                    await readHanded(reader, PostgresLaneSql.HandedFrom, ct));
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
            return new ClaimingEnqueue(KeyCheck.Accepted, new EnqueueResult(outcome, ticket));
        }
        throw new InvalidOperationException("The key's lane entry kept disappearing while being queued.");
    }

    public async Task<int> EnqueueBackgroundAsync(IReadOnlyList<Guid> keys, CancellationToken ct)
    {
        if (keys.Count == 0)
        {
            return 0;
        }
        await using var batch = Write(_enqueueBackground, out var command);
        command.Parameters.Add(new NpgsqlParameter { Value = keys.ToArray() });
        command.Parameters.Add(new NpgsqlParameter { Value = Now(), NpgsqlDbType = NpgsqlDbType.TimestampTz });
        await ExecuteAsync(batch, ct);
        var queued = command.RecordsAffected;
        if (queued > 0)
        {
            _backgroundSignal.Set();
        }
        return queued;
    }

    public async Task<LaneEntry?> ClaimAsync(Lane lane, CancellationToken ct)
    {
        var now = Now();
        await ReapAsync(now, ct);
        await using var batch = Write(_claim, out var command);
        command.Parameters.Add(new NpgsqlParameter { Value = LaneName(lane) });
        command.Parameters.Add(new NpgsqlParameter { Value = _instance });
        command.Parameters.Add(new NpgsqlParameter { Value = now, NpgsqlDbType = NpgsqlDbType.TimestampTz });
        command.Parameters.Add(new NpgsqlParameter { Value = now - StealAfter, NpgsqlDbType = NpgsqlDbType.TimestampTz });
        command.Parameters.Add(new NpgsqlParameter { Value = Guid.CreateVersion7() });
        await using var reader = await ReadAsync(batch, ct);
        if (!await reader.ReadAsync(ct))
        {
            return null;
        }
        return new LaneEntry(reader.GetGuid(0), lane, reader.GetGuid(1), reader.GetInt32(2), reader.GetFieldValue<DateTime>(3));
    }

    /// <summary>A waiting priority entry: every instance's idle priority workers look now (<see cref="PostgresLaneSignals"/>).</summary>
    private async Task WakeEveryInstanceAsync(CancellationToken ct)
    {
        await using var batch = Read(_wake, out _);
        await ExecuteAsync(batch, ct);
    }

    /// <summary>Another instance queued priority work: this instance's idle priority workers look now.</summary>
    internal void Wake() => _prioritySignal.Set();

    /// <summary>
    /// Releases claims of instances that died mid-run (at most every few seconds per instance): an
    /// instance gone quiet for three of its heartbeats, or stopped, or started again since it claimed
    /// (a new process under the same <c>Tally:InstanceId</c> holds nothing of the old one's); and, for
    /// a holder that never registered, after <see cref="PostgresLaneOptions.ClaimTimeout"/>.
    /// </summary>
    private async Task ReapAsync(DateTime now, CancellationToken ct)
    {
        if (now - _lastReap < ReapEvery)
        {
            return;
        }
        _lastReap = now;
        await using var batch = Write(_reap, out var command);
        command.Parameters.Add(new NpgsqlParameter { Value = now - lanes.ClaimTimeout, NpgsqlDbType = NpgsqlDbType.TimestampTz });
        command.Parameters.Add(new NpgsqlParameter { Value = now, NpgsqlDbType = NpgsqlDbType.TimestampTz });
        await ExecuteAsync(batch, ct);
    }

    public async Task CompleteAsync(LaneEntry entry, CancellationToken ct)
    {
        // A priority entry may have someone waiting on another instance: tell every instance (delivered at commit).
        await using var batch = Write(_complete, out var command);
        command.Parameters.Add(new NpgsqlParameter { Value = entry.Key });
        command.Parameters.Add(new NpgsqlParameter { Value = entry.Ticket });
        await ExecuteAsync(batch, ct);
    }

    public async Task RetryAsync(LaneEntry entry, Lane lane, int attempt, DateTime notBefore, CancellationToken ct)
    {
        await using var batch = Write(_retry, out var command);
        command.Parameters.Add(new NpgsqlParameter { Value = entry.Key });
        command.Parameters.Add(new NpgsqlParameter { Value = entry.Ticket });
        command.Parameters.Add(new NpgsqlParameter { Value = attempt });
        command.Parameters.Add(new NpgsqlParameter { Value = notBefore, NpgsqlDbType = NpgsqlDbType.TimestampTz });
        command.Parameters.Add(new NpgsqlParameter { Value = LaneName(lane) });
        await ExecuteAsync(batch, ct);
    }

    public async Task DemoteAsync(Guid key, Guid ticket, CancellationToken ct)
    {
        await using var batch = Write(_demote, out var command);
        command.Parameters.Add(new NpgsqlParameter { Value = key });
        command.Parameters.Add(new NpgsqlParameter { Value = ticket });
        await ExecuteAsync(batch, ct);
    }

    public async Task<bool> IsPendingAsync(Guid key, Guid ticket, CancellationToken ct)
    {
        await using var batch = Read(_isPending, out var command);
        command.Parameters.Add(new NpgsqlParameter { Value = key });
        command.Parameters.Add(new NpgsqlParameter { Value = ticket });
        await using var reader = await ReadAsync(batch, ct);
        return await reader.ReadAsync(ct) && reader.GetBoolean(0);
    }

    public async Task<LaneCounts> CountAsync(CancellationToken ct)
    {
        await using var batch = Read(_count, out var command);
        command.Parameters.Add(new NpgsqlParameter { Value = Now(), NpgsqlDbType = NpgsqlDbType.TimestampTz });
        await using var reader = await ReadAsync(batch, ct);
        await reader.ReadAsync(ct);
        return new LaneCounts(reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2), reader.GetInt64(3));
    }

    public async Task<LaneEntry> TakeAsync(Lane lane, CancellationToken ct)
    {
        if (lane == Lane.Background)
        {
            return await PollAsync(lane, ct);
        }
        // An idle priority taker may be handed an entry that was claimed for it.
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

    private async Task<LaneEntry> PollAsync(Lane lane, CancellationToken ct)
    {
        while (true)
        {
            var next = SignalFor(lane).Next;
            if (lane == Lane.Priority && _handedOver.TryDequeue(out var handed))
            {
                return handed;
            }
            if (await ClaimAsync(lane, ct) is { } entry)
            {
                return entry;
            }
            await WorkSignal.WaitAsync(next, lanes.PollInterval, clock, ct);
        }
    }

    /// <summary>Shutting down with entries claimed for this instance but not yet taken: release them for any instance.</summary>
    private async Task ReleaseHandedOverAsync()
    {
        while (_handedOver.TryDequeue(out var entry))
        {
            try
            {
                await RetryAsync(entry, Lane.Priority, entry.Attempt, Now(), CancellationToken.None);
            }
            catch (NpgsqlException)
            {
                // The database is gone too: the claim is released when its holder counts as dead.
            }
        }
    }

    /// <summary>
    /// A write in one round trip: with asynchronous commit, preceded by the setting for its own
    /// implicit transaction (a batch is sent with one sync, so its statements commit together).
    /// </summary>
    private static NpgsqlBatch Write(string sql, bool asynchronous, out NpgsqlBatchCommand command)
    {
        var batch = new NpgsqlBatch();
        if (asynchronous)
        {
            batch.BatchCommands.Add(new NpgsqlBatchCommand(PostgresLaneSql.AsynchronousCommit));
        }
        command = new NpgsqlBatchCommand(sql);
        batch.BatchCommands.Add(command);
        return batch;
    }

    private NpgsqlBatch Write(string sql, out NpgsqlBatchCommand command) => Write(sql, lanes.AsynchronousCommit, out command);

    /// <summary>A statement that writes nothing a crash could forget: no commit setting.</summary>
    private static NpgsqlBatch Read(string sql, out NpgsqlBatchCommand command) => Write(sql, asynchronous: false, out command);

    /// <summary>
    /// Runs a batch on a connection of the process's pool, prepared: a prepared statement stays with
    /// its connection through the pool, so only a connection's first round of each statement parses
    /// and plans it (this is every worker's hot path).
    /// </summary>
    private async Task ExecuteAsync(NpgsqlBatch batch, CancellationToken ct)
    {
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        batch.Connection = connection;
        await batch.PrepareAsync(ct);
        await batch.ExecuteNonQueryAsync(ct);
    }

    /// <summary>The reader of a batch (<see cref="ExecuteAsync"/>), at its last statement's rows; disposing it returns the connection.</summary>
    private async Task<NpgsqlDataReader> ReadAsync(NpgsqlBatch batch, CancellationToken ct)
    {
        var connection = await dataSource.OpenConnectionAsync(ct);
        try
        {
            batch.Connection = connection;
            await batch.PrepareAsync(ct);
            var reader = await batch.ExecuteReaderAsync(CommandBehavior.CloseConnection, ct);
            for (var skip = batch.BatchCommands.Count - 1; skip > 0; skip--)
            {
                await reader.NextResultAsync(ct);
            }
            return reader;
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    private DateTime Now() => clock.GetUtcNow().UtcDateTime;

    private static string LaneName(Lane lane) => lane == Lane.Priority ? "PRIORITY" : "BACKGROUND";

    private WorkSignal SignalFor(Lane lane) => lane == Lane.Priority ? _prioritySignal : _backgroundSignal;
}

/// <summary>
/// The SQL of <see cref="PostgresLaneStore"/>, for a table of the lanes' shape. PostgreSQL only: it is
/// a store implementation, not a choice between databases (the embedded store is in memory).
/// </summary>
public static class PostgresLaneSql
{
    /// <summary>The first column of <see cref="EnqueueClaiming"/>'s rows that the feature's reads fill.</summary>
    public const int HandedFrom = 9;

    /// <summary>For the rest of the round trip's transaction only (<c>set_config</c>'s third argument): its commit does not wait for the WAL flush.</summary>
    public const string AsynchronousCommit = "SELECT set_config('synchronous_commit', 'off', true)";

    /// <summary>Signal payloads on the lanes' channel: priority work waits; <c>s:{key}</c>, a priority entry of the key settled.</summary>
    public const string PriorityWork = "p";

    public const string Settled = "s:";

    public static string Enqueue(string table, string key) => $"""
        INSERT INTO {table} AS q ({key}, lane, ticket, attempt, enqueued_at, not_before, requested_by)
        VALUES ($1, $2, $3, 0, $4, $4, $5)
        ON CONFLICT ({key}) DO UPDATE SET lane = 'PRIORITY', not_before = LEAST(q.not_before, excluded.not_before), requested_by = excluded.requested_by
            WHERE excluded.lane = 'PRIORITY' AND q.lane = 'BACKGROUND'
        RETURNING q.ticket, (xmax = 0) AS inserted, q.claimed_by IS NOT NULL AS running
        """;

    public static string Existing(string table, string key) => $"SELECT ticket, claimed_by IS NOT NULL FROM {table} WHERE {key} = $1";

    /// <summary>
    /// A priority request in one statement. Parameters: <c>$1</c> the key, <c>$2</c> a new ticket,
    /// <c>$3</c> now, <c>$4</c> the requesting instance, <c>$5</c>-<c>$7</c> the claim (instance, time,
    /// token; null when no worker here is idle).
    /// </summary>
    /// <param name="table">The lanes' table.</param>
    /// <param name="key">Its key column.</param>
    /// <param name="check">The feature's check of the key: a query of at most one row <c>(id, eligible)</c> for <c>$1</c>; no row is an unknown key, and only an eligible one is queued.</param>
    /// <param name="handedColumns">What the feature reads for a claimed entry: a select list (from column <see cref="HandedFrom"/> on).</param>
    /// <param name="handedJoin">Where it reads it from: joins, and an order, that may use <c>u</c> (the check's row) and <c>q.claimed</c> (true when this statement claimed the entry).</param>
    public static string EnqueueClaiming(string table, string key, string check, string handedColumns, string handedJoin) => $"""
        WITH u AS (
            {check}
        ), q AS (
            INSERT INTO {table} AS q ({key}, lane, ticket, attempt, enqueued_at, not_before, requested_by, claimed_by, claimed_at, claim)
            SELECT id, 'PRIORITY', $2, 0, $3, $3, $4, $5, $6, $7 FROM u WHERE eligible
            ON CONFLICT ({key}) DO UPDATE SET
                lane = 'PRIORITY', not_before = LEAST(q.not_before, excluded.not_before), requested_by = excluded.requested_by,
                claimed_by = COALESCE(q.claimed_by, excluded.claimed_by),
                claimed_at = CASE WHEN q.claimed_by IS NULL THEN excluded.claimed_at ELSE q.claimed_at END,
                claim = CASE WHEN q.claimed_by IS NULL THEN excluded.claim ELSE q.claim END
                WHERE q.lane = 'BACKGROUND' OR (q.claimed_by IS NULL AND excluded.claim IS NOT NULL)
            RETURNING q.ticket, q.attempt, q.enqueued_at, xmax = 0 AS inserted, q.claimed_by IS NOT NULL AS running, q.claim = $7 AS claimed
        )
        SELECT u.eligible, q.ticket, q.attempt, q.enqueued_at, q.inserted, q.running, COALESCE(q.claimed, false),
               e.ticket, e.claimed_by IS NOT NULL,
               {handedColumns}
        FROM u
        LEFT JOIN q ON true
        LEFT JOIN {table} e ON q.ticket IS NULL AND e.{key} = u.id
        {handedJoin}
        """;

    public static string EnqueueBackground(string table, string key) => $"""
        INSERT INTO {table} ({key}, lane, ticket, attempt, enqueued_at, not_before)
        SELECT u, 'BACKGROUND', gen_random_uuid(), 0, $2, $2 FROM unnest($1::uuid[]) WITH ORDINALITY AS t(u, n) ORDER BY n
        ON CONFLICT ({key}) DO NOTHING
        """;

    /// <summary>The oldest due entry of lane <c>$1</c> for instance <c>$2</c>: a priority entry another instance asked for only once it is older than <c>$4</c>.</summary>
    public static string Claim(string table, string key) => $"""
        UPDATE {table} q SET claimed_by = $2, claimed_at = $3, claim = $5
        FROM (SELECT {key} FROM {table}
              WHERE lane = $1 AND claimed_by IS NULL AND not_before <= $3
                AND ($1 = 'BACKGROUND' OR requested_by IS NULL OR requested_by = $2 OR not_before <= $4)
              ORDER BY not_before, seq
              LIMIT 1
              FOR UPDATE SKIP LOCKED) c
        WHERE q.{key} = c.{key}
        RETURNING q.{key}, q.ticket, q.attempt, q.enqueued_at
        """;

    public static string Reap(string table) => $"""
        UPDATE {table} q SET claimed_by = NULL, claimed_at = NULL, claim = NULL
        WHERE claimed_by IS NOT NULL
          AND (claimed_at < $1
               OR EXISTS (SELECT 1 FROM instances i WHERE i.id = q.claimed_by
                          AND (i.stopped_at IS NOT NULL OR i.started_at > q.claimed_at
                               OR i.last_seen_at < $2 - make_interval(secs => 3 * i.heartbeat_seconds))))
        """;

    public static string Complete(string table, string key, string channel) => $"""
        WITH done AS (DELETE FROM {table} WHERE {key} = $1 AND ticket = $2 RETURNING {key}, lane)
        SELECT pg_notify('{channel}', '{Settled}' || {key}::text) FROM done WHERE lane = 'PRIORITY'
        """;

    /// <summary>An entry promoted while it ran is PRIORITY; it keeps that.</summary>
    public static string Retry(string table, string key) => $"""
        UPDATE {table}
        SET claimed_by = NULL, claimed_at = NULL, claim = NULL, attempt = $3, not_before = $4,
            lane = CASE WHEN lane = 'PRIORITY' THEN 'PRIORITY' ELSE $5 END
        WHERE {key} = $1 AND ticket = $2
        """;

    public static string Demote(string table, string key) => $"""
        UPDATE {table} SET lane = 'BACKGROUND', requested_by = NULL
        WHERE {key} = $1 AND ticket = $2 AND lane = 'PRIORITY' AND claimed_by IS NULL
        """;

    public static string IsPending(string table, string key) => $"SELECT EXISTS (SELECT 1 FROM {table} WHERE {key} = $1 AND ticket = $2)";

    public static string Count(string table) => $"""
        SELECT count(*) FILTER (WHERE claimed_by IS NULL AND lane = 'PRIORITY'),
               count(*) FILTER (WHERE claimed_by IS NULL AND lane = 'BACKGROUND'),
               count(*) FILTER (WHERE claimed_by IS NOT NULL),
               count(*) FILTER (WHERE claimed_by IS NULL AND not_before > $1)
        FROM {table}
        """;

    public static string Wake(string channel) => $"SELECT pg_notify('{channel}', '{PriorityWork}')";
}
