using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using Tally.Hosting;
using Tally.Sandbox.SimpleFin;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.Connections;

/// <summary>The console's connections: <c>/api/admin/connections</c> by user, and each connection's sync runs. Never a credential.</summary>
public class ConnectionAdminTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Admin_SeesAUsersConnectionsStatusAndSyncRuns_ButNeverAnyPartOfTheCredential(string storage)
    {
        await using var t = await ConnectionApp.CreateAsync(storage, bank: true);
        var username = (await t.Admin.GetAsync($"/api/admin/users/{t.UserId}", Ct).ExpectAsync(HttpStatusCode.OK)).GetProperty("username").GetString()!;
        var (token, bankUser) = await t.Bank.SetupTokenAsync();
        var simplefin = (await t.User.PostJsonAsync("/api/connections", new { providerSlug = "simplefin", name = "Main bank", setupToken = token })
            .ExpectAsync(HttpStatusCode.Created)).GetProperty("id").GetGuid();
        await t.User.SyncAsync(simplefin).ExpectAsync(HttpStatusCode.OK);
        await t.Bank.SetScenarioAsync(bankUser, "revoked");
        t.Clock.Advance(TimeSpan.FromMinutes(3));
        using (var refused = await t.User.SyncAsync(simplefin, force: true))
        {
            Assert.False(refused.IsSuccessStatusCode);
        }
        var sandbox = await t.User.CreateSandboxConnectionAsync(new { login = "sam", password = "hunter2-admin-secret" });
        await t.User.SyncAsync(sandbox).ExpectAsync(HttpStatusCode.OK);

        using var viewer = t.App.Client(Guid.NewGuid(), Roles.Viewer);
        var answers = new StringBuilder();
        async Task<JsonElement> Read(string url)
        {
            using var response = await viewer.GetAsync(url, Ct);
            var text = await response.Content.ReadAsStringAsync(Ct);
            answers.AppendLine(text);
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"{url}: {(int)response.StatusCode} {text}");
            return JsonDocument.Parse(text).RootElement.Clone();
        }

        var byName = await Read($"/api/admin/connections?user={username}");
        var byId = await Read($"/api/admin/connections?user={t.UserId}");
        Assert.Equal(byName.GetProperty("items").GetRawText(), byId.GetProperty("items").GetRawText());
        var items = byName.GetProperty("items").EnumerateArray().ToList();
        Assert.Equal([simplefin, sandbox], items.Select(c => c.GetProperty("id").GetGuid()));
        var main = items[0];
        Assert.Equal("simplefin", main.GetProperty("providerSlug").GetString());
        Assert.Equal("REAUTH_REQUIRED", main.GetProperty("status").GetString());
        Assert.Equal(username, main.GetProperty("username").GetString());
        Assert.Equal(JsonValueKind.String, main.GetProperty("lastSyncAt").ValueKind);
        Assert.False(string.IsNullOrEmpty(main.GetProperty("lastError").GetString()));
        Assert.Equal("ACTIVE", items[1].GetProperty("status").GetString());
        Assert.Empty((await Read("/api/admin/connections?user=no-such-user")).GetProperty("items").EnumerateArray());

        var runs = (await Read($"/api/admin/connections/{simplefin}/sync-runs")).GetProperty("items").EnumerateArray().ToList();
        Assert.Equal(["FAILED", "SUCCEEDED"], runs.Select(r => r.GetProperty("status").GetString()));
        Assert.False(string.IsNullOrEmpty(runs[0].GetProperty("reason").GetString()));
        Assert.True(runs[0].GetProperty("forced").GetBoolean());
        Assert.False(runs[1].GetProperty("forced").GetBoolean());
        Assert.Equal("api", runs[1].GetProperty("trigger").GetString());
        Assert.Equal(3, runs[1].GetProperty("created").GetInt32());
        Assert.Equal(JsonValueKind.String, runs[1].GetProperty("finishedAt").ValueKind);

        var first = await Read($"/api/admin/connections/{simplefin}/sync-runs?limit=1");
        Assert.Equal("FAILED", Assert.Single(first.GetProperty("items").EnumerateArray()).GetProperty("status").GetString());
        var next = await Read($"/api/admin/connections/{simplefin}/sync-runs?limit=1&cursor={first.GetProperty("nextCursor").GetString()}");
        Assert.Equal("SUCCEEDED", Assert.Single(next.GetProperty("items").EnumerateArray()).GetProperty("status").GetString());
        Assert.Equal(JsonValueKind.Null, next.GetProperty("nextCursor").ValueKind);

        // A deleted connection is still listed, with its history; its secret is gone from the database too.
        await t.User.DeleteAsync($"/api/connections/{sandbox}", Ct).ExpectAsync(HttpStatusCode.NoContent);
        var after = (await Read($"/api/admin/connections?user={username}")).GetProperty("items").EnumerateArray().ToList();
        Assert.Equal("DISCONNECTED", after[1].GetProperty("status").GetString());
        Assert.Equal(JsonValueKind.String, after[1].GetProperty("deletedAt").ValueKind);
        Assert.Single((await Read($"/api/admin/connections/{sandbox}/sync-runs")).GetProperty("items").EnumerateArray());

        // No part of any credential: the claim URL and its token, the access URL, its user and password, the sandbox password, the ciphertext.
        var claimUrl = Encoding.UTF8.GetString(Convert.FromBase64String(token));
        var password = new SimpleFinSandbox.SandboxBank(Microsoft.Extensions.Options.Options.Create(new Tally.Sandbox.SandboxOptions())).Password(bankUser);
        var access = new UriBuilder(t.Bank.Root) { UserName = bankUser, Password = password, Path = "/sandbox/simplefin" }.Uri.ToString();
        var secrets = new List<string> { token, claimUrl, claimUrl[(claimUrl.LastIndexOf('/') + 1)..], access, password, bankUser, $"{bankUser}:{password}", "hunter2-admin-secret" };
        await using (var db = t.App.Db())
        {
            var stored = await db.ProviderConnections.Where(c => c.CredentialsEncrypted != null).Select(c => c.CredentialsEncrypted!).ToListAsync(Ct);
            Assert.NotEmpty(stored);
            secrets.AddRange(stored);
            secrets.AddRange(stored.Select(s => s[..24]));
        }
        var text = answers.ToString();
        foreach (var secret in secrets)
        {
            Assert.False(text.Contains(secret, StringComparison.Ordinal), $"an admin answer carries a part of a credential ({secret[..Math.Min(4, secret.Length)]}...)");
        }
    }

    [Fact]
    public async Task Admin_BadParameters_AreRefusedNamingThem_UnknownConnectionNotFound()
    {
        await using var app = TallyApp.Sqlite(new Dictionary<string, string?> { ["Tally:Roles:0"] = "api" });
        using var viewer = app.Client(Guid.NewGuid(), Roles.Viewer);
        foreach (var (url, field) in new[]
        {
            ("/api/admin/connections?cursor=x", "cursor"), ("/api/admin/connections?limit=0", "limit"), ("/api/admin/connections?user=%00", "user"),
            ($"/api/admin/connections/{Guid.NewGuid()}/sync-runs?cursor=abc-def", "cursor"), ($"/api/admin/connections/{Guid.NewGuid()}/sync-runs?limit=9999", "limit"),
        })
        {
            var problem = await viewer.GetAsync(url, Ct).ExpectProblemAsync(HttpStatusCode.BadRequest, "VALIDATION_FAILED");
            Assert.True(problem.GetProperty("errors").TryGetProperty(field, out _), $"{url} names {field}");
        }
        await viewer.GetAsync($"/api/admin/connections/{Guid.NewGuid()}/sync-runs", Ct).ExpectProblemAsync(HttpStatusCode.NotFound, "CONNECTION_NOT_FOUND");
    }
}
