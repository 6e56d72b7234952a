using System.Net;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.BalanceSync;

/// <summary>What a team moving from seed 001's service relies on: its setting names, its status shape, its log lines.</summary>
[Collection(TimingCollection.Name)]
public class SeedContractTests
{
    [Fact]
    public async Task SeedsT24Names_T24ApiUrlAndKey_AreWhereTheCoreIsAndHowToCallIt()
    {
        // Tally's own names left empty: only the seed's T24_API_URL and T24_API_KEY say where the core is.
        await using var sandbox = await SandboxHost.StartAsync(new Dictionary<string, string?> { ["Sandbox:T24:LatencyMs"] = "5" });
        var seedNames = new Dictionary<string, string?>
        {
            ["T24:BaseUrl"] = "",
            ["T24:ApiKey"] = "",
            ["T24_API_URL"] = sandbox.BaseUrl,
            ["T24_API_KEY"] = sandbox.T24.Settings.ApiKey,
        };
        var settings = CoreBanking.Defaults();
        foreach (var (k, v) in seedNames)
        {
            settings[k] = v;
        }
        await using (var app = TallyApp.Sqlite(settings))
        {
            var user = await UserWithAccountAsync(app.Admin(), "ACC-SEED-NAMES-1");
            using var client = app.AsUser(user);
            var body = await client.PostAsync("/api/me/balances/sync", null).ExpectAsync(HttpStatusCode.OK);
            Assert.True(body.GetProperty("ok").GetBoolean());
            Assert.Equal(1, sandbox.T24.CallsTo("ACC-SEED-NAMES-1"));
        }

        // The key really is the one sent: a wrong T24_API_KEY is refused by the core.
        settings["T24_API_KEY"] = "not-the-key";
        await using (var app = TallyApp.Sqlite(settings))
        {
            var user = await UserWithAccountAsync(app.Admin(), "ACC-SEED-NAMES-2");
            using var client = app.AsUser(user);
            var body = await client.PostAsync("/api/me/balances/sync", null).ExpectAsync(HttpStatusCode.OK);
            Assert.False(body.GetProperty("ok").GetBoolean());
            Assert.StartsWith("UNAUTHORIZED", body.GetProperty("error").GetString());
        }
    }

    [Fact]
    public async Task Status_AnswersTheSeedsShape_ServiceNameAndQueueCounts()
    {
        await using var banking = await CoreBanking.StartAsync("sqlite");
        var status = await banking.StatusAsync();
        Assert.Equal("balance-sync", status.GetProperty("service").GetString());
        Assert.Equal(0, status.GetProperty("priority").GetInt64());
        Assert.Equal(0, status.GetProperty("background").GetInt64());
        Assert.False(status.GetProperty("processing").GetBoolean());
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task InactiveCoreAccount_IsNeverAskedFor_AndDoesNotSpoilTheAnswer(string storage)
    {
        await using var banking = await CoreBanking.StartAsync(storage);
        var user = await banking.UserAsync("ACC-ACTIVE-1");
        await banking.Admin.PostJsonAsync("/api/admin/core-accounts", new { userId = user, accountNumber = "ACC-CLOSED-1", accountType = "CURRENT", currency = "USD", isActive = false })
            .ExpectAsync(HttpStatusCode.Created);

        var body = await banking.LoginSyncAsync(user, HttpStatusCode.OK);
        await banking.QueueAsync(user);
        await banking.DrainedAsync();

        Assert.True(body.GetProperty("ok").GetBoolean());
        Assert.Equal(0, banking.Sandbox.T24.CallsTo("ACC-CLOSED-1"));
        Assert.Equal(2, banking.Sandbox.T24.CallsTo("ACC-ACTIVE-1"));
        var closed = (await banking.BalancesAsync(user)).GetProperty("accounts").EnumerateArray()
            .Single(a => a.GetProperty("accountNumber").GetString() == "ACC-CLOSED-1");
        Assert.False(closed.GetProperty("isActive").GetBoolean());
        Assert.Equal(JsonValueKind.Null, closed.GetProperty("balance").ValueKind);
        Assert.Equal(JsonValueKind.Null, closed.GetProperty("lastAttemptAt").ValueKind);
    }

    [Fact]
    public async Task Logs_WhatTheSeedsOperatorsLookFor_StartLinePeriodicCountAndEachSyncedBalanceAtDebug()
    {
        var logs = new CapturedLogs(LogLevel.Debug);
        await using var banking = await CoreBanking.StartAsync("sqlite", new Dictionary<string, string?>
        {
            ["BALANCE_SYNC_INTERVAL"] = "300000",
            ["AUTH_SYNC_TIMEOUT"] = "2000",
        }, services: logs.Register);
        var user = await banking.UserAsync("ACC-LOGGED-1");
        await banking.UserAsync("ACC-LOGGED-2", context: "WALLET");

        var detail = await banking.RunEnqueueAllAsync();
        await banking.DrainedAsync();
        var (working, locked) = banking.Sandbox.T24.BalanceAt("ACC-LOGGED-1", DateTime.UtcNow);

        Assert.Equal(1, detail.GetProperty("queued").GetInt32());
        var started = Assert.Single(logs.Entries, e => e.Message.StartsWith("Balance sync service started", StringComparison.Ordinal));
        Assert.Equal(300d, started.Fields["IntervalSeconds"]);
        Assert.Equal(2000, started.Fields["AuthTimeoutMs"]);
        var periodic = Assert.Single(logs.Entries, e => e.Message.StartsWith("Periodic balance sync", StringComparison.Ordinal));
        Assert.Equal(1, periodic.Fields["Eligible"]);
        var synced = Assert.Single(logs.Entries, e => e.Level == LogLevel.Debug && e.Message.StartsWith("Synced balance for user", StringComparison.Ordinal));
        Assert.Equal(user, synced.Fields["UserId"]);
        Assert.Equal(working - locked, synced.Fields["Balance"]);
        Assert.Equal("USD", synced.Fields["Currency"]);
    }

    private static async Task<Guid> UserWithAccountAsync(HttpClient admin, string accountNumber)
    {
        var id = Guid.NewGuid();
        await admin.PostJsonAsync("/api/admin/users", new { id, username = $"u-{id:N}", context = "MOBILE_BANKING", customerNumber = "1" })
            .ExpectAsync(HttpStatusCode.Created);
        await admin.PostJsonAsync("/api/admin/core-accounts", new { userId = id, accountNumber, accountType = "SAVINGS", isPrimary = true, currency = "USD" })
            .ExpectAsync(HttpStatusCode.Created);
        return id;
    }
}
