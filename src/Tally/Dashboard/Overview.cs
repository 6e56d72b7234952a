using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Tally.Data;
using Tally.Features.Allowances;
using Tally.Features.BalanceSync;
using Tally.Hosting;
using Tally.Jobs;
using Tally.Jobs.Audit;
using Tally.Jobs.Instances;
using Tally.Jobs.Lanes;
using Tally.Jobs.Queues;
using Tally.Jobs.RateLimits;
using Tally.Jobs.Scheduling;

namespace Tally.Dashboard;

/// <summary>The newest instances, and how many of them are alive, lost (stopped heartbeating without stopping) and stopped.</summary>
public sealed record InstancesSummary(int Alive, int Lost, int Stopped, List<InstanceView> Recent);

/// <summary>A queue's depths, from its transport, and its dead letters (counted up to <see cref="Overview.CountCap"/>; <see cref="DeadLettersCapped"/> when there are more).</summary>
public sealed record QueueSummary(string Queue, string Transport, long Ready, long InFlight, long Retrying, long DeadLetters, bool DeadLettersCapped);

/// <summary>
/// Events not yet published: how many (counted up to <see cref="Overview.CountCap"/>; <see cref="BacklogCapped"/>
/// when there are more), and the oldest one's time and age.
/// </summary>
public sealed record OutboxSummary(long Backlog, bool BacklogCapped, DateTime? OldestUnpublishedAt, double? OldestAgeSeconds);

public sealed record FailedRunSummary(long Id, string Job, DateTime StartedAt, DateTime? FinishedAt, string? Error);

public sealed record DeadLetterSummary(Guid Id, string Queue, string MessageId, int Attempts, DateTime DeadLetteredAt, string Reason);

public sealed record LatestFailures(List<FailedRunSummary> Runs, List<DeadLetterSummary> DeadLetters);

/// <summary>One hour (UTC, from <see cref="Hour"/> to the next): allowance credits paid, runs started by status, messages dead-lettered.</summary>
public sealed record HourSummary(DateTime Hour, long CreditsPaid, long RunsSucceeded, long RunsFailed, long RunsRunning, long RunsSkippedLocked, long DeadLetters);

/// <summary>
/// The console's first page. <see cref="InstanceId"/> is the instance that answered: the call gate
/// in <see cref="BalanceSync"/> is its own, everything else is shared.
/// </summary>
public sealed record OverviewView(
    DateTime At, string InstanceId, InstancesSummary Instances, List<QueueSummary> Queues, OutboxSummary Outbox, LanesView BalanceSync,
    LatestFailures LatestFailures, List<HourSummary> Last24Hours);

/// <summary>
/// <c>GET /api/admin/overview</c>. Every number is an index seek or a range scan bounded by what it
/// shows, never by the size of a table: the outbox backlog through the partial index of unpublished
/// events and the live dead letters of each queue through ix_dead_letters_queue_state_sequence, each counted no
/// further than <see cref="CountCap"/> (a count is as slow as what it counts: past that, the console
/// shows "more than"), the latest failures per job through ix_cron_runs_job_status, and the
/// series through the time columns' indexes (cron_runs started_at, allowance_credits credited_at,
/// dead_letters dead_lettered_at), one day of rows each, grouped in the database.
/// </summary>
public static class Overview
{
    public const int CountCap = 100_000;
    public const int RecentInstances = 50;
    private const int MaxFailures = 100;
    private const int ShortText = 200;

    public static WebApplication MapOverview(this WebApplication app)
    {
        app.MapAdmin("/api/admin", "Admin: overview").MapGet("/overview", ReadAsync);
        return app;
    }

    /// <summary>The overview; <paramref name="failures"/> is how many failed runs and dead letters to show (10 unless given).</summary>
    internal static async Task<Results<Ok<OverviewView>, ValidationProblem>> ReadAsync(
        TallyDb db, QueueRegistry queues, IQueueTransport transport, JobRegistry jobs, ILaneStore lanes, CoreCallGate gate, FleetLimiter fleet,
        IOptions<TallyOptions> tally, TimeProvider clock, CancellationToken ct, int? failures = null)
    {
        var show = failures ?? 10;
        if (new FieldErrors().Check(show is >= 1 and <= MaxFailures, "failures", $"must be between 1 and {MaxFailures}") is { Any: true } errors)
        {
            return Problems.Invalid(errors.ToDictionary());
        }
        var now = clock.GetUtcNow().UtcDateTime;
        var instances = await InstanceRegistry.ReadAsync(db, now, RecentInstances, ct);
        return TypedResults.Ok(new OverviewView(
            now,
            tally.Value.ResolvedInstanceId,
            new InstancesSummary(
                instances.Count(i => i.State == InstanceStates.Alive), instances.Count(i => i.State == InstanceStates.Lost),
                instances.Count(i => i.State == InstanceStates.Stopped), instances),
            await QueuesAsync(db, queues, transport, ct),
            await OutboxAsync(db, now, ct),
            await LanesView.ReadAsync(lanes, gate, fleet, tally.Value, ct),
            new LatestFailures(await FailedRunsAsync(db, jobs, show, ct), await DeadLettersAsync(db, show, ct)),
            await Last24HoursAsync(db, now, ct)));
    }

    private static async Task<List<QueueSummary>> QueuesAsync(TallyDb db, QueueRegistry queues, IQueueTransport transport, CancellationToken ct)
    {
        var summaries = new List<QueueSummary>();
        foreach (var queue in queues.All.Select(r => r.Definition).OrderBy(q => q.Name, StringComparer.Ordinal))
        {
            var depth = await transport.GetDepthAsync(queue, ct);
            var dead = await db.DeadLetters.AsNoTracking().Live().Where(d => d.Queue == queue.Name).OrderBy(d => d.Sequence).Take(CountCap + 1).LongCountAsync(ct);
            summaries.Add(new QueueSummary(queue.Name, transport.Name, depth.Ready, depth.InFlight, depth.Retrying, Math.Min(dead, CountCap), dead > CountCap));
        }
        return summaries;
    }

    private static async Task<OutboxSummary> OutboxAsync(TallyDb db, DateTime now, CancellationToken ct)
    {
        var unpublished = db.OutboxEvents.AsNoTracking().Where(e => e.PublishedAt == null);
        // Ordered as the partial index is, so the capped count walks it and stops.
        var counted = await unpublished.OrderBy(e => e.Sequence).Take(CountCap + 1).LongCountAsync(ct);
        var oldest = await unpublished.OrderBy(e => e.Sequence).Select(e => (DateTime?)e.OccurredAt).FirstOrDefaultAsync(ct);
        oldest = oldest is { } at ? DateTime.SpecifyKind(at, DateTimeKind.Utc) : null;
        return new OutboxSummary(Math.Min(counted, CountCap), counted > CountCap, oldest, oldest is { } o ? Math.Max(0, (now - o).TotalSeconds) : null);
    }

    /// <summary>The newest failed runs of the registered jobs: the newest few of each job (a seek each), merged.</summary>
    private static async Task<List<FailedRunSummary>> FailedRunsAsync(TallyDb db, JobRegistry jobs, int take, CancellationToken ct)
    {
        var failed = new List<CronRun>();
        foreach (var job in jobs.All)
        {
            failed.AddRange(await JobEndpoints.LatestAsync(db.CronRuns.AsNoTracking().Where(r => r.JobName == job.Name), CronRunStatus.Failed, take, ct));
        }
        return failed.OrderByDescending(r => r.StartedAt).ThenByDescending(r => r.Id).Take(take)
            .Select(r => new FailedRunSummary(r.Id, r.JobName, r.StartedAt, r.FinishedAt, Shorten(r.ErrorMessage))).ToList();
    }

    private static async Task<List<DeadLetterSummary>> DeadLettersAsync(TallyDb db, int take, CancellationToken ct)
    {
        // Never the body: it may be large, and the dead letter's own page shows it.
        var rows = await db.DeadLetters.AsNoTracking().Live().OrderByDescending(d => d.DeadLetteredAt).ThenByDescending(d => d.Id).Take(take)
            .Select(d => new { d.Id, d.Queue, d.MessageId, d.Attempts, d.DeadLetteredAt, d.Reason }).ToListAsync(ct);
        return rows.Select(d => new DeadLetterSummary(d.Id, d.Queue, d.MessageId, d.Attempts, DateTime.SpecifyKind(d.DeadLetteredAt, DateTimeKind.Utc), Shorten(d.Reason)!)).ToList();
    }

    /// <summary>The 24 hours up to now, oldest first: the current hour so far, and the 23 whole hours before it.</summary>
    private static async Task<List<HourSummary>> Last24HoursAsync(TallyDb db, DateTime now, CancellationToken ct)
    {
        var current = new DateTime(now.Ticks - (now.Ticks % TimeSpan.TicksPerHour), DateTimeKind.Utc);
        var since = current.AddHours(-23);
        var credits = await db.AllowanceCredits.AsNoTracking()
            .Where(c => c.CreditedAt >= since && c.Outcome == CreditOutcome.Paid)
            .GroupBy(c => new { c.CreditedAt.Date, c.CreditedAt.Hour })
            .Select(g => new { g.Key.Date, g.Key.Hour, Count = g.LongCount() }).ToListAsync(ct);
        var runs = await db.CronRuns.AsNoTracking()
            .Where(r => r.StartedAt >= since)
            .GroupBy(r => new { r.StartedAt.Date, r.StartedAt.Hour, r.Status })
            .Select(g => new { g.Key.Date, g.Key.Hour, g.Key.Status, Count = g.LongCount() }).ToListAsync(ct);
        // History, not the present: every message dead-lettered in the hour, replayed or deleted since
        // or not (the queue counts above are what is still dead).
        var dead = await db.DeadLetters.AsNoTracking()
            .Where(d => d.DeadLetteredAt >= since)
            .GroupBy(d => new { d.DeadLetteredAt.Date, d.DeadLetteredAt.Hour })
            .Select(g => new { g.Key.Date, g.Key.Hour, Count = g.LongCount() }).ToListAsync(ct);

        static DateTime HourOf(DateTime date, int hour) => DateTime.SpecifyKind(date.Date.AddHours(hour), DateTimeKind.Utc);
        var paid = credits.ToDictionary(c => HourOf(c.Date, c.Hour), c => c.Count);
        var deadLettered = dead.ToDictionary(d => HourOf(d.Date, d.Hour), d => d.Count);
        var started = runs.ToDictionary(r => (HourOf(r.Date, r.Hour), r.Status), r => r.Count);
        return Enumerable.Range(0, 24).Select(i => since.AddHours(i)).Select(hour => new HourSummary(
            hour,
            paid.GetValueOrDefault(hour),
            started.GetValueOrDefault((hour, CronRunStatus.Success)),
            started.GetValueOrDefault((hour, CronRunStatus.Failed)),
            started.GetValueOrDefault((hour, CronRunStatus.Running)),
            started.GetValueOrDefault((hour, CronRunStatus.SkippedLocked)),
            deadLettered.GetValueOrDefault(hour))).ToList();
    }

    private static string? Shorten(string? text) => text is { Length: > ShortText } ? text[..ShortText] + "…" : text;
}
