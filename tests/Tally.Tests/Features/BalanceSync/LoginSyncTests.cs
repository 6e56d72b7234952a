using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Tally.Features.BalanceSync;
using Tally.Jobs.Lanes;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.BalanceSync;

/// <summary>The login sync (<c>POST /api/me/balances/sync</c>) against the sandbox core over HTTP, on both databases.</summary>
[Collection(TimingCollection.Name)]
public class LoginSyncTests
{
    /// <summary>
    /// A login right after another must not join the first login's sync as it leaves the lanes: that
    /// sync asked the core before the second login was sent. The lanes here are slow to let an entry
    /// go (300 ms), which widens the moment in which the second login could join the first's.
    /// </summary>
    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task LoginSync_RightAfterAnother_AnswersAChangeMadeBetweenThem(string storage)
    {
        await using var banking = await CoreBanking.StartAsync(storage, services: s => SlowToLeaveLanes.Register(s, storage));
        var user = await banking.UserAsync("ACC-RIGHT-AFTER-1");
        var first = (await banking.LoginSyncAsync(user, HttpStatusCode.OK)).GetProperty("balance").GetDecimal();

        banking.Sandbox.T24.Adjust("ACC-RIGHT-AFTER-1", -1.00m);
        var second = await banking.LoginSyncAsync(user, HttpStatusCode.OK);

        Assert.True(second.GetProperty("ok").GetBoolean());
        Assert.Equal(first - 1.00m, second.GetProperty("balance").GetDecimal());
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task LoginSync_FastCore_AnswersOkWithTheCoresAvailableBalanceAndWorkingBesideIt(string storage)
    {
        await using var banking = await CoreBanking.StartAsync(storage);
        var user = await banking.UserAsync("ACC-FAST-1");

        var body = await banking.LoginSyncAsync(user, HttpStatusCode.OK);

        // The seed's `balance` is the core's available balance (working less locked amounts).
        var (working, locked) = banking.Sandbox.T24.BalanceAt("ACC-FAST-1", DateTime.UtcNow);
        Assert.NotEqual(0m, locked);
        Assert.True(body.GetProperty("ok").GetBoolean());
        Assert.False(body.GetProperty("queued").GetBoolean());
        Assert.Equal(working - locked, body.GetProperty("balance").GetDecimal());
        Assert.Equal(working, body.GetProperty("workingBalance").GetDecimal());
        Assert.False(body.TryGetProperty("availableBalance", out _));
        Assert.Equal("USD", body.GetProperty("currency").GetString());
        var account = body.GetProperty("accounts")[0];
        Assert.Equal(working - locked, account.GetProperty("balance").GetDecimal());
        Assert.Equal(working, account.GetProperty("workingBalance").GetDecimal());
        Assert.Equal(account.GetProperty("lastSyncedAt").GetDateTime(), account.GetProperty("lastAttemptAt").GetDateTime());
        Assert.Equal(DateTime.UtcNow.Date, account.GetProperty("asOf").GetDateTime().ToUniversalTime().Date);
        Assert.Equal(JsonValueKind.Null, account.GetProperty("lastError").ValueKind);
        Assert.Equal(1, banking.Sandbox.T24.CallsTo("ACC-FAST-1"));

        // The first sync of an account is a change from nothing.
        var events = await banking.Admin.GetAsync("/api/admin/events?type=CoreBalanceUpdated").ExpectAsync(HttpStatusCode.OK);
        var payload = Assert.Single(events.EnumerateArray()).GetProperty("payload");
        Assert.Equal(JsonValueKind.Null, payload.GetProperty("previousBalance").ValueKind);
        Assert.Equal(working - locked, payload.GetProperty("newBalance").GetDecimal());
        Assert.Equal(working, payload.GetProperty("workingBalance").GetDecimal());
        // Connection sync's event of that name has another shape: balance sync never emits it.
        Assert.Equal(0, (await banking.Admin.GetAsync("/api/admin/events?type=AccountBalanceUpdated").ExpectAsync(HttpStatusCode.OK)).GetArrayLength());

        // Monitoring: calls by outcome, login answer times and lane depths on /metrics (admin only outside Development).
        var metrics = await banking.Admin.GetStringAsync("/metrics", TestContext.Current.CancellationToken);
        Assert.Contains("tally_balance_sync_core_calls", metrics);
        Assert.Contains("tally_balance_sync_login_seconds", metrics);
        Assert.Contains("tally_balance_sync_lane_depth", metrics);
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task LoginSync_SlowCore_AnswersQueuedWithStoredBalancesWithinTimeout_ThenBackgroundFinishes(string storage)
    {
        // AUTH_SYNC_TIMEOUT is the seed's name for BalanceSync:AuthSyncTimeoutMs.
        await using var banking = await CoreBanking.StartAsync(storage, new Dictionary<string, string?> { ["AUTH_SYNC_TIMEOUT"] = "1000" });
        var user = await banking.UserAsync("ACC-LATER-1");
        var first = await banking.LoginSyncAsync(user, HttpStatusCode.OK);
        Assert.True(first.GetProperty("ok").GetBoolean());
        var stored = first.GetProperty("accounts")[0];
        // The first sync's entry leaves the lanes just after it answers; a login in that moment would join it.
        await banking.DrainedAsync();

        // Now the core takes 2.5 s and the money moved: the login answers in time with what is stored.
        banking.Sandbox.T24.Settings = banking.Sandbox.T24.Settings with { LatencyMs = 2500 };
        banking.Sandbox.T24.Adjust("ACC-LATER-1", 25m);
        var clock = Stopwatch.StartNew();
        var body = await banking.LoginSyncAsync(user, HttpStatusCode.Accepted);
        clock.Stop();

        Assert.True(clock.Elapsed < TimeSpan.FromMilliseconds(1000 + 500), $"answered after {clock.ElapsedMilliseconds} ms");
        Assert.False(body.GetProperty("ok").GetBoolean());
        Assert.True(body.GetProperty("queued").GetBoolean());
        Assert.Equal(stored.GetProperty("balance").GetDecimal(), body.GetProperty("balance").GetDecimal());
        var account = body.GetProperty("accounts")[0];
        Assert.Equal(stored.GetProperty("asOf").GetDateTime(), account.GetProperty("asOf").GetDateTime());
        Assert.Equal(stored.GetProperty("lastSyncedAt").GetDateTime(), account.GetProperty("lastSyncedAt").GetDateTime());

        // The sync carries on in the background and lands the new balance, with one more call to the core.
        await Eventually.TrueAsync(async () => (await banking.AccountAsync(user)).GetProperty("balance").GetDecimal()
            == stored.GetProperty("balance").GetDecimal() + 25m, "the background to finish the sync");
        Assert.Equal(2, banking.Sandbox.T24.CallsTo("ACC-LATER-1"));
        await banking.DrainedAsync();
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task LoginSync_UserWaitingInBackground_IsPromotedAheadOfTheBackgroundAndNeverQueuedTwice(string storage)
    {
        await using var banking = await CoreBanking.StartAsync(storage, new Dictionary<string, string?>
        {
            ["RateLimits:t24:PermitsPerSecond"] = "5",
        });
        var users = new List<Guid>();
        for (var i = 0; i < 30; i++)
        {
            users.Add(await banking.UserAsync($"ACC-Q-{i}"));
        }
        // The core holds its calls while the lanes are looked at, so no sync settles meanwhile.
        banking.Sandbox.T24.Hold();
        var detail = await banking.RunEnqueueAllAsync();
        Assert.Equal(30, detail.GetProperty("queued").GetInt32());

        // Queued again while waiting or running: nothing more is queued, nobody twice.
        Assert.Equal(0, (await banking.RunEnqueueAllAsync()).GetProperty("queued").GetInt32());
        var target = users.MaxBy(id => id.ToString("D").ToUpperInvariant(), StringComparer.Ordinal); // last in the job's id order
        Assert.Equal("ALREADY_QUEUED", await banking.QueueAsync(target));
        var before = await banking.StatusAsync();
        Assert.Equal(30, before.GetProperty("background").GetInt64() + before.GetProperty("inFlight").GetInt64());
        banking.Sandbox.T24.Release();

        // 30 users at 5 per second take six seconds; the login is answered well within its two.
        var body = await banking.LoginSyncAsync(target, HttpStatusCode.OK);
        Assert.True(body.GetProperty("ok").GetBoolean());
        var status = await banking.StatusAsync();
        Assert.True(status.GetProperty("background").GetInt64() >= 15, $"the login waited for the background: {status}");

        await banking.DrainedAsync();
        Assert.All(Enumerable.Range(0, 30), i => Assert.Equal(1, banking.Sandbox.T24.CallsTo($"ACC-Q-{i}")));
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task LoginSync_SameUserLoggingInFiveTimesAtOnce_OneCoreCall_EveryLoginAnsweredWithIt(string storage)
    {
        await using var banking = await CoreBanking.StartAsync(storage);
        var user = await banking.UserAsync("ACC-TWICE-1");
        banking.Sandbox.T24.Hold();
        var logins = Enumerable.Range(0, 5).Select(_ => banking.LoginSyncAsync(user, HttpStatusCode.OK)).ToList();
        await Eventually.TrueAsync(() => Task.FromResult(banking.Sandbox.T24.Stats().Concurrent == 1), "the first login's call to reach the core");
        await Task.Delay(300, TestContext.Current.CancellationToken); // the other four join the running sync
        banking.Sandbox.T24.Release();

        var answers = await Task.WhenAll(logins);
        var (working, locked) = banking.Sandbox.T24.BalanceAt("ACC-TWICE-1", DateTime.UtcNow);
        Assert.All(answers, a => Assert.True(a.GetProperty("ok").GetBoolean()));
        Assert.All(answers, a => Assert.Equal(working - locked, a.GetProperty("balance").GetDecimal()));
        Assert.Equal(1, banking.Sandbox.T24.CallsTo("ACC-TWICE-1"));
        await banking.DrainedAsync();
        Assert.Equal(1, banking.Sandbox.T24.CallsTo("ACC-TWICE-1"));
    }

    [Fact]
    public async Task LoginSync_Sqlite_MirrorWriteRelaxesTheFlush_TheNextConnectionIsFullySynchronousAgain()
    {
        await using var banking = await CoreBanking.StartAsync("sqlite");
        var user = await banking.UserAsync("ACC-FLUSH-1");
        Assert.True((await banking.LoginSyncAsync(user, HttpStatusCode.OK)).GetProperty("ok").GetBoolean());

        // The mirror's write ran with synchronous = NORMAL; money written next must not inherit it.
        await using var db = banking.App.Db();
        await db.Database.OpenConnectionAsync(TestContext.Current.CancellationToken);
        await using var command = db.Database.GetDbConnection().CreateCommand();
        command.CommandText = "PRAGMA synchronous";
        Assert.Equal(2L, await command.ExecuteScalarAsync(TestContext.Current.CancellationToken)); // 2 = FULL
    }
}

/// <summary>Lanes that take 300 ms to let a settled entry go, and are otherwise the real ones.</summary>
internal sealed class SlowToLeaveLanes(ILaneStore lanes) : ILaneStore
{
    public static void Register(IServiceCollection services, string storage)
    {
        if (storage == "postgres")
        {
            services.AddSingleton<ILaneStore>(sp => new SlowToLeaveLanes(sp.GetRequiredService<PostgresLaneStore>()));
        }
        else
        {
            services.AddSingleton<ILaneStore>(sp => new SlowToLeaveLanes(sp.GetRequiredService<InProcessLaneStore>()));
        }
    }

    public string Name => lanes.Name;

    public async Task CompleteAsync(LaneEntry entry, CancellationToken ct)
    {
        await Task.Delay(300, ct);
        await lanes.CompleteAsync(entry, ct);
    }

    public Task<EnqueueResult> EnqueueAsync(Guid key, Lane lane, CancellationToken ct) => lanes.EnqueueAsync(key, lane, ct);
    public Task<int> EnqueueBackgroundAsync(IReadOnlyList<Guid> keys, CancellationToken ct) => lanes.EnqueueBackgroundAsync(keys, ct);
    public Task<LaneEntry?> ClaimAsync(Lane lane, CancellationToken ct) => lanes.ClaimAsync(lane, ct);
    public Task RetryAsync(LaneEntry entry, Lane lane, int attempt, DateTime notBefore, CancellationToken ct) => lanes.RetryAsync(entry, lane, attempt, notBefore, ct);
    public Task DemoteAsync(Guid key, Guid ticket, CancellationToken ct) => lanes.DemoteAsync(key, ticket, ct);
    public Task<bool> IsPendingAsync(Guid key, Guid ticket, CancellationToken ct) => lanes.IsPendingAsync(key, ticket, ct);
    public Task<LaneCounts> CountAsync(CancellationToken ct) => lanes.CountAsync(ct);
    public Task<LaneEntry> TakeAsync(Lane lane, CancellationToken ct) => lanes.TakeAsync(lane, ct);
}
