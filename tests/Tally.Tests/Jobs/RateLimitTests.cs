using Microsoft.Extensions.Configuration;
using Tally.Jobs.RateLimits;

namespace Tally.Tests.Jobs;

public class RateLimitTests
{
    [Fact]
    public async Task Upstream_ManyCallersAtOnce_AreDelayedNeverRefusedAndNeverExceedTheRate()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["RateLimits:core:PermitsPerSecond"] = "20",
            ["RateLimits:core:Burst"] = "1",
        }).Build();
        await using var limits = new UpstreamRateLimits(configuration);
        var granted = 0;
        var clock = System.Diagnostics.Stopwatch.StartNew();

        // 40 callers at once: all of them get through (delayed, not failed).
        await Task.WhenAll(Enumerable.Range(0, 40).Select(async _ =>
        {
            await limits.WaitAsync("core", TestContext.Current.CancellationToken);
            Interlocked.Increment(ref granted);
        }));

        Assert.Equal(40, granted);
        // Never faster than the rate: after the one permit of the burst, 39 more at 20 a second take at
        // least 1.95 s. (A bound from below: a busy machine only makes it later. Times taken by the callers
        // themselves cannot show the rate per window, since their continuations may run bunched together.)
        Assert.True(clock.Elapsed >= TimeSpan.FromSeconds(1.9), $"40 permits at 20/s took only {clock.Elapsed}");
        // And another upstream has its own bucket.
        await limits.WaitAsync("other", TestContext.Current.CancellationToken);
    }
}
