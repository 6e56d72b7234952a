using System.Collections.Concurrent;
using System.Threading.RateLimiting;

namespace Tally.Jobs.RateLimits;

/// <summary>
/// One upstream's limits as the whole fleet holds them: at most <see cref="Permits"/> call starts in
/// any <see cref="Window"/>, at most <see cref="MaxCalls"/> calls in flight (0: no such limit), of
/// which <see cref="Reserve"/> starts and slots only priority calls may use. <see cref="Even"/> spaces
/// the background lane's starts evenly over the window, so the upstream sees a steady trickle rather
/// than bursts. <see cref="CallTimeout"/> bounds how long a dead instance's call counts as in flight.
/// </summary>
public sealed record FleetLimit(string Upstream, int Permits, TimeSpan Window, int MaxCalls, int Reserve, bool Even, TimeSpan CallTimeout)
{
    /// <summary>A token bucket (<c>RateLimits:{upstream}</c>) as a window: <c>Burst</c> starts in any <c>Burst / PermitsPerSecond</c> seconds.</summary>
    public static FleetLimit Of(string upstream, RateLimitOptions options)
    {
        var burst = Math.Max(1, options.Burst);
        return new(upstream, burst, TimeSpan.FromSeconds(burst / Math.Max(0.001, options.PermitsPerSecond)), 0, 0, false, TimeSpan.FromMinutes(1));
    }

    /// <summary>Between two background starts when <see cref="Even"/>.</summary>
    public TimeSpan Spacing => Even ? Window / (Permits - Reserve) : TimeSpan.Zero;

    /// <summary>
    /// What one of <paramref name="instances"/> may use alone when the shared store is out of reach:
    /// its share of the permits and of the calls in flight, never less than one, never more than the whole.
    /// </summary>
    public FleetLimit ShareOf(int instances)
    {
        var n = Math.Max(1, instances);
        var permits = Math.Max(1, Permits / n);
        return this with
        {
            Permits = permits,
            // One permit in a share of a longer window is the same rate, rounded down, never up.
            Window = permits * n > Permits ? Window * n : Window,
            MaxCalls = MaxCalls == 0 ? 0 : Math.Max(1, MaxCalls / n),
            Reserve = 0,
        };
    }
}

/// <summary>What the shared store answered: granted, or not before <see cref="RetryAfter"/>.</summary>
public readonly record struct FleetAnswer(bool Granted, TimeSpan RetryAfter)
{
    public static readonly FleetAnswer Grant = new(true, TimeSpan.Zero);
}

/// <summary>
/// Where the fleet keeps its counts: Redis (<see cref="RedisFleetStore"/>) or PostgreSQL
/// (<see cref="PostgresFleetStore"/>). One call decides a start atomically against every instance's.
/// </summary>
public interface IFleetStore
{
    string Name { get; }

    /// <summary>Takes one start (and one slot in flight, if limited) under <paramref name="limit"/> for call <paramref name="id"/>, or says when to ask again.</summary>
    Task<FleetAnswer> TryTakeAsync(FleetLimit limit, bool priority, string id, CancellationToken ct);

    /// <summary>The call has its answer: its slot in flight is free (its start stays in the window).</summary>
    Task ReleaseAsync(FleetLimit limit, string id);

    /// <summary>The upstream asked for a pause (a 429's Retry-After): no instance calls it for <paramref name="pause"/>.</summary>
    Task PauseAsync(string upstream, TimeSpan pause, CancellationToken ct);
}

/// <summary>The <c>RateLimits</c> section's fleet settings.</summary>
public sealed class FleetLimitOptions
{
    public const string Section = "RateLimits";

    /// <summary>
    /// How many instances call each upstream. When the shared store is out of reach, each instance
    /// goes on alone with this share of every limit (limit / count, at least one), never unlimited.
    /// </summary>
    [System.ComponentModel.DataAnnotations.Range(1, 1000, ErrorMessage = "RateLimits:ExpectedInstances must be between 1 and 1000.")]
    public int ExpectedInstances { get; set; } = 2;

    /// <summary><c>redis</c>, <c>postgres</c> or <c>none</c> (one process); by default Redis when <c>Redis:Url</c> is set, else PostgreSQL when it is the storage, else none.</summary>
    public string? Store { get; set; }
}

/// <summary>
/// Limits toward upstreams that hold across every instance sharing one store (issue #14): each call
/// takes a start (and a slot in flight) from the shared counts before it goes, and gives the slot back
/// when it has its answer. A priority call that must wait makes every instance's background calls wait
/// behind it. When the store is out of reach this instance goes on with its safe share of the limits
/// (<see cref="FleetLimitOptions.ExpectedInstances"/>), with a warning, and tries the store again a few
/// seconds later. Without a store (one embedded process) every call goes at once: the instance's own
/// gate is the whole fleet's.
/// </summary>
public sealed partial class FleetLimiter(IFleetStore? store, FleetLimitOptions options, TimeProvider clock, ILogger<FleetLimiter> logger) : IAsyncDisposable
{
    /// <summary>How long after a failure the store is left alone before it is tried again.</summary>
    public static readonly TimeSpan OutageRetry = TimeSpan.FromSeconds(5);

    private static readonly TimeSpan LongestWait = TimeSpan.FromMilliseconds(250);

    private readonly ConcurrentDictionary<string, Share> _shares = new(StringComparer.Ordinal);
    private long _outageUntil = long.MinValue;
    private int _inOutage;

    /// <summary>The store's name (<c>redis</c>, <c>postgres</c>), or <c>none</c>.</summary>
    public string Store => store?.Name ?? "none";

    /// <summary>Whether this instance is on its safe share now because the store is out of reach.</summary>
    public bool OnShare => Volatile.Read(ref _inOutage) == 1;

    /// <summary>Waits for the right to make one call under <paramref name="limit"/>; dispose the permit when the call has its answer.</summary>
    public async Task<IAsyncDisposable> EnterAsync(FleetLimit limit, Func<bool> priority, CancellationToken ct)
    {
        if (store is null)
        {
            return Permit.None;
        }
        var id = Guid.NewGuid().ToString("N");
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            if (clock.GetTimestamp() < Interlocked.Read(ref _outageUntil))
            {
                return await ShareOf(limit).EnterAsync(ct);
            }
            FleetAnswer answer;
            try
            {
                answer = await store.TryTakeAsync(limit, priority(), id, ct);
            }
            catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
            {
                StartOutage(e, limit.Upstream);
                continue;
            }
            EndOutage();
            if (answer.Granted)
            {
                return new Permit(this, limit, id);
            }
            var wait = answer.RetryAfter < TimeSpan.FromMilliseconds(1) ? TimeSpan.FromMilliseconds(1)
                : answer.RetryAfter > LongestWait ? LongestWait : answer.RetryAfter;
            await Task.Delay(wait, clock, ct);
        }
    }

    /// <summary>Waits for one start of <paramref name="limit"/> (an upstream without a calls-in-flight limit).</summary>
    public async ValueTask WaitAsync(FleetLimit limit, CancellationToken ct)
    {
        await using var permit = await EnterAsync(limit, static () => false, ct);
    }

    /// <summary>Every instance stops calling <paramref name="upstream"/> for <paramref name="pause"/>; kept locally too should the store be out of reach.</summary>
    public async Task PauseAsync(string upstream, TimeSpan pause, CancellationToken ct)
    {
        if (store is null)
        {
            return;
        }
        try
        {
            await store.PauseAsync(upstream, pause, ct);
        }
        catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            StartOutage(e, upstream);
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var share in _shares.Values)
        {
            await share.DisposeAsync();
        }
    }

    private Share ShareOf(FleetLimit limit) => _shares.GetOrAdd(limit.Upstream, _ => new Share(limit.ShareOf(options.ExpectedInstances)));

    private void StartOutage(Exception e, string upstream)
    {
        Interlocked.Exchange(ref _outageUntil, clock.GetTimestamp() + (long)(OutageRetry.TotalSeconds * clock.TimestampFrequency));
        if (Interlocked.Exchange(ref _inOutage, 1) == 0)
        {
            LogOutage(logger, e, store!.Name, upstream, options.ExpectedInstances);
        }
    }

    private void EndOutage()
    {
        if (Interlocked.Exchange(ref _inOutage, 0) == 1)
        {
            LogRecovered(logger, store!.Name);
        }
    }

    private async Task Release(FleetLimit limit, string id)
    {
        try
        {
            await store!.ReleaseAsync(limit, id);
        }
        catch (Exception)
        {
            // Out of reach: the slot frees itself after the call's timeout.
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "The fleet's rate-limit store ({Store}) is out of reach; calling {Upstream} with this instance's share (1/{Instances} of each limit) until it is back")]
    private static partial void LogOutage(ILogger logger, Exception e, string store, string upstream, int instances);

    [LoggerMessage(Level = LogLevel.Information, Message = "The fleet's rate-limit store ({Store}) is back; limits are shared again")]
    private static partial void LogRecovered(ILogger logger, string store);

    /// <summary>A granted call; disposing it frees its slot in flight.</summary>
    private sealed class Permit(FleetLimiter? owner, FleetLimit? limit, string? id) : IAsyncDisposable
    {
        public static readonly Permit None = new(null, null, null);
        private int _released;

        public async ValueTask DisposeAsync()
        {
            if (owner is not null && limit!.MaxCalls > 0 && Interlocked.Exchange(ref _released, 1) == 0)
            {
                await owner.Release(limit, id!);
            }
        }
    }

    /// <summary>This instance's safe share of one upstream's limits, held in memory while the store is out of reach.</summary>
    private sealed class Share(FleetLimit limit) : IAsyncDisposable
    {
        // One start per (window / permits): strictly spaced, so no window ever holds more than the share.
        private readonly TokenBucketRateLimiter _starts = new(new TokenBucketRateLimiterOptions
        {
            TokenLimit = 1,
            TokensPerPeriod = 1,
            ReplenishmentPeriod = limit.Window / limit.Permits,
            QueueLimit = int.MaxValue,
            QueueProcessingOrder = QueueProcessingOrder.OldestFirst,
            AutoReplenishment = true,
        });

        private readonly SemaphoreSlim? _calls = limit.MaxCalls > 0 ? new SemaphoreSlim(limit.MaxCalls, limit.MaxCalls) : null;

        public async Task<IAsyncDisposable> EnterAsync(CancellationToken ct)
        {
            if (_calls is not null)
            {
                await _calls.WaitAsync(ct);
            }
            try
            {
                using var lease = await _starts.AcquireAsync(1, ct);
                return new Slot(_calls);
            }
            catch
            {
                _calls?.Release();
                throw;
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _starts.DisposeAsync();
            _calls?.Dispose();
        }

        private sealed class Slot(SemaphoreSlim? calls) : IAsyncDisposable
        {
            private int _released;

            public ValueTask DisposeAsync()
            {
                if (Interlocked.Exchange(ref _released, 1) == 0)
                {
                    calls?.Release();
                }
                return ValueTask.CompletedTask;
            }
        }
    }
}
