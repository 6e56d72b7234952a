using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using Tally.Features.Connections;
using Tally.Features.Connections.Providers;
using Tally.Sandbox.SimpleFin;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.Connections;

/// <summary>Where the SimpleFIN client may go: the Bridge over HTTPS on public addresses, and the sandbox at exactly its own address.</summary>
public class SimpleFinEgressTests
{
    private static readonly Uri Sandbox = new("http://127.0.0.1:5080");

    [Theory]
    [InlineData("https://bridge.simplefin.org/simplefin/claim/x", true)]
    [InlineData("https://user:pw@beta-bridge.simplefin.org/simplefin", true)]
    [InlineData("http://127.0.0.1:5080/sandbox/simplefin/claim/x", true)]
    [InlineData("http://user:pw@127.0.0.1:5080/sandbox/simplefin", true)]
    [InlineData("http://bridge.simplefin.org/simplefin/claim/x", false)]
    [InlineData("https://bridge.simplefin.org./simplefin/claim/x", false)]
    [InlineData("https://evil.example/claim/x", false)]
    [InlineData("https://bridge.simplefin.org@evil.example/claim/x", false)]
    [InlineData("https://127.0.0.1:5080/sandbox/simplefin/claim/x", false)]
    [InlineData("http://127.0.0.1:5081/sandbox/simplefin/claim/x", false)]
    [InlineData("http://127.0.0.1/sandbox/simplefin/claim/x", false)]
    [InlineData("http://127.0.0.2:5080/claim/x", false)]
    [InlineData("http://127.1:5080/claim/x", false)]
    [InlineData("http://0x7f.0.0.1:5080/claim/x", false)]
    [InlineData("http://0177.0.0.1:5080/claim/x", false)]
    [InlineData("http://2130706433:5080/claim/x", false)]
    [InlineData("http://127.000.000.001:5080/claim/x", false)]
    [InlineData("http://[::1]:5080/claim/x", false)]
    [InlineData("http://[::ffff:127.0.0.1]:5080/claim/x", false)]
    [InlineData("http://[::ffff:7f00:1]:5080/claim/x", false)]
    [InlineData("http://localhost:5080/claim/x", false)]
    [InlineData("http://localhost.:5080/claim/x", false)]
    [InlineData("http://LOCALHOST:5080/claim/x", false)]
    [InlineData("http://0.0.0.0:5080/claim/x", false)]
    [InlineData("http://%31%32%37.0.0.1:5080/claim/x", false)]
    [InlineData("http://10.0.0.1/claim/x", false)]
    [InlineData("ftp://127.0.0.1:5080/claim/x", false)]
    [InlineData("not a url", false)]
    public void Url_TheBridgeOverHttps_OrTheSandboxsExactOrigin(string url, bool allowed) =>
        Assert.Equal(allowed, SimpleFinEgress.AllowsUrl(url, SimpleFinOptions.BridgeHosts, Sandbox));

    [Fact]
    public void Url_WithoutASandbox_IsTheBridgeOnly()
    {
        Assert.True(SimpleFinEgress.AllowsUrl("https://bridge.simplefin.org/simplefin/claim/x", SimpleFinOptions.BridgeHosts, null));
        Assert.False(SimpleFinEgress.AllowsUrl("http://127.0.0.1:5080/sandbox/simplefin/claim/x", SimpleFinOptions.BridgeHosts, null));
    }

    [Theory]
    [InlineData("52.1.2.3", true)]
    [InlineData("2606:4700::1111", true)]
    [InlineData("64:ff9b::3401:203", true)]
    [InlineData("127.0.0.1", false)]
    [InlineData("127.0.0.2", false)]
    [InlineData("0.0.0.0", false)]
    [InlineData("10.1.2.3", false)]
    [InlineData("100.64.0.1", false)]
    [InlineData("169.254.169.254", false)]
    [InlineData("172.16.0.1", false)]
    [InlineData("172.31.255.255", false)]
    [InlineData("192.168.1.1", false)]
    [InlineData("198.18.0.1", false)]
    [InlineData("224.0.0.1", false)]
    [InlineData("255.255.255.255", false)]
    [InlineData("::", false)]
    [InlineData("::1", false)]
    [InlineData("::ffff:127.0.0.1", false)]
    [InlineData("::ffff:10.0.0.1", false)]
    [InlineData("::127.0.0.1", false)]
    [InlineData("64:ff9b::7f00:1", false)]
    [InlineData("2002:7f00:1::", false)]
    [InlineData("fe80::1", false)]
    [InlineData("fd00::1", false)]
    [InlineData("ff02::1", false)]
    [InlineData("2001:db8::1", false)]
    public void Address_OnlyPublicOnes(string address, bool isPublic) =>
        Assert.Equal(isPublic, SimpleFinEgress.IsPublic(IPAddress.Parse(address)));

    [Fact]
    public void Address_OfTheSandbox_IsItsOwnAddressAndPortOnly()
    {
        Assert.True(SimpleFinEgress.AllowsAddress(IPAddress.Loopback, 5080, Sandbox));
        Assert.True(SimpleFinEgress.AllowsAddress(IPAddress.Parse("::ffff:127.0.0.1"), 5080, Sandbox));
        Assert.False(SimpleFinEgress.AllowsAddress(IPAddress.IPv6Loopback, 5080, Sandbox));
        Assert.False(SimpleFinEgress.AllowsAddress(IPAddress.Parse("127.0.0.2"), 5080, Sandbox));
        Assert.False(SimpleFinEgress.AllowsAddress(IPAddress.Loopback, 5081, Sandbox));
        Assert.False(SimpleFinEgress.AllowsAddress(IPAddress.Loopback, 5080, null));
    }

    /// <summary>Ways to write this machine, each meant to reach the sandbox's port (and one other port), none its exact address.</summary>
    private static string[] Spellings(int port, int otherPort) =>
    [
        $"http://127.0.0.2:{port}", $"http://127.1:{port}", $"http://0x7f.0.0.1:{port}", $"http://0177.0.0.1:{port}", $"http://2130706433:{port}",
        $"http://127.000.000.001:{port}", $"http://[::1]:{port}", $"http://[::ffff:127.0.0.1]:{port}", $"http://localhost:{port}",
        $"http://localhost.:{port}", $"http://LOCALHOST:{port}", $"http://0.0.0.0:{port}", $"https://127.0.0.1:{port}", $"http://127.0.0.1:{otherPort}",
    ];

    [Fact]
    public async Task Claim_AtAnyOtherSpellingOfThisMachine_Answers400AndReachesNobody_WhileTheSandboxsOwnAddressWorks()
    {
        await using var t = await ConnectionApp.CreateAsync("sqlite", bank: true);
        await using var other = await SimpleFinSandboxHost.StartAsync(t.Clock);
        var (token, _) = await t.Bank.SetupTokenAsync();
        var claim = new Uri(Encoding.UTF8.GetString(Convert.FromBase64String(token)));
        var requests = t.Bank.Requests;

        foreach (var origin in Spellings(t.Bank.Root.Port, other.Root.Port))
        {
            var forged = Convert.ToBase64String(Encoding.UTF8.GetBytes($"{origin}{claim.PathAndQuery}"));
            var problem = await t.User.PostJsonAsync("/api/connections", new { providerSlug = "simplefin", setupToken = forged })
                .ExpectProblemAsync(HttpStatusCode.BadRequest, "VALIDATION_FAILED");
            Assert.True(problem.GetProperty("errors").TryGetProperty("setupToken", out _), $"{origin}: {problem}");
        }
        Assert.Equal(requests, t.Bank.Requests);
        Assert.Equal(0, other.Requests);
        Assert.Equal(0, (await t.User.GetAsync("/api/connections").ExpectAsync(HttpStatusCode.OK)).GetArrayLength());

        // The token was never claimed: at the sandbox's own address it connects.
        await t.User.PostJsonAsync("/api/connections", new { providerSlug = "simplefin", setupToken = token }).ExpectAsync(HttpStatusCode.Created);
    }

    [Fact]
    public async Task Sync_WithAnAccessUrlAtAnyOtherSpellingOfThisMachine_FailsTyped_AndReachesNobody()
    {
        await using var t = await ConnectionApp.CreateAsync("sqlite", bank: true);
        await using var other = await SimpleFinSandboxHost.StartAsync(t.Clock);
        var (token, username) = await t.Bank.SetupTokenAsync();
        var id = (await t.User.PostJsonAsync("/api/connections", new { providerSlug = "simplefin", setupToken = token })
            .ExpectAsync(HttpStatusCode.Created)).GetProperty("id").GetGuid();
        var password = new SimpleFinSandbox.SandboxBank(Microsoft.Extensions.Options.Options.Create(new Tally.Sandbox.SandboxOptions())).Password(username);
        var protector = t.App.Get<CredentialProtector>();
        var ct = TestContext.Current.CancellationToken;
        string genuine;
        await using (var db = t.App.Db())
        {
            genuine = (await db.ProviderConnections.SingleAsync(c => c.Id == id, ct)).CredentialsEncrypted!;
        }
        var requests = t.Bank.Requests;

        foreach (var origin in Spellings(t.Bank.Root.Port, other.Root.Port))
        {
            var access = origin.Replace("://", $"://{username}:{password}@", StringComparison.Ordinal) + "/sandbox/simplefin";
            var stored = protector.Protect(new ProviderSecret(JsonSerializer.Serialize(new { AccessUrl = access })));
            await using (var db = t.App.Db())
            {
                await db.ProviderConnections.Where(c => c.Id == id).ExecuteUpdateAsync(s => s
                    .SetProperty(c => c.CredentialsEncrypted, stored).SetProperty(c => c.Status, ConnectionStatus.Active), ct);
            }
            using var response = await t.User.SyncAsync(id);
            var problem = await response.ReadJsonAsync();
            Assert.True(response.StatusCode == HttpStatusCode.BadGateway, $"{origin}: {(int)response.StatusCode} {problem}");
            Assert.Equal("auth_required", problem.GetProperty("reason").GetString());
        }
        Assert.Equal(requests, t.Bank.Requests);
        Assert.Equal(0, other.Requests);
        Assert.Equal(0, (await t.User.GetAsync($"/api/connections/{id}/accounts").ExpectAsync(HttpStatusCode.OK)).GetArrayLength());

        await using (var db = t.App.Db())
        {
            await db.ProviderConnections.Where(c => c.Id == id).ExecuteUpdateAsync(s => s
                .SetProperty(c => c.CredentialsEncrypted, genuine).SetProperty(c => c.Status, ConnectionStatus.Active), ct);
        }
        Assert.Equal((3, 0, 0, 0), SyncConnectionTests.Counts(await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK)));
    }

    [Fact]
    public async Task Claim_AtAnAllowedHostThatResolvesToThisMachine_IsRefusedWhenConnecting()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        // The name passes the check on the URL (HTTPS, a listed host); only the addresses it resolves to stop it.
        await using var t = await ConnectionApp.CreateAsync("sqlite", new Dictionary<string, string?>
        {
            ["SimpleFin:AllowedHosts:0"] = "localhost",
            ["SimpleFin:Timeout"] = "00:00:05",
        });
        var token = Convert.ToBase64String(Encoding.UTF8.GetBytes($"https://localhost:{port}/simplefin/claim/abc"));

        var problem = await t.User.PostJsonAsync("/api/connections", new { providerSlug = "simplefin", setupToken = token })
            .ExpectProblemAsync(HttpStatusCode.BadRequest, "VALIDATION_FAILED");
        Assert.True(problem.GetProperty("errors").TryGetProperty("setupToken", out _), problem.ToString());
        Assert.False(listener.Pending(), "nothing may connect to a loopback port");
    }
}
