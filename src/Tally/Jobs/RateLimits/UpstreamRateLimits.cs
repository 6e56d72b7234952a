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
/// A token bucket per upstream (T24, SimpleFIN, ...). <see cref="WaitAsync"/> delays the caller
/// until a permit is free rather than failing the work: rate limits shape traffic, they do not drop it.
/// Limits are per process; in scale-out, divide the upstream's quota by the worker count.
/// </summary>
public sealed class UpstreamRateLimits(IConfiguration configuration) : IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, RateLimiter> _limiters = new(StringComparer.Ordinal);

    public RateLimiter For(string upstream) => _limiters.GetOrAdd(upstream, name =>
    {
        var options = configuration.GetSection($"RateLimits:{name}").Get<RateLimitOptions>() ?? new RateLimitOptions();
        return Create(options);
    });

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
