using Microsoft.Extensions.Options;
using Tally.Features.BalanceSync;
using Tally.Hosting;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.BalanceSync;

/// <summary>The real T24 client against the sandbox core over HTTP: every typed outcome.</summary>
public class T24ClientTests
{
    private static T24Client Client(string baseUrl, string apiKey, int timeoutMs = 5000)
    {
        var options = Options.Create(new T24Options { BaseUrl = baseUrl, ApiKey = apiKey, TimeoutMs = timeoutMs });
        return new T24Client(new HttpClient(), new T24Endpoint(options, new LocalUpstreams([])), options);
    }

    [Fact]
    public async Task Balance_IsReadFromTheSandboxOverHttp_WithItsCurrencyAndAsOf()
    {
        await using var sandbox = await SandboxHost.StartAsync();
        var client = Client(sandbox.BaseUrl, sandbox.T24.Settings.ApiKey);
        var ct = TestContext.Current.CancellationToken;

        foreach (var account in new[] { "0012345678", "0012345679", "0012345680" })
        {
            var result = await client.GetBalanceAsync(account, ct);
            var (working, locked) = sandbox.T24.BalanceAt(account, DateTime.UtcNow);
            Assert.Null(result.Failure);
            Assert.Equal(new T24Balance(working, working - locked, "USD", DateTime.UtcNow.Date), result.Balance! with { AsOf = result.Balance.AsOf!.Value.Date });
        }
        Assert.Equal("EUR", (await client.GetBalanceAsync("0012-EUR", ct)).Balance!.Currency);
        Assert.Equal(4, sandbox.T24.Stats().Calls);
    }

    [Theory]
    [InlineData("ACC-FAIL-1", typeof(T24Failure.ServerError))]
    [InlineData("ACC-MISSING-1", typeof(T24Failure.NotFound))]
    [InlineData("ACC-ERRBLOCK-1", typeof(T24Failure.UpstreamErrorBlock))]
    [InlineData("ACC-THROTTLE-1", typeof(T24Failure.RateLimited))]
    public async Task SandboxMarkers_AnswerTypedFailures(string account, Type reason)
    {
        await using var sandbox = await SandboxHost.StartAsync();
        var result = await Client(sandbox.BaseUrl, sandbox.T24.Settings.ApiKey).GetBalanceAsync(account, TestContext.Current.CancellationToken);
        Assert.IsType(reason, result.Failure);
        if (result.Failure is T24Failure.RateLimited limited)
        {
            Assert.Equal(TimeSpan.FromSeconds(1), limited.RetryAfter);
        }
    }

    [Fact]
    public async Task WrongKey_IsUnauthorized()
    {
        await using var sandbox = await SandboxHost.StartAsync();
        var result = await Client(sandbox.BaseUrl, "not-the-key").GetBalanceAsync("0012345678", TestContext.Current.CancellationToken);
        Assert.IsType<T24Failure.Unauthorized>(result.Failure);
    }

    [Fact]
    public async Task SlowCore_IsATimeout_AndTheAbandonedCallLeavesTheCore()
    {
        await using var sandbox = await SandboxHost.StartAsync(new Dictionary<string, string?> { ["Sandbox:T24:LatencyMs"] = "3000" });
        var result = await Client(sandbox.BaseUrl, sandbox.T24.Settings.ApiKey, timeoutMs: 200).GetBalanceAsync("0012345678", TestContext.Current.CancellationToken);
        Assert.Equal(new T24Failure.Timeout(TimeSpan.FromMilliseconds(200)), result.Failure);
        await Eventually.TrueAsync(() => Task.FromResult(sandbox.T24.Stats().Concurrent == 0), "the core to notice the abandoned call");
    }

    [Fact]
    public async Task NoCoreListening_IsUnreachable()
    {
        string baseUrl;
        await using (var sandbox = await SandboxHost.StartAsync())
        {
            baseUrl = sandbox.BaseUrl;
        }
        var result = await Client(baseUrl, "k").GetBalanceAsync("0012345678", TestContext.Current.CancellationToken);
        Assert.IsType<T24Failure.Unreachable>(result.Failure);
        Assert.True(result.Failure.IsTransient);
    }
}
