using System.Diagnostics.Metrics;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Npgsql;
using NpgsqlTypes;
using Tally.Data;
using Tally.Features.Users;
using Tally.Jobs;
using Tally.Jobs.Lanes;
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
/// Syncs one user, as a lane entry (<see cref="ILaneHandler"/>): asks the core for each active
/// account's balance, each call through the <see cref="CoreCallGate"/>, then records every answer in
/// ONE transaction: balances, the three times, the last error, and a <c>CoreBalanceUpdated</c> event
/// for each account whose balances changed (<see cref="BalanceSyncSql"/>: on PostgreSQL one round trip
/// of hand-written SQL; elsewhere EF Core's SaveChanges). A transient failure stops the user's
/// remaining calls (the core is struggling: be gentle) and asks for a retry, not before a 429's
/// Retry-After; a retry asks only for the accounts not synced since the user was queued. Either way
/// the answer is all the user's accounts as committed by this attempt, so a waiting login can answer
/// without reading them again (null when nothing was committed). Users that are not active
/// MOBILE_BANKING users are never sent to the core, however they got here.
/// </summary>
/// <remarks>
/// The mirror's commit (<see cref="BalanceSyncOptions.MirrorCommit"/>): asynchronous by default, as it
/// always was, because a crash that forgets it costs at most a repeated sync: the core stays the
/// record of these balances. A crash of PostgreSQL itself (not of Tally) may forget the last few
/// hundred milliseconds of balance writes, always whole transactions, balances together with their
/// events. The lane entry of such a sync is removed later in the same WAL, so it is forgotten too and
/// the user is synced again. No event of a forgotten write has left Tally: the outbox dispatcher
/// publishes only rows that a synchronous commit of its own has made durable
/// (<see cref="OutboxDispatcher"/>). On SQLite the same holds while the outbox table is the only event
/// log; with a broker SQLite has no such guard, so the mirror commits durably there and start-up
/// refuses <c>async</c>. Ledger money never takes this path: it commits synchronously.
/// </remarks>
public sealed partial class SyncUserBalances(
    TallyDb db, T24Client t24, CoreCallGate gate, FleetLimiter fleet, [FromKeyedServices(BalanceSyncOptions.Upstream)] FleetLimit coreLimit,
    IOptions<BalanceSyncOptions> options, TimeProvider clock, ILogger<SyncUserBalances> logger, NpgsqlDataSource? dataSource = null) : ILaneHandler
{
    public const string BalanceUpdatedEvent = "CoreBalanceUpdated";
    private const int MaxErrorLength = 500;

    private static readonly Meter Meter = new("Tally.BalanceSync");
    private static readonly Counter<long> CoreCalls = Meter.CreateCounter<long>("tally_balance_sync_core_calls", description: "Calls to the core by outcome");

    public async Task<LaneResult> RunAsync(LaneEntry entry, Func<Lane> lane, CancellationToken ct)
    {
        // All the user's accounts (the login's answer shows them all), only if the user is an active
        // MOBILE_BANKING user; the active ones are asked for. A login's entry on the shared lanes brings them.
        var sql = BalanceSyncSql.For(db.Database);
        var tracked = sql.SaveAccounts is null;
        var all = entry.Handed is IReadOnlyList<CoreAccount> handed ? [.. handed] : await ReadAccountsAsync(entry.Key, tracked, ct);
        if (entry.Handed is not null && tracked)
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
            await using (await fleet.EnterAsync(coreLimit, () => lane() == Lane.Priority, ct))
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
        var relaxed = options.Value.MirrorCommitsAsynchronously;
        if (sql.SaveAccounts is { } save)
        {
            await SaveAsync(save, relaxed ? sql.RelaxCommit : null, [.. answers.Select(a => a.Account)], events, now, ct);
        }
        else
        {
            foreach (var (subjectId, payload) in events)
            {
                Outbox.Add(db, BalanceUpdatedEvent, subjectId, payload, now);
            }
            await SaveChangesAsync(relaxed ? sql.RelaxConnection?.Sql : null, ct);
        }
        var committed = all.Count > 0 ? all : null;
        return transient switch
        {
            null => new LaneResult(JobOutcome.Done, committed),
            // The core said when it will listen again: no retry before that.
            T24Failure.RateLimited limited => new LaneResult(JobOutcome.RetryLater(limited.Code, now + limited.RetryAfter), committed),
            _ => new LaneResult(JobOutcome.RetryLater(transient.Code), committed),
        };
    }

    /// <summary>
    /// PostgreSQL: the recorded accounts and their events in ONE round trip on the process's pool, a
    /// batch sent with one sync and so one implicit transaction; with an asynchronous mirror commit its
    /// first statement relaxes that transaction's commit alone.
    /// </summary>
    private async Task SaveAsync(string save, string? relaxed, IReadOnlyList<CoreAccount> recorded, IReadOnlyList<(string? SubjectId, object Payload)> events, DateTime now, CancellationToken ct)
    {
        if (recorded.Count == 0)
        {
            return;
        }
        var pool = dataSource ?? throw new InvalidOperationException("PostgreSQL storage without its connection pool.");
        await using var connection = await pool.OpenConnectionAsync(ct);
        await using var batch = new NpgsqlBatch(connection);
        if (relaxed is not null)
        {
            batch.BatchCommands.Add(new NpgsqlBatchCommand(relaxed));
        }
        var update = new NpgsqlBatchCommand(save);
        update.Parameters.Add(new NpgsqlParameter { Value = recorded.Select(a => a.Id).ToArray() });
        update.Parameters.Add(new NpgsqlParameter { Value = recorded.Select(a => a.WorkingBalance).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Numeric });
        update.Parameters.Add(new NpgsqlParameter { Value = recorded.Select(a => a.AvailableBalance).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Numeric });
        update.Parameters.Add(new NpgsqlParameter { Value = recorded.Select(a => a.BankAsOf).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.TimestampTz });
        update.Parameters.Add(new NpgsqlParameter { Value = recorded.Select(a => a.LastSyncedAt).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.TimestampTz });
        update.Parameters.Add(new NpgsqlParameter { Value = recorded.Select(_ => now).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.TimestampTz });
        update.Parameters.Add(new NpgsqlParameter { Value = recorded.Select(a => a.LastError).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
        batch.BatchCommands.Add(update);
        if (events.Count > 0)
        {
            batch.BatchCommands.Add(Outbox.InsertMany(BalanceUpdatedEvent, events, now));
        }
        // Prepared: the statements stay with the connection through the pool, so a connection parses
        // and plans them once, not on every login.
        await batch.PrepareAsync(ct);
        await batch.ExecuteNonQueryAsync(ct);
    }

    /// <summary>
    /// SQLite: EF Core's SaveChanges of the tracked accounts and staged events; relaxed, on a connection
    /// held open so the setting covers exactly this write (the next open sets FULL again). The
    /// fsync per commit it skips stalled on a busy disk, holding the one write lock and so every
    /// other write (bench/RESULTS.md); a power loss may roll back the last mirror writes, whole
    /// transactions with their events, and the next sync redoes them.
    /// </summary>
    private async Task SaveChangesAsync(string? relaxed, CancellationToken ct)
    {
        if (relaxed is null)
        {
            await db.SaveChangesAsync(ct);
            return;
        }
        await db.Database.OpenConnectionAsync(ct);
        try
        {
            await db.Database.ExecuteSqlRawAsync(relaxed, ct);
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
