using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using Tally.Features.BalanceSync;
using Tally.Features.Users;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.BalanceSync;

/// <summary>The periodic job, the background lane, the gate's limits and the retry policy: embedded (SQLite, in-process lanes), and where the storage matters on PostgreSQL (shared lanes) too.</summary>
public class BackgroundSyncTests
{
    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task PeriodicJob_OnItsInterval_SyncsActiveMobileBankingUsersAgainAndAgain_NeverWalletOrInactiveUsers(string storage)
    {
        // BALANCE_SYNC_INTERVAL is the seed's name for BalanceSync:IntervalMs.
        await using var banking = await CoreBanking.StartAsync(storage, new Dictionary<string, string?>
        {
            ["Jobs:balance-sync.enqueue-all:Enabled"] = "true",
            ["BALANCE_SYNC_INTERVAL"] = "1000",
        });
        var mobile = await banking.UserAsync("ACC-MOBILE-1");
        var mobile2 = await banking.UserAsync("ACC-MOBILE-2");
        var wallet = await banking.UserAsync("ACC-WALLET-1", context: "WALLET");
        var inactive = await banking.UserAsync("ACC-INACTIVE-1", isActive: false);

        // Nobody runs the job by hand: the schedule syncs the two mobile-banking users, then again.
        await Eventually.TrueAsync(async () => banking.Sandbox.T24.CallsTo("ACC-MOBILE-1") >= 2 && banking.Sandbox.T24.CallsTo("ACC-MOBILE-2") >= 2,
            "two scheduled syncs of each mobile-banking user");
        Assert.True(CoreBanking.Synced(await banking.AccountAsync(mobile)));
        Assert.True(CoreBanking.Synced(await banking.AccountAsync(mobile2)));
        var runs = await banking.Admin.GetAsync("/api/admin/cron-runs?job=balance-sync.enqueue-all").ExpectAsync(HttpStatusCode.OK);
        Assert.Contains(runs.EnumerateArray(), r => r.GetProperty("trigger").GetString() == "schedule" && r.GetProperty("status").GetString() == "SUCCESS");
        var jobs = await banking.Admin.GetAsync("/api/admin/jobs").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal("@every 1000ms", jobs.EnumerateArray().Single(j => j.GetProperty("name").GetString() == EnqueueAllBalances.Name).GetProperty("cron").GetString());

        // A WALLET user and an inactive one never reach the core: not by schedule, not by hand, not at login.
        await banking.Admin.PostAsync($"/api/admin/balance-sync/users/{wallet}", null).ExpectProblemAsync(HttpStatusCode.Conflict, "BALANCE_SYNC.NOT_ELIGIBLE");
        await banking.Admin.PostAsync($"/api/admin/balance-sync/users/{inactive}", null).ExpectProblemAsync(HttpStatusCode.Conflict, "BALANCE_SYNC.NOT_ELIGIBLE");
        using (var walletClient = banking.App.AsUser(wallet))
        {
            await walletClient.PostAsync("/api/me/balances/sync", null).ExpectProblemAsync(HttpStatusCode.Conflict, "BALANCE_SYNC.NOT_ELIGIBLE");
        }
        using (var inactiveClient = banking.App.AsUser(inactive))
        {
            await inactiveClient.PostAsync("/api/me/balances/sync", null).ExpectProblemAsync(HttpStatusCode.Conflict, "BALANCE_SYNC.NOT_ELIGIBLE");
        }
        Assert.Equal(0, banking.Sandbox.T24.CallsTo("ACC-WALLET-1"));
        Assert.Equal(0, banking.Sandbox.T24.CallsTo("ACC-INACTIVE-1"));
        Assert.Equal(JsonValueKind.Null, (await banking.AccountAsync(wallet)).GetProperty("lastAttemptAt").ValueKind);
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task TransientErrors_RetriedWithBackoff_AFailingUserDoesNotHoldUpTheOthers_AndTheTimesAndErrorAreRecorded(string storage)
    {
        await using var banking = await CoreBanking.StartAsync(storage, new Dictionary<string, string?>
        {
            ["BalanceSync:RetryBaseDelayMs"] = "200",
            ["BalanceSync:MaxRetries"] = "3",
        });
        var failing = await banking.UserAsync("ACC-FAIL-1");
        var flaky = await banking.UserAsync("ACC-FLAKY-1");
        var fine = await banking.UserAsync("ACC-FINE-1");
        var fine2 = await banking.UserAsync("ACC-FINE-2");
        var missing = await banking.UserAsync("ACC-MISSING-1");
        var errorBlock = await banking.UserAsync("ACC-ERRBLOCK-1");
        foreach (var user in new[] { failing, flaky, fine, fine2, missing, errorBlock })
        {
            Assert.Equal("QUEUED", await banking.QueueAsync(user));
        }
        await banking.DrainedAsync();

        // The flaky account failed twice (503), then synced; each retry waited at least half its exponential delay.
        var flakyAccount = await banking.AccountAsync(flaky);
        Assert.True(CoreBanking.Synced(flakyAccount));
        Assert.Equal(flakyAccount.GetProperty("lastSyncedAt").GetDateTime(), flakyAccount.GetProperty("lastAttemptAt").GetDateTime());
        Assert.NotEqual(JsonValueKind.Null, flakyAccount.GetProperty("asOf").ValueKind);
        var arrivals = banking.Sandbox.T24.ArrivalsFor("ACC-FLAKY-1");
        Assert.Equal(3, arrivals.Length);
        Assert.True(Stopwatch.GetElapsedTime(arrivals[0], arrivals[1]) >= TimeSpan.FromMilliseconds(100), "first retry too soon");
        Assert.True(Stopwatch.GetElapsedTime(arrivals[1], arrivals[2]) >= TimeSpan.FromMilliseconds(200), "second retry too soon");

        // The failing account: first try and three retries, then given up; last error and last attempt recorded, never synced.
        Assert.Equal(4, banking.Sandbox.T24.CallsTo("ACC-FAIL-1"));
        var failed = await banking.AccountAsync(failing);
        Assert.Equal("SERVER_ERROR: HTTP 503", failed.GetProperty("lastError").GetString());
        Assert.NotEqual(JsonValueKind.Null, failed.GetProperty("lastAttemptAt").ValueKind);
        Assert.Equal(JsonValueKind.Null, failed.GetProperty("lastSyncedAt").ValueKind);
        Assert.Equal(JsonValueKind.Null, failed.GetProperty("asOf").ValueKind);
        Assert.Equal(JsonValueKind.Null, failed.GetProperty("balance").ValueKind);

        // The others were synced while it was still failing.
        var gaveUpAt = failed.GetProperty("lastAttemptAt").GetDateTime();
        foreach (var user in new[] { fine, fine2 })
        {
            var account = await banking.AccountAsync(user);
            Assert.True(CoreBanking.Synced(account));
            Assert.True(account.GetProperty("lastSyncedAt").GetDateTime() < gaveUpAt);
        }

        // Permanent failures are recorded once and not retried.
        Assert.Equal(1, banking.Sandbox.T24.CallsTo("ACC-MISSING-1"));
        Assert.StartsWith("NOT_FOUND", (await banking.AccountAsync(missing)).GetProperty("lastError").GetString());
        Assert.Equal(1, banking.Sandbox.T24.CallsTo("ACC-ERRBLOCK-1"));
        Assert.Equal("UPSTREAM_ERROR BUSINESS E-100212: ACCOUNT RESTRICTED FOR ENQUIRY", (await banking.AccountAsync(errorBlock)).GetProperty("lastError").GetString());
    }

    [Fact]
    public async Task TooManyRequests_TheGatePausesForRetryAfterBeforeCallingAgain()
    {
        await using var banking = await CoreBanking.StartAsync("sqlite");
        var throttled = await banking.UserAsync("ACC-THROTTLE-1");
        var other = await banking.UserAsync("ACC-OTHER-1");
        await banking.QueueAsync(throttled);
        // Once the 429 is recorded, the gate has taken its Retry-After.
        await Eventually.TrueAsync(async () => (await banking.AccountAsync(throttled)).GetProperty("lastError").GetString()?.StartsWith("RATE_LIMITED", StringComparison.Ordinal) == true,
            "the 429 to be recorded");
        await banking.QueueAsync(other);
        await banking.DrainedAsync();

        var throttledCalls = banking.Sandbox.T24.ArrivalsFor("ACC-THROTTLE-1");
        Assert.Equal(2, throttledCalls.Length);
        Assert.True(Stopwatch.GetElapsedTime(throttledCalls[0], throttledCalls[1]) >= TimeSpan.FromMilliseconds(1000), "retried before Retry-After");
        // The pause held every call, not only the throttled user's.
        var otherCall = Assert.Single(banking.Sandbox.T24.ArrivalsFor("ACC-OTHER-1"));
        Assert.True(Stopwatch.GetElapsedTime(throttledCalls[0], otherCall) >= TimeSpan.FromMilliseconds(1000), "another call went during the pause");
        Assert.True(CoreBanking.Synced(await banking.AccountAsync(throttled)));
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task BalanceChange_EmitsCoreBalanceUpdatedWithPreviousNewAndDelta_OnlyWhenItChanged(string storage)
    {
        await using var banking = await CoreBanking.StartAsync(storage);
        var user = await banking.UserAsync("ACC-MOVES-1");
        var first = (await banking.LoginSyncAsync(user, HttpStatusCode.OK)).GetProperty("balance").GetDecimal();
        await banking.LoginSyncAsync(user, HttpStatusCode.OK); // unchanged: no event
        banking.Sandbox.T24.Adjust("ACC-MOVES-1", -12.34m);
        var second = (await banking.LoginSyncAsync(user, HttpStatusCode.OK)).GetProperty("balance").GetDecimal();

        Assert.Equal(first - 12.34m, second);
        var events = await banking.Admin.GetAsync("/api/admin/events?type=CoreBalanceUpdated").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(2, events.GetArrayLength());
        var change = events[1].GetProperty("payload");
        Assert.Equal(first, change.GetProperty("previousBalance").GetDecimal());
        Assert.Equal(second, change.GetProperty("newBalance").GetDecimal());
        Assert.Equal(change.GetProperty("previousWorkingBalance").GetDecimal() - 12.34m, change.GetProperty("workingBalance").GetDecimal());
        Assert.Equal(-12.34m, change.GetProperty("delta").GetDecimal());
        Assert.Equal("USD", change.GetProperty("currency").GetString());
        Assert.Equal("ACC-MOVES-1", change.GetProperty("accountNumber").GetString());
    }
}
