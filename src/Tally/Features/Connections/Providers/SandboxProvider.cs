using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.Options;
using Tally.Hosting;

namespace Tally.Features.Connections.Providers;

/// <summary>
/// The <c>sandbox</c> provider: any credentials object connects, and the same credentials always
/// give the same accounts, fetched over HTTP from the sandbox bank (balances drift once per its
/// <c>Sandbox:DriftPeriod</c>): at <c>SimpleFin:SandboxUrl</c>, else where this instance serves it.
/// Test hooks inside the credentials: <c>accounts</c> (how many, default 3), <c>consentDays</c>
/// (default 90), and <c>fail</c> = one of the provider failure reasons (with <c>retryAfterSeconds</c>
/// for <c>rate_limited</c>) to make every fetch fail that way.
/// </summary>
public sealed class SandboxProvider(TimeProvider clock, IHttpClientFactory http, IOptions<SimpleFinOptions> simpleFin, LocalUpstreams upstreams)
    : IAccountProvider
{
    public const string ProviderSlug = "sandbox";
    public const string HttpClientName = "sandbox";
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    /// <summary>Where the sandbox bank answers under an origin (as Tally serves it).</summary>
    private const string SandboxPath = "/sandbox/simplefin";
    public const int MaxAccounts = 20_000;
    private const int MaxCredentialsLength = 4_096;
    private const int MaxConsentDays = 3_650;
    private const int MaxRetryAfterSeconds = 86_400;

    public string Slug => ProviderSlug;

    private Uri? SandboxRoot =>
        simpleFin.Value.SandboxUrl is { } origin ? new Uri(origin.TrimEnd('/') + SandboxPath) : upstreams.AddressOf(LocalUpstreams.SimpleFin)?.BaseUrl;

    public Task<ConnectResult> ConnectAsync(ConnectInput input, CancellationToken ct)
    {
        if (input.Credentials is not { ValueKind: JsonValueKind.Object } credentials)
        {
            return Task.FromResult<ConnectResult>(new ConnectResult.Rejected("credentials", "must be a JSON object"));
        }
        var json = credentials.GetRawText();
        if (json.Length > MaxCredentialsLength)
        {
            return Task.FromResult<ConnectResult>(new ConnectResult.Rejected("credentials", $"must be at most {MaxCredentialsLength} characters of JSON"));
        }
        if (Read(credentials) is { Error: { } error })
        {
            return Task.FromResult<ConnectResult>(new ConnectResult.Rejected("credentials", error));
        }
        if (WholeNumber(credentials, "consentDays", 90, 1, MaxConsentDays) is not { } consentDays)
        {
            return Task.FromResult<ConnectResult>(new ConnectResult.Rejected("credentials", $"consentDays must be a whole number between 1 and {MaxConsentDays}"));
        }
        var consent = clock.GetUtcNow().UtcDateTime.AddDays(consentDays);
        return Task.FromResult<ConnectResult>(new ConnectResult.Connected(new ProviderSecret(json), consent));
    }

    public async Task<FetchResult> FetchAccountsAsync(ProviderSecret secret, CancellationToken ct)
    {
        var seed = secret.Reveal();
        using var document = JsonDocument.Parse(seed);
        var settings = Read(document.RootElement);
        if (settings.Fail is { } failure)
        {
            return new FetchResult.Failed(failure);
        }
        if (SandboxRoot is not { } root)
        {
            return new FetchResult.Failed(ProviderFailure.Unavailable("The sandbox bank is not reachable: this instance serves none and SimpleFin:SandboxUrl is not set."));
        }
        Generated? generated;
        try
        {
            using var response = await http.CreateClient(HttpClientName)
                .PostAsJsonAsync(new Uri(root + "/generated-accounts"), new { seed, accounts = settings.Accounts }, ct);
            if (!response.IsSuccessStatusCode)
            {
                return new FetchResult.Failed(ProviderFailure.Unavailable($"The sandbox bank answered {(int)response.StatusCode}."));
            }
            generated = await response.Content.ReadFromJsonAsync<Generated>(ct);
        }
        catch (Exception e) when (e is HttpRequestException or JsonException || (e is TaskCanceledException && !ct.IsCancellationRequested))
        {
            return new FetchResult.Failed(ProviderFailure.Unavailable("The sandbox bank did not answer."));
        }
        if (generated?.Accounts is not { } list)
        {
            return new FetchResult.Failed(ProviderFailure.ContractMismatch("The sandbox bank answered in a shape Tally does not know."));
        }
        var accounts = list
            .Select(a => new ProviderAccountData(a.Id, a.Name, AccountTypes.FromName(a.Kind), a.MaskedNumber, a.Balance, a.AvailableBalance,
                a.Currency, true, a.BalanceDate, """{"institution":"Tally Sandbox Bank"}"""))
            .ToList();
        return new FetchResult.Fetched(accounts, 0);
    }

    /// <summary>The sandbox bank's answer: its accounts for the seed.</summary>
    private sealed record Generated(List<GeneratedAccount>? Accounts);

    private sealed record GeneratedAccount(
        string Id, string Name, string Kind, string MaskedNumber, decimal Balance, decimal? AvailableBalance, string Currency, DateTime BalanceDate);

    private sealed record Settings(int Accounts, ProviderFailure? Fail, string? Error);

    private static Settings Read(JsonElement credentials)
    {
        if (WholeNumber(credentials, "accounts", 3, 0, MaxAccounts) is not { } accounts)
        {
            return new Settings(0, null, $"accounts must be a whole number between 0 and {MaxAccounts}");
        }
        if (!credentials.TryGetProperty("fail", out var f))
        {
            return new Settings(accounts, null, null);
        }
        if (WholeNumber(credentials, "retryAfterSeconds", 60, 1, MaxRetryAfterSeconds) is not { } retryAfter)
        {
            return new Settings(0, null, $"retryAfterSeconds must be a whole number between 1 and {MaxRetryAfterSeconds}");
        }
        ProviderFailure? failure = f.ValueKind == JsonValueKind.String ? f.GetString() switch
        {
            ProviderFailureReasons.AuthRequired => ProviderFailure.AuthRequired("The sandbox bank refused the credentials.", credentialsRejected: true),
            ProviderFailureReasons.PaymentRequired => ProviderFailure.PaymentRequired("The sandbox bank wants payment."),
            ProviderFailureReasons.RateLimited => ProviderFailure.RateLimited("The sandbox bank asked Tally to slow down.", TimeSpan.FromSeconds(retryAfter)),
            ProviderFailureReasons.ProviderUnavailable => ProviderFailure.Unavailable("The sandbox bank is down."),
            ProviderFailureReasons.PartialData => ProviderFailure.PartialData("The sandbox bank answered for some accounts only."),
            ProviderFailureReasons.ContractMismatch => ProviderFailure.ContractMismatch("The sandbox bank answered in a shape Tally does not know."),
            _ => null,
        } : null;
        return failure is null
            ? new Settings(0, null, $"fail must be one of {string.Join(", ", ProviderFailureReasons.All)}")
            : new Settings(accounts, failure, null);
    }

    /// <summary>The property as a whole number within bounds, the fallback when absent, null when it is anything else.</summary>
    private static int? WholeNumber(JsonElement credentials, string name, int fallback, int min, int max) =>
        !credentials.TryGetProperty(name, out var value) ? fallback
        : value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var n) && n >= min && n <= max ? n
        : null;
}
