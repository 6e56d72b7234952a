using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Tally.Data;
using Tally.Jobs.Queues;
using Tally.Jobs.Scheduling;

namespace Tally.Features.Allowances;

/// <summary>
/// <c>allowances.enqueue-due</c>: pages through due, active schedules with a keyset cursor on
/// (<c>next_run_at</c>, <c>id</c>) and enqueues one message per due occurrence. It never moves money.
/// An occurrence is enqueued again only once it is settled or its message is presumed lost
/// (<see cref="AllowanceOptions.RequeueAfter"/>); a duplicate is harmless anyway, because the worker's
/// unique credit row makes it a no-op.
/// </summary>
public sealed partial class EnqueueDueAllowances(
    TallyDb db, IDbContextFactory<TallyDb> dbs, IQueueTransport transport, IOptions<AllowanceOptions> options, TimeProvider clock,
    ILogger<EnqueueDueAllowances> logger) : IScheduledJob
{
    public const string Name = "allowances.enqueue-due";

    /// <summary>
    /// Pages are pipelined: while one page is published, the next is read, and the page before is
    /// marked (each on its own connection). Per page the order stays publish, then mark.
    /// </summary>
    public async Task<JobResult> RunAsync(CancellationToken ct)
    {
        var settings = options.Value;
        var now = clock.GetUtcNow().UtcDateTime;
        var staleBefore = now - settings.RequeueAfter;
        var cursor = (At: DateTime.SpecifyKind(DateTime.MinValue, DateTimeKind.Utc), Id: Guid.Empty);
        int enqueued = 0, skipped = 0, schedules = 0;
        await using var reader = await dbs.CreateDbContextAsync(ct);
        await using var marker = await dbs.CreateDbContextAsync(ct);
        var nextPage = DuePageAsync(reader, now, staleBefore, cursor, settings.BatchSize, ct);
        var marking = Task.CompletedTask;
        try
        {
            while (true)
            {
                var page = await nextPage;
                if (page.Count == 0)
                {
                    break;
                }
                cursor = (page[^1].NextRunAt!.Value, page[^1].Id);
                nextPage = page.Count < settings.BatchSize ? Task.FromResult(new List<AllowanceSchedule>()) : DuePageAsync(reader, now, staleBefore, cursor, settings.BatchSize, ct);

                var messages = new List<QueueMessage>();
                var marks = new List<(Guid Id, DateTime Through)>();
                foreach (var schedule in page)
                {
                    var plan = PlanOccurrences(schedule, now, staleBefore, settings.MaxCatchUp);
                    if (plan.Skip.Count > 0)
                    {
                        skipped += await RecordSkippedAsync(schedule, plan, now, ct);
                    }
                    if (plan.Pay.Count > 0)
                    {
                        messages.AddRange(plan.Pay.Select(t => new OccurrenceMessage(schedule.Id, t).ToQueueMessage()));
                        marks.Add((schedule.Id, plan.Pay[^1]));
                    }
                }
                // Publish first, then remember: a crash in between enqueues again, never loses.
                await transport.PublishAsync(settings.QueueName, messages, ct);
                await marking;
                marking = MarkEnqueuedAsync(marker, marks, now, ct);
                enqueued += messages.Count;
                schedules += marks.Count;
            }
            await marking;
        }
        finally
        {
            // Never leave a read or a mark running on a context about to be disposed.
            await Task.WhenAll(nextPage, marking).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
        if (skipped > 0)
        {
            LogSkipped(logger, skipped, settings.MaxCatchUp);
        }
        LogEnqueued(logger, enqueued, schedules);
        return new JobResult(enqueued);
    }

    public sealed record Plan(IReadOnlyList<DateTime> Pay, IReadOnlyList<DateTime> Skip);

    /// <summary>
    /// Which due occurrences of a schedule to enqueue now, oldest first. Past the catch-up cap, the
    /// oldest excess is recorded as skipped and the newest <paramref name="maxCatchUp"/> are paid.
    /// </summary>
    public static Plan PlanOccurrences(AllowanceSchedule schedule, DateTime now, DateTime staleBefore, int maxCatchUp)
    {
        if (schedule.NextRunAt is not { } next)
        {
            return new Plan([], []);
        }
        var stale = schedule.EnqueuedAt is { } at && at < staleBefore;
        var after = !stale && schedule.EnqueuedThrough is { } through ? through : DateTime.MinValue;
        var due = Recurrence.Occurrences(schedule.Rule(), next > schedule.ActiveFrom ? next : schedule.ActiveFrom)
            .TakeWhile(t => t <= now)
            .Where(t => t > after)
            .ToList();
        return due.Count <= maxCatchUp
            ? new Plan(due, [])
            : new Plan(due[^maxCatchUp..], due[..^maxCatchUp]);
    }

    private static async Task<List<AllowanceSchedule>> DuePageAsync(TallyDb db, DateTime now, DateTime staleBefore, (DateTime At, Guid Id) cursor, int size, CancellationToken ct) =>
        await db.AllowanceSchedules.FromSql(
            $"""
            SELECT * FROM allowance_schedules
            WHERE status = 'ON' AND deleted_at IS NULL AND next_run_at <= {now}
              AND (next_run_at > {cursor.At} OR (next_run_at = {cursor.At} AND id > {cursor.Id}))
              AND (enqueued_through IS NULL OR enqueued_through < next_run_at OR enqueued_at < {staleBefore})
            ORDER BY next_run_at, id
            LIMIT {size}
            """).AsNoTracking().ToListAsync(ct);

    private async Task<int> RecordSkippedAsync(AllowanceSchedule schedule, Plan plan, DateTime now, CancellationToken ct)
    {
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        var recorded = 0;
        foreach (var runAt in plan.Skip)
        {
            recorded += await db.Database.ExecuteSqlAsync(
                $"""
                INSERT INTO allowance_credits (id, schedule_id, run_at, amount_minor, currency, outcome, transaction_id, reason, credited_at)
                VALUES ({Guid.CreateVersion7()}, {schedule.Id}, {runAt}, {schedule.AmountMinor}, {schedule.Currency}, {CreditOutcome.Skipped}, {null as Guid?}, {"beyond the catch-up cap"}, {now})
                ON CONFLICT (schedule_id, run_at) DO NOTHING
                """, ct);
        }
        // Move past the skipped ones only if nobody moved the schedule meanwhile.
        var first = plan.Pay.Count > 0 ? plan.Pay[0] : Recurrence.NextAfter(schedule.Rule(), plan.Skip[^1]);
        await db.Database.ExecuteSqlAsync(
            $"UPDATE allowance_schedules SET next_run_at = {first}, updated_at = {now} WHERE id = {schedule.Id} AND next_run_at = {schedule.NextRunAt}", ct);
        await tx.CommitAsync(ct);
        return recorded;
    }

    private async Task MarkEnqueuedAsync(TallyDb db, List<(Guid Id, DateTime Through)> marks, DateTime now, CancellationToken ct)
    {
        if (marks.Count == 0)
        {
            return;
        }
        if (db.Database.IsNpgsql())
        {
            // One statement per page on PostgreSQL: a million schedules must fit in one cron window.
            var ids = marks.Select(m => m.Id).ToArray();
            var throughs = marks.Select(m => m.Through).ToArray();
            for (var attempt = 1; ; attempt++)
            {
                try
                {
                    await db.Database.ExecuteSqlAsync(
                        $"""
                        WITH locked AS (
                            SELECT id FROM allowance_schedules WHERE id = ANY({ids}) ORDER BY id FOR UPDATE)
                        UPDATE allowance_schedules s SET enqueued_through = v.through, enqueued_at = {now}
                        FROM unnest({ids}, {throughs}) AS v(id, through), locked
                        WHERE s.id = v.id AND locked.id = v.id
                        """, ct);
                    return;
                }
                catch (Exception e) when (attempt < 5 && DbErrors.IsTransient(e))
                {
                    // Rows are locked in id order, as group commit takes them; should a deadlock still happen, the statement is idempotent.
                    LogMarkRetried(logger, attempt);
                    await Task.Delay(TimeSpan.FromMilliseconds(50 * attempt), ct);
                }
            }
        }
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        foreach (var (id, through) in marks)
        {
            await db.Database.ExecuteSqlAsync(
                $"UPDATE allowance_schedules SET enqueued_through = {through}, enqueued_at = {now} WHERE id = {id}", ct);
        }
        await tx.CommitAsync(ct);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Enqueued {Count} allowance occurrences for {Schedules} schedules")]
    private static partial void LogEnqueued(ILogger logger, int count, int schedules);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Marking enqueued schedules lost a deadlock (attempt {Attempt}); trying again")]
    private static partial void LogMarkRetried(ILogger logger, int attempt);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Recorded {Count} missed occurrences as skipped (beyond the catch-up cap of {Cap})")]
    private static partial void LogSkipped(ILogger logger, int count, int cap);
}
