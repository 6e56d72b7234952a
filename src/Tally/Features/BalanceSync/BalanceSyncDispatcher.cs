using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Options;

namespace Tally.Features.BalanceSync;

/// <summary>
/// Who is waiting for whose sync on this instance: a login registers before it queues, so the
/// settlement it waits for cannot slip past it. Several logins of one user share one wait.
/// </summary>
public sealed class SyncCompletions
{
    private readonly object _lock = new();
    private readonly Dictionary<Guid, Awaited> _awaited = [];

    /// <summary>Starts waiting for <paramref name="userId"/>'s next settlement; dispose to stop.</summary>
    public Registration Await(Guid userId)
    {
        lock (_lock)
        {
            if (!_awaited.TryGetValue(userId, out var awaited))
            {
                _awaited[userId] = awaited = new Awaited();
            }
            awaited.Count++;
            return new Registration(this, userId, awaited);
        }
    }

    public bool IsAwaited(Guid userId)
    {
        lock (_lock)
        {
            return _awaited.ContainsKey(userId);
        }
    }

    /// <summary>
    /// A sync of the user's settled on another instance (PostgreSQL's <c>NOTIFY</c>, see
    /// <see cref="PostgresSyncSignals"/>): whoever waits here looks at the lanes now rather than at
    /// their next poll. Only a look: which entry settled is for the lanes to say.
    /// </summary>
    public void Nudge(Guid userId)
    {
        TaskCompletionSource? nudged = null;
        lock (_lock)
        {
            if (_awaited.TryGetValue(userId, out var awaited))
            {
                nudged = awaited.Nudged;
                awaited.Nudged = new(TaskCreationOptions.RunContinuationsAsynchronously);
            }
        }
        nudged?.TrySetResult();
    }

    /// <summary>The user's sync settled on this instance: wake everyone waiting for it, with the accounts it committed.</summary>
    public void Settled(Guid userId, IReadOnlyList<CoreAccount>? accounts)
    {
        Awaited? awaited;
        lock (_lock)
        {
            if (!_awaited.Remove(userId, out awaited))
            {
                return;
            }
        }
        awaited.Done.TrySetResult(accounts);
    }

    private void Leave(Guid userId, Awaited awaited)
    {
        lock (_lock)
        {
            if (--awaited.Count == 0 && _awaited.TryGetValue(userId, out var current) && current == awaited)
            {
                _awaited.Remove(userId);
            }
        }
    }

    internal sealed class Awaited
    {
        public TaskCompletionSource<IReadOnlyList<CoreAccount>?> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public TaskCompletionSource Nudged { get; set; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public int Count { get; set; }
    }

    public sealed class Registration : IDisposable
    {
        private readonly SyncCompletions _owner;
        private readonly Guid _userId;
        private readonly Awaited _awaited;
        private int _left;

        internal Registration(SyncCompletions owner, Guid userId, Awaited awaited)
        {
            _owner = owner;
            _userId = userId;
            _awaited = awaited;
        }

        /// <summary>Completes when the sync settled here, with the accounts it committed.</summary>
        public Task<IReadOnlyList<CoreAccount>?> Settled => _awaited.Done.Task;

        /// <summary>Completes at the next sign that a sync of the user settled elsewhere; read it again after each look.</summary>
        public Task Nudged
        {
            get
            {
                lock (_owner._lock)
                {
                    return _awaited.Nudged.Task;
                }
            }
        }

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _left, 1) == 0)
            {
                _owner.Leave(_userId, _awaited);
            }
        }
    }
}

/// <summary>
/// The worker side of balance sync (role <c>worker</c>): priority workers take only priority entries,
/// background workers only background ones, and every core call of both goes through the one
/// <see cref="CoreCallGate"/>, which serves priority first. So a login never queues behind background
/// work: its entry is claimed at once by an idle priority worker and its calls jump every background
/// call waiting at the gate. By default there are twice as many background workers as background call
/// slots, plus one (<see cref="BalanceSyncOptions.BackgroundWorkers"/>): while some read and write the
/// database, others wait at the gate, so a free slot does not wait for the database.
/// Delivery: a claimed entry is settled (removed), retried with backoff, or, after
/// <see cref="BalanceSyncOptions.MaxRetries"/>, given up until the next period; each iteration has its
/// own error boundary, and one user's failures never hold up another's sync.
/// </summary>
public sealed partial class BalanceSyncDispatcher(
    ISyncLanes lanes,
    CoreCallGate gate,
    SyncCompletions completions,
    IServiceScopeFactory scopes,
    IHostApplicationLifetime lifetime,
    IMeterFactory meters,
    IOptions<BalanceSyncOptions> options,
    TimeProvider clock,
    ILogger<BalanceSyncDispatcher> logger) : BackgroundService
{
    private readonly ConcurrentDictionary<Guid, Running> _running = new();
    private readonly Meter _meter = meters.Create("Tally.BalanceSync.Lanes");
    private Counter<long>? _outcomes;
    private LaneCounts _counts = new(0, 0, 0, 0);

    /// <summary>A login joined <paramref name="userId"/>'s entry: if it is running here, its remaining calls go as priority.</summary>
    public void Promote(Guid userId)
    {
        if (_running.TryGetValue(userId, out var running))
        {
            running.Lane = SyncLane.Priority;
            gate.Reconsider();
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // Not before the app listens: embedded mode calls its own sandbox over HTTP.
        using (var started = CancellationTokenSource.CreateLinkedTokenSource(lifetime.ApplicationStarted, stoppingToken))
        {
            await Task.Delay(Timeout.Infinite, started.Token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
        if (stoppingToken.IsCancellationRequested)
        {
            return;
        }
        var o = options.Value;
        // Lane depths for /metrics, refreshed in the background: a scrape never waits for the database.
        _outcomes = _meter.CreateCounter<long>("tally_balance_sync_users", description: "Users' sync attempts by outcome: settled, retry, gave_up");
        _meter.CreateObservableGauge("tally_balance_sync_lane_depth", () => new[]
        {
            new Measurement<long>(Volatile.Read(ref _counts).Priority, new KeyValuePair<string, object?>("lane", "priority")),
            new Measurement<long>(Volatile.Read(ref _counts).Background, new KeyValuePair<string, object?>("lane", "background")),
            new Measurement<long>(Volatile.Read(ref _counts).InFlight, new KeyValuePair<string, object?>("lane", "in_flight")),
        }, description: "Users waiting per lane, and running, across the instances sharing the lanes");
        var priorityWorkers = o.MaxConcurrentCalls + 1;
        var backgroundWorkers = o.BackgroundWorkers > 0 ? o.BackgroundWorkers : (2 * (o.MaxConcurrentCalls - o.PriorityReserve)) + 1;
        LogStarted(logger, o.Interval.TotalSeconds, o.AuthSyncTimeoutMs, lanes.Name, o.MaxConcurrentCalls);
        await Task.WhenAll(
            Enumerable.Range(0, priorityWorkers).Select(_ => WorkAsync(SyncLane.Priority, stoppingToken))
                .Concat(Enumerable.Range(0, backgroundWorkers).Select(_ => WorkAsync(SyncLane.Background, stoppingToken)))
                .Append(CountAsync(stoppingToken)));
    }

    private async Task CountAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                Volatile.Write(ref _counts, await lanes.CountAsync(stoppingToken));
            }
            catch (Exception e) when (!stoppingToken.IsCancellationRequested)
            {
                LogWorkerFailed(logger, e, "count");
            }
            await Task.Delay(TimeSpan.FromSeconds(5), clock, stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    private async Task WorkAsync(SyncLane lane, CancellationToken stoppingToken)
    {
        await Task.Yield();
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var entry = await lanes.TakeAsync(lane, stoppingToken);
                await ProcessAsync(entry, stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                // The lanes' store is down: pause, then carry on.
                LogWorkerFailed(logger, e, lane.ToString());
                await Task.Delay(TimeSpan.FromSeconds(1), clock, stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }
    }

    private async Task ProcessAsync(SyncEntry entry, CancellationToken stoppingToken)
    {
        var running = new Running { Lane = entry.Lane };
        _running[entry.UserId] = running;
        try
        {
            UserSyncResult result;
            try
            {
                await using var scope = scopes.CreateAsyncScope();
                result = await scope.ServiceProvider.GetRequiredService<SyncUserBalances>().RunAsync(entry, () => running.Lane, stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                // Shutting down: hand the user back, same attempt, for whoever runs next.
                await lanes.RetryAsync(entry, running.Lane, entry.Attempt, clock.GetUtcNow().UtcDateTime, CancellationToken.None);
                throw;
            }
            catch (Exception e)
            {
                // A bug or the database: counted as an attempt, like a transient core failure.
                LogSyncThrew(logger, e, entry.UserId, entry.Attempt);
                result = UserSyncResult.Retry(new T24Failure.Unreachable($"{e.GetType().Name} in Tally"));
            }

            var o = options.Value;
            if (result.Settled || entry.Attempt >= o.MaxRetries)
            {
                if (!result.Settled)
                {
                    LogGaveUp(logger, entry.UserId, entry.Attempt + 1, result.RetryBecause?.Code ?? "UNKNOWN");
                }
                _outcomes?.Add(1, new KeyValuePair<string, object?>("outcome", result.Settled ? "settled" : "gave_up"));
                // The entry leaves the lanes before the waiting login is told: a login arriving meanwhile
                // must queue a sync of its own, not join this one, whose calls to the core were made
                // before it arrived (it would answer balances older than a change made before it).
                try
                {
                    await lanes.CompleteAsync(entry, stoppingToken);
                }
                finally
                {
                    // The balances are committed whatever happened to the entry (a leftover is synced again).
                    completions.Settled(entry.UserId, result.Accounts);
                }
                return;
            }
            var delay = RetryPolicy.Delay(entry.Attempt, result.RetryBecause, o.RetryBaseDelay, o.RetryMaxDelay, Random.Shared.NextDouble());
            // A retry stays on the priority lane only while a login here still waits for it.
            var retryLane = running.Lane == SyncLane.Priority && completions.IsAwaited(entry.UserId) ? SyncLane.Priority : SyncLane.Background;
            await lanes.RetryAsync(entry, retryLane, entry.Attempt + 1, clock.GetUtcNow().UtcDateTime + delay, stoppingToken);
            _outcomes?.Add(1, new KeyValuePair<string, object?>("outcome", "retry"));
            LogRetrying(logger, entry.UserId, entry.Attempt + 1, delay.TotalMilliseconds, result.RetryBecause?.Code ?? "UNKNOWN");
        }
        finally
        {
            _running.TryRemove(new KeyValuePair<Guid, Running>(entry.UserId, running));
        }
    }

    private sealed class Running
    {
        private volatile int _lane;

        public SyncLane Lane
        {
            get => (SyncLane)_lane;
            set => _lane = (int)value;
        }
    }

    /// <summary>Seed 001's start lines, as one: what its operators look for when the service comes up.</summary>
    [LoggerMessage(Level = LogLevel.Information, Message = "Balance sync service started: sync interval {IntervalSeconds} s, auth timeout {AuthTimeoutMs} ms, {Lanes} lanes, {MaxCalls} core call(s) at once")]
    private static partial void LogStarted(ILogger logger, double intervalSeconds, int authTimeoutMs, string lanes, int maxCalls);

    [LoggerMessage(Level = LogLevel.Error, Message = "Balance sync {Lane} worker failed; carrying on")]
    private static partial void LogWorkerFailed(ILogger logger, Exception e, string lane);

    [LoggerMessage(Level = LogLevel.Error, Message = "Balance sync of user {UserId} threw on attempt {Attempt}")]
    private static partial void LogSyncThrew(ILogger logger, Exception e, Guid userId, int attempt);

    [LoggerMessage(Level = LogLevel.Information, Message = "Balance sync of user {UserId}: retry {Attempt} in {DelayMs:0} ms after {Reason}")]
    private static partial void LogRetrying(ILogger logger, Guid userId, int attempt, double delayMs, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Balance sync of user {UserId} gave up after {Attempts} attempts ({Reason}); the next period tries again")]
    private static partial void LogGaveUp(ILogger logger, Guid userId, int attempts, string reason);
}
