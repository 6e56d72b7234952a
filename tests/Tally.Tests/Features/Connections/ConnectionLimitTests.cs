using System.Net;
using System.Net.Http.Json;
using Microsoft.EntityFrameworkCore;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.Connections;

/// <summary>The bounds on what one user can make Tally hold and do: connections, accounts, forced syncs.</summary>
public class ConnectionLimitTests
{
    [Fact]
    public async Task Create_BeyondMaxConnectionsPerUser_Answers409AndWritesNothing_UntilOneIsDeleted()
    {
        await using var t = await ConnectionApp.CreateAsync("sqlite", new Dictionary<string, string?> { ["Connections:MaxConnectionsPerUser"] = "2" });
        var first = await t.User.CreateSandboxConnectionAsync();
        await t.User.CreateSandboxConnectionAsync();

        var problem = await t.User.PostJsonAsync("/api/connections", new { providerSlug = "sandbox", credentials = new { login = "third" } })
            .ExpectProblemAsync(HttpStatusCode.Conflict, "CONNECTION_LIMIT_REACHED");
        Assert.Contains("2 connections", problem.GetProperty("detail").GetString()!, StringComparison.Ordinal);
        Assert.Equal(2, (await t.User.GetAsync("/api/connections").ExpectAsync(HttpStatusCode.OK)).GetArrayLength());

        // The limit is per user: someone else still connects.
        var other = t.App.AsUser(await t.Admin.CreateUserAsync());
        await other.CreateSandboxConnectionAsync();

        await t.User.DeleteAsync($"/api/connections/{first}").ExpectAsync(HttpStatusCode.NoContent);
        await t.User.CreateSandboxConnectionAsync();
    }

    [Fact]
    public async Task Create_AtTheLimit_DoesNotSpendTheSetupToken()
    {
        await using var t = await ConnectionApp.CreateAsync("sqlite", new Dictionary<string, string?> { ["Connections:MaxConnectionsPerUser"] = "1" }, bank: true);
        var only = await t.User.CreateSandboxConnectionAsync();
        var (token, _) = await t.Bank.SetupTokenAsync();

        await t.User.PostJsonAsync("/api/connections", new { providerSlug = "simplefin", setupToken = token })
            .ExpectProblemAsync(HttpStatusCode.Conflict, "CONNECTION_LIMIT_REACHED");
        await t.User.DeleteAsync($"/api/connections/{only}").ExpectAsync(HttpStatusCode.NoContent);
        await t.User.PostJsonAsync("/api/connections", new { providerSlug = "simplefin", setupToken = token }).ExpectAsync(HttpStatusCode.Created);
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Create_ManyAtOnce_NeverPassesTheLimit(string storage)
    {
        await using var t = await ConnectionApp.CreateAsync(storage, new Dictionary<string, string?> { ["Connections:MaxConnectionsPerUser"] = "3" });
        var answers = await Task.WhenAll(Enumerable.Range(0, 12).Select(async i =>
        {
            using var response = await t.User.PostJsonAsync("/api/connections", new { providerSlug = "sandbox", credentials = new { login = $"racer-{i}" } });
            return response.StatusCode;
        }));
        Assert.Equal(3, answers.Count(s => s == HttpStatusCode.Created));
        Assert.Equal(9, answers.Count(s => s == HttpStatusCode.Conflict));
        Assert.Equal(3, (await t.User.GetAsync("/api/connections").ExpectAsync(HttpStatusCode.OK)).GetArrayLength());
    }

    [Fact]
    public async Task Sync_ProviderReportsMoreThanMaxAccountsPerConnection_Answers409_RecordsTheFailure_AndStoresNothing()
    {
        await using var t = await ConnectionApp.CreateAsync("sqlite", new Dictionary<string, string?> { ["Connections:MaxAccountsPerConnection"] = "5" });
        var id = await t.User.CreateSandboxConnectionAsync(new { login = "hoarder", accounts = 6 });

        var problem = await t.User.SyncAsync(id).ExpectProblemAsync(HttpStatusCode.Conflict, "ACCOUNT_LIMIT_EXCEEDED");
        Assert.Contains("at most 5", problem.GetProperty("detail").GetString()!, StringComparison.Ordinal);
        Assert.Equal(0, (await t.User.GetAsync($"/api/connections/{id}/accounts").ExpectAsync(HttpStatusCode.OK)).GetArrayLength());
        var events = await t.Admin.EventsAsync(id);
        Assert.Equal(["AccountSyncAttempted", "AccountSyncFailed"], events.Select(e => e.Type).ToList());
        Assert.Equal("too_many_accounts", events[1].Payload.GetProperty("reason").GetString());
        var run = (await t.User.GetAsync($"/api/connections/{id}/sync-runs").ExpectAsync(HttpStatusCode.OK))[0];
        Assert.Equal(("FAILED", "too_many_accounts"), (run.GetProperty("status").GetString(), run.GetProperty("reason").GetString()));
        var connection = await t.User.GetAsync($"/api/connections/{id}").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(("ACTIVE", "too_many_accounts"), (connection.GetProperty("status").GetString(), connection.GetProperty("lastError").GetString()));

        // Accounts stay after the provider stops reporting them, so the bound is on what would be
        // stored: 4 kept plus 3 new ones is 7, refused although the answer itself holds 3.
        var small = await t.User.CreateSandboxConnectionAsync(new { login = "mover", accounts = 4 });
        await t.User.SyncAsync(small).ExpectAsync(HttpStatusCode.OK);
        await t.User.PutAsJsonAsync($"/api/connections/{small}/credentials", new { credentials = new { login = "moved", accounts = 3 } }, Json.Web)
            .ExpectAsync(HttpStatusCode.OK);
        await t.User.SyncAsync(small, force: true).ExpectProblemAsync(HttpStatusCode.Conflict, "ACCOUNT_LIMIT_EXCEEDED");
        Assert.Equal(4, (await t.User.GetAsync($"/api/connections/{small}/accounts").ExpectAsync(HttpStatusCode.OK)).GetArrayLength());
    }

    [Fact]
    public async Task Sync_ForcedMoreThanMaxForcedSyncsPerDay_Answers429WithRetryAfter_UntilAnOrdinarySyncIsDue()
    {
        await using var t = await ConnectionApp.CreateAsync("sqlite", new Dictionary<string, string?> { ["Connections:MaxForcedSyncsPerDay"] = "2" });
        var id = await t.User.CreateSandboxConnectionAsync();
        await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK);
        for (var i = 0; i < 2; i++)
        {
            t.Clock.Advance(TimeSpan.FromMinutes(1));
            await t.User.SyncAsync(id, force: true).ExpectAsync(HttpStatusCode.OK);
        }
        t.Clock.Advance(TimeSpan.FromMinutes(1));

        using var third = await t.User.SyncAsync(id, force: true);
        var problem = await third.ReadJsonAsync();
        Assert.Equal(HttpStatusCode.TooManyRequests, third.StatusCode);
        Assert.Equal("FORCED_SYNC_LIMIT_REACHED", problem.GetProperty("code").GetString());
        // The last sync was a minute ago: an ordinary one is allowed in 14 minutes, before the forced ones leave the 24 hours.
        Assert.Equal(TimeSpan.FromMinutes(14), third.Headers.RetryAfter?.Delta);
        Assert.Equal(14 * 60, problem.GetProperty("retryAfterSeconds").GetInt32());
        Assert.Equal("forced_sync_limit", (await t.Admin.EventsAsync(id))[^1].Payload.GetProperty("reason").GetString());
        await using (var db = t.App.Db())
        {
            Assert.Equal(3, await db.ConnectionSyncRuns.CountAsync(r => r.ConnectionId == id && r.ProviderCalled, TestContext.Current.CancellationToken));
        }

        t.Clock.Advance(TimeSpan.FromMinutes(14));
        await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK);
        // Forced again within the interval: still two forced syncs in the last 24 hours.
        await t.User.SyncAsync(id, force: true).ExpectProblemAsync(HttpStatusCode.TooManyRequests, "FORCED_SYNC_LIMIT_REACHED");
    }
}
