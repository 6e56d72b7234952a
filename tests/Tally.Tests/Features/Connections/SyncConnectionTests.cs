using System.Net;
using System.Net.Http.Json;
using Microsoft.EntityFrameworkCore;
using Tally.Features.Connections;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.Connections;

/// <summary>Every branch of the sync flow, each with its answer and its event sequence.</summary>
public class SyncConnectionTests
{
    private const string Attempted = "AccountSyncAttempted";
    private const string Failed = "AccountSyncFailed";
    private const string Succeeded = "AccountSyncSucceeded";
    private const string BalanceUpdated = "AccountBalanceUpdated";

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Sync_NewThenDriftedThenRepeated_CountsCreatedUpdatedUnchangedAndEmitsRealBalanceChangesOnly(string storage)
    {
        await using var t = await ConnectionApp.CreateAsync(storage);
        var id = await t.User.CreateSandboxConnectionAsync(new { login = "alice", accounts = 5 });

        var first = await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal((5, 0, 0, 0), Counts(first));
        Assert.Equal("Synced 5 accounts: 5 created, 0 updated, 0 unchanged", first.GetProperty("message").GetString());
        var before = await AccountsAsync(t, id);
        Assert.Equal(5, before.Count);
        // Each account found moved from 0 to its balance (the sandbox's are all funded).
        Assert.All(before.Values, a => Assert.NotEqual(0m, a.Balance));
        Assert.Equal([Attempted, BalanceUpdated, BalanceUpdated, BalanceUpdated, BalanceUpdated, BalanceUpdated, Succeeded], await t.Admin.EventTypesAsync(id));

        // Balances drift once per 10 minutes: 25 minutes on, every balance moved.
        t.Clock.Advance(TimeSpan.FromMinutes(25));
        var second = await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal((0, 5, 0, 0), Counts(second));
        var after = await AccountsAsync(t, id);
        var events = (await t.Admin.EventsAsync(id)).Skip(7).ToList();
        // Each balance event commits with its account's row; the success, known last, comes last.
        Assert.Equal([Attempted, BalanceUpdated, BalanceUpdated, BalanceUpdated, BalanceUpdated, BalanceUpdated, Succeeded],
            events.Select(e => e.Type).ToList());
        Assert.Equal(5, events[6].Payload.GetProperty("accountCount").GetInt32());
        foreach (var (_, payload) in events.Skip(1).Take(5))
        {
            var account = payload.GetProperty("accountId").GetGuid();
            var previous = payload.GetProperty("previousBalance").GetDecimal();
            var current = payload.GetProperty("newBalance").GetDecimal();
            Assert.Equal(before[account].Balance, previous);
            Assert.Equal(after[account].Balance, current);
            Assert.Equal(current - previous, payload.GetProperty("delta").GetDecimal());
            Assert.Equal(after[account].Currency, payload.GetProperty("currency").GetString());
            Assert.Equal(t.UserId, payload.GetProperty("userId").GetGuid());
        }

        // Same period, forced: nothing moved, nothing emitted but the attempt and its success.
        var third = await t.User.SyncAsync(id, force: true).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal((0, 0, 5, 0), Counts(third));
        Assert.Equal([Attempted, Succeeded], (await t.Admin.EventTypesAsync(id)).Skip(14).ToList());

        var runs = await t.User.GetAsync($"/api/connections/{id}/sync-runs").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(["SUCCEEDED", "SUCCEEDED", "SUCCEEDED"], runs.EnumerateArray().Select(r => r.GetProperty("status").GetString()!).ToArray());
        Assert.Equal([true, false, false], runs.EnumerateArray().Select(r => r.GetProperty("forced").GetBoolean()).ToArray());
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Sync_AgainAtOnce_Answers429RecentlySyncedWithRetryAfter_AndForceSyncsAnyway(string storage)
    {
        await using var t = await ConnectionApp.CreateAsync(storage);
        var id = await t.User.CreateSandboxConnectionAsync();
        await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK);
        t.Clock.Advance(TimeSpan.FromMinutes(5));

        using var again = await t.User.SyncAsync(id);
        Assert.Equal(HttpStatusCode.TooManyRequests, again.StatusCode);
        Assert.Equal(TimeSpan.FromMinutes(10), again.Headers.RetryAfter?.Delta);
        var problem = await again.ReadJsonAsync();
        Assert.Equal("RECENTLY_SYNCED", problem.GetProperty("code").GetString());
        Assert.Equal(600, problem.GetProperty("retryAfterSeconds").GetInt32());

        var events = await SyncEventsAsync(t, id);
        Assert.Equal([Attempted, Succeeded, Attempted, Failed], events.Select(e => e.Type).ToList());
        Assert.Equal("recently_synced", events[3].Payload.GetProperty("reason").GetString());
        Assert.Equal(600, events[3].Payload.GetProperty("retryAfterSeconds").GetInt32());

        var forced = await t.User.SyncAsync(id, force: true).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal((0, 0, 3, 0), Counts(forced));
        Assert.Equal([Attempted, Succeeded], (await t.Admin.EventTypesAsync(id))[^2..]);

        t.Clock.Advance(TimeSpan.FromMinutes(16));
        await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK);
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Sync_AnotherUsersConnection_Answers404ExactlyLikeAMissingOne_AndEmitsNotOwnedByUser(string storage)
    {
        await using var t = await ConnectionApp.CreateAsync(storage);
        var id = await t.User.CreateSandboxConnectionAsync();
        var intruder = t.App.AsUser(await t.Admin.CreateUserAsync());
        var missing = Guid.NewGuid();

        var foreign = await intruder.SyncAsync(id, force: true).ExpectProblemAsync(HttpStatusCode.NotFound, "CONNECTION_NOT_FOUND");
        var absent = await intruder.SyncAsync(missing, force: true).ExpectProblemAsync(HttpStatusCode.NotFound, "CONNECTION_NOT_FOUND");
        Assert.Equal(absent.GetProperty("detail").GetString(), foreign.GetProperty("detail").GetString());
        Assert.Equal(absent.GetProperty("title").GetString(), foreign.GetProperty("title").GetString());

        var events = await t.Admin.EventsAsync(id);
        Assert.Equal([Attempted, Failed], events.Select(e => e.Type).ToList());
        Assert.Equal("not_owned_by_user", events[1].Payload.GetProperty("reason").GetString());
        Assert.NotEqual(t.UserId, events[1].Payload.GetProperty("userId").GetGuid());
        var absentEvents = await t.Admin.EventsAsync(missing);
        Assert.Equal("connection_not_found", absentEvents[1].Payload.GetProperty("reason").GetString());

        // Nothing else of the owner's is reachable either, and the owner's history stays the owner's.
        await intruder.GetAsync($"/api/connections/{id}").ExpectProblemAsync(HttpStatusCode.NotFound, "CONNECTION_NOT_FOUND");
        await intruder.GetAsync($"/api/connections/{id}/accounts").ExpectProblemAsync(HttpStatusCode.NotFound, "CONNECTION_NOT_FOUND");
        await intruder.GetAsync($"/api/connections/{id}/sync-runs").ExpectProblemAsync(HttpStatusCode.NotFound, "CONNECTION_NOT_FOUND");
        await intruder.DeleteAsync($"/api/connections/{id}").ExpectProblemAsync(HttpStatusCode.NotFound, "CONNECTION_NOT_FOUND");
        Assert.Equal(0, (await t.User.GetAsync($"/api/connections/{id}/sync-runs").ExpectAsync(HttpStatusCode.OK)).GetArrayLength());
        Assert.Equal(0, (await intruder.GetAsync("/api/connections").ExpectAsync(HttpStatusCode.OK)).GetArrayLength());
    }

    public static TheoryData<string, int?> ProviderFailures => new()
    {
        { "auth_required", null },
        { "payment_required", null },
        { "rate_limited", 90 },
        { "provider_unavailable", null },
        { "partial_data", null },
        { "contract_mismatch", null },
    };

    [Theory]
    [MemberData(nameof(ProviderFailures))]
    public async Task Sync_ProviderFails_Answers502WithTheTypedReason_RecordsItAndWritesNoAccount(string reason, int? retryAfter)
    {
        await using var t = await ConnectionApp.CreateAsync("sqlite");
        var id = await t.User.CreateSandboxConnectionAsync(new { login = "bob", fail = reason, retryAfterSeconds = 90 });

        using var response = await t.User.SyncAsync(id);
        var problem = await response.ReadJsonAsync();
        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal("PROVIDER_ERROR", problem.GetProperty("code").GetString());
        Assert.Equal(reason, problem.GetProperty("reason").GetString());
        Assert.Equal(retryAfter, response.Headers.RetryAfter?.Delta?.TotalSeconds is { } s ? (int)s : null);

        var events = await t.Admin.EventsAsync(id);
        Assert.Equal([Attempted, Failed], events.Select(e => e.Type).ToList());
        Assert.Equal(reason, events[1].Payload.GetProperty("reason").GetString());
        Assert.Empty(await AccountsAsync(t, id));
        var run = (await t.User.GetAsync($"/api/connections/{id}/sync-runs").ExpectAsync(HttpStatusCode.OK))[0];
        Assert.Equal("FAILED", run.GetProperty("status").GetString());
        Assert.Equal(reason, run.GetProperty("reason").GetString());
        var connection = await t.User.GetAsync($"/api/connections/{id}").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(reason, connection.GetProperty("lastError").GetString());
        Assert.Equal(reason == "auth_required" ? "REAUTH_REQUIRED" : "ACTIVE", connection.GetProperty("status").GetString());
    }

    [Fact]
    public async Task Sync_AfterTheProviderRateLimited_WaitsEvenWhenForced_WithoutCallingIt()
    {
        await using var t = await ConnectionApp.CreateAsync("sqlite");
        var id = await t.User.CreateSandboxConnectionAsync(new { login = "carol", fail = "rate_limited", retryAfterSeconds = 300 });
        await t.User.SyncAsync(id).ExpectProblemAsync(HttpStatusCode.BadGateway, "PROVIDER_ERROR");
        t.Clock.Advance(TimeSpan.FromMinutes(2));

        using var again = await t.User.SyncAsync(id, force: true);
        Assert.Equal(HttpStatusCode.BadGateway, again.StatusCode);
        Assert.Equal(TimeSpan.FromMinutes(3), again.Headers.RetryAfter?.Delta);
        var runs = await t.User.GetAsync($"/api/connections/{id}/sync-runs").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal("rate_limited", runs[0].GetProperty("reason").GetString());
        await using var db = t.App.Db();
        Assert.Equal(1, await db.ConnectionSyncRuns.CountAsync(r => r.ConnectionId == id && r.ProviderCalled, TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task Sync_CredentialsRefused_MakesTheConnectionInactive_UntilNewCredentialsAreGiven()
    {
        await using var t = await ConnectionApp.CreateAsync("sqlite");
        var id = await t.User.CreateSandboxConnectionAsync(new { login = "dave", fail = "auth_required" });
        await t.User.SyncAsync(id).ExpectProblemAsync(HttpStatusCode.BadGateway, "PROVIDER_ERROR");

        await t.User.SyncAsync(id, force: true).ExpectProblemAsync(HttpStatusCode.Conflict, "CONNECTION_NOT_ACTIVE");
        var events = await t.Admin.EventsAsync(id);
        Assert.Equal([Attempted, Failed, Attempted, Failed], events.Select(e => e.Type).ToList());
        Assert.Equal("connection_not_active", events[3].Payload.GetProperty("reason").GetString());

        var renewed = await t.User.PutAsJsonAsync($"/api/connections/{id}/credentials", new { credentials = new { login = "dave" } }, Json.Web)
            .ExpectAsync(HttpStatusCode.OK);
        Assert.Equal("ACTIVE", renewed.GetProperty("status").GetString());
        Assert.Equal((3, 0, 0, 0), Counts(await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK)));
    }

    [Fact]
    public async Task Sync_ConsentExpired_Answers409NotActive()
    {
        await using var t = await ConnectionApp.CreateAsync("sqlite");
        var id = await t.User.CreateSandboxConnectionAsync(new { login = "erin", consentDays = 1 });
        await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK);
        t.Clock.Advance(TimeSpan.FromMinutes(20));
        await using (var db = t.App.Db())
        {
            await db.ProviderConnections.Where(c => c.Id == id)
                .ExecuteUpdateAsync(s => s.SetProperty(c => c.ConsentExpiresAt, t.Clock.GetUtcNow().UtcDateTime.AddSeconds(-1)), TestContext.Current.CancellationToken);
        }
        var problem = await t.User.SyncAsync(id).ExpectProblemAsync(HttpStatusCode.Conflict, "CONNECTION_NOT_ACTIVE");
        Assert.Contains("consent", problem.GetProperty("detail").GetString()!, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Sync_CredentialsUnreadableOrAbsent_Answers409_AndRecordsTheReason()
    {
        await using var t = await ConnectionApp.CreateAsync("sqlite");
        var tampered = await t.User.CreateSandboxConnectionAsync();
        var absent = await t.User.CreateSandboxConnectionAsync();
        await using (var db = t.App.Db())
        {
            var ct = TestContext.Current.CancellationToken;
            await db.ProviderConnections.Where(c => c.Id == tampered)
                .ExecuteUpdateAsync(s => s.SetProperty(c => c.CredentialsEncrypted, Convert.ToBase64String(new byte[64])), ct);
            await db.ProviderConnections.Where(c => c.Id == absent).ExecuteUpdateAsync(s => s.SetProperty(c => c.CredentialsEncrypted, (string?)null), ct);
        }

        await t.User.SyncAsync(tampered).ExpectProblemAsync(HttpStatusCode.Conflict, "CREDENTIALS_UNREADABLE");
        await t.User.SyncAsync(absent).ExpectProblemAsync(HttpStatusCode.Conflict, "CREDENTIALS_INVALID");
        Assert.Equal("credentials_decryption_failed", (await t.Admin.EventsAsync(tampered))[1].Payload.GetProperty("reason").GetString());
        Assert.Equal("credentials_invalid", (await t.Admin.EventsAsync(absent))[1].Payload.GetProperty("reason").GetString());
        Assert.Equal("credentials_decryption_failed",
            (await t.User.GetAsync($"/api/connections/{tampered}").ExpectAsync(HttpStatusCode.OK)).GetProperty("lastError").GetString());
    }

    [Fact]
    public async Task Sync_WhileAnotherSyncHoldsTheConnection_Answers409SyncInProgress()
    {
        await using var t = await ConnectionApp.CreateAsync("sqlite");
        var id = await t.User.CreateSandboxConnectionAsync();
        await using (var db = t.App.Db())
        {
            await db.ProviderConnections.Where(c => c.Id == id)
                .ExecuteUpdateAsync(s => s.SetProperty(c => c.SyncClaimedUntil, t.Clock.GetUtcNow().UtcDateTime.AddMinutes(1)), TestContext.Current.CancellationToken);
        }
        await t.User.SyncAsync(id).ExpectProblemAsync(HttpStatusCode.Conflict, "SYNC_IN_PROGRESS");
        Assert.Equal("sync_in_progress", (await t.Admin.EventsAsync(id))[1].Payload.GetProperty("reason").GetString());

        // A claim whose holder died runs out; the next sync takes over.
        t.Clock.Advance(TimeSpan.FromMinutes(2));
        await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK);
    }

    [Fact]
    public async Task Sync_BeyondTheProvidersDailyQuota_Answers429QuotaExhausted()
    {
        await using var t = await ConnectionApp.CreateAsync("sqlite", new Dictionary<string, string?>
        {
            ["Connections:Providers:sandbox:DailyQuota"] = "2",
            ["Connections:Providers:sandbox:SchedulePeriod"] = "12:00:00",
        });
        var id = await t.User.CreateSandboxConnectionAsync();
        await t.User.SyncAsync(id, force: true).ExpectAsync(HttpStatusCode.OK);
        t.Clock.Advance(TimeSpan.FromMinutes(1));
        await t.User.SyncAsync(id, force: true).ExpectAsync(HttpStatusCode.OK);
        t.Clock.Advance(TimeSpan.FromMinutes(1));

        using var third = await t.User.SyncAsync(id, force: true);
        Assert.Equal(HttpStatusCode.TooManyRequests, third.StatusCode);
        Assert.Equal("PROVIDER_QUOTA_EXHAUSTED", (await third.ReadJsonAsync()).GetProperty("code").GetString());
        Assert.InRange(third.Headers.RetryAfter!.Delta!.Value, TimeSpan.FromHours(23.9), TimeSpan.FromHours(24));
    }

    [Fact]
    public async Task Sync_DeletedConnection_Answers404AndItsSecretIsGone()
    {
        await using var t = await ConnectionApp.CreateAsync("sqlite");
        var id = await t.User.CreateSandboxConnectionAsync();
        await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK);
        await t.User.DeleteAsync($"/api/connections/{id}").ExpectAsync(HttpStatusCode.NoContent);

        await t.User.SyncAsync(id, force: true).ExpectProblemAsync(HttpStatusCode.NotFound, "CONNECTION_NOT_FOUND");
        await t.User.GetAsync($"/api/connections/{id}").ExpectProblemAsync(HttpStatusCode.NotFound, "CONNECTION_NOT_FOUND");
        Assert.Equal(0, (await t.User.GetAsync("/api/connections").ExpectAsync(HttpStatusCode.OK)).GetArrayLength());
        await using var db = t.App.Db();
        var row = await db.ProviderConnections.SingleAsync(c => c.Id == id, TestContext.Current.CancellationToken);
        Assert.Null(row.CredentialsEncrypted);
        Assert.Equal("DISCONNECTED", row.Status);
    }

    internal static (int Created, int Updated, int Unchanged, int Errors) Counts(System.Text.Json.JsonElement body) => (
        body.GetProperty("created").GetInt32(), body.GetProperty("updated").GetInt32(),
        body.GetProperty("unchanged").GetInt32(), body.GetProperty("errors").GetInt32());

    /// <summary>The connection's events but its balance events, oldest first.</summary>
    private static async Task<List<(string Type, System.Text.Json.JsonElement Payload)>> SyncEventsAsync(ConnectionApp t, Guid connectionId) =>
        (await t.Admin.EventsAsync(connectionId)).Where(e => e.Type != BalanceUpdated).ToList();

    private static async Task<Dictionary<Guid, ProviderAccount>> AccountsAsync(ConnectionApp t, Guid connectionId)
    {
        await using var db = t.App.Db();
        return await db.ProviderAccounts.AsNoTracking().Where(a => a.ConnectionId == connectionId)
            .ToDictionaryAsync(a => a.Id, TestContext.Current.CancellationToken);
    }
}
