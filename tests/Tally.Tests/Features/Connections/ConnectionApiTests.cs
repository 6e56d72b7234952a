using System.Net;
using Microsoft.EntityFrameworkCore;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.Connections;

public class ConnectionApiTests
{
    [Fact]
    public async Task Connections_CreateListReadDelete_ActOnTheCallersOwnOnly()
    {
        await using var t = await ConnectionApp.CreateAsync("sqlite");
        var created = await t.User.PostJsonAsync("/api/connections", new { providerSlug = "sandbox", name = "Play money", credentials = new { login = "me", password = "pw-123" } })
            .ExpectAsync(HttpStatusCode.Created);
        var id = created.GetProperty("id").GetGuid();
        Assert.Equal("ACTIVE", created.GetProperty("status").GetString());
        Assert.Equal("Play money", created.GetProperty("name").GetString());
        Assert.True(created.GetProperty("consentExpiresAt").GetDateTime() > DateTime.UtcNow.AddDays(89));
        Assert.DoesNotContain("pw-123", created.ToString(), StringComparison.Ordinal);
        Assert.False(created.TryGetProperty("credentials", out _));

        var list = await t.User.GetAsync("/api/connections").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal([id], list.EnumerateArray().Select(c => c.GetProperty("id").GetGuid()).ToArray());
        var read = await t.User.GetAsync($"/api/connections/{id}").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal("sandbox", read.GetProperty("providerSlug").GetString());
        Assert.Equal(JsonNull, read.GetProperty("lastSyncAt").ValueKind);

        await t.User.DeleteAsync($"/api/connections/{id}").ExpectAsync(HttpStatusCode.NoContent);
        await t.User.DeleteAsync($"/api/connections/{id}").ExpectProblemAsync(HttpStatusCode.NotFound, "CONNECTION_NOT_FOUND");
        Assert.Equal(0, (await t.User.GetAsync("/api/connections").ExpectAsync(HttpStatusCode.OK)).GetArrayLength());
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Accounts_PageByCursor(string storage)
    {
        await using var t = await ConnectionApp.CreateAsync(storage);
        var id = await t.User.CreateSandboxConnectionAsync(new { login = "pager", accounts = 7 });
        await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK);
        var first = await t.User.GetAsync($"/api/connections/{id}/accounts?limit=5").ExpectAsync(HttpStatusCode.OK);
        var after = first[4].GetProperty("id").GetGuid();
        var rest = await t.User.GetAsync($"/api/connections/{id}/accounts?limit=5&after={after}").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(5, first.GetArrayLength());
        Assert.Equal(2, rest.GetArrayLength());
        var all = first.EnumerateArray().Concat(rest.EnumerateArray()).Select(a => a.GetProperty("id").GetGuid()).ToList();
        Assert.Equal(7, all.Distinct().Count());
    }

    public static TheoryData<string, string> InvalidBodies => new()
    {
        { "{}", "providerSlug" },
        { """{"providerSlug":"plaid","credentials":{}}""", "providerSlug" },
        { """{"providerSlug":"sandbox"}""", "credentials" },
        { """{"providerSlug":"sandbox","credentials":"secret"}""", "credentials" },
        { """{"providerSlug":"sandbox","credentials":{"accounts":-1}}""", "credentials" },
        { """{"providerSlug":"sandbox","credentials":{"fail":"sometimes"}}""", "credentials" },
        { """{"providerSlug":"simplefin"}""", "setupToken" },
        { """{"providerSlug":"sandbox","credentials":{},"name":"0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789x"}""", "name" },
    };

    [Theory]
    [MemberData(nameof(InvalidBodies))]
    public async Task Create_InvalidField_Answers400NamingItAndCreatesNothing(string json, string field)
    {
        await using var t = await ConnectionApp.CreateAsync("sqlite");
        var problem = await t.User.PostRawAsync("/api/connections", json).ExpectProblemAsync(HttpStatusCode.BadRequest, "VALIDATION_FAILED");
        Assert.True(problem.GetProperty("errors").TryGetProperty(field, out _), $"errors should name {field}: {problem}");
        Assert.Equal(0, (await t.User.GetAsync("/api/connections").ExpectAsync(HttpStatusCode.OK)).GetArrayLength());
    }

    /// <summary>Input that once could reach the database or a provider as it was: each is refused naming its field.</summary>
    public static readonly (string Json, string Field)[] ExtremeBodies =
    [
        (Body("sandbox", name: new string('n', 101)), "name"),
        (Body("sandbox", name: new string('n', 1_000_000)), "name"),
        (Body("sandbox", name: @"nul\u0000inside"), "name"),
        (Body("sandbox", name: @"\u001b[31mred"), "name"),
        (Body("sandbox", name: @"two\nlines"), "name"),
        (Body(""), "providerSlug"),
        (Body("SANDBOX"), "providerSlug"),
        (Body(@"sandbox\u0000"), "providerSlug"),
        (Body(new string('s', 100_000)), "providerSlug"),
        (Body("simplefin", token: "%%%%"), "setupToken"),
        (Body("simplefin", token: "////"), "setupToken"),
        (Body("simplefin", token: new string('A', 100_000)), "setupToken"),
        (Body("simplefin", token: Base64("not a url")), "setupToken"),
        (Body("simplefin", token: Base64("javascript:alert(1)")), "setupToken"),
        (Body("simplefin", token: Base64("http://")), "setupToken"),
        (Body("simplefin", token: Base64("http://[::1")), "setupToken"),
        (Body("simplefin", token: Base64("https://bridge.simplefin.org:99999/claim/x")), "setupToken"),
        (Body("simplefin", token: Base64("https://bridge.simplefin.org/claim/a\u0000b")), "setupToken"),
        (Body("simplefin", token: Base64("https://bridge.simplefin.org/claim/a b")), "setupToken"),
        (Body("simplefin", token: Convert.ToBase64String([0xff, 0xfe, 0x00, 0x80])), "setupToken"),
        (Body("simplefin", token: @"\u0000"), "setupToken"),
        ("""{"providerSlug":"simplefin","credentials":{"setupToken":"garbage"}}""", "setupToken"),
        ("""{"providerSlug":"sandbox","credentials":{"consentDays":1000000000}}""", "credentials"),
        ("""{"providerSlug":"sandbox","credentials":{"consentDays":-5}}""", "credentials"),
        ("""{"providerSlug":"sandbox","credentials":{"consentDays":"soon"}}""", "credentials"),
        ("""{"providerSlug":"sandbox","credentials":{"fail":"rate_limited","retryAfterSeconds":-1}}""", "credentials"),
        ("""{"providerSlug":"sandbox","credentials":{"fail":"rate_limited","retryAfterSeconds":1e12}}""", "credentials"),
        ("""{"providerSlug":"sandbox","credentials":{"accounts":1e12}}""", "credentials"),
        ("""{"providerSlug":"sandbox","credentials":{"accounts":20001}}""", "credentials"),
        ("""{"providerSlug":"sandbox","credentials":{"pad":"__PAD__"}}""".Replace("__PAD__", new string('p', 5_000), StringComparison.Ordinal), "credentials"),
    ];

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Create_ExtremeOrMalformedInput_Answers400NamingTheField_AndWritesNothing(string storage)
    {
        await using var t = await ConnectionApp.CreateAsync(storage);
        foreach (var (json, field) in ExtremeBodies)
        {
            using var response = await t.User.PostRawAsync("/api/connections", json);
            var text = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
            var shown = json.Length > 120 ? json[..120] + "..." : json;
            Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{shown}: {(int)response.StatusCode} {text}");
            var named = System.Text.Json.JsonDocument.Parse(text).RootElement.TryGetProperty("errors", out var errors) && errors.TryGetProperty(field, out _);
            Assert.True(named, $"{shown}: errors should name {field}: {text}");
        }
        await using var db = t.App.Db();
        Assert.Equal(0, await db.ProviderConnections.CountAsync(TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task ReplaceCredentials_MalformedInput_Answers400NamingTheField_AndKeepsTheOldOnes()
    {
        await using var t = await ConnectionApp.CreateAsync("sqlite");
        var id = await t.User.CreateSandboxConnectionAsync(new { login = "keeper" });
        string? Stored()
        {
            using var db = t.App.Db();
            return db.ProviderConnections.Single(c => c.Id == id).CredentialsEncrypted;
        }
        var before = Stored();
        foreach (var (json, field) in new[]
        {
            ("""{"credentials":"not an object"}""", "credentials"),
            ("""{"credentials":{"consentDays":1000000000}}""", "credentials"),
            ("{}", "credentials"),
        })
        {
            using var request = new HttpRequestMessage(HttpMethod.Put, $"/api/connections/{id}/credentials")
            {
                Content = new StringContent(json, System.Text.Encoding.UTF8, "application/json"),
            };
            var problem = await t.User.SendAsync(request).ExpectProblemAsync(HttpStatusCode.BadRequest, "VALIDATION_FAILED");
            Assert.True(problem.GetProperty("errors").TryGetProperty(field, out _), $"{json}: errors should name {field}: {problem}");
        }
        Assert.Equal(before, Stored());
        await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK);
    }

    [Theory]
    [InlineData("GET", "/api/connections/not-a-guid", 404, "NOT_FOUND")]
    [InlineData("POST", "/api/connections/00000000-0000-0000-0000-000000000000/sync", 404, "CONNECTION_NOT_FOUND")]
    [InlineData("GET", "/api/connections/4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e/accounts?after=nope", 400, "BAD_REQUEST")]
    [InlineData("GET", "/api/connections/4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e/accounts?limit=99999999999", 400, "BAD_REQUEST")]
    [InlineData("PUT", "/api/connections/4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e/credentials", 400, "BAD_REQUEST")]
    [InlineData("POST", "/api/connections/4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e/sync?force=true", 404, "CONNECTION_NOT_FOUND")]
    public async Task OddPathsAndQueries_AnswerAProblemNeverA500(string method, string url, int status, string code)
    {
        await using var t = await ConnectionApp.CreateAsync("sqlite");
        using var request = new HttpRequestMessage(new HttpMethod(method), url);
        if (method is "PUT")
        {
            request.Content = new StringContent("", System.Text.Encoding.UTF8, "application/json");
        }
        await t.User.SendAsync(request).ExpectProblemAsync((HttpStatusCode)status, code);
    }

    private static string Body(string slug, string? name = null, string? token = null)
    {
        var fields = new List<string> { $"\"providerSlug\":\"{slug}\"" };
        if (name is not null)
        {
            fields.Add($"\"name\":\"{name}\"");
        }
        fields.Add(token is null ? "\"credentials\":{}" : $"\"setupToken\":\"{token}\"");
        return "{" + string.Join(",", fields) + "}";
    }

    private static string Base64(string text) => Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes(text));

    [Theory]
    [InlineData("POST", "/api/connections", "{")]
    [InlineData("POST", "/api/connections", """{"providerSlug":7}""")]
    [InlineData("POST", "/api/connections", """{"providerSlug":"sandbox","name":"lone \ud800 surrogate","credentials":{}}""")]
    [InlineData("POST", "/api/connections/4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e/sync", """{"force":"yes"}""")]
    [InlineData("GET", "/api/connections/4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e/accounts?limit=x", null)]
    public async Task UnreadableInput_Answers400Problem(string method, string url, string? json)
    {
        await using var t = await ConnectionApp.CreateAsync("sqlite");
        using var request = new HttpRequestMessage(new HttpMethod(method), url);
        if (json is not null)
        {
            request.Content = new StringContent(json, System.Text.Encoding.UTF8, "application/json");
        }
        await t.User.SendAsync(request).ExpectProblemAsync(HttpStatusCode.BadRequest, "BAD_REQUEST");
    }

    [Theory]
    [InlineData("/api/connections/4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e/accounts?limit=0")]
    [InlineData("/api/connections/4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e/accounts?limit=5001")]
    [InlineData("/api/connections/4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e/sync-runs?limit=501")]
    public async Task OutOfRangeLimit_Answers400(string url)
    {
        await using var t = await ConnectionApp.CreateAsync("sqlite");
        await t.User.GetAsync(url).ExpectProblemAsync(HttpStatusCode.BadRequest, "VALIDATION_FAILED");
    }

    [Fact]
    public async Task Sync_WithoutABody_IsAnOrdinarySync()
    {
        await using var t = await ConnectionApp.CreateAsync("sqlite");
        var id = await t.User.CreateSandboxConnectionAsync();
        await t.User.PostAsync($"/api/connections/{id}/sync", null).ExpectAsync(HttpStatusCode.OK);
        await t.User.PostAsync($"/api/connections/{id}/sync", null).ExpectProblemAsync(HttpStatusCode.TooManyRequests, "RECENTLY_SYNCED");
    }

    [Fact]
    public async Task Endpoints_RequireAKnownUser()
    {
        await using var t = await ConnectionApp.CreateAsync("sqlite");
        await t.App.CreateClient().GetAsync("/api/connections").ExpectProblemAsync(HttpStatusCode.Unauthorized, "UNAUTHORIZED");
        var stranger = t.App.AsUser(Guid.NewGuid());
        await stranger.PostJsonAsync("/api/connections", new { providerSlug = "sandbox", credentials = new { } })
            .ExpectProblemAsync(HttpStatusCode.Forbidden, "USER.NOT_FOUND");
    }

    private const System.Text.Json.JsonValueKind JsonNull = System.Text.Json.JsonValueKind.Null;
}
