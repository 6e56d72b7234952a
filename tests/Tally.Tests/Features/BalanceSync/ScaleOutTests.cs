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
            ["BalanceSync:MaxConcurrentCalls"] = "2",
        });
        var a = banking.App;
        var b = await banking.AddInstanceAsync("postgres", new Dictionary<string, string?>
        {
            ["Tally:InstanceId"] = "tally-b",
            ["AUTH_SYNC_TIMEOUT"] = "20000",
            ["BalanceSync:MaxConcurrentCalls"] = "2",
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

        // Each instance's background workers claim a few users and hang on the core: two calls in flight
        // for the whole fleet (the fleet's limit, though each instance alone would allow two); the rest wait. Once the claims settle, both instances report the same table.
        string fromA = "", fromB = "";
        await Eventually.TrueAsync(async () =>
        {
            fromA = (await banking.StatusAsync(a)).ToString();
            fromB = (await banking.StatusAsync(b)).ToString();
            return banking.Sandbox.T24.Stats().Concurrent == 2 && fromA == fromB && fromA == (await banking.StatusAsync(a)).ToString();
        }, "both instances calling and reporting the same depths");
        var status = System.Text.Json.JsonDocument.Parse(fromA).RootElement;
        Assert.Equal(12, status.GetProperty("background").GetInt64() + status.GetProperty("inFlight").GetInt64());
        Assert.True(status.GetProperty("inFlight").GetInt64() >= 2);
        Assert.True(status.GetProperty("processing").GetBoolean());
        Assert.Equal("postgres", status.GetProperty("lanes").GetString());

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

    [Fact]
    public async Task LoginOnAnInstanceWithoutWorkers_IsSyncedByAnotherInstance()
    {
        // A runs the workers; B only serves the API, so its login queues the user for any instance.
        await using var banking = await CoreBanking.StartAsync("postgres", new Dictionary<string, string?> { ["Tally:InstanceId"] = "tally-a" });
        _ = banking.App.Server;
        var b = await banking.AddInstanceAsync("postgres", new Dictionary<string, string?>
        {
            ["Tally:InstanceId"] = "tally-b",
            ["Tally:Roles:0"] = "api",
        });
        var user = await banking.UserAsync("ACC-API-ONLY-1");

        var body = await banking.LoginSyncAsync(user, HttpStatusCode.OK, on: b);

        Assert.True(body.GetProperty("ok").GetBoolean());
        var (working, locked) = banking.Sandbox.T24.BalanceAt("ACC-API-ONLY-1", DateTime.UtcNow);
        Assert.Equal(working - locked, body.GetProperty("balance").GetDecimal());
        Assert.Equal(1, banking.Sandbox.T24.CallsTo("ACC-API-ONLY-1"));
        await banking.DrainedAsync(on: b);
    }

    [Fact]
    public async Task LoginOnAnApiOnlyInstance_WakesAWorkerOfAnotherInstanceAtOnce_NotAtItsNextPoll()
    {
        // The worker instance polls the lanes only once a minute: only the login's signal
        // (NOTIFY) can bring its priority worker to the entry within the two-second login wait.
        await using var banking = await CoreBanking.StartAsync("postgres", new Dictionary<string, string?>
        {
            ["Tally:InstanceId"] = "api-only",
            ["Tally:Roles"] = "api",
        });
        var worker = await banking.AddInstanceAsync("postgres", new Dictionary<string, string?>
        {
            ["Tally:InstanceId"] = "slow-polling-worker",
            ["Tally:Roles"] = "worker",
            ["BalanceSync:PollIntervalMs"] = "60000",
        });
        _ = worker.Server;
        var first = await banking.UserAsync("ACC-SIGNAL-1");
        var second = await banking.UserAsync("ACC-SIGNAL-2");
        // The worker's first look at the lanes (at its start) is behind it: let it go idle.
        await banking.DrainedAsync(on: banking.App);
        await Task.Delay(500, TestContext.Current.CancellationToken);

        foreach (var user in new[] { first, second })
        {
            var body = await banking.LoginSyncAsync(user, HttpStatusCode.OK);
            Assert.True(body.GetProperty("ok").GetBoolean());
        }
        Assert.Equal(1, banking.Sandbox.T24.CallsTo("ACC-SIGNAL-1"));
        Assert.Equal(1, banking.Sandbox.T24.CallsTo("ACC-SIGNAL-2"));
    }
}
