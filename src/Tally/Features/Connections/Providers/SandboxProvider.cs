using System.Text.Json;
using Tally.Sandbox.SimpleFin;

namespace Tally.Features.Connections.Providers;

/// <summary>
/// The <c>sandbox</c> provider, in process: any credentials object connects, and the same
/// credentials always give the same accounts (balances drift once per <c>Sandbox:DriftPeriod</c>).
/// Test hooks inside the credentials: <c>accounts</c> (how many, default 3), <c>consentDays</c>
/// (default 90), and <c>fail</c> = one of the provider failure reasons (with <c>retryAfterSeconds</c>
/// for <c>rate_limited</c>) to make every fetch fail that way.
/// </summary>
public sealed class SandboxProvider(TimeProvider clock, IConfiguration configuration) : IAccountProvider
{
    public const string ProviderSlug = "sandbox";
    public const int MaxAccounts = 20_000;
    private const int MaxCredentialsLength = 4_096;
    private const int MaxConsentDays = 3_650;
    private const int MaxRetryAfterSeconds = 86_400;

    public string Slug => ProviderSlug;

    private TimeSpan DriftPeriod => configuration.GetValue("Sandbox:DriftPeriod", TimeSpan.FromHours(1));

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

    public Task<FetchResult> FetchAccountsAsync(ProviderSecret secret, CancellationToken ct)
    {
        using var document = JsonDocument.Parse(secret.Reveal());
        var settings = Read(document.RootElement);
        if (settings.Fail is { } failure)
        {
            return Task.FromResult<FetchResult>(new FetchResult.Failed(failure));
        }
        var accounts = SandboxAccounts.For(secret.Reveal(), settings.Accounts, clock.GetUtcNow().UtcDateTime, DriftPeriod)
            .Select(a => new ProviderAccountData(a.Id, a.Name, AccountTypes.FromName(a.Kind), a.MaskedNumber, a.Balance, a.AvailableBalance,
                a.Currency, true, a.BalanceDate, """{"institution":"Tally Sandbox Bank"}"""))
            .ToList();
        return Task.FromResult<FetchResult>(new FetchResult.Fetched(accounts, 0));
    }

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
