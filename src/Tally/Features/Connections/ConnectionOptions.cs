using System.ComponentModel.DataAnnotations;

namespace Tally.Features.Connections;

/// <summary>The <c>Connections</c> section: sync pacing and each provider's quota.</summary>
public sealed class ConnectionsOptions
{
    public const string Section = "Connections";

    /// <summary>A sync asked for sooner than this after the last successful one is refused (429) unless forced.</summary>
    public TimeSpan MinSyncInterval { get; set; } = TimeSpan.FromMinutes(15);

    /// <summary>How long a sync holds its connection; a crashed sync frees it when this runs out.</summary>
    public TimeSpan SyncLease { get; set; } = TimeSpan.FromMinutes(2);

    /// <summary>Connections the scheduled job syncs at once.</summary>
    [Range(1, 64, ErrorMessage = "Connections:SyncConcurrency must be between 1 and 64.")]
    public int SyncConcurrency { get; set; } = 4;

    /// <summary>Connections the scheduled job reads per page of its keyset scan.</summary>
    [Range(1, 100_000, ErrorMessage = "Connections:PageSize must be between 1 and 100000.")]
    public int PageSize { get; set; } = 500;

    /// <summary>Live (not deleted) connections one user may have; one more is refused with 409 <c>CONNECTION_LIMIT_REACHED</c>.</summary>
    [Range(1, 10_000, ErrorMessage = "Connections:MaxConnectionsPerUser must be between 1 and 10000.")]
    public int MaxConnectionsPerUser { get; set; } = 25;

    /// <summary>
    /// Accounts one connection may hold. A provider answer that would take a connection past it is
    /// refused whole (409 <c>ACCOUNT_LIMIT_EXCEEDED</c>, a failed run), never stored in part.
    /// </summary>
    [Range(1, 100_000, ErrorMessage = "Connections:MaxAccountsPerConnection must be between 1 and 100000.")]
    public int MaxAccountsPerConnection { get; set; } = 1_000;

    /// <summary>
    /// Forced syncs (<c>{force: true}</c>) of one connection in any 24 hours that may skip
    /// <see cref="MinSyncInterval"/>; past it, 429 <c>FORCED_SYNC_LIMIT_REACHED</c>. 0: force never skips it.
    /// </summary>
    [Range(0, 1_000, ErrorMessage = "Connections:MaxForcedSyncsPerDay must be between 0 and 1000.")]
    public int MaxForcedSyncsPerDay { get; set; } = 10;

    /// <summary>
    /// Accounts a sync writes per transaction. A large sync commits in chunks of this many (each with
    /// its events), so another writer waits for one chunk at most, never for the whole sync.
    /// </summary>
    [Range(1, 5_000, ErrorMessage = "Connections:AccountsPerTransaction must be between 1 and 5000.")]
    public int AccountsPerTransaction { get; set; } = 250;

    /// <summary>Per provider slug: <c>Connections:Providers:simplefin:DailyQuota</c>, <c>:SchedulePeriod</c>.</summary>
    public Dictionary<string, ProviderPolicyOptions> Providers { get; set; } = new(StringComparer.Ordinal);

    public ProviderPolicy PolicyFor(string slug)
    {
        var defaults = slug switch
        {
            // SimpleFIN Bridge expects 24 requests a day or fewer per access URL. The schedule uses at
            // most half of that (every 2 hours), leaving the rest for syncs users ask for.
            "simplefin" => new ProviderPolicy(24, TimeSpan.FromHours(2)),
            "sandbox" => new ProviderPolicy(1_000, TimeSpan.FromHours(1)),
            _ => new ProviderPolicy(24, TimeSpan.FromHours(2)),
        };
        var configured = Providers.GetValueOrDefault(slug);
        return new ProviderPolicy(configured?.DailyQuota ?? defaults.DailyQuota, configured?.SchedulePeriod ?? defaults.SchedulePeriod);
    }

    internal string? Invalid()
    {
        if (MinSyncInterval < TimeSpan.Zero)
        {
            return "Connections:MinSyncInterval must not be negative.";
        }
        if (SyncLease < TimeSpan.FromSeconds(5))
        {
            return "Connections:SyncLease must be at least 5 seconds.";
        }
        foreach (var slug in Providers.Keys)
        {
            var policy = PolicyFor(slug);
            if (policy.DailyQuota < 1)
            {
                return $"Connections:Providers:{slug}:DailyQuota must be at least 1.";
            }
            if (policy.SchedulePeriod < TimeSpan.FromDays(1) / policy.DailyQuota)
            {
                return $"Connections:Providers:{slug}:SchedulePeriod must leave the schedule within DailyQuota ({policy.DailyQuota} a day).";
            }
        }
        return null;
    }
}

public sealed class ProviderPolicyOptions
{
    public int? DailyQuota { get; set; }
    public TimeSpan? SchedulePeriod { get; set; }
}

/// <summary>How often a provider may be called per connection: at most <see cref="DailyQuota"/> calls in any 24 hours, scheduled every <see cref="SchedulePeriod"/>.</summary>
public sealed record ProviderPolicy(int DailyQuota, TimeSpan SchedulePeriod);

/// <summary>
/// The <c>SimpleFin</c> section. Tally only ever calls hosts listed here (the setup token is
/// user input: without the list it would make Tally POST to any URL a user chose); see
/// <see cref="Providers.SimpleFinEgress"/> for how that is enforced.
/// </summary>
public sealed class SimpleFinOptions
{
    public const string Section = "SimpleFin";

    public static readonly string[] BridgeHosts = ["bridge.simplefin.org", "beta-bridge.simplefin.org"];

    /// <summary>HTTPS hosts Tally may claim tokens from and read accounts at (on public addresses only); the SimpleFIN Bridge when empty.</summary>
    public string[] AllowedHosts { get; set; } = [];

    /// <summary>
    /// Also allow the SimpleFIN sandbox, over plain HTTP: exactly its own scheme, host and port
    /// (<see cref="SandboxUrl"/>, else the built-in sandbox's address), nothing else on this machine.
    /// On by itself when the built-in sandbox runs.
    /// </summary>
    public bool AllowLoopback { get; set; }

    /// <summary>The sandbox's address when it is not the built-in one (another process): <c>http://127.0.0.1:5080</c>.</summary>
    public string? SandboxUrl { get; set; }

    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(30);

    public IReadOnlyList<string> EffectiveHosts => AllowedHosts.Length == 0 ? BridgeHosts : AllowedHosts;

    internal string? Invalid()
    {
        if (Timeout <= TimeSpan.Zero)
        {
            return "SimpleFin:Timeout must be positive.";
        }
        if (SandboxUrl is { } url && Providers.SimpleFinEgress.OriginOf(url) is null)
        {
            return "SimpleFin:SandboxUrl must be an http or https origin (scheme, host and port only, e.g. http://127.0.0.1:5080).";
        }
        return null;
    }
}
