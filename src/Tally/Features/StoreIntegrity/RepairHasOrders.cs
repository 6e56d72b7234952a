using System.Globalization;
using System.Runtime.CompilerServices;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Tally.Data;
using Tally.Jobs.Outbox;
using Tally.Jobs.Scheduling;

namespace Tally.Features.StoreIntegrity;

/// <summary>What a run of <see cref="RepairHasOrders"/> changed: the accounts whose flag it set, in id order.</summary>
public sealed record RepairHasOrdersResult(IReadOnlyList<Guid> UpdatedIds);

/// <summary>
/// The event of a run that set <c>has_orders</c> on at least one account: the run (its <c>cron_runs</c>
/// id, also the event's subject) and every account it repaired, in id order. One per such run.
/// </summary>
public sealed record StoreAccountsRepaired(long RunId, IReadOnlyList<Guid> AccountIds);

/// <summary>
/// <c>store.sync-accounts</c> (the seed's Sync Accounts processor): active store accounts flagged
/// <c>has_orders = false</c> that are seller or buyer on at least one active order of a managed
/// subscription type get <c>has_orders = true</c>. Idempotent: a second run finds nothing. Each run,
/// scheduled or manual, keeps the ids it repaired under its run id and publishes them as one
/// <see cref="StoreAccountsRepaired"/> event, both committed with the flags. The runtime's lock keeps
/// two instances from running it at once, and a failure is logged here with the seed's initiator,
/// then reported as a value for the runtime to record as a FAILED run. The public job name and
/// endpoint keep the seed's <c>store.sync-accounts</c>; the settings are <c>StoreIntegrity:*</c>, the
/// feature's folder.
/// </summary>
public sealed partial class RepairHasOrders(TallyDb db, IOptionsMonitor<StoreIntegrityOptions> options, TimeProvider clock, ILogger<RepairHasOrders> logger)
    : IScheduledJob
{
    public const string Name = "store.sync-accounts";
    public const string DefaultCron = "*/5 * * * *";
    public const string Initiator = "store/sync-accounts";
    public const string RepairedEvent = "StoreAccountsRepaired";

    public async Task<JobResult> RunAsync(JobRun run, CancellationToken ct)
    {
        try
        {
            var updated = await RepairAndRecordAsync(db, options.CurrentValue.Types, run.RunId, clock.GetUtcNow().UtcDateTime, ct);
            if (updated.Count == 0)
            {
                LogInSync(logger);
            }
            else
            {
                LogOutOfSync(logger, updated.Count);
                LogRepaired(logger, updated);
            }
            return new JobResult(updated.Count, new RepairHasOrdersResult(updated));
        }
        catch (Exception e) when (!(e is OperationCanceledException && ct.IsCancellationRequested))
        {
            // The seed's failure log names the initiator; the run records the same failure as a value.
            LogFailed(logger, e, Initiator);
            return JobResult.Failed($"{e.GetType().Name}: {e.Message}");
        }
    }

    /// <summary>
    /// The repair as a run does it, in one transaction: sets the flags (<see cref="RepairAsync"/>), keeps
    /// the ids under the run in <c>store_account_repairs</c> and stages one <see cref="StoreAccountsRepaired"/>
    /// event in the outbox. All three commit together or not at all: a crash before the commit leaves
    /// the flags unset, so the next run repairs, records and announces the same accounts. A run that
    /// repaired nothing writes no record and no event.
    /// </summary>
    public static async Task<List<Guid>> RepairAndRecordAsync(TallyDb db, IReadOnlyList<string> managedTypes, long runId, DateTime now, CancellationToken ct)
    {
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        var repaired = await RepairAsync(db, managedTypes, ct);
        if (repaired.Count > 0)
        {
            // Through the change tracker: a run repairs a handful of accounts (the seed's typical run: 0 to 5).
            db.StoreAccountRepairs.AddRange(repaired.Select(id => new StoreAccountRepair { RunId = runId, AccountId = id, RepairedAt = now }));
            Outbox.Add(db, RepairedEvent, runId.ToString(CultureInfo.InvariantCulture), new StoreAccountsRepaired(runId, repaired), now);
            await db.SaveChangesAsync(ct);
        }
        await tx.CommitAsync(ct);
        return repaired;
    }

    /// <summary>Sets the flag where it is missing, in one statement, and answers the ids it set (sorted).</summary>
    public static async Task<List<Guid>> RepairAsync(TallyDb db, IReadOnlyList<string> managedTypes, CancellationToken ct)
    {
        if (managedTypes.Count == 0)
        {
            throw new ArgumentException("At least one managed subscription type is needed.", nameof(managedTypes));
        }
        var sql = StoreSql.For(db.Database);
        var ids = await db.Database.SqlQuery<Guid>(FormattableStringFactory.Create(sql.RepairFlags, [sql.TypesParameter(managedTypes)])).ToListAsync(ct);
        ids.Sort();
        return ids;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "No accounts out of sync")]
    private static partial void LogInSync(ILogger logger);

    [LoggerMessage(Level = LogLevel.Information, Message = "Found {Count} accounts out of sync")]
    private static partial void LogOutOfSync(ILogger logger, int count);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Set has_orders on {AccountIds}")]
    private static partial void LogRepaired(ILogger logger, IReadOnlyList<Guid> accountIds);

    [LoggerMessage(Level = LogLevel.Error, Message = "Syncing store accounts failed ({Initiator})")]
    private static partial void LogFailed(ILogger logger, Exception e, string initiator);
}
