using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.Connections;

/// <summary>The simplefin provider against Tally's SimpleFIN sandbox on a real socket: claim, sync, and what can go wrong.</summary>
public class SimpleFinTests
{
    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task SimpleFin_ClaimThenSync_MirrorsTheNumericStringsExactly_AndASecondSyncReportsUnchanged(string storage)
    {
        await using var t = await ConnectionApp.CreateAsync(storage, bank: true);
        var bank = t.Bank;
        var (token, username) = await bank.SetupTokenAsync(accounts: 4);

        var connection = await t.User.PostJsonAsync("/api/connections", new { providerSlug = "simplefin", setupToken = token, name = "My bridge" })
            .ExpectAsync(HttpStatusCode.Created);
        var id = connection.GetProperty("id").GetGuid();
        Assert.Equal("simplefin", connection.GetProperty("providerSlug").GetString());

        var first = await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal((4, 0, 0, 0), SyncConnectionTests.Counts(first));

        // What the bank says, read straight from its wire format, against what Tally mirrored.
        var wire = await BankAccountsAsync(bank, token, username);
        var mirrored = (await t.User.GetAsync($"/api/connections/{id}/accounts").ExpectAsync(HttpStatusCode.OK)).EnumerateArray()
            .ToDictionary(a => a.GetProperty("providerAccountId").GetString()!);
        Assert.Equal(4, mirrored.Count);
        foreach (var account in wire.GetProperty("accounts").EnumerateArray())
        {
            var mine = mirrored[account.GetProperty("id").GetString()!];
            Assert.Equal(decimal.Parse(account.GetProperty("balance").GetString()!, CultureInfo.InvariantCulture), mine.GetProperty("balance").GetDecimal());
            if (account.TryGetProperty("available-balance", out var available))
            {
                Assert.Equal(decimal.Parse(available.GetString()!, CultureInfo.InvariantCulture), mine.GetProperty("availableBalance").GetDecimal());
            }
            else
            {
                Assert.Equal(JsonValueKind.Null, mine.GetProperty("availableBalance").ValueKind);
            }
            Assert.Equal(account.GetProperty("currency").GetString(), mine.GetProperty("currency").GetString());
            Assert.Equal(DateTimeOffset.FromUnixTimeSeconds(account.GetProperty("balance-date").GetInt64()).UtcDateTime,
                mine.GetProperty("balanceDate").GetDateTime().ToUniversalTime());
            Assert.Equal(account.GetProperty("name").GetString(), mine.GetProperty("name").GetString());
            Assert.Equal(account.GetProperty("conn_id").GetString(), mine.GetProperty("metadata").GetProperty("conn_id").GetString());
            Assert.Equal("Tally Sandbox Bank", mine.GetProperty("metadata").GetProperty("connection").GetProperty("name").GetString());
        }

        var second = await t.User.SyncAsync(id, force: true).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal((0, 0, 4, 0), SyncConnectionTests.Counts(second));
        // Each funded account's balance moved from 0 when it was found; nothing moved since.
        var funded = mirrored.Values.Count(a => a.GetProperty("balance").GetDecimal() != 0);
        Assert.Equal(["AccountSyncAttempted", .. Enumerable.Repeat("AccountBalanceUpdated", funded), "AccountSyncSucceeded", "AccountSyncAttempted", "AccountSyncSucceeded"],
            await t.Admin.EventTypesAsync(id));
    }

    [Fact]
    public async Task SimpleFin_SetupTokenClaimedTwice_IsRefusedAsPossiblyCompromised()
    {
        await using var t = await ConnectionApp.CreateAsync("sqlite", bank: true);
        var bank = t.Bank;
        var (token, _) = await bank.SetupTokenAsync();
        await t.User.PostJsonAsync("/api/connections", new { providerSlug = "simplefin", setupToken = token }).ExpectAsync(HttpStatusCode.Created);

        var problem = await t.User.PostJsonAsync("/api/connections", new { providerSlug = "simplefin", setupToken = token })
            .ExpectProblemAsync(HttpStatusCode.BadRequest, "VALIDATION_FAILED");
        Assert.Contains("compromised", problem.GetProperty("errors").GetProperty("setupToken")[0].GetString()!, StringComparison.Ordinal);
        Assert.Equal(1, (await t.User.GetAsync("/api/connections").ExpectAsync(HttpStatusCode.OK)).GetArrayLength());
    }

    [Theory]
    [InlineData("not base64 at all!")]
    [InlineData("aHR0cHM6Ly9ldmlsLmV4YW1wbGUvY2xhaW0vMQ==")] // https://evil.example/claim/1: not an allowed host
    [InlineData("")]
    public async Task SimpleFin_BadOrUntrustedSetupToken_Answers400AndCallsNobody(string token)
    {
        await using var t = await ConnectionApp.CreateAsync("sqlite");
        var problem = await t.User.PostJsonAsync("/api/connections", new { providerSlug = "simplefin", setupToken = token })
            .ExpectProblemAsync(HttpStatusCode.BadRequest, "VALIDATION_FAILED");
        Assert.True(problem.GetProperty("errors").TryGetProperty("setupToken", out _));
    }

    public static TheoryData<string, string, bool> FailingBanks => new()
    {
        { "payment-required", "payment_required", false },
        { "revoked", "auth_required", true },
        { "errlist-auth", "auth_required", false },
        { "errlist-partial", "partial_data", false },
        { "rate-limited", "rate_limited", false },
        { "unavailable", "provider_unavailable", false },
        { "malformed", "contract_mismatch", false },
    };

    [Theory]
    [MemberData(nameof(FailingBanks))]
    public async Task SimpleFin_BankTurnsBad_Answers502WithTheTypedReason_AndKeepsTheLastGoodNumbers(string scenario, string reason, bool credentialsRefused)
    {
        await using var t = await ConnectionApp.CreateAsync("sqlite", bank: true);
        var bank = t.Bank;
        var (token, username) = await bank.SetupTokenAsync();
        var id = (await t.User.PostJsonAsync("/api/connections", new { providerSlug = "simplefin", setupToken = token })
            .ExpectAsync(HttpStatusCode.Created)).GetProperty("id").GetGuid();
        await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK);
        var before = await t.User.GetStringAsync($"/api/connections/{id}/accounts", TestContext.Current.CancellationToken);

        await bank.SetScenarioAsync(username, scenario);
        t.Clock.Advance(TimeSpan.FromMinutes(25));
        using var response = await t.User.SyncAsync(id);
        var problem = await response.ReadJsonAsync();
        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal("PROVIDER_ERROR", problem.GetProperty("code").GetString());
        Assert.Equal(reason, problem.GetProperty("reason").GetString());
        if (scenario == "rate-limited")
        {
            Assert.Equal(TimeSpan.FromSeconds(120), response.Headers.RetryAfter?.Delta);
        }
        if (scenario.StartsWith("errlist", StringComparison.Ordinal))
        {
            Assert.Contains("SimpleFIN reported:", problem.GetProperty("detail").GetString()!, StringComparison.Ordinal);
        }

        var events = (await t.Admin.EventsAsync(id)).Where(e => e.Type != "AccountBalanceUpdated").ToList(); // the first sync's new balances
        Assert.Equal(["AccountSyncAttempted", "AccountSyncSucceeded", "AccountSyncAttempted", "AccountSyncFailed"], events.Select(e => e.Type).ToList());
        Assert.Equal(reason, events[3].Payload.GetProperty("reason").GetString());
        Assert.Equal(before, await t.User.GetStringAsync($"/api/connections/{id}/accounts", TestContext.Current.CancellationToken));
        var status = (await t.User.GetAsync($"/api/connections/{id}").ExpectAsync(HttpStatusCode.OK)).GetProperty("status").GetString();
        Assert.Equal(credentialsRefused ? "REAUTH_REQUIRED" : "ACTIVE", status);
    }

    [Fact]
    public async Task SimpleFin_AccessRevoked_ThenANewSetupToken_SyncsAgain()
    {
        await using var t = await ConnectionApp.CreateAsync("sqlite", bank: true);
        var bank = t.Bank;
        var (token, _) = await bank.SetupTokenAsync(scenario: "revoked");
        var id = (await t.User.PostJsonAsync("/api/connections", new { providerSlug = "simplefin", setupToken = token })
            .ExpectAsync(HttpStatusCode.Created)).GetProperty("id").GetGuid();
        await t.User.SyncAsync(id).ExpectProblemAsync(HttpStatusCode.BadGateway, "PROVIDER_ERROR");
        await t.User.SyncAsync(id).ExpectProblemAsync(HttpStatusCode.Conflict, "CONNECTION_NOT_ACTIVE");

        var (fresh, _) = await bank.SetupTokenAsync();
        await t.User.PutAsJsonAsync($"/api/connections/{id}/credentials", new { setupToken = fresh }, Json.Web).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal((3, 0, 0, 0), SyncConnectionTests.Counts(await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK)));
    }

    [Fact]
    public async Task SimpleFin_Protocol10Server_WithOrgAndErrorsStrings_Syncs()
    {
        await using var t = await ConnectionApp.CreateAsync("sqlite", bank: true);
        var bank = t.Bank;
        var (token, _) = await bank.SetupTokenAsync(scenario: "legacy", accounts: 2);
        var id = (await t.User.PostJsonAsync("/api/connections", new { providerSlug = "simplefin", setupToken = token })
            .ExpectAsync(HttpStatusCode.Created)).GetProperty("id").GetGuid();
        Assert.Equal((2, 0, 0, 0), SyncConnectionTests.Counts(await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK)));
        var account = (await t.User.GetAsync($"/api/connections/{id}/accounts").ExpectAsync(HttpStatusCode.OK))[0];
        Assert.Equal("Tally Sandbox Bank", account.GetProperty("metadata").GetProperty("org").GetProperty("name").GetString());
    }

    /// <summary>The bank's own answer for a sandbox user, read over HTTP as any SimpleFIN client would.</summary>
    private static async Task<JsonElement> BankAccountsAsync(SimpleFinSandboxHost bank, string usedToken, string username)
    {
        Assert.StartsWith(bank.Root.ToString().TrimEnd('/'), Encoding.UTF8.GetString(Convert.FromBase64String(usedToken)), StringComparison.Ordinal);
        // The sandbox derives a user's password from its username and its (default) secret.
        var password = new Tally.Sandbox.SimpleFin.SimpleFinSandbox.SandboxBank(
            Microsoft.Extensions.Options.Options.Create(new Tally.Sandbox.SandboxOptions())).Password(username);
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(bank.Root, "/sandbox/simplefin/accounts?balances-only=1"));
        request.Headers.Authorization = new("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{username}:{password}")));
        using var response = await bank.Client.SendAsync(request, TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return await response.Content.ReadFromJsonAsync<JsonElement>(TestContext.Current.CancellationToken);
    }
}
