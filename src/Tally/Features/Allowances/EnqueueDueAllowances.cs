using System.Globalization;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Tally.Data;
using Tally.Jobs.Queues;
using Tally.Jobs.Scheduling;

namespace Tally.Features.Allowances;

/// <summary>
/// <c>allowances.enqueue-due</c>: pages through due, active schedules with a keyset cursor on
/// (<c>next_run_at</c>, <c>id</c>) and enqueues their due occurrences: in pages of up to
/// <see cref="AllowanceOptions.PageSize"/> (<see cref="OccurrencePage"/>), or one message each in the
/// seed's shape (<see cref="AllowanceOptions.MessageShape"/>). It never moves money.
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
    public async Task<JobResult> RunAsync(JobRun run, CancellationToken ct)
    {
        var settings = options.Value;
        var now = clock.GetUtcNow().UtcDateTime;
        var staleBefore = now - settings.RequeueAfter;
        var cursor = (At: DateTime.SpecifyKind(DateTime.MinValue, DateTimeKind.Utc), Id: Guid.Empty);
        int enqueued = 0, skipped = 0, schedules = 0;
        // Schedules moved forward past the cap by this run: a later page may read them again, planned already.
        var moved = new HashSet<Guid>();
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

                var occurrences = new List<OccurrenceMessage>();
                var marks = new List<(Guid Id, DateTime Through)>();
                foreach (var schedule in page)
                {
                    if (moved.Contains(schedule.Id))
                    {
                        continue;
                    }
                    var plan = PlanOccurrences(schedule, now, staleBefore, settings.MaxCatchUp);
                    if (plan.Skip is { } skip)
                    {
                        if (!await SkipBeyondCapAsync(schedule, skip, now, ct))
                        {
                            continue; // changed since it was read: the next run plans it from what it is now
                        }
                        moved.Add(schedule.Id);
                        skipped++;
                    }
                    if (plan.Pay.Count > 0)
                    {
                        occurrences.AddRange(plan.Pay.Select(t => new OccurrenceMessage(schedule.Id, t)));
                        marks.Add((schedule.Id, plan.Pay[^1]));
                    }
                }
                // Publish first, then remember: a crash in between enqueues again, never loses.
                await transport.PublishAsync(settings.QueueName, Messages(occurrences, settings), ct);
                await marking;
                marking = MarkEnqueuedAsync(marker, marks, now, ct);
                enqueued += occurrences.Count;
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

    /// <summary>The messages that carry <paramref name="occurrences"/> in the configured shape.</summary>
    public static List<QueueMessage> Messages(IReadOnlyList<OccurrenceMessage> occurrences, AllowanceOptions settings) =>
        settings.MessageShape == AllowanceOptions.OccurrenceShape
            ? [.. occurrences.Select(o => o.ToQueueMessage())]
            : [.. OccurrencePage.Paged(occurrences, settings.PageSize).Select(p => p.ToQueueMessage())];

    /// <summary>What to do with a schedule's due occurrences now: enqueue <see cref="Pay"/> (oldest first), and record <see cref="Skip"/> if any.</summary>
    public sealed record Plan(IReadOnlyList<DateTime> Pay, CatchUpSkip? Skip);

    /// <summary>
    /// The due occurrences beyond the catch-up cap, <see cref="First"/> through <see cref="Last"/>: never
    /// paid. The schedule resumes at <see cref="ResumeAt"/>, the oldest occurrence still paid, which
    /// becomes its <c>active_from</c>.
    /// </summary>
    public sealed record CatchUpSkip(DateTime First, DateTime Last, DateTime ResumeAt)
    {
        public string Reason => string.Create(CultureInfo.InvariantCulture,
            $"beyond the catch-up cap: missed occurrences from {First:yyyy-MM-dd'T'HH:mm:ss'Z'} through {Last:yyyy-MM-dd'T'HH:mm:ss'Z'}");
    }

    /// <summary>
    /// Which due occurrences of a schedule to enqueue now, oldest first. Due are the occurrences from
    /// <c>max(next_run_at, active_from)</c> through <paramref name="now"/>; past the catch-up cap only the
    /// newest <paramref name="maxCatchUp"/> are paid and the older ones are skipped. Occurrences
    /// enqueued already (through <c>enqueued_through</c>, unless that is stale) are not enqueued again.
    /// The cost is in the order of the cap, however far back the schedule starts: at most the oldest
    /// and the newest cap + 1 occurrences are enumerated, never all the missed ones.
    /// </summary>
    public static Plan PlanOccurrences(AllowanceSchedule schedule, DateTime now, DateTime staleBefore, int maxCatchUp)
    {
        if (schedule.NextRunAt is not { } next)
        {
            return new Plan([], null);
        }
        var from = next > schedule.ActiveFrom ? next : schedule.ActiveFrom;
        if (from > now)
        {
            return new Plan([], null);
        }
        var rule = schedule.Rule();
        var stale = schedule.EnqueuedAt is { } at && at < staleBefore;
        var after = !stale && schedule.EnqueuedThrough is { } through ? through : DateTime.MinValue;
        // Most schedules are a few occurrences behind: counted forward from `from`, those are all there is.
        var oldest = Recurrence.Occurrences(rule, from, now).Take(maxCatchUp + 1).ToList();
        if (oldest.Count <= maxCatchUp)
        {
            return new Plan(oldest.Where(t => t > after).ToList(), null);
        }
        // More than the cap: the newest are found looking back from now, never by walking the missed ones.
        var newest = Newest(rule, from, now, maxCatchUp + 1);
        var pay = newest.Skip(1).ToList();
        return new Plan(pay.Where(t => t > after).ToList(), new CatchUpSkip(oldest[0], newest[0], pay[0]));
    }

    /// <summary>
    /// The newest <paramref name="count"/> occurrences from <paramref name="fromUtc"/> through
    /// <paramref name="untilUtc"/>, oldest first (fewer if there are not that many). Looks back over a
    /// window that should hold them, doubled while it does not and still starts after <paramref name="fromUtc"/>.
    /// </summary>
    internal static List<DateTime> Newest(RecurrenceRule rule, DateTime fromUtc, DateTime untilUtc, int count)
    {
        var span = EstimatedSpanDays(rule, count);
        while (true)
        {
            var windowStart = (untilUtc - fromUtc).TotalDays <= span ? fromUtc : untilUtc.AddDays(-span);
            var found = Recurrence.Occurrences(rule, windowStart, untilUtc).ToList();
            if (found.Count >= count || windowStart == fromUtc)
            {
                return found.Count > count ? found[^count..] : found;
            }
            span *= 2;
        }
    }

    /// <summary>
    /// Days that hold at least <paramref name="count"/> occurrences of a daily or weekly rule (two periods
    /// spare for a partial first one and DST), and usually of a monthly one; a month without the day
    /// makes <see cref="Newest"/> look further. At most the whole calendar.
    /// </summary>
    private static long EstimatedSpanDays(RecurrenceRule rule, int count)
    {
        const long Calendar = 3_700_000;
        var periods = (count + 2L) * Math.Max(1, rule.Interval);
        var days = rule.Frequency switch
        {
            Frequency.Daily => periods,
            Frequency.Weekly => periods * 7,
            _ => (periods * 31) + 62,
        };
        return Math.Min(days, Calendar);
    }

    private static async Task<List<AllowanceSchedule>> DuePageAsync(TallyDb db, DateTime now, DateTime staleBefore, (DateTime At, Guid Id) cursor, int size, CancellationToken ct) =>
        await db.AllowanceSchedules.FromSqlRaw(AllowanceSql.For(db.Database).DuePage, now, cursor.At, cursor.Id, staleBefore, size).AsNoTracking().ToListAsync(ct);

    /// <summary>
    /// Records the occurrences beyond the cap as ONE skipped credit (at the newest of them), and moves
    /// the schedule's <c>active_from</c> and <c>next_run_at</c> to the oldest occurrence still paid, in
    /// one transaction. Moving <c>active_from</c> is what makes the cap hold for good: the worker pays
    /// nothing before it, whatever is still queued, retried, replayed or planned again. Applies only
    /// if the schedule is as it was read (false otherwise, and nothing is written).
    /// </summary>
    private async Task<bool> SkipBeyondCapAsync(AllowanceSchedule schedule, CatchUpSkip skip, DateTime now, CancellationToken ct)
    {
        var sql = AllowanceSql.For(db.Database);
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        var moved = await db.Database.ExecuteSqlRawAsync(sql.MoveBeyondCap, [skip.ResumeAt, now, schedule.Id, schedule.NextRunAt!, schedule.ActiveFrom], ct);
        if (moved == 0)
        {
            return false;
        }
        await db.Database.ExecuteSqlRawAsync(sql.RecordSkippedCredit,
            [Guid.CreateVersion7(), schedule.Id, skip.Last, schedule.AmountMinor, schedule.Currency, skip.Reason, now], ct);
        await tx.CommitAsync(ct);
        return true;
    }

    /// <summary>Remembers what was enqueued, one statement per page: a million schedules must fit in one cron window.</summary>
    private async Task MarkEnqueuedAsync(TallyDb db, List<(Guid Id, DateTime Through)> marks, DateTime now, CancellationToken ct)
    {
        var sql = AllowanceSql.For(db.Database);
        Array[] columns = [marks.Select(m => m.Id).ToArray(), marks.Select(m => m.Through).ToArray()];
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await db.Database.ExecuteAsync(sql.MarkEnqueued, [now], columns, ct);
                return;
            }
            catch (Exception e) when (attempt < 5 && DbErrors.IsTransient(e))
            {
                // PostgreSQL locks the rows in id order, as the payment's advance does; should a deadlock still happen, the statement is idempotent.
                LogMarkRetried(logger, attempt);
                await Task.Delay(TimeSpan.FromMilliseconds(50 * attempt), ct);
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Enqueued {Count} allowance occurrences for {Schedules} schedules")]
    private static partial void LogEnqueued(ILogger logger, int count, int schedules);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Marking enqueued schedules lost a deadlock (attempt {Attempt}); trying again")]
    private static partial void LogMarkRetried(ILogger logger, int attempt);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Skipped the missed occurrences beyond the catch-up cap of {Cap} for {Schedules} schedules")]
    private static partial void LogSkipped(ILogger logger, int schedules, int cap);
}
