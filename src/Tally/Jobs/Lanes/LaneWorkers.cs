using System.Collections.Concurrent;
using Tally.Jobs.Queues;

namespace Tally.Jobs.Lanes;

/// <summary>How one entry's run ended: the runtime's outcome, and the answer handed to whoever waits for the key (<see cref="LaneWaiters"/>).</summary>
public sealed record LaneResult(JobOutcome Outcome, object? Answer = null);

/// <summary>
/// Runs one lane entry (register with <see cref="LaneSetup.AddLaneWorkers{THandler, TReport}"/>;
/// resolved in a fresh scope per entry). <c>lane</c> is read live: an entry promoted while it runs
/// turns priority mid-run. Expected results are outcomes; a throw is a bug or a transient fault,
/// caught by the workers.
/// </summary>
public interface ILaneHandler
{
    Task<LaneResult> RunAsync(LaneEntry entry, Func<Lane> lane, CancellationToken ct);
}

/// <summary>
/// What the lane workers tell the feature that runs them, for its own log lines and metrics: the
/// runtime names no feature, so it says nothing of an entry itself. Called on the worker; each call
/// must return promptly and not throw.
/// </summary>
public interface ILaneReport
{
    /// <summary>The workers start (after the app listens), over the store named <paramref name="store"/>.</summary>
    void Started(string store);

    /// <summary>The lanes' depths, looked up every few seconds in the background.</summary>
    void Counted(LaneCounts counts);

    /// <summary>The entry is done and leaves the lanes.</summary>
    void Settled(LaneEntry entry);

    /// <summary>The entry waits <paramref name="delay"/> before attempt <paramref name="attempt"/>.</summary>
    void Retrying(LaneEntry entry, int attempt, TimeSpan delay, string reason);

    /// <summary>The entry used up its retries (or was given up on) after <paramref name="attempts"/> attempts and leaves the lanes.</summary>
    void GaveUp(LaneEntry entry, int attempts, string reason);

    /// <summary>The run threw: reports it, and says what it counts as (an attempt to retry, usually).</summary>
    JobOutcome Threw(LaneEntry entry, Exception e);

    /// <summary>A worker's own step failed (the store is down): it pauses, then carries on.</summary>
    void WorkerFailed(string worker, Exception e);
}

/// <summary>How many workers take from each lane, and the retry rule of <see cref="DeliveryPolicy"/> for an entry.</summary>
public sealed record LaneWorkerSettings(int PriorityWorkers, int BackgroundWorkers, int MaxRetries, TimeSpan RetryBaseDelay, TimeSpan RetryMaxDelay);

/// <summary>
/// The workers of deduplicating lanes with promotion, over any <see cref="ILaneStore"/>: priority
/// workers take only priority entries, background workers only background ones, so a priority entry
/// never queues behind background work (whatever the feature's calls go through afterwards is the
/// feature's to order). Delivery: a claimed entry is settled (removed), retried with backoff, or,
/// once <see cref="DeliveryPolicy"/> says its retries are used up, given up until it is queued again;
/// a run that is cut off by shutdown is handed back, same attempt, for whoever runs next. Each
/// iteration has its own error boundary, and one key's failures never hold up another's run.
/// </summary>
public sealed class LaneWorkers(
    ILaneStore store,
    LaneWaiters waiters,
    ILaneReport report,
    LaneWorkerSettings settings,
    Type handler,
    IServiceScopeFactory scopes,
    IHostApplicationLifetime lifetime,
    TimeProvider clock) : BackgroundService
{
    private static readonly TimeSpan CountEvery = TimeSpan.FromSeconds(5);

    private readonly ConcurrentDictionary<Guid, Running> _running = new();

    /// <summary>
    /// Someone now waits for <paramref name="key"/>'s entry: if it runs here, the rest of its run is
    /// priority. Answers whether it runs here, so the feature can reorder what it already waits for.
    /// </summary>
    public bool Promote(Guid key)
    {
        if (!_running.TryGetValue(key, out var running))
        {
            return false;
        }
        running.Lane = Lane.Priority;
        return true;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // Not before the app listens: a handler may call this very process over HTTP (a sandbox upstream).
        using (var started = CancellationTokenSource.CreateLinkedTokenSource(lifetime.ApplicationStarted, stoppingToken))
        {
            await Task.Delay(Timeout.Infinite, started.Token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
        if (stoppingToken.IsCancellationRequested)
        {
            return;
        }
        report.Started(store.Name);
        await Task.WhenAll(
            Enumerable.Range(0, settings.PriorityWorkers).Select(_ => WorkAsync(Lane.Priority, stoppingToken))
                .Concat(Enumerable.Range(0, settings.BackgroundWorkers).Select(_ => WorkAsync(Lane.Background, stoppingToken)))
                .Append(CountAsync(stoppingToken)));
    }

    /// <summary>Lane depths for metrics, refreshed in the background: a scrape never waits for the store.</summary>
    private async Task CountAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                report.Counted(await store.CountAsync(stoppingToken));
            }
            catch (Exception e) when (!stoppingToken.IsCancellationRequested)
            {
                report.WorkerFailed("count", e);
            }
            await Task.Delay(CountEvery, clock, stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    private async Task WorkAsync(Lane lane, CancellationToken stoppingToken)
    {
        await Task.Yield();
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var entry = await store.TakeAsync(lane, stoppingToken);
                await ProcessAsync(entry, stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                // The store is down: pause, then carry on.
                report.WorkerFailed(lane.ToString(), e);
                await Task.Delay(TimeSpan.FromSeconds(1), clock, stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }
    }

    private async Task ProcessAsync(LaneEntry entry, CancellationToken stoppingToken)
    {
        var running = new Running { Lane = entry.Lane };
        _running[entry.Key] = running;
        try
        {
            LaneResult result;
            try
            {
                await using var scope = scopes.CreateAsyncScope();
                result = await ((ILaneHandler)scope.ServiceProvider.GetRequiredService(handler)).RunAsync(entry, () => running.Lane, stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                // Shutting down: hand the key back, same attempt, for whoever runs next.
                await store.RetryAsync(entry, running.Lane, entry.Attempt, clock.GetUtcNow().UtcDateTime, CancellationToken.None);
                throw;
            }
            catch (Exception e)
            {
                result = new LaneResult(report.Threw(entry, e));
            }

            var action = DeliveryPolicy.Decide(result.Outcome, entry.Attempt, settings.MaxRetries);
            if (action is DeliveryAction.RetryAction retry && result.Outcome is JobOutcome.RetryLaterOutcome later)
            {
                var now = clock.GetUtcNow().UtcDateTime;
                var due = DeliveryPolicy.RetryAt(later, entry.Attempt, settings.RetryBaseDelay, settings.RetryMaxDelay, Random.Shared.NextDouble(), now);
                // A retry stays on the priority lane only while someone here still waits for it.
                var retryLane = running.Lane == Lane.Priority && waiters.IsAwaited(entry.Key) ? Lane.Priority : Lane.Background;
                await store.RetryAsync(entry, retryLane, retry.NextAttempt, due, stoppingToken);
                report.Retrying(entry, retry.NextAttempt, due - now, later.Reason);
                return;
            }
            if (action is DeliveryAction.DeadLetterAction)
            {
                report.GaveUp(entry, entry.Attempt + 1, result.Outcome switch
                {
                    JobOutcome.RetryLaterOutcome r => r.Reason,
                    JobOutcome.GiveUpOutcome g => g.Reason,
                    _ => "UNKNOWN",
                });
            }
            else
            {
                report.Settled(entry);
            }
            // The entry leaves the lanes before the waiters are told: a request arriving meanwhile must
            // queue a run of its own, not join this one, whose work was done before it arrived (it
            // would answer with what was true before a change made before it).
            try
            {
                await store.CompleteAsync(entry, stoppingToken);
            }
            finally
            {
                // The run's effects are committed whatever happened to the entry (a leftover is run again).
                waiters.Settled(entry.Key, result.Answer);
            }
        }
        finally
        {
            _running.TryRemove(new KeyValuePair<Guid, Running>(entry.Key, running));
        }
    }

    private sealed class Running
    {
        private volatile int _lane;

        public Lane Lane
        {
            get => (Lane)_lane;
            set => _lane = (int)value;
        }
    }
}

public static class LaneSetup
{
    /// <summary>
    /// Lanes kept in this process's memory (<see cref="InProcessLaneStore"/>), for a feature whose keys
    /// are queued again when lost; every role using them must run in this process.
    /// </summary>
    public static IServiceCollection AddInProcessLanes(this IServiceCollection services)
    {
        services.AddSingleton<LaneWaiters>();
        services.AddSingleton<InProcessLaneStore>();
        services.AddSingleton<ILaneStore>(sp => sp.GetRequiredService<InProcessLaneStore>());
        return services;
    }

    /// <summary>
    /// Lanes in a PostgreSQL table every instance shares (<see cref="PostgresLaneStore"/>), on the
    /// process's one connection pool, with the signals that let instances wake each other. The signals
    /// run on every role: an api instance's waiters hear of settlements, a worker's priority workers of
    /// priority work.
    /// </summary>
    public static IServiceCollection AddPostgresLanes(this IServiceCollection services, Func<IServiceProvider, PostgresLaneOptions> options)
    {
        services.AddSingleton<LaneWaiters>();
        services.AddSingleton(sp => ActivatorUtilities.CreateInstance<PostgresLaneStore>(sp, options(sp)));
        services.AddSingleton<ILaneStore>(sp => sp.GetRequiredService<PostgresLaneStore>());
        services.AddHostedService<PostgresLaneSignals>();
        return services;
    }

    /// <summary>
    /// The workers of the lanes registered above, running <typeparamref name="THandler"/> for each
    /// entry and telling <typeparamref name="TReport"/> what happened. They run (as a hosted service)
    /// only when <paramref name="run"/>; elsewhere <see cref="LaneWorkers.Promote"/> answers false.
    /// </summary>
    public static IServiceCollection AddLaneWorkers<THandler, TReport>(this IServiceCollection services, Func<IServiceProvider, LaneWorkerSettings> settings, bool run)
        where THandler : class, ILaneHandler
        where TReport : class, ILaneReport
    {
        services.AddScoped<THandler>();
        services.AddSingleton<TReport>();
        services.AddSingleton(sp => ActivatorUtilities.CreateInstance<LaneWorkers>(sp, sp.GetRequiredService<TReport>(), settings(sp), typeof(THandler)));
        if (run)
        {
            services.AddHostedService(sp => sp.GetRequiredService<LaneWorkers>());
        }
        return services;
    }
}
