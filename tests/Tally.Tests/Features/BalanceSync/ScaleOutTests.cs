using System.Net;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.BalanceSync;

/// <summary>Two instances on one PostgreSQL database and one core: shared lanes, shared dedup, shared status.</summary>
public class ScaleOutTests
{
    [Fact]
    public async Task TwoInstances_UserQueuedOnBoth_IsSyncedOnce_AndBothReportTheSharedDepth()
    {
        await using var banking = await CoreBanking.StartAsync("postgres", new Dictionary<string, string?>
        {
            ["Tally:InstanceId"] = "tally-a",
            ["AUTH_SYNC_TIMEOUT"] = "20000",
        });
        var a = banking.App;
        var b = await banking.AddInstanceAsync("postgres", new Dictionary<string, string?>
        {
            ["Tally:InstanceId"] = "tally-b",
            ["AUTH_SYNC_TIMEOUT"] = "20000",
        });
        _ = b.Server; // start it: its workers claim from the same table

        // The core holds every call, so nothing settles while the lanes are looked at.
        banking.Sandbox.T24.Hold();
        var users = new List<Guid>();
        for (var i = 0; i < 12; i++)
        {
            users.Add(await banking.UserAsync($"ACC-SCALE-{i}"));
        }
        foreach (var user in users)
        {
            Assert.Equal("QUEUED", await banking.QueueAsync(user, on: a));
            Assert.Contains(await banking.QueueAsync(user, on: b), new[] { "ALREADY_QUEUED", "IN_FLIGHT" });
        }

        // Each instance's two background workers claim a user each and hang on the core (one call slot
        // per instance); the rest wait. Both instances report the same table.
        await Eventually.TrueAsync(async () => (await banking.StatusAsync(a)).GetProperty("inFlight").GetInt64() == 4
            && banking.Sandbox.T24.Stats().Concurrent == 2, "both instances to be calling");
        var fromA = await banking.StatusAsync(a);
        var fromB = await banking.StatusAsync(b);
        Assert.Equal(fromA.ToString(), fromB.ToString());
        Assert.Equal(12, fromA.GetProperty("background").GetInt64() + fromA.GetProperty("inFlight").GetInt64());
        Assert.True(fromA.GetProperty("processing").GetBoolean());
        Assert.Equal("postgres", fromA.GetProperty("lanes").GetString());

        // A login on B for a user waiting (or running) on the shared lanes is answered once the core answers.
        var login = banking.LoginSyncAsync(users[^1], HttpStatusCode.OK, on: b);
        await Task.Delay(300, TestContext.Current.CancellationToken);
        banking.Sandbox.T24.Release();
        Assert.True((await login).GetProperty("ok").GetBoolean());

        await banking.DrainedAsync(on: a);
        await banking.DrainedAsync(on: b);
        Assert.All(Enumerable.Range(0, 12), i => Assert.Equal(1, banking.Sandbox.T24.CallsTo($"ACC-SCALE-{i}")));
        foreach (var user in users)
        {
            Assert.True(CoreBanking.Synced(await banking.AccountAsync(user)));
        }
    }
}
