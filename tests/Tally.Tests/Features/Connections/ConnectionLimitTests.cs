using System.Net;
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
}
