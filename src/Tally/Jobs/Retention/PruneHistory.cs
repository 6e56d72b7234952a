using System.ComponentModel.DataAnnotations;
using System.Text.Json.Serialization;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Tally.Data;
using Tally.Hosting;
using Tally.Jobs.Queues;
using Tally.Jobs.Scheduling;

namespace Tally.Jobs.Retention;

/// <summary>The <c>Retention</c> section: how long each kind of history is kept, and how it is removed.</summary>
public sealed class RetentionOptions
{
    public const string Section = "Retention";

    /// <summary>Runs in <c>cron_runs</c> older than this (by start) are removed, except a run still RUNNING and a run a feature still points at (<see cref="IKeepsRuns"/>).</summary>
    [Range(1, 36_500, ErrorMessage = "Retention:CronRunsDays must be between 1 and 36500.")]
    public int CronRunsDays { get; set; } = 90;

    /// <summary>Outbox events published longer ago than this are removed; an unpublished event never is.</summary>
    [Range(1, 36_500, ErrorMessage = "Retention:PublishedEventsDays must be between 1 and 36500.")]
    public int PublishedEventsDays { get; set; } = 30;

    /// <summary>Dead-letter records replayed or deleted longer ago than this are removed; a letter still dead never is.</summary>
    [Range(1, 36_500, ErrorMessage = "Retention:SettledDeadLettersDays must be between 1 and 36500.")]
    public int SettledDeadLettersDays { get; set; } = 90;

    /// <summary>Rows removed per statement: each batch is its own short statement, so no hot table is locked for long.</summary>
    [Range(10, 100_000, ErrorMessage = "Retention:BatchSize must be between 10 and 100000.")]
    public int BatchSize { get; set; } = 1000;

    /// <summary>At most this many batches per table per run; what is left waits for the next run.</summary>
    [Range(1, 100_000, ErrorMessage = "Retention:MaxBatchesPerRun must be between 1 and 100000.")]
    public int MaxBatchesPerRun { get; set; } = 500;
}

/// <summary>What one run removed, per table: the runtime's three, then each feature's under its <see cref="IFeatureHistory.Name"/>.</summary>
public sealed record PrunedRows(long CronRuns, long PublishedEvents, long SettledDeadLetters)
{
    /// <summary>Each feature's count, written beside the runtime's in the run's detail.</summary>
    [JsonExtensionData]
    public Dictionary<string, object> Features { get; init; } = [];

    public long Total => CronRuns + PublishedEvents + SettledDeadLetters + Features.Values.Sum(v => (long)v);
}

/// <summary>
/// A feature's own history that <c>runtime.prune-history</c> keeps to its retention, so the runtime
/// prunes it without knowing the feature. Registered as a singleton by the feature.
/// </summary>
public interface IFeatureHistory
{
    /// <summary>This part's key in the run's detail, e.g. <c>syncRuns</c>.</summary>
    string Name { get; }

    /// <summary>Deletes at most <paramref name="take"/> of this feature's oldest rows past their retention; answers how many.</summary>
    Task<int> DeleteBatchAsync(TallyDb db, DateTime now, int take, CancellationToken ct);
}

/// <summary>A feature whose rows point at <c>cron_runs</c>: those runs are kept whatever their age. Registered as a singleton by the feature.</summary>
public interface IKeepsRuns
{
    /// <summary>Ids of the runs this feature's rows point at.</summary>
    IQueryable<long> RunsInUse(TallyDb db);
}

/// <summary>
/// <c>runtime.prune-history</c>: removes old history so the operator tables stay the size of their
/// retention, not of the service's age. Money is never pruned: allowance credits, ledger transfers
/// and the audit log stay whatever their age. Each table is emptied oldest first in batches of
/// <see cref="RetentionOptions.BatchSize"/>, each one short statement (a keyed subquery, then a delete
/// by key), so the writers of these tables wait at most for one batch.
/// </summary>
public sealed partial class PruneHistory(
    TallyDb db, IOptions<RetentionOptions> options, IEnumerable<IFeatureHistory> features, IEnumerable<IKeepsRuns> keepers,
    TimeProvider clock, ILogger<PruneHistory> logger) : IScheduledJob
{
    public const string Name = "runtime.prune-history";
    public const string DefaultCron = "23 * * * *";

    public async Task<JobResult> RunAsync(JobRun run, CancellationToken ct)
    {
        var o = options.Value;
        var now = clock.GetUtcNow().UtcDateTime;
        var runsBefore = now.AddDays(-o.CronRunsDays);
        var eventsBefore = now.AddDays(-o.PublishedEventsDays);
        var lettersBefore = now.AddDays(-o.SettledDeadLettersDays);
        var oldRuns = db.CronRuns.Where(r => r.StartedAt < runsBefore && r.Status != CronRunStatus.Running);
        foreach (var keeper in keepers)
        {
            var inUse = keeper.RunsInUse(db);
            oldRuns = oldRuns.Where(r => !inUse.Contains(r.Id));
        }
        var pruned = new PrunedRows(
            await InBatchesAsync(take => oldRuns.OrderBy(r => r.Id).Take(take).ExecuteDeleteAsync(ct), o),
            await InBatchesAsync(take => db.OutboxEvents
                .Where(e => e.PublishedAt != null && e.PublishedAt < eventsBefore)
                .OrderBy(e => e.Sequence).Take(take).ExecuteDeleteAsync(ct), o),
            await InBatchesAsync(take => db.DeadLetters
                .Where(d => d.State != DeadLetterStates.Dead && d.SettledAt < lettersBefore)
                .OrderBy(d => d.Sequence).Take(take).ExecuteDeleteAsync(ct), o));
        foreach (var feature in features)
        {
            pruned.Features[feature.Name] = await InBatchesAsync(take => feature.DeleteBatchAsync(db, now, take, ct), o);
        }
        LogPruned(logger, pruned.CronRuns, pruned.PublishedEvents, pruned.SettledDeadLetters,
            string.Join(", ", pruned.Features.Select(f => $"{f.Value} {f.Key}")));
        return new JobResult((int)Math.Min(int.MaxValue, pruned.Total), pruned);
    }

    private static async Task<long> InBatchesAsync(Func<int, Task<int>> deleteBatch, RetentionOptions o)
    {
        long total = 0;
        for (var i = 0; i < o.MaxBatchesPerRun; i++)
        {
            var removed = await deleteBatch(o.BatchSize);
            total += removed;
            if (removed < o.BatchSize)
            {
                break;
            }
        }
        return total;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Pruned history: {CronRuns} runs, {Events} published events, {DeadLetters} settled dead letters; features: {Features}")]
    private static partial void LogPruned(ILogger logger, long cronRuns, long events, long deadLetters, string features);
}
