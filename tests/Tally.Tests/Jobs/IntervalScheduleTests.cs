using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using Tally.Data;
using Tally.Features.BalanceSync;
using Tally.Hosting;
using Tally.Jobs;
using Tally.Jobs.Scheduling;
using Tally.Tests.Harness;

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

    [Theory]
    [InlineData("BALANCE_SYNC_INTERVAL", "soon", "BalanceSync:IntervalMs")]
    [InlineData("BalanceSync:IntervalMs", "10", "BalanceSync:IntervalMs")]
    [InlineData("AUTH_SYNC_TIMEOUT", "0", "BalanceSync:AuthSyncTimeoutMs")]
    [InlineData("BalanceSync:PriorityReserve", "1", "BalanceSync:PriorityReserve")]
    [InlineData("BalanceSync:Lanes", "postgres", "BalanceSync:Lanes")]
    [InlineData("T24:BaseUrl", "ftp://core", "T24:BaseUrl")]
    [InlineData("Jobs:balance-sync.enqueue-all:Cron", "@every never", "Jobs:balance-sync.enqueue-all:Cron")]
    public async Task BadBalanceSyncSetting_StopsStartUpNamingTheSetting(string key, string value, string named)
    {
        // A plain host rather than TallyApp: the test host's deferred start can report a failed start-up
        // as a disposed service provider, hiding the message this test reads.
        var error = await Assert.ThrowsAnyAsync<Exception>(async () =>
        {
            var builder = WebApplication.CreateBuilder(new WebApplicationOptions { EnvironmentName = "Testing" });
            builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
            {
                ["Auth:SigningKey"] = TallyApp.SigningKey,
                ["ConnectionStrings:Sqlite"] = $"Data Source={Path.Combine(Path.GetTempPath(), $"tally-setting-{Guid.NewGuid():N}.db")}",
                [key] = value,
            });
            builder.Logging.ClearProviders();
            builder.AddConfigAliases().AddTallyOptions().AddTallyData().AddJobRuntime().AddBalanceSync();
            await using var app = builder.Build();
            await app.StartAsync(TestContext.Current.CancellationToken);
            await app.StopAsync(TestContext.Current.CancellationToken);
        });
        var messages = Errors.AllMessages(error);
        Assert.Contains(named, messages);
    }

    private sealed class HeartbeatJobStub : IScheduledJob
    {
        public Task<JobResult> RunAsync(JobRun run, CancellationToken ct) => Task.FromResult(new JobResult(0));
    }
}
