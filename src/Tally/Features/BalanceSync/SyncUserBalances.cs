using System.Diagnostics.Metrics;
using Microsoft.EntityFrameworkCore;
using Tally.Data;
using Tally.Features.Users;
using Tally.Jobs.Outbox;
using Tally.Jobs.RateLimits;

namespace Tally.Features.BalanceSync;

/// <summary>
/// The event a changed mirror balance emits, through the outbox, in the same transaction as the change.
/// Its own name (connection sync's <c>AccountBalanceUpdated</c> has another shape), and the seed's
/// numbers: <see cref="PreviousBalance"/>, <see cref="NewBalance"/> and <see cref="Delta"/> are the
/// available balance, the user's <c>balance</c>; the working balance rides beside them. Emitted
/// when either balance changed; previous values are null on an account's first sync.
/// </summary>
public sealed record CoreBalanceUpdated(
    Guid AccountId, Guid UserId, string AccountNumber, string Currency,
    decimal? PreviousBalance, decimal NewBalance, decimal? Delta,
    decimal? PreviousWorkingBalance, decimal WorkingBalance,
    DateTime? BankAsOf, DateTime SyncedAt);

/// <summary>
/// How one attempt at a user's sync ended: settled (whatever each account's outcome), or worth
/// another try. <see cref="Accounts"/>: all the user's accounts as committed by this attempt, so a
/// waiting login can answer without reading them again (null when nothing was committed).
/// </summary>
public sealed record UserSyncResult(bool Settled, T24Failure? RetryBecause, IReadOnlyList<CoreAccount>? Accounts = null)
{
    public static readonly UserSyncResult Done = new(true, null);

    public static UserSyncResult Retry(T24Failure because) => new(false, because);
}

/// <summary>
/// Syncs one user: asks the core for each active account's balance, each call through the
/// <see cref="CoreCallGate"/>, then records every answer in ONE transaction: balances, the three
/// times, the last error, and a <c>CoreBalanceUpdated</c> event for each account whose balances changed
/// (on PostgreSQL one round trip of hand-written SQL; elsewhere EF Core's SaveChanges).
/// A transient failure stops the user's remaining calls (the core is struggling: be gentle) and asks
/// for a retry; a retry asks only for the accounts not synced since the user was queued.
/// Users that are not active MOBILE_BANKING users are never sent to the core, however they got here.
/// </summary>
public sealed partial class SyncUserBalances(
    TallyDb db, T24Client t24, CoreCallGate gate, FleetLimiter fleet, [FromKeyedServices(BalanceSyncOptions.Upstream)] FleetLimit coreLimit,
    StorageSettings storage, IEventPublisher publisher, TimeProvider clock, ILogger<SyncUserBalances> logger,
    PostgresBalanceWriter? postgresWriter = null)
{
    public const string BalanceUpdatedEvent = "CoreBalanceUpdated";
    private const int MaxErrorLength = 500;

    private static readonly Meter Meter = new("Tally.BalanceSync");
    private static readonly Counter<long> CoreCalls = Meter.CreateCounter<long>("tally_balance_sync_core_calls", description: "Calls to the core by outcome");

    public async Task<UserSyncResult> RunAsync(SyncEntry entry, Func<SyncLane> lane, CancellationToken ct)
    {
        // All the user's accounts (the login's answer shows them all), only if the user is an active
        // MOBILE_BANKING user; the active ones are asked for. A login's entry on PostgreSQL brings them.
        var postgres = storage.Provider == StorageProvider.Postgres;
        var all = entry.Accounts is { } handed ? [.. handed] : await ReadAccountsAsync(entry.UserId, track: !postgres, ct);
        if (entry.Accounts is not null && !postgres)
        {
            db.AttachRange(all);
        }
        var accounts = all.Where(a => a.IsActive).OrderBy(a => a.AccountNumber, StringComparer.Ordinal).ToList();
        if (entry.Attempt > 0)
        {
            accounts = accounts.Where(a => a.LastSyncedAt is null || a.LastSyncedAt < entry.EnqueuedAt).ToList();
        }

        var answers = new List<(CoreAccount Account, T24Result Result)>(accounts.Count);
        T24Failure? transient = null;
        foreach (var account in accounts)
        {
            T24Result result;
            // This instance's gate orders its own callers (logins first); the fleet's counts then hold
            // the core's limits across every instance.
            using (var lease = await gate.EnterAsync(lane, ct))
            await using (await fleet.EnterAsync(coreLimit, () => lane() == SyncLane.Priority, ct))
            {
                lease.Starting();
                result = await t24.GetBalanceAsync(account.AccountNumber, ct);
            }
            CoreCalls.Add(1, new KeyValuePair<string, object?>("outcome", result.Failure?.Code ?? "OK"));
            if (result.Failure is T24Failure.RateLimited limited)
            {
                gate.PauseFor(limited.RetryAfter);
                await fleet.PauseAsync(coreLimit.Upstream, limited.RetryAfter, ct);
            }
            answers.Add((account, result));
            if (result.Failure is { IsTransient: true } failure)
            {
                transient = failure;
                break;
            }
        }

        // Whole microseconds, as the database keeps them: the accounts handed to a waiting login equal the stored ones.
        var now = clock.GetUtcNow().UtcDateTime;
        now = now.AddTicks(-(now.Ticks % 10));
        var events = new List<(string? SubjectId, object Payload)>();
        foreach (var (account, result) in answers)
        {
            if (Record(account, result, now) is { } changed)
            {
                events.Add((account.Id.ToString(), changed));
            }
        }
        // One transaction: the balances and their events commit together or not at all.
        if (postgres)
        {
            var writer = postgresWriter ?? throw new InvalidOperationException("PostgreSQL storage without its balance writer.");
            await writer.SaveAsync([.. answers.Select(a => a.Account)], events, now, ct);
        }
        else
        {
            foreach (var (subjectId, payload) in events)
            {
                Outbox.Add(db, BalanceUpdatedEvent, subjectId, payload, now);
            }
            await SaveSqliteAsync(ct);
        }
        var committed = all.Count > 0 ? all : null;
        return transient is null ? UserSyncResult.Done with { Accounts = committed } : UserSyncResult.Retry(transient) with { Accounts = committed };
    }

    /// <summary>
    /// SQLite: with the outbox table as the event log (no broker), the mirror's writes commit with
    /// <c>synchronous = NORMAL</c>: in WAL mode that skips the fsync per commit, whose stalls on a busy
    /// disk held the one write lock and so every other write (bench/RESULTS.md); a power loss may roll
    /// back the last mirror writes, whole transactions with their events, and the next sync redoes
    /// them. With a broker the events leave Tally, so they keep the full fsync. The connection's
    /// setting lasts until it is next opened, when <see cref="SqliteSetup.PragmaInterceptor"/> sets FULL again.
    /// </summary>
    private async Task SaveSqliteAsync(CancellationToken ct)
    {
        if (publisher is not TableOnlyEventPublisher)
        {
            await db.SaveChangesAsync(ct);
            return;
        }
        await db.Database.OpenConnectionAsync(ct);
        try
        {
            await db.Database.ExecuteSqlRawAsync("PRAGMA synchronous = NORMAL", ct);
            await db.SaveChangesAsync(ct);
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }
    }

    private Task<List<CoreAccount>> ReadAccountsAsync(Guid userId, bool track, CancellationToken ct)
    {
        var accounts = track ? db.CoreAccounts : db.CoreAccounts.AsNoTracking();
        return accounts.OfUser(userId)
            .Where(a => db.Users.Any(u => u.Id == a.UserId && u.IsActive && u.Context == UserContexts.MobileBanking))
            .InAnswerOrder().ToListAsync(ct);
    }

    public static bool IsEligible(string context, bool isActive) => isActive && context == UserContexts.MobileBanking;

    /// <summary>Records one answer on the account; answers the event to emit when its balance changed.</summary>
    private CoreBalanceUpdated? Record(CoreAccount account, T24Result result, DateTime now)
    {
        account.LastAttemptAt = now;
        account.UpdatedAt = now;
        var failure = result.Failure;
        if (result.Balance is { } answer && answer.Currency != account.Currency)
        {
            failure = new T24Failure.ContractMismatch($"the core reports {answer.Currency}, the account is {account.Currency}");
        }
        if (failure is not null || result.Balance is null)
        {
            var reason = failure?.Describe() ?? "no answer";
            account.LastError = reason.Length > MaxErrorLength ? reason[..MaxErrorLength] : reason;
            LogFailed(logger, account.Id, account.UserId, failure?.Code ?? "UNKNOWN");
            return null;
        }
        var balance = result.Balance;
        var (previous, previousWorking) = (account.AvailableBalance, account.WorkingBalance);
        account.WorkingBalance = balance.Working;
        account.AvailableBalance = balance.Available;
        account.BankAsOf = balance.AsOf;
        account.LastSyncedAt = now;
        account.LastError = null;
        LogSynced(logger, account.UserId, account.AccountNumber, balance.Available, account.Currency);
        return previous == balance.Available && previousWorking == balance.Working ? null : new CoreBalanceUpdated(
            account.Id, account.UserId, account.AccountNumber, account.Currency,
            previous, balance.Available, balance.Available - previous,
            previousWorking, balance.Working, balance.AsOf, now);
    }

    /// <summary>Seed 001's "Synced balance for user ..." line, at Debug: one per account synced.</summary>
    [LoggerMessage(Level = LogLevel.Debug, Message = "Synced balance for user {UserId}: account {AccountNumber} {Balance} {Currency}")]
    private static partial void LogSynced(ILogger logger, Guid userId, string accountNumber, decimal balance, string currency);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Core account {AccountId} of user {UserId}: sync failed with {Reason}")]
    private static partial void LogFailed(ILogger logger, Guid accountId, Guid userId, string reason);
}

/// <summary>When to try a user's sync again.</summary>
public static class RetryPolicy
{
    /// <summary>
    /// Exponential backoff with "equal jitter": attempt n waits between half and all of
    /// base * 2^n (capped), so retries of many users spread out instead of arriving together. A 429's
    /// Retry-After is a floor: the core said when it will listen again.
    /// </summary>
    public static TimeSpan Delay(int attempt, T24Failure? failure, TimeSpan baseDelay, TimeSpan maxDelay, double jitter)
    {
        var exponential = baseDelay.TotalMilliseconds * Math.Pow(2, Math.Clamp(attempt, 0, 30));
        var capped = Math.Min(exponential, maxDelay.TotalMilliseconds);
        var delay = TimeSpan.FromMilliseconds((capped / 2) + (capped / 2 * Math.Clamp(jitter, 0, 1)));
        return failure is T24Failure.RateLimited { RetryAfter: var after } && after > delay ? after : delay;
    }
}
