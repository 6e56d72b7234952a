using System.Net;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Tally.Sandbox.SimpleFin;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.Connections;

/// <summary>The anonymous SimpleFIN sandbox: what it hands out is bounded, addressed from configuration, and each user's its own.</summary>
public class SimpleFinSandboxTests
{
    [Fact]
    public async Task SetupToken_BeyondMaxSetupTokensPerHour_Answers429WithRetryAfter_UntilTheHourMovesOn()
    {
        var clock = new ManualClock();
        await using var bank = await SimpleFinSandboxHost.StartAsync(clock, settings: new Dictionary<string, string?> { ["Sandbox:SimpleFin:MaxSetupTokensPerHour"] = "2" });
        await bank.SetupTokenAsync();
        clock.Advance(TimeSpan.FromMinutes(10));
        await bank.SetupTokenAsync();

        using var third = await bank.Client.PostJsonAsync("/sandbox/simplefin/setup-token", new { });
        var problem = await third.ReadJsonAsync();
        Assert.Equal(HttpStatusCode.TooManyRequests, third.StatusCode);
        Assert.Equal("SANDBOX.SETUP_TOKEN_LIMIT", problem.GetProperty("code").GetString());
        Assert.Equal(TimeSpan.FromMinutes(50), third.Headers.RetryAfter?.Delta);

        clock.Advance(TimeSpan.FromMinutes(50));
        await bank.SetupTokenAsync();
        await bank.Client.PostJsonAsync("/sandbox/simplefin/setup-token", new { }).ExpectProblemAsync(HttpStatusCode.TooManyRequests, "SANDBOX.SETUP_TOKEN_LIMIT");
    }

    [Fact]
    public async Task Scenario_OnlyItsOwnScenarioTokenChangesAUsersBank()
    {
        await using var bank = await SimpleFinSandboxHost.StartAsync(new ManualClock());
        var (_, alice) = await bank.SetupTokenAsync();
        var (_, mallory) = await bank.SetupTokenAsync();

        await bank.ChangeScenarioAsync(alice, "revoked", token: null).ExpectProblemAsync(HttpStatusCode.Forbidden, "SANDBOX.FORBIDDEN");
        await bank.ChangeScenarioAsync(alice, "revoked", bank.ScenarioToken(mallory)).ExpectProblemAsync(HttpStatusCode.Forbidden, "SANDBOX.FORBIDDEN");
        await bank.ChangeScenarioAsync(alice, "revoked", "0123456789abcdef0123456789abcdef").ExpectProblemAsync(HttpStatusCode.Forbidden, "SANDBOX.FORBIDDEN");
        await bank.ChangeScenarioAsync("ok.3.nobody", "revoked", bank.ScenarioToken(alice)).ExpectProblemAsync(HttpStatusCode.Forbidden, "SANDBOX.FORBIDDEN");
        await bank.AccountsAsync(alice).ExpectAsync(HttpStatusCode.OK);

        await bank.SetScenarioAsync(alice, "revoked");
        using var revoked = await bank.AccountsAsync(alice);
        Assert.Equal(HttpStatusCode.Forbidden, revoked.StatusCode);
        await bank.AccountsAsync(mallory).ExpectAsync(HttpStatusCode.OK);
    }

    [Fact]
    public async Task SetupTokenAndClaim_WithAForgedHostHeader_StillPointToTheSandboxsOwnAddress()
    {
        await using var bank = await SimpleFinSandboxHost.StartAsync(new ManualClock());
        var origin = bank.Root.GetLeftPart(UriPartial.Authority);

        using var request = new HttpRequestMessage(HttpMethod.Post, "/sandbox/simplefin/setup-token") { Content = new StringContent("{}", Encoding.UTF8, "application/json") };
        request.Headers.Host = "evil.example:666";
        var body = await bank.Client.SendAsync(request).ExpectAsync(HttpStatusCode.OK);
        var claimUrl = Encoding.UTF8.GetString(Convert.FromBase64String(body.GetProperty("setupToken").GetString()!));
        Assert.StartsWith($"{origin}/sandbox/simplefin/claim/", claimUrl, StringComparison.Ordinal);

        using var claim = new HttpRequestMessage(HttpMethod.Post, new Uri(claimUrl).PathAndQuery);
        claim.Headers.Host = "evil.example:666";
        using var claimed = await bank.Client.SendAsync(claim);
        var access = new Uri(await claimed.Content.ReadAsStringAsync(TestContext.Current.CancellationToken));
        Assert.Equal(HttpStatusCode.OK, claimed.StatusCode);
        Assert.Equal(origin, access.GetLeftPart(UriPartial.Authority).Replace(access.UserInfo + "@", "", StringComparison.Ordinal));
    }

    [Fact]
    public async Task SetupToken_WithAPublicUrlConfigured_UsesIt_WhateverTheHostHeader()
    {
        await using var t = await ConnectionApp.CreateAsync("sqlite", new Dictionary<string, string?> { ["Sandbox:SimpleFin:PublicUrl"] = "https://sandbox.tally.test:8443/" });
        var client = t.App.CreateClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/sandbox/simplefin/setup-token") { Content = new StringContent("{}", Encoding.UTF8, "application/json") };
        request.Headers.Host = "evil.example";
        var body = await client.SendAsync(request).ExpectAsync(HttpStatusCode.OK);
        var claimUrl = Encoding.UTF8.GetString(Convert.FromBase64String(body.GetProperty("setupToken").GetString()!));
        Assert.StartsWith("https://sandbox.tally.test:8443/sandbox/simplefin/claim/", claimUrl, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("http://127.0.0.1:5080", "http://127.0.0.1:5080/")]
    [InlineData("http://localhost:5080", "http://127.0.0.1:5080/")]
    [InlineData("http://0.0.0.0:5080", "http://127.0.0.1:5080/")]
    [InlineData("http://[::]:5080", "http://127.0.0.1:5080/")]
    [InlineData("http://+:80", "http://127.0.0.1/")]
    [InlineData("http://*:8080", "http://127.0.0.1:8080/")]
    [InlineData("http://[::1]:5080", "http://[::1]:5080/")]
    [InlineData("http://10.1.2.3:5080", "http://10.1.2.3:5080/")]
    public void BoundAddress_IsOneSpellingOfThisMachine(string bound, string expected) =>
        Assert.Equal(expected, Tally.Hosting.LocalUpstreams.FromBinding(["https://localhost:5443", bound])?.ToString());

    [Fact]
    public void SetupTokenWindow_WaitsForTheOldestOfTheHourToLeave()
    {
        var now = new DateTimeOffset(2025, 3, 1, 12, 0, 0, TimeSpan.Zero);
        DateTimeOffset[] issued = [now.AddMinutes(-50), now.AddMinutes(-20), now.AddMinutes(-5)];
        Assert.Null(SetupTokenWindow.Wait(issued, now, 4));
        Assert.Equal(TimeSpan.FromMinutes(10), SetupTokenWindow.Wait(issued, now, 3));
        Assert.Equal(TimeSpan.FromMinutes(40), SetupTokenWindow.Wait(issued, now, 2));
    }

    [Fact]
    public async Task EmbeddedSandbox_OnARealPort_ServesTheClaimFlowAtItsBoundAddress_WhateverTheHostHeader()
    {
        // Tally itself on Kestrel, its own sandbox enabled, no address configured: the bound address is the one.
        await using var app = TallyApp.Sqlite(new Dictionary<string, string?> { ["Tally:Roles:0"] = "api", ["Sandbox:Enabled"] = "true" });
        app.UseKestrel(options => options.Listen(System.Net.IPAddress.Loopback, 0));
        app.StartServer();
        var bound = new Uri(app.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>()
            .Features.Get<Microsoft.AspNetCore.Hosting.Server.Features.IServerAddressesFeature>()!.Addresses.First());
        var admin = app.Admin();
        var user = app.AsUser(await admin.CreateUserAsync());

        using var request = new HttpRequestMessage(HttpMethod.Post, "/sandbox/simplefin/setup-token") { Content = new StringContent("{}", Encoding.UTF8, "application/json") };
        request.Headers.Host = "evil.example";
        var body = await app.CreateClient().SendAsync(request).ExpectAsync(HttpStatusCode.OK);
        var token = body.GetProperty("setupToken").GetString()!;
        Assert.StartsWith($"http://127.0.0.1:{bound.Port}/sandbox/simplefin/claim/", Encoding.UTF8.GetString(Convert.FromBase64String(token)), StringComparison.Ordinal);

        var id = (await user.PostJsonAsync("/api/connections", new { providerSlug = "simplefin", setupToken = token })
            .ExpectAsync(HttpStatusCode.Created)).GetProperty("id").GetGuid();
        Assert.Equal((3, 0, 0, 0), SyncConnectionTests.Counts(await user.SyncAsync(id).ExpectAsync(HttpStatusCode.OK)));
    }
}
