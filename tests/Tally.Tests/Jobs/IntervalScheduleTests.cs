using Tally.Jobs.Scheduling;

namespace Tally.Tests.Jobs;

/// <summary>Interval schedules (<c>@every 300000ms</c>) for settings given in milliseconds.</summary>
public class IntervalScheduleTests
{
    private static JobDefinition Every(string interval) => new("test.every", $"@every {interval}", "UTC", typeof(HeartbeatJobStub), true);

    [Theory]
    [InlineData("300000ms", "2025-03-01T10:02:30Z", "2025-03-01T10:05:00Z")]
    [InlineData("5m", "2025-03-01T10:05:00Z", "2025-03-01T10:10:00Z")]
    [InlineData("30s", "2025-03-01T10:05:10Z", "2025-03-01T10:05:30Z")]
    [InlineData("1h", "2025-03-01T10:05:10Z", "2025-03-01T11:00:00Z")]
    [InlineData("7000ms", "1970-01-01T00:00:13Z", "1970-01-01T00:00:14Z")]
    public void NextAfter_IsAlignedToTheEpoch_SoEveryInstanceAgrees(string interval, string after, string expected)
    {
        var next = Every(interval).NextAfter(DateTime.Parse(after, null, System.Globalization.DateTimeStyles.AdjustToUniversal));
        Assert.Equal(DateTime.Parse(expected, null, System.Globalization.DateTimeStyles.AdjustToUniversal), next);
        Assert.Equal(DateTimeKind.Utc, next!.Value.Kind);
    }

    [Theory]
    [InlineData("0ms")]
    [InlineData("25h")]
    [InlineData("10")]
    [InlineData("ten minutes")]
    [InlineData("-5s")]
    public void BadInterval_IsRefused(string interval) => Assert.Throws<FormatException>(() => Every(interval));

    private sealed class HeartbeatJobStub : IScheduledJob
    {
        public Task<JobResult> RunAsync(CancellationToken ct) => Task.FromResult(new JobResult(0));
    }
}
