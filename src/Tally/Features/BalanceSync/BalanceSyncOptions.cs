using System.ComponentModel.DataAnnotations;
using Tally.Data;
using Tally.Jobs.RateLimits;

namespace Tally.Features.BalanceSync;

/// <summary>
/// The <c>BalanceSync</c> section. The seed's variables are aliases: <c>BALANCE_SYNC_INTERVAL</c>
/// (<see cref="IntervalMs"/>) and <c>AUTH_SYNC_TIMEOUT</c> (<see cref="AuthSyncTimeoutMs"/>). The core's
/// rate limit is <c>RateLimits:t24:PermitsPerSecond</c>, like every upstream's.
/// </summary>
public sealed class BalanceSyncOptions
{
    public const string Section = "BalanceSync";
    public const string Upstream = "t24";

    /// <summary>How often every active mobile-banking user is queued on the background lane.</summary>
    [Range(1000, 86_400_000, ErrorMessage = "BalanceSync:IntervalMs must be between 1000 and 86400000.")]
    public int IntervalMs { get; set; } = 300_000;

    /// <summary>How long a login waits for its own sync before answering from stored balances.</summary>
    [Range(1, 60_000, ErrorMessage = "BalanceSync:AuthSyncTimeoutMs must be between 1 and 60000.")]
    public int AuthSyncTimeoutMs { get; set; } = 2000;

    /// <summary>Calls to the core in flight at once, for the whole fleet (each instance's gate holds the same number). One at a time by default.</summary>
    [Range(1, 256, ErrorMessage = "BalanceSync:MaxConcurrentCalls must be between 1 and 256.")]
    public int MaxConcurrentCalls { get; set; } = 1;

    /// <summary>
    /// Call slots and per-second permits the background lane leaves unused, so that a login never
    /// waits behind background work at all (0: a login goes first, but may wait for the call in flight).
    /// Must be below <see cref="MaxConcurrentCalls"/> and the rate limit.
    /// </summary>
    [Range(0, 255, ErrorMessage = "BalanceSync:PriorityReserve must be between 0 and 255.")]
    public int PriorityReserve { get; set; }

    /// <summary>
    /// Workers taking users from the background lane (0: twice the background call slots, plus one).
    /// Each claims one user at a time; more than the call slots keep the slots busy while others read
    /// and write the database. Raise it when the database is slow relative to the rate limit.
    /// </summary>
    [Range(0, 1024, ErrorMessage = "BalanceSync:BackgroundWorkers must be between 0 and 1024.")]
    public int BackgroundWorkers { get; set; }

    /// <summary>Retries of a user's sync after transient core failures, before giving up until the next period.</summary>
    [Range(0, 50, ErrorMessage = "BalanceSync:MaxRetries must be between 0 and 50.")]
    public int MaxRetries { get; set; } = 5;

    /// <summary>The first retry's delay; each further retry doubles it (with jitter), up to <see cref="RetryMaxDelayMs"/>.</summary>
    [Range(1, 3_600_000, ErrorMessage = "BalanceSync:RetryBaseDelayMs must be between 1 and 3600000.")]
    public int RetryBaseDelayMs { get; set; } = 1000;

    [Range(1, 86_400_000, ErrorMessage = "BalanceSync:RetryMaxDelayMs must be between 1 and 86400000.")]
    public int RetryMaxDelayMs { get; set; } = 120_000;

    /// <summary>
    /// Added to the rate-limit window, so that the core, measuring arrivals with some network jitter,
    /// never counts more calls in a second than the limit. Costs guard/1000 of the throughput.
    /// </summary>
    [Range(0, 1000, ErrorMessage = "BalanceSync:RateWindowGuardMs must be between 0 and 1000.")]
    public int RateWindowGuardMs { get; set; } = 25;

    /// <summary><c>inprocess</c> or <c>postgres</c> (shared by all instances); by storage when empty.</summary>
    public string? Lanes { get; set; }

    /// <summary>
    /// <c>async</c> or <c>durable</c>: whether a sync's write of the mirror (balances and their events)
    /// waits for the disk (see <see cref="SyncUserBalances"/> for what <c>async</c> trades). Unset, as
    /// Tally always did: <c>async</c> on PostgreSQL, and on SQLite while the outbox table is the only
    /// event log; <c>durable</c> on SQLite with a broker (<c>RabbitMq:Url</c>), where <c>async</c> is
    /// refused at start: the broker could publish events of a write a power loss then undoes. Set by
    /// start-up when unset, so it is never empty once bound (<see cref="DefaultMirrorCommit"/>).
    /// </summary>
    public string? MirrorCommit { get; set; }

    /// <summary>How often idle workers look for work queued by other instances (shared lanes).</summary>
    [Range(10, 60_000, ErrorMessage = "BalanceSync:PollIntervalMs must be between 10 and 60000.")]
    public int PollIntervalMs { get; set; } = 250;

    /// <summary>A claim older than this belongs to an instance that died; its user is handed to another.</summary>
    [Range(5, 86_400, ErrorMessage = "BalanceSync:ClaimTimeoutSeconds must be between 5 and 86400.")]
    public int ClaimTimeoutSeconds { get; set; } = 300;

    /// <summary>Users read per page by the periodic job.</summary>
    [Range(1, 100_000, ErrorMessage = "BalanceSync:BatchSize must be between 1 and 100000.")]
    public int BatchSize { get; set; } = 5000;

    public const string AsyncCommit = "async";
    public const string DurableCommit = "durable";

    public bool MirrorCommitsAsynchronously => MirrorCommit == AsyncCommit;

    public TimeSpan Interval => TimeSpan.FromMilliseconds(IntervalMs);
    public TimeSpan AuthSyncTimeout => TimeSpan.FromMilliseconds(AuthSyncTimeoutMs);
    public TimeSpan RetryBaseDelay => TimeSpan.FromMilliseconds(RetryBaseDelayMs);
    public TimeSpan RetryMaxDelay => TimeSpan.FromMilliseconds(RetryMaxDelayMs);
    public TimeSpan PollInterval => TimeSpan.FromMilliseconds(PollIntervalMs);
    public TimeSpan ClaimTimeout => TimeSpan.FromSeconds(ClaimTimeoutSeconds);

    /// <summary><see cref="MirrorCommit"/> when unset: what Tally did before it was a setting.</summary>
    public static string DefaultMirrorCommit(StorageProvider storage, bool brokered) =>
        storage == StorageProvider.Postgres || !brokered ? AsyncCommit : DurableCommit;

    /// <summary>Why a mirror commit cannot be used with this storage and event log, or null when it can.</summary>
    public static string? RefuseMirrorCommit(string mirrorCommit, StorageProvider storage, bool brokered) =>
        mirrorCommit == AsyncCommit && storage == StorageProvider.Sqlite && brokered
            ? "BalanceSync:MirrorCommit is async, but on SQLite with RabbitMq:Url set the outbox would publish the events of mirror writes "
                + "that a power loss can still undo (SQLite has no durable point to wait for). Set BalanceSync:MirrorCommit to durable, or leave it unset."
            : null;
}

/// <summary>
/// The core's rate limit as a sliding window: at most <see cref="Permits"/> calls in any
/// <see cref="Window"/>. <c>RateLimits:t24:PermitsPerSecond</c> of 10 is 10 calls per second;
/// below 1 (say 0.2) it is one call per 1/0.2 = 5 seconds.
/// </summary>
public sealed record CoreRate(int Permits, TimeSpan Window)
{
    public static CoreRate From(RateLimitOptions options, TimeSpan guard)
    {
        var perSecond = options.PermitsPerSecond;
        return perSecond >= 1
            ? new CoreRate((int)Math.Floor(perSecond), TimeSpan.FromSeconds(1) + guard)
            : new CoreRate(1, TimeSpan.FromSeconds(1 / Math.Max(perSecond, 0.0001)) + guard);
    }
}

/// <summary>
/// The <c>T24</c> section (the seed's <c>T24_API_URL</c> and <c>T24_API_KEY</c> are aliases): where the core is and how to call it. Without <see cref="BaseUrl"/>, an
/// instance that serves a fake core itself (the sandbox, <see cref="Hosting.LocalUpstreams"/>) calls it over HTTP at the address
/// it listens on; an instance with the worker role and no such core refuses to start.
/// </summary>
public sealed class T24Options
{
    public const string Section = "T24";

    public string? BaseUrl { get; set; }

    /// <summary>The bearer key. Never logged, never answered.</summary>
    public string? ApiKey { get; set; }

    [Range(100, 300_000, ErrorMessage = "T24:TimeoutMs must be between 100 and 300000.")]
    public int TimeoutMs { get; set; } = 10_000;

    public TimeSpan Timeout => TimeSpan.FromMilliseconds(TimeoutMs);
}
