using System.Collections.Concurrent;
using System.Threading.RateLimiting;

namespace Tally.Jobs.RateLimits;

/// <summary>Per-upstream limits from <c>RateLimits:{upstream}:PermitsPerSecond</c> and <c>:Burst</c>.</summary>
public sealed class RateLimitOptions
{
    public double PermitsPerSecond { get; set; } = 10;
    public int Burst { get; set; } = 1;
}

/// <summary>
/// A limit per upstream (SimpleFIN, the sandbox, ...). <see cref="WaitAsync"/> delays the caller
/// until a permit is free rather than failing the work: rate limits shape traffic, they do not drop it.
/// With a fleet store (Redis or PostgreSQL) the limit holds across every instance
/// (<see cref="FleetLimiter"/>: <c>Burst</c> calls in any <c>Burst / PermitsPerSecond</c> seconds);
/// one embedded process keeps a token bucket in memory.
/// </summary>
public sealed class UpstreamRateLimits(IConfiguration configuration, FleetLimiter? fleet = null) : IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, RateLimiter> _limiters = new(StringComparer.Ordinal);

    public RateLimiter For(string upstream) => _limiters.GetOrAdd(upstream, name => Create(OptionsOf(name)));

    private RateLimitOptions OptionsOf(string upstream) =>
        configuration.GetSection($"RateLimits:{upstream}").Get<RateLimitOptions>() ?? new RateLimitOptions();

    public static RateLimiter Create(RateLimitOptions options)
    {
        var burst = Math.Max(1, options.Burst);
        return new TokenBucketRateLimiter(new TokenBucketRateLimiterOptions
        {
            TokenLimit = burst,
            TokensPerPeriod = burst,
            ReplenishmentPeriod = TimeSpan.FromSeconds(burst / Math.Max(0.001, options.PermitsPerSecond)),
            QueueLimit = int.MaxValue,
            QueueProcessingOrder = QueueProcessingOrder.OldestFirst,
            AutoReplenishment = true,
        });
    }

    /// <summary>Waits for one permit of <paramref name="upstream"/>.</summary>
    public async ValueTask WaitAsync(string upstream, CancellationToken ct)
    {
        if (fleet is { Store: not "none" })
        {
            await fleet.WaitAsync(FleetLimit.Of(upstream, OptionsOf(upstream)), ct);
            return;
        }
        using var lease = await For(upstream).AcquireAsync(1, ct);
        if (!lease.IsAcquired)
        {
            throw new InvalidOperationException($"Rate limiter for {upstream} refused a permit.");
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var limiter in _limiters.Values)
        {
            await limiter.DisposeAsync();
        }
    }
}
