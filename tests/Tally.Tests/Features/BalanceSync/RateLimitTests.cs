using System.Diagnostics;
using System.Net;
using Microsoft.EntityFrameworkCore;
using Tally.Features.BalanceSync;
using Tally.Features.Users;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.BalanceSync;

/// <summary>The gate's limits under a full background lane, seen from the core's side.</summary>
[Collection(TimingCollection.Name)]
public class RateLimitTests
{
    [Fact]
    public async Task TenThousandQueued_TheCoreNeverSeesMoreThanItsRateInAnySecond_NorMoreCallsAtOnceThanConfigured()
    {
        const int Rate = 40;
        const int MaxCalls = 2;
        await using var banking = await CoreBanking.StartAsync("sqlite",
            new Dictionary<string, string?>
            {
                ["RateLimits:t24:PermitsPerSecond"] = Rate.ToString(),
                ["BalanceSync:MaxConcurrentCalls"] = MaxCalls.ToString(),
                // The guard absorbs the delay between a call leaving Tally and the core counting it. Here
                // both share one busy test process, whose pauses can bunch arrivals far more than a network.
                ["BalanceSync:RateWindowGuardMs"] = "100",
            },
            // The core refuses (429) anything above its rate, and is slow enough for calls to overlap.
            new Dictionary<string, string?> { ["Sandbox:T24:RateLimitPerSecond"] = Rate.ToString(), ["Sandbox:T24:LatencyMs"] = "40" });
        var ids = await InsertMobileUsersAsync(banking.App, 10_000);
        Assert.Equal(10_000, (await banking.RunEnqueueAllAsync()).GetProperty("queued").GetInt32());

        // Logins go through the same gate while the background lane is busy.
        var clock = Stopwatch.StartNew();
        for (var i = 0; i < 5; i++)
        {
            var login = await banking.LoginSyncAsync(ids[^(i + 1)], HttpStatusCode.OK);
            Assert.True(login.GetProperty("ok").GetBoolean());
            await Task.Delay(300);
        }
        while (clock.Elapsed < TimeSpan.FromSeconds(6))
        {
            await Task.Delay(200);
        }

        var stats = banking.Sandbox.T24.Stats();
        Assert.True(stats.MaxCallsInAnySecond <= Rate, $"the core saw {stats.MaxCallsInAnySecond} calls in one second");
        Assert.True(stats.MaxConcurrent <= MaxCalls, $"the core saw {stats.MaxConcurrent} calls at once");
        Assert.Equal(MaxCalls, stats.MaxConcurrent);
        // Busy, not idle: well over half the rate over the run.
        Assert.True(stats.Calls >= Rate * 6 / 2, $"only {stats.Calls} calls in 6 s");
        var status = await banking.StatusAsync();
        Assert.True(status.GetProperty("background").GetInt64() > 9000);
        Assert.True(status.GetProperty("processing").GetBoolean());
        await using var db = banking.App.Db();
        Assert.False(await db.CoreAccounts.AnyAsync(a => a.LastError != null, TestContext.Current.CancellationToken));
    }

    /// <summary>Many users at once, straight into the database (the admin API would take minutes).</summary>
    internal static async Task<List<Guid>> InsertMobileUsersAsync(TallyApp app, int count)
    {
        await using var db = app.Db();
        var now = DateTime.UtcNow;
        var ids = Enumerable.Range(0, count).Select(_ => Guid.NewGuid()).ToList();
        db.Users.AddRange(ids.Select((id, i) => new User { Id = id, Username = $"bulk-{id:N}", Context = UserContexts.MobileBanking, CustomerNumber = $"{i}", IsActive = true, CreatedAt = now }));
        db.CoreAccounts.AddRange(ids.Select((id, i) => new CoreAccount
        {
            Id = Guid.NewGuid(),
            UserId = id,
            AccountNumber = $"BULK-{i:D6}",
            AccountType = "SAVINGS",
            IsPrimary = true,
            IsActive = true,
            Currency = "USD",
            CreatedAt = now,
            UpdatedAt = now,
        }));
        await db.SaveChangesAsync(TestContext.Current.CancellationToken);
        return ids;
    }
}
