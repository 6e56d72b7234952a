using System.Text;
using System.Text.Json;
using Tally.Features.Connections;
using Tally.Features.Connections.Providers;

namespace Tally.Tests.Features.Connections;

/// <summary>The SimpleFIN protocol's data, read without I/O.</summary>
public class SimpleFinProtocolTests
{
    private static string NoRedaction(string s) => s;

    private static FetchResult Read(string json) => SimpleFinProtocol.ReadAccountSet(JsonDocument.Parse(json).RootElement, NoRedaction);

    [Theory]
    [InlineData("100.23", "100.23")]
    [InlineData("-1234567.8901", "-1234567.8901")]
    [InlineData("0", "0")]
    [InlineData("  42.5 ", "42.5")]
    [InlineData("123456789012345.12", "123456789012345.12")]
    public void Amount_NumericString_IsReadExactly(string text, string expected) =>
        Assert.Equal(decimal.Parse(expected, System.Globalization.CultureInfo.InvariantCulture), SimpleFinProtocol.ParseAmount(text));

    [Theory]
    [InlineData("1e3")]
    [InlineData("1,000.00")]
    [InlineData("NaN")]
    [InlineData("")]
    [InlineData("12.3.4")]
    [InlineData("$5")]
    public void Amount_NotANumericString_IsRefused(string text) => Assert.Null(SimpleFinProtocol.ParseAmount(text));

    [Fact]
    public void AccountSet_ReadsBalancesDatesAndCountsUnreadableAccounts()
    {
        var result = Assert.IsType<FetchResult.Fetched>(Read("""
            {"errlist": [], "accounts": [
              {"id": "A1", "name": "Everyday Checking", "currency": "USD", "balance": "100.10", "available-balance": "75.00", "balance-date": 978366153, "conn_id": "CON-1"},
              {"id": "A2", "name": "Miles", "currency": "https://example.com/miles", "balance": 250, "balance-date": 978366153},
              {"id": "A3", "name": "Broken", "currency": "USD", "balance": "lots", "balance-date": 978366153},
              {"id": "A4", "name": "No currency", "balance": "1.00"},
              {"name": "No id", "currency": "USD", "balance": "1.00"}
            ]}
            """));
        Assert.Equal(3, result.Errors);
        Assert.Equal(["A1", "A2"], result.Accounts.Select(a => a.ProviderAccountId).ToArray());
        var checking = result.Accounts[0];
        Assert.Equal(100.10m, checking.Balance);
        Assert.Equal(75.00m, checking.AvailableBalance);
        Assert.Equal(new DateTime(2001, 1, 1, 16, 22, 33, DateTimeKind.Utc), checking.BalanceDate);
        Assert.Equal(AccountTypes.Checking, checking.AccountType);
        Assert.Contains("CON-1", checking.Metadata!, StringComparison.Ordinal);
        Assert.Null(result.Accounts[1].AvailableBalance);
        Assert.Equal(250m, result.Accounts[1].Balance);
    }

    [Theory]
    [InlineData("""[{"code":"gen.auth","msg":"No credentials provided"}]""", 2, "auth_required", true)]
    [InlineData("""[{"code":"con.auth","msg":"Re-authenticate My Bank","conn_id":"C"}]""", 0, "auth_required", false)]
    [InlineData("""[{"code":"con.auth","msg":"Re-authenticate My Bank","conn_id":"C"}]""", 2, "partial_data", false)]
    [InlineData("""[{"code":"act.failed","msg":"Try again later","account_id":"A"}]""", 2, "partial_data", false)]
    [InlineData("""[{"code":"act.mystery","msg":"Something","account_id":"A"}]""", 2, "partial_data", false)]
    [InlineData("""[{"code":"gen.api","msg":"Bad parameter"}]""", 2, "contract_mismatch", false)]
    [InlineData("""[{"code":"gen.","msg":"Oops"}]""", 2, "provider_unavailable", false)]
    [InlineData("""[{"code":"zzz.new","msg":"Unknown kind"}]""", 2, "provider_unavailable", false)]
    public void Errlist_MapsToTypedReasons(string errlist, int accounts, string reason, bool credentialsRejected)
    {
        var list = JsonDocument.Parse(errlist).RootElement.EnumerateArray()
            .Select(e => new SimpleFinProtocol.Error(e.GetProperty("code").GetString()!, e.GetProperty("msg").GetString()!)).ToList();
        var failure = SimpleFinProtocol.Classify(list, [], accounts);
        Assert.NotNull(failure);
        Assert.Equal(reason, failure.Reason);
        Assert.Equal(credentialsRejected, failure.CredentialsRejected);
        Assert.StartsWith("SimpleFIN reported: ", failure.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void Errlist_MissingTransactionsOnly_DoesNotStopABalancesOnlySync() =>
        Assert.Null(SimpleFinProtocol.Classify([new SimpleFinProtocol.Error("act.missingdata", "Incomplete transactions")], [], 2));

    [Fact]
    public void LegacyErrors_WithAccounts_ArePartialData()
    {
        var failure = Assert.IsType<FetchResult.Failed>(Read("""{"errors": ["You must reauthenticate."], "accounts": [{"id":"A","currency":"USD","balance":"1"}]}""")).Failure;
        Assert.Equal("partial_data", failure.Reason);
        Assert.Contains("You must reauthenticate.", failure.Detail, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{"accounts": "nope"}""")]
    [InlineData("""[1, 2]""")]
    [InlineData("""{"errlist": 5, "accounts": []}""")]
    [InlineData("""{"errors": []}""")]
    public void NotAnAccountSet_IsAContractMismatch(string json) =>
        Assert.Equal("contract_mismatch", Assert.IsType<FetchResult.Failed>(Read(json)).Failure.Reason);

    [Fact]
    public void ProviderMessages_AreRedactedAndSanitized()
    {
        var result = SimpleFinProtocol.ReadAccountSet(JsonDocument.Parse("""{"errlist":[{"code":"act.failed","msg":"bad\u0007 login s3cret-pass for you"}],"accounts":[{"id":"A","currency":"USD","balance":"1"}]}""").RootElement,
            s => s.Replace("s3cret-pass", "***", StringComparison.Ordinal));
        var detail = Assert.IsType<FetchResult.Failed>(result).Failure.Detail;
        Assert.DoesNotContain("s3cret-pass", detail, StringComparison.Ordinal);
        Assert.DoesNotContain("\u0007", detail, StringComparison.Ordinal);
    }

    [Fact]
    public void SetupToken_IsTheBase64OfAClaimUrl()
    {
        var url = "https://bridge.simplefin.org/simplefin/claim/abc123";
        var token = Convert.ToBase64String(Encoding.UTF8.GetBytes(url));
        Assert.Equal(new Uri(url), SimpleFinProtocol.DecodeSetupToken(token));
        Assert.Equal(new Uri(url), SimpleFinProtocol.DecodeSetupToken(token.TrimEnd('=').Replace('+', '-').Replace('/', '_')));
        Assert.Null(SimpleFinProtocol.DecodeSetupToken("bm90IGEgdXJs")); // "not a url"
        Assert.Null(SimpleFinProtocol.DecodeSetupToken(Convert.ToBase64String(Encoding.UTF8.GetBytes("ftp://x/claim"))));
    }

    [Fact]
    public void AccessUrl_SeparatesCredentialsFromWhereToGo()
    {
        var access = SimpleFinProtocol.ParseAccessUrl("https://user%40x:p%3Ass@bridge.simplefin.org/simplefin")!;
        Assert.Equal("user@x", access.Username);
        Assert.Equal("p:ss", access.Password);
        Assert.Equal("https://bridge.simplefin.org/simplefin/accounts?balances-only=1", access.Accounts.ToString());
        Assert.DoesNotContain("p:ss", access.ToString(), StringComparison.Ordinal);
        Assert.Null(SimpleFinProtocol.ParseAccessUrl("https://bridge.simplefin.org/simplefin"));
    }
}
