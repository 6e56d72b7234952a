using Tally.Features.BalanceSync;

namespace Tally.Tests.Features.BalanceSync;

/// <summary>Every shape of the core's answer, read without a server.</summary>
public class T24ContractTests
{
    private const string Account = "0012345678";

    private static string Envelope(string item) =>
        $$"""{"header":{"audit":{"T24_time":12,"responseParse_time":1,"requestParse_time":1},"page_start":1,"total_size":1,"page_size":99,"status":"success"},"body":[{{item}}]}""";

    [Theory]
    [InlineData("\"1234.56\"", "\"1200.00\"")]
    [InlineData("1234.56", "1200.00")]
    [InlineData("\"1234.56\"", "1200")]
    public void Balance_AmountsAsStringsOrNumbers(string working, string available)
    {
        var result = T24Contract.Read(200, Envelope($$"""{"accountId":"{{Account}}","workingBalance":{{working}},"availableBalance":{{available}},"currencyId":"USD","processingDate":"20250131"}"""), Account, null);
        Assert.Null(result.Failure);
        Assert.Equal(new T24Balance(1234.56m, 1200m, "USD", new DateTime(2025, 1, 31, 0, 0, 0, DateTimeKind.Utc)), result.Balance);
    }

    [Theory]
    [InlineData("\"processingDate\":\"20250131\"", "2025-01-31T00:00:00Z")]
    [InlineData("\"processingDate\":\"2025-01-31\"", "2025-01-31T00:00:00Z")]
    [InlineData("\"processingTime\":\"2025-01-31T10:15:00+02:00\"", "2025-01-31T08:15:00Z")]
    [InlineData("\"valueDate\":\"20250131\"", "2025-01-31T00:00:00Z")]
    public void AsOf_EitherT24DateFormat(string date, string expected)
    {
        var result = T24Contract.Read(200, Envelope($$"""{"accountId":"{{Account}}","workingBalance":"1","currencyId":"EUR",{{date}}}"""), Account, null);
        Assert.Equal(DateTime.Parse(expected, null, System.Globalization.DateTimeStyles.AdjustToUniversal), result.Balance!.AsOf);
        Assert.Equal(DateTimeKind.Utc, result.Balance.AsOf!.Value.Kind);
    }

    [Fact]
    public void Balance_FallsBackToOnlineActualBalance_AndAvailableToTheBalance_AndPicksTheAccountAskedAbout()
    {
        var body = Envelope("""{"accountId":"other","workingBalance":"9","currencyId":"USD"},{"accountId":"0012345678","onlineActualBalance":"-15.5","currencyId":"USD"}""");
        var result = T24Contract.Read(200, body, Account, null);
        Assert.Equal(new T24Balance(-15.5m, -15.5m, "USD", null), result.Balance);
    }

    [Fact]
    public void ErrorBlockInA200_IsAnUpstreamError_NotABalance()
    {
        const string Body = """{"header":{"status":"failed"},"error":{"type":"BUSINESS","errorDetails":[{"code":"E-113104","message":"ACCOUNT RECORD MISSING"}]}}""";
        var failure = Assert.IsType<T24Failure.UpstreamErrorBlock>(T24Contract.Read(200, Body, Account, null).Failure);
        Assert.Equal(("BUSINESS", "E-113104", "ACCOUNT RECORD MISSING"), (failure.ErrorType, failure.ErrorCode, failure.Message));
        Assert.False(failure.IsTransient);
        var technical = T24Contract.Read(200, """{"header":{"status":"failed"},"error":{"type":"TECHNICAL","errorDetails":[{"code":"T1","message":"busy"}]}}""", Account, null);
        Assert.True(technical.Failure!.IsTransient);
        Assert.IsType<T24Failure.UpstreamErrorBlock>(T24Contract.Read(200, """{"header":{"status":"failed"},"body":[]}""", Account, null).Failure);
    }

    [Theory]
    [InlineData(429, typeof(T24Failure.RateLimited), true)]
    [InlineData(401, typeof(T24Failure.Unauthorized), false)]
    [InlineData(403, typeof(T24Failure.Unauthorized), false)]
    [InlineData(404, typeof(T24Failure.NotFound), false)]
    [InlineData(500, typeof(T24Failure.ServerError), true)]
    [InlineData(503, typeof(T24Failure.ServerError), true)]
    [InlineData(408, typeof(T24Failure.ServerError), true)]
    [InlineData(400, typeof(T24Failure.ContractMismatch), false)]
    [InlineData(302, typeof(T24Failure.ContractMismatch), false)]
    public void Status_MapsToATypedReason(int status, Type reason, bool transient)
    {
        var failure = T24Contract.Read(status, "{}", Account, TimeSpan.FromSeconds(7)).Failure!;
        Assert.IsType(reason, failure);
        Assert.Equal(transient, failure.IsTransient);
        if (failure is T24Failure.RateLimited limited)
        {
            Assert.Equal(TimeSpan.FromSeconds(7), limited.RetryAfter);
        }
    }

    [Theory]
    [InlineData("")]
    [InlineData("not json")]
    [InlineData("[]")]
    [InlineData("""{"header":{},"body":{}}""")]
    [InlineData("""{"header":{},"body":[]}""")]
    [InlineData("""{"body":[{"accountId":"0012345678","currencyId":"USD"}]}""")]
    [InlineData("""{"body":[{"accountId":"0012345678","workingBalance":"1,234.00","currencyId":"USD"}]}""")]
    [InlineData("""{"body":[{"accountId":"0012345678","workingBalance":"1.23456","currencyId":"USD"}]}""")]
    [InlineData("""{"body":[{"accountId":"0012345678","workingBalance":1e30,"currencyId":"USD"}]}""")]
    [InlineData("""{"body":[{"accountId":"0012345678","workingBalance":"1","currencyId":"usd"}]}""")]
    [InlineData("""{"body":[{"accountId":"0012345678","workingBalance":"1","currencyId":"USD","processingDate":"31/01/2025"}]}""")]
    [InlineData("""{"body":[{"accountId":"a","workingBalance":"1","currencyId":"USD"},{"accountId":"b","workingBalance":"1","currencyId":"USD"}]}""")]
    public void UnexpectedShapes_AreAContractMismatch(string body) =>
        Assert.IsType<T24Failure.ContractMismatch>(T24Contract.Read(200, body, Account, null).Failure);

    [Fact]
    public void Describe_NeverCarriesThePayload()
    {
        var body = """{"error":{"type":"BUSINESS","errorDetails":[{"code":"X","message":"MESSAGE"}]}}""".Replace("MESSAGE", new string('m', 1000), StringComparison.Ordinal);
        var failure = T24Contract.Read(200, body, Account, null).Failure!;
        Assert.True(failure.Describe().Length < 300);
    }
}
