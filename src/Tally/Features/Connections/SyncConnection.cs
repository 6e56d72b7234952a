using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Tally.Data;
using Tally.Features.Connections.Providers;
using Tally.Hosting;
using Tally.Jobs.Instances;
using Tally.Jobs.Outbox;
using Tally.Jobs.RateLimits;

namespace Tally.Features.Connections;

/// <summary>Sync one connection on behalf of <see cref="UserId"/> (its owner, or the scheduler acting for the owner).</summary>
public sealed record SyncCommand(Guid ConnectionId, Guid UserId, bool Force, string Trigger);

/// <summary>Why a sync did not happen. <see cref="Detail"/> is safe to show the user: it never holds a credential.</summary>
public sealed record SyncFailure(string Reason, string Detail, TimeSpan? RetryAfter = null, bool CredentialsRejected = false)
{
    public static SyncFailure From(ProviderFailure f) => new(f.Reason, f.Detail, f.RetryAfter, f.CredentialsRejected);
}

public abstract record SyncOutcome
{
    public sealed record Synced(Guid RunId, int Created, int Updated, int Unchanged, int Errors, string Message) : SyncOutcome;

    public sealed record Failed(Guid? RunId, SyncFailure Failure) : SyncOutcome;
}

/// <summary>The reasons a sync fails with, as <c>AccountSyncFailed.reason</c> carries them (plus <see cref="ProviderFailureReasons"/>).</summary>
public static class SyncFailureReasons
{
    public const string ConnectionNotFound = "connection_not_found";
    public const string NotOwnedByUser = "not_owned_by_user";
    public const string ConnectionNotActive = "connection_not_active";
    public const string RecentlySynced = "recently_synced";
    public const string ForcedSyncLimit = "forced_sync_limit";
    public const string QuotaExhausted = "quota_exhausted";
    public const string SyncInProgress = "sync_in_progress";
    public const string CredentialsInvalid = "credentials_invalid";
    public const string CredentialsDecryptionFailed = "credentials_decryption_failed";
    public const string ProviderNotSupported = "provider_not_supported";
    public const string TooManyAccounts = "too_many_accounts";

    /// <summary>The database refused or lost a transaction of the sync once under way (see <see cref="SyncConnection.HandleAsync"/>).</summary>
    public const string DatabaseError = "database_error";
}

/// <summary>The bounds one sync is checked against (<see cref="ConnectionsOptions"/> and the provider's policy).</summary>
public sealed record SyncLimits(TimeSpan MinInterval, ProviderPolicy Policy, int MaxForcedPerDay)
{
    public static SyncLimits Of(ConnectionsOptions options, string providerSlug) =>
        new(options.MinSyncInterval, options.PolicyFor(providerSlug), options.MaxForcedSyncsPerDay);
}

/// <summary>One call a connection made to its provider: when, and whether it was forced.</summary>
public sealed record ProviderCall(DateTime StartedAt, bool Forced);

/// <summary>The checks of a sync, as pure decisions.</summary>
public static class SyncRules
{
    /// <summary>The first reason not to call the provider at all, in the seed's order; null when the sync may go ahead.</summary>
    /// <param name="recentCalls">This connection's provider calls in the last 24 hours, oldest first.</param>
    public static SyncFailure? Refusal(ProviderConnection? connection, SyncCommand command, DateTime now, SyncLimits limits, IReadOnlyList<ProviderCall> recentCalls)
    {
        if (connection is null)
        {
            return new(SyncFailureReasons.ConnectionNotFound, "No connection with this id.");
        }
        if (connection.UserId != command.UserId)
        {
            return new(SyncFailureReasons.NotOwnedByUser, "No connection with this id.");
        }
        if (connection.Status != ConnectionStatus.Active)
        {
            return new(SyncFailureReasons.ConnectionNotActive, connection.Status == ConnectionStatus.ReauthRequired
                ? "The provider refused this connection's credentials: give new ones with PUT /api/connections/{id}/credentials."
                : "This connection is not active.");
        }
        if (connection.ConsentExpiresAt is { } consent && consent <= now)
        {
            return new(SyncFailureReasons.ConnectionNotActive, "The consent given to the provider expired: give new credentials with PUT /api/connections/{id}/credentials.");
        }
        if (connection.LastSyncAt is { } last && now - last < limits.MinInterval)
        {
            var intervalEnds = last + limits.MinInterval;
            if (!command.Force)
            {
                return new(SyncFailureReasons.RecentlySynced, $"Synced less than {limits.MinInterval.TotalMinutes:0.#} minutes ago; try later or force the sync.", intervalEnds - now);
            }
            if (ForcedWindowEnds(recentCalls, limits.MaxForcedPerDay) is { } windowEnds)
            {
                // Whichever comes first: an ordinary sync after the interval, or a forced one once the oldest leaves the 24 hours.
                var wait = (windowEnds < intervalEnds ? windowEnds : intervalEnds) - now;
                return new(SyncFailureReasons.ForcedSyncLimit, $"This connection was forced {limits.MaxForcedPerDay} times in 24 hours, the most allowed; sync without force after the minimum interval.", wait);
            }
        }
        // The provider's own limits hold even for a forced sync.
        if (connection.RetryNotBefore is { } notBefore && notBefore > now)
        {
            return new(ProviderFailureReasons.RateLimited, "The provider asked Tally to wait before calling it again.", notBefore - now);
        }
        if (recentCalls.Count >= limits.Policy.DailyQuota)
        {
            return new(SyncFailureReasons.QuotaExhausted, $"This connection used its provider's quota of {limits.Policy.DailyQuota} requests a day.", recentCalls[0].StartedAt.AddDays(1) - now);
        }
        if (string.IsNullOrEmpty(connection.CredentialsEncrypted))
        {
            return new(SyncFailureReasons.CredentialsInvalid, "This connection has no credentials: give new ones with PUT /api/connections/{id}/credentials.");
        }
        return null;
    }

    /// <summary>When the forced calls of the last 24 hours drop below <paramref name="max"/> again; null when they are below it now.</summary>
    public static DateTime? ForcedWindowEnds(IReadOnlyList<ProviderCall> recentCalls, int max)
    {
        var forced = recentCalls.Where(c => c.Forced).Select(c => c.StartedAt).ToList();
        if (forced.Count < max)
        {
            return null;
        }
        // With max = 0 no forced call ever fits: the window never ends.
        return max == 0 ? DateTime.MaxValue : forced[forced.Count - max].AddDays(1);
    }

    /// <summary>
    /// Refuses a provider answer that would leave a connection holding more than
    /// <paramref name="max"/> accounts (<c>Connections:MaxAccountsPerConnection</c>): accounts are kept after the provider stops
    /// reporting them, so the bound is on what would be stored, not on the answer alone.
    /// </summary>
    public static SyncFailure? AccountLimit(int existing, int created, int max) =>
        existing + created <= max
            ? null
            : new(SyncFailureReasons.TooManyAccounts,
                $"The provider reported accounts that would give this connection {existing + created}; a connection holds at most {max}, so nothing was stored.");
}

/// <summary>
/// Syncs one connection (the seed's SyncAccounts): checks, decrypted credentials, the provider by
/// slug, the accounts upserted, and the events, as a plain handler whose outcome is a value.
/// <para>
/// Short transactions, so nothing is held open across the provider call and no writer waits for a
/// whole large sync: (1) the claim of the connection with its RUNNING run and
/// <c>AccountSyncAttempted</c>; (2a) on success, the accounts in chunks of
/// <c>Connections:AccountsPerTransaction</c>, each chunk committed with its
/// <c>AccountBalanceUpdated</c> events and its counts on the run, then <c>last_sync_at</c>, the run's
/// end and <c>AccountSyncSucceeded</c>; (2b) on any failure, a database failure included,
/// <see cref="FailAsync"/>: the one place that records a failure and emits
/// <c>AccountSyncFailed(reason)</c>, committed even though the sync did not happen. The claim
/// (<c>sync_claimed_until</c>, a conditional UPDATE) makes one sync per connection at a time a
/// database fact, across instances; every later transaction of the sync first checks that its run
/// is still RUNNING (a sync that took over after a lease ran out marks it abandoned), so two syncs
/// never write the same connection.
/// </para>
/// <para>
/// A crash between chunks leaves the chunks committed so far, each with its events, and the run
/// RUNNING with the counts of those chunks; <c>last_sync_at</c> is not moved. Once the lease runs
/// out, the next sync marks that run abandoned and applies the rest: what was committed is now
/// unchanged (no event twice), what was not is created or updated with its events (none lost). A
/// chunk the database refuses or loses ends the same way, except that the run is FAILED
/// (<c>database_error</c>) and the connection free at once.
/// </para>
/// </summary>
public sealed partial class SyncConnection(
    IDbContextFactory<TallyDb> dbs,
    AccountProviders providers,
    CredentialProtector protector,
    UpstreamRateLimits rateLimits,
    IOptions<ConnectionsOptions> options,
    IOptions<TallyOptions> tally,
    TimeProvider clock,
    ILogger<SyncConnection> logger)
{
    public const string AttemptedEvent = nameof(AccountSyncAttempted);
    public const string FailedEvent = nameof(AccountSyncFailed);
    public const string SucceededEvent = nameof(AccountSyncSucceeded);
    public const string BalanceUpdatedEvent = nameof(AccountBalanceUpdated);

    /// <summary>
    /// SQLite has one write lock and no queue for it: a waiting writer polls, at most 100 ms apart
    /// (SQLite's busy handler), and a sync that took the lock again at once after each chunk would
    /// starve it. Leaving the lock free this long between chunks lets every waiting writer in.
    /// PostgreSQL locks rows, so there the chunks follow each other at once.
    /// </summary>
    public static readonly TimeSpan SqliteWritersTurn = TimeSpan.FromMilliseconds(110);

    /// <summary>What is known about one attempt as it goes: who asked, the connection as read, and the run once claimed.</summary>
    private sealed class Attempt(SyncCommand command, ProviderConnection? connection, DateTime startedAt)
    {
        public SyncCommand Command { get; } = command;
        public ProviderConnection? Connection { get; } = connection;
        public DateTime StartedAt { get; } = startedAt;
        public Guid? RunId { get; set; }

        /// <summary>Another sync took the connection over (this one outlived its lease): the run and the connection are its now.</summary>
        public bool Superseded { get; set; }

        public bool Owned => Connection is not null && Connection.UserId == Command.UserId;

        public string Subject => Command.ConnectionId.ToString();
    }

    /// <summary>
    /// Once the sync is under way (from its claim to its end), a database failure is an outcome too: a
    /// transaction refused (a constraint, a trigger, a serialization failure) or lost (a dropped
    /// connection). What committed before it stays, with its events; <see cref="FailAsync"/> records it
    /// on a connection of its own and frees the claim at once, rather than when the lease runs out.
    /// Any other exception is a bug, and leaves the claim to its lease like a crash.
    /// </summary>
    public async Task<SyncOutcome> HandleAsync(SyncCommand command, CancellationToken ct)
    {
        var now = Now();
        ProviderConnection? connection;
        List<ProviderCall> recentCalls;
        await using (var db = await dbs.CreateDbContextAsync(ct))
        {
            (connection, recentCalls) = await ReadAsync(db, command, now, ct);
        }
        var attempt = new Attempt(command, connection, now);
        // A first look without the write lock: most refusals (recently synced) end here.
        if (SyncRules.Refusal(connection, command, now, Limits(connection), recentCalls) is { } refusal)
        {
            return await FailAsync(attempt, refusal, ct);
        }
        if (protector.TryUnprotect(connection!.CredentialsEncrypted!) is not { } credentials)
        {
            return await FailAsync(attempt, new(SyncFailureReasons.CredentialsDecryptionFailed,
                "This connection's credentials cannot be decrypted (the key that protected them is gone or revoked): give new ones."), ct);
        }
        if (providers.Find(connection.ProviderSlug) is not { } provider)
        {
            return await FailAsync(attempt, new(SyncFailureReasons.ProviderNotSupported, $"Provider '{connection.ProviderSlug}' is not available on this server."), ct);
        }
        try
        {
            return await ClaimAndSyncAsync(attempt, provider, credentials, ct);
        }
        catch (Exception e) when (DbErrors.IsDatabaseFailure(e) && !ct.IsCancellationRequested)
        {
            LogDatabaseFailed(logger, e, connection.Id);
            return await FailAsync(attempt, new(SyncFailureReasons.DatabaseError,
                "Tally's database refused or lost this sync's changes. What was stored before stays; sync again."), ct);
        }
    }

    private async Task<SyncOutcome> ClaimAndSyncAsync(Attempt attempt, IAccountProvider provider, (ProviderSecret Secret, bool Stale) credentials, CancellationToken ct)
    {
        var connection = attempt.Connection!;
        if (await ClaimAsync(attempt, ct) is { } unclaimed)
        {
            return await FailAsync(attempt, unclaimed, ct);
        }

        FetchResult fetched;
        try
        {
            await rateLimits.WaitAsync(provider.Slug, ct);
            fetched = await provider.FetchAccountsAsync(credentials.Secret, ct);
        }
        catch (Exception e) when (!ct.IsCancellationRequested)
        {
            // A provider returns failures as values; reaching here is a bug in one. Record it, free the claim.
            LogProviderThrew(logger, e, connection.Id, provider.Slug);
            fetched = new FetchResult.Failed(ProviderFailure.Unavailable("The provider failed unexpectedly."));
        }
        if (fetched is FetchResult.Failed failed)
        {
            return await FailAsync(attempt, SyncFailure.From(failed.Failure), ct);
        }
        var restored = credentials.Stale ? protector.Protect(credentials.Secret) : null;
        return await ApplyAsync(attempt, (FetchResult.Fetched)fetched, restored, ct);
    }

    private SyncLimits Limits(ProviderConnection? connection) => SyncLimits.Of(options.Value, connection?.ProviderSlug ?? "");

    /// <summary>
    /// Now, in whole microseconds: what PostgreSQL keeps of a time, so an event's <c>occurredAt</c> equals
    /// its row's <c>occurred_at</c> on both databases.
    /// </summary>
    private DateTime Now()
    {
        var now = clock.GetUtcNow().UtcDateTime;
        return now.AddTicks(-(now.Ticks % TimeSpan.TicksPerMicrosecond));
    }

    /// <summary>Stages a connection event under its own id and time, so the row (and the message published from it) carries what the payload says.</summary>
    private static void Stage(TallyDb db, ConnectionEvent e) =>
        Outbox.Add(db, e.EventType, e.ConnectionId.ToString(), e, e.OccurredAt, e.EventId);

    /// <summary>The connection (if the caller's) and its provider calls of the last 24 hours, oldest first.</summary>
    private static async Task<(ProviderConnection? Connection, List<ProviderCall> RecentCalls)> ReadAsync(TallyDb db, SyncCommand command, DateTime now, CancellationToken ct)
    {
        var connection = await db.ProviderConnections.AsNoTracking()
            .FirstOrDefaultAsync(c => c.Id == command.ConnectionId && c.DeletedAt == null, ct);
        if (connection is null || connection.UserId != command.UserId)
        {
            return (connection, []);
        }
        var calls = await db.ConnectionSyncRuns.AsNoTracking()
            .Where(r => r.ConnectionId == connection.Id).ProviderCallsSince(now.AddDays(-1))
            .OrderBy(r => r.StartedAt).Select(r => new ProviderCall(r.StartedAt, r.Forced)).ToListAsync(ct);
        return (connection, calls);
    }

    /// <summary>
    /// Transaction 1: take the connection (or learn another sync has it), open the run, say we are
    /// trying. Holding the claim, the checks are made again on what is committed now: the first look
    /// may be stale (a sync finished, a forced one was counted), and the limits are guarantees only
    /// if checked where no other sync of the connection can slip in. Null when claimed.
    /// </summary>
    private async Task<SyncFailure?> ClaimAsync(Attempt attempt, CancellationToken ct)
    {
        var now = attempt.StartedAt;
        var id = attempt.Command.ConnectionId;
        var runId = Guid.CreateVersion7();
        await using var db = await dbs.CreateDbContextAsync(ct);
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        // The conditional update is the claim: of concurrent syncs, exactly one moves the lease forward.
        // A claim is free once its lease ran out, or at once when its holder is gone: stopped, started
        // again since it claimed, or quiet for three heartbeats (a killed instance).
        var quiet = await InstanceRegistry.QuietAsync(db, now, ct);
        var me = tally.Value.ResolvedInstanceId;
        var claimed = await db.ProviderConnections
            .Where(c => c.Id == id && c.DeletedAt == null && c.Status == ConnectionStatus.Active
                && (c.SyncClaimedUntil == null || c.SyncClaimedUntil < now
                    || db.Instances.Any(i => i.Id == c.SyncClaimedBy && (i.StoppedAt != null || i.StartedAt > c.LastAttemptAt || quiet.Contains(i.Id)))))
            .ExecuteUpdateAsync(s => s
                .SetProperty(c => c.SyncClaimedUntil, now + options.Value.SyncLease)
                .SetProperty(c => c.SyncClaimedBy, me)
                .SetProperty(c => c.LastAttemptAt, now)
                .SetProperty(c => c.UpdatedAt, now), ct);
        if (claimed == 0)
        {
            return new(SyncFailureReasons.SyncInProgress, "Another sync of this connection is running.");
        }
        var (connection, recentCalls) = await ReadAsync(db, attempt.Command, now, ct);
        if (SyncRules.Refusal(connection, attempt.Command, now, Limits(connection), recentCalls) is { } refusal)
        {
            return refusal; // rolled back: the claim is not taken
        }
        // Holding the claim, any run still RUNNING belongs to a sync that died (its partial counts stay).
        await db.ConnectionSyncRuns.Where(r => r.ConnectionId == id && r.Status == SyncRunStatus.Running)
            .ExecuteUpdateAsync(s => s
                .SetProperty(r => r.Status, SyncRunStatus.Failed)
                .SetProperty(r => r.Reason, "abandoned")
                .SetProperty(r => r.FinishedAt, now), ct);
        db.ConnectionSyncRuns.Add(new ConnectionSyncRun
        {
            Id = runId,
            ConnectionId = id,
            Trigger = attempt.Command.Trigger,
            Forced = attempt.Command.Force,
            Status = SyncRunStatus.Running,
            ProviderCalled = true,
            StartedAt = now,
        });
        Stage(db, new AccountSyncAttempted(Guid.CreateVersion7(), now, id, attempt.Command.UserId, attempt.Command.Trigger, attempt.Command.Force));
        await db.SaveChangesAsync(ct);
        await tx.CommitAsync(ct);
        attempt.RunId = runId;
        return null;
    }

    /// <summary>
    /// Transactions 2a: the plan, decided from one read of the connection's accounts (no write lock:
    /// the claim keeps other syncs out, and nothing else writes a connection's accounts), then
    /// applied a chunk per transaction, then the sync's end.
    /// </summary>
    private async Task<SyncOutcome> ApplyAsync(Attempt attempt, FetchResult.Fetched fetched, string? restoredCredentials, CancellationToken ct)
    {
        var settings = options.Value;
        var now = Now();
        var connection = attempt.Connection!;
        List<ProviderAccount> existing;
        bool singleWriter;
        await using (var db = await dbs.CreateDbContextAsync(ct))
        {
            existing = await db.ProviderAccounts.AsNoTracking().Where(a => a.ConnectionId == connection.Id).ToListAsync(ct);
            singleWriter = ConnectionSql.For(db.Database).SingleWriter;
        }
        var plan = AccountUpsert.Plan(connection.Id, existing, fetched.Accounts, fetched.Errors, now);
        if (SyncRules.AccountLimit(existing.Count, plan.Created.Count, settings.MaxAccountsPerConnection) is { } tooMany)
        {
            return await FailAsync(attempt, tooMany, ct);
        }
        var chunks = plan.Chunks(settings.AccountsPerTransaction);
        for (var i = 0; i < chunks.Count; i++)
        {
            if (i > 0 && singleWriter)
            {
                // Real time, not the clock: it is SQLite's busy handler that must see the lock free.
                await Task.Delay(SqliteWritersTurn, ct);
            }
            if (!await ApplyChunkAsync(attempt, chunks[i], now, ct))
            {
                return await SupersededAsync(attempt, ct);
            }
        }
        if (!await FinishAsync(attempt, plan, restoredCredentials, now, ct))
        {
            return await SupersededAsync(attempt, ct);
        }
        LogSynced(logger, connection.Id, attempt.Command.Trigger, plan.Created.Count, plan.Updated.Count, plan.Unchanged.Count, plan.Errors, plan.BalanceChanges.Count, chunks.Count);
        return new SyncOutcome.Synced(attempt.RunId!.Value, plan.Created.Count, plan.Updated.Count, plan.Unchanged.Count, plan.Errors, plan.Message);
    }

    /// <summary>One chunk: its accounts, its balance events and its counts on the run commit together. False when the run is no longer ours.</summary>
    private async Task<bool> ApplyChunkAsync(Attempt attempt, UpsertPlan chunk, DateTime now, CancellationToken ct)
    {
        var runId = attempt.RunId!.Value;
        var connection = attempt.Connection!;
        await using var db = await dbs.CreateDbContextAsync(ct);
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        // First, so the run's row is held (PostgreSQL) while the chunk is written: a sync taking over waits for this chunk, then stops the next.
        var ours = await db.ConnectionSyncRuns.Where(r => r.Id == runId && r.Status == SyncRunStatus.Running)
            .ExecuteUpdateAsync(s => s
                .SetProperty(r => r.CreatedCount, r => r.CreatedCount + chunk.Created.Count)
                .SetProperty(r => r.UpdatedCount, r => r.UpdatedCount + chunk.Updated.Count)
                .SetProperty(r => r.UnchangedCount, r => r.UnchangedCount + chunk.Unchanged.Count), ct);
        if (ours == 0)
        {
            return false;
        }
        // Still working: the lease runs from now, so a long sync is not taken for a dead one.
        await db.ProviderConnections.Where(c => c.Id == connection.Id)
            .ExecuteUpdateAsync(s => s.SetProperty(c => c.SyncClaimedUntil, Now() + options.Value.SyncLease), ct);
        await AccountUpsert.WriteAsync(db, chunk, now, ct);
        var subject = attempt.Subject;
        var userId = attempt.Command.UserId;
        var events = chunk.BalanceChanges.Select(c => new AccountBalanceUpdated(Guid.CreateVersion7(), now, connection.Id, userId, c.AccountId, c.ProviderAccountId,
            c.Previous, c.Current, AccountUpsert.Normalize(c.Current - c.Previous), c.Currency));
        await OutboxBatch.InsertAsync(db, events.Select(e => new OutboxBatch.Event(e.EventType, subject, e, e.EventId)).ToList(), now, ct);
        await tx.CommitAsync(ct);
        return true;
    }

    /// <summary>The sync's end: the connection's sync time, the run's outcome and <c>AccountSyncSucceeded</c>. False when the run is no longer ours.</summary>
    private async Task<bool> FinishAsync(Attempt attempt, UpsertPlan plan, string? restoredCredentials, DateTime now, CancellationToken ct)
    {
        var connection = attempt.Connection!;
        var runId = attempt.RunId!.Value;
        var userId = attempt.Command.UserId;
        var previousCredentials = connection.CredentialsEncrypted;
        await using var db = await dbs.CreateDbContextAsync(ct);
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        var ours = await db.ConnectionSyncRuns.Where(r => r.Id == runId && r.Status == SyncRunStatus.Running)
            .ExecuteUpdateAsync(s => s
                .SetProperty(r => r.Status, SyncRunStatus.Succeeded)
                .SetProperty(r => r.ErrorCount, plan.Errors)
                .SetProperty(r => r.Message, plan.Message)
                .SetProperty(r => r.FinishedAt, now), ct);
        if (ours == 0)
        {
            return false;
        }
        await db.ProviderConnections.Where(c => c.Id == connection.Id)
            .ExecuteUpdateAsync(s => s
                .SetProperty(c => c.LastSyncAt, now)
                .SetProperty(c => c.SyncClaimedUntil, (DateTime?)null)
                .SetProperty(c => c.LastError, (string?)null)
                .SetProperty(c => c.RetryNotBefore, (DateTime?)null)
                .SetProperty(c => c.UpdatedAt, now)
                // Re-encrypted under the current key, unless the credentials changed meanwhile.
                .SetProperty(c => c.CredentialsEncrypted, c => restoredCredentials != null && c.CredentialsEncrypted == previousCredentials
                    ? restoredCredentials
                    : c.CredentialsEncrypted), ct);
        Stage(db, new AccountSyncSucceeded(Guid.CreateVersion7(), now, connection.Id, userId, plan.Total, plan.Created.Count, plan.Updated.Count, plan.Unchanged.Count, plan.Errors));
        await db.SaveChangesAsync(ct);
        await tx.CommitAsync(ct);
        return true;
    }

    private Task<SyncOutcome> SupersededAsync(Attempt attempt, CancellationToken ct)
    {
        attempt.Superseded = true;
        return FailAsync(attempt, new(SyncFailureReasons.SyncInProgress, "Another sync took this connection over before this one finished."), ct);
    }

    /// <summary>
    /// Transaction 2b, the one place a failure is recorded, whatever the branch: the attempt (if not yet
    /// recorded) and <c>AccountSyncFailed(reason)</c>, the run, and what the connection should remember
    /// (its last error, a provider's wait, credentials the provider refused). Committed on its own, on a
    /// connection of its own (the sync's may be the one the database dropped), so the record survives
    /// although the sync did not happen.
    /// </summary>
    private async Task<SyncOutcome> FailAsync(Attempt attempt, SyncFailure failure, CancellationToken ct)
    {
        var now = Now();
        var command = attempt.Command;
        await using var db = await dbs.CreateDbContextAsync(ct);
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        if (attempt.RunId is null)
        {
            Stage(db, new AccountSyncAttempted(Guid.CreateVersion7(), attempt.StartedAt, command.ConnectionId, command.UserId, command.Trigger, command.Force));
        }
        var retryAfter = failure.RetryAfter is { } wait ? (int?)Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds)) : null;
        Stage(db, new AccountSyncFailed(Guid.CreateVersion7(), now, command.ConnectionId, command.UserId, failure.Reason, retryAfter));

        var runId = attempt.RunId;
        // A superseded sync only says it failed: its run was closed, and the connection is held, by the sync that took over.
        if (attempt.Owned && !attempt.Superseded)
        {
            if (runId is { } claimed)
            {
                // Only a run still RUNNING is ours to close; one a later sync marked abandoned tells us the connection is that sync's now.
                attempt.Superseded = await db.ConnectionSyncRuns.Where(r => r.Id == claimed && r.Status == SyncRunStatus.Running)
                    .ExecuteUpdateAsync(s => s
                        .SetProperty(r => r.Status, SyncRunStatus.Failed)
                        .SetProperty(r => r.Reason, failure.Reason)
                        .SetProperty(r => r.Message, failure.Detail)
                        .SetProperty(r => r.FinishedAt, now), ct) == 0;
            }
            else
            {
                runId = Guid.CreateVersion7();
                db.ConnectionSyncRuns.Add(new ConnectionSyncRun
                {
                    Id = runId.Value,
                    ConnectionId = command.ConnectionId,
                    Trigger = command.Trigger,
                    Forced = command.Force,
                    Status = SyncRunStatus.Failed,
                    Reason = failure.Reason,
                    Message = failure.Detail,
                    StartedAt = attempt.StartedAt,
                    FinishedAt = now,
                });
            }
            if (!attempt.Superseded && (attempt.RunId is not null || IsAboutTheConnection(failure.Reason)))
            {
                var status = failure.CredentialsRejected ? ConnectionStatus.ReauthRequired : ConnectionStatus.Active;
                DateTime? notBefore = failure.Reason == ProviderFailureReasons.RateLimited && failure.RetryAfter is { } w ? now + w : null;
                var release = attempt.RunId is not null;
                await db.ProviderConnections.Where(c => c.Id == command.ConnectionId && c.DeletedAt == null)
                    .ExecuteUpdateAsync(s => s
                        .SetProperty(c => c.LastError, failure.Reason)
                        .SetProperty(c => c.Status, c => c.Status == ConnectionStatus.Active ? status : c.Status)
                        .SetProperty(c => c.RetryNotBefore, c => notBefore ?? c.RetryNotBefore)
                        .SetProperty(c => c.SyncClaimedUntil, c => release ? null : c.SyncClaimedUntil)
                        .SetProperty(c => c.UpdatedAt, now), ct);
            }
        }
        await db.SaveChangesAsync(ct);
        await tx.CommitAsync(ct);
        if (attempt.RunId is not null)
        {
            LogFailed(logger, command.ConnectionId, failure.Reason);
        }
        else
        {
            LogRefused(logger, command.ConnectionId, failure.Reason);
        }
        return new SyncOutcome.Failed(runId, failure);
    }

    /// <summary>Failures that say something about the connection itself (not a refusal to run now).</summary>
    private static bool IsAboutTheConnection(string reason) =>
        reason is SyncFailureReasons.CredentialsInvalid or SyncFailureReasons.CredentialsDecryptionFailed or SyncFailureReasons.ProviderNotSupported;

    [LoggerMessage(Level = LogLevel.Information, Message = "Connection {ConnectionId} synced ({Trigger}): {Created} created, {Updated} updated, {Unchanged} unchanged, {Errors} errors, {BalanceChanges} balance changes, in {Chunks} transactions")]
    private static partial void LogSynced(ILogger logger, Guid connectionId, string trigger, int created, int updated, int unchanged, int errors, int balanceChanges, int chunks);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Connection {ConnectionId} sync failed after calling the provider: {Reason}")]
    private static partial void LogFailed(ILogger logger, Guid connectionId, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Connection {ConnectionId} sync refused: {Reason}")]
    private static partial void LogRefused(ILogger logger, Guid connectionId, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "The database failed while syncing connection {ConnectionId}; the sync is recorded as failed")]
    private static partial void LogDatabaseFailed(ILogger logger, Exception e, Guid connectionId);

    [LoggerMessage(Level = LogLevel.Error, Message = "Provider {Provider} threw while syncing connection {ConnectionId}")]
    private static partial void LogProviderThrew(ILogger logger, Exception e, Guid connectionId, string provider);
}
