using System.Text.Json;

namespace Tally.Features.Connections.Providers;

/// <summary>
/// An aggregator Tally reads accounts from: the real seam of this feature. Expected failures come
/// back as values (<see cref="ProviderFailure"/>); an implementation turns its transport errors into
/// those values itself and never puts a credential into a message.
/// </summary>
public interface IAccountProvider
{
    /// <summary>The slug a connection names its provider by: <c>simplefin</c>, <c>sandbox</c>.</summary>
    string Slug { get; }

    /// <summary>Turns what the user gave us (a setup token, credentials) into the secret Tally keeps.</summary>
    Task<ConnectResult> ConnectAsync(ConnectInput input, CancellationToken ct);

    /// <summary>Reads every account the secret gives access to, with balances.</summary>
    Task<FetchResult> FetchAccountsAsync(ProviderSecret secret, CancellationToken ct);
}

/// <summary>What a user sends to connect: SimpleFIN takes a setup token, other providers a credentials object.</summary>
public sealed record ConnectInput(string? SetupToken, JsonElement? Credentials);

/// <summary>
/// The plain secret of a connection (a SimpleFIN access URL, sandbox credentials), as JSON. It exists
/// only in memory between decryption and the provider call; <see cref="ToString"/> never shows it.
/// </summary>
public sealed class ProviderSecret(string json)
{
    public string Reveal() => json;

    public override string ToString() => "[secret]";
}

public abstract record ConnectResult
{
    public sealed record Connected(ProviderSecret Secret, DateTime? ConsentExpiresAt) : ConnectResult;

    /// <summary>The input itself is wrong (malformed, already claimed): a 4xx naming the field.</summary>
    public sealed record Rejected(string Field, string Message) : ConnectResult;

    public sealed record Failed(ProviderFailure Failure) : ConnectResult;
}

public abstract record FetchResult
{
    /// <param name="Accounts">Accounts that parsed.</param>
    /// <param name="Errors">Accounts the provider sent that could not be read (counted, not applied).</param>
    public sealed record Fetched(IReadOnlyList<ProviderAccountData> Accounts, int Errors) : FetchResult;

    public sealed record Failed(ProviderFailure Failure) : FetchResult;
}

/// <summary>One account as a provider reports it. Money is decimal with its currency, never double.</summary>
public sealed record ProviderAccountData(
    string ProviderAccountId,
    string Name,
    string AccountType,
    string? MaskedNumber,
    decimal Balance,
    decimal? AvailableBalance,
    string Currency,
    bool IsActive,
    DateTime? BalanceDate,
    string? Metadata);

/// <summary>Why a provider call did not give us the accounts. <see cref="Detail"/> is safe to show a user.</summary>
/// <param name="CredentialsRejected">The provider refused our secret itself: the user must reconnect.</param>
public sealed record ProviderFailure(string Reason, string Detail, TimeSpan? RetryAfter = null, bool CredentialsRejected = false)
{
    public static ProviderFailure AuthRequired(string detail, bool credentialsRejected) =>
        new(ProviderFailureReasons.AuthRequired, detail, CredentialsRejected: credentialsRejected);

    public static ProviderFailure PaymentRequired(string detail) => new(ProviderFailureReasons.PaymentRequired, detail);

    public static ProviderFailure RateLimited(string detail, TimeSpan retryAfter) => new(ProviderFailureReasons.RateLimited, detail, retryAfter);

    public static ProviderFailure Unavailable(string detail) => new(ProviderFailureReasons.ProviderUnavailable, detail);

    public static ProviderFailure PartialData(string detail) => new(ProviderFailureReasons.PartialData, detail);

    public static ProviderFailure ContractMismatch(string detail) => new(ProviderFailureReasons.ContractMismatch, detail);
}

/// <summary>The typed reasons a provider failure carries into <c>AccountSyncFailed</c> and the 502 answer.</summary>
public static class ProviderFailureReasons
{
    public const string AuthRequired = "auth_required";
    public const string PaymentRequired = "payment_required";
    public const string RateLimited = "rate_limited";
    public const string ProviderUnavailable = "provider_unavailable";
    public const string PartialData = "partial_data";
    public const string ContractMismatch = "contract_mismatch";

    public static readonly IReadOnlySet<string> All = new HashSet<string>(StringComparer.Ordinal)
    {
        AuthRequired, PaymentRequired, RateLimited, ProviderUnavailable, PartialData, ContractMismatch,
    };
}

/// <summary>The providers this instance knows, by slug.</summary>
public sealed class AccountProviders(IEnumerable<IAccountProvider> providers)
{
    private readonly Dictionary<string, IAccountProvider> _bySlug = providers.ToDictionary(p => p.Slug, StringComparer.Ordinal);

    public IAccountProvider? Find(string slug) => _bySlug.GetValueOrDefault(slug);

    public IReadOnlyCollection<string> Slugs => _bySlug.Keys;
}

/// <summary>Account types Tally normalises provider types to.</summary>
public static class AccountTypes
{
    public const string Checking = "checking";
    public const string Savings = "savings";
    public const string CreditCard = "credit_card";
    public const string Loan = "loan";
    public const string Investment = "investment";
    public const string Other = "other";

    private static readonly HashSet<string> All = new(StringComparer.Ordinal) { Checking, Savings, CreditCard, Loan, Investment, Other };

    /// <summary>A provider's type as Tally keeps it: one of these, as spelled here, or <see cref="Other"/> (as the seed maps an unknown type).</summary>
    public static string Known(string type) => All.Contains(type) ? type : Other;

    /// <summary>SimpleFIN has no account type; the name is the best hint a user's bank gives.</summary>
    public static string FromName(string name)
    {
        var n = name.ToLowerInvariant();
        return n switch
        {
            _ when n.Contains("checking") || n.Contains("current") => Checking,
            _ when n.Contains("saving") => Savings,
            _ when n.Contains("credit") || n.Contains("card") => CreditCard,
            _ when n.Contains("loan") || n.Contains("mortgage") => Loan,
            _ when n.Contains("brokerage") || n.Contains("invest") || n.Contains("ira") || n.Contains("401k") || n.Contains("retirement") => Investment,
            _ => Other,
        };
    }
}
