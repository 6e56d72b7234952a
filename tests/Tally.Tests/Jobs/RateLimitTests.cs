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
        var granted = new System.Collections.Concurrent.ConcurrentBag<DateTime>();

        // 40 callers at once: all of them get through (delayed, not failed).
        await Task.WhenAll(Enumerable.Range(0, 40).Select(async _ =>
        {
            await limits.WaitAsync("core", TestContext.Current.CancellationToken);
            granted.Add(DateTime.UtcNow);
        }));

        Assert.Equal(40, granted.Count);
        // In no one-second window were more than 20 permits granted (one extra for the window edge).
        var times = granted.Order().ToList();
        for (var i = 0; i < times.Count; i++)
        {
            var inWindow = times.Count(t => t >= times[i] && t < times[i].AddSeconds(1));
            Assert.True(inWindow <= 21, $"{inWindow} permits within one second from {times[i]:O}");
        }
        // And another upstream has its own bucket.
        await limits.WaitAsync("other", TestContext.Current.CancellationToken);
    }
}
