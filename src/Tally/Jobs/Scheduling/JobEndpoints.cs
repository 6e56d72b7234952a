using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Tally.Data;
using Tally.Hosting;
using Tally.Jobs.Audit;

namespace Tally.Jobs.Scheduling;

/// <summary>An occurrence of a schedule: the exact instant (UTC), and the wall-clock time in the schedule's zone with its offset.</summary>
public sealed record OccurrenceView(DateTime Utc, DateTimeOffset Local)
{
    public static OccurrenceView Of(DateTime utc, TimeZoneInfo zone) =>
        new(utc, new DateTimeOffset(DateTime.SpecifyKind(utc, DateTimeKind.Utc)).ToOffset(zone.GetUtcOffset(utc)));
}

/// <summary>One run of a job, as the job page shows it: <see cref="DurationMs"/> is null while it runs.</summary>
public sealed record RunSummary(long Id, string Status, string Trigger, DateTime? ScheduledFor, DateTime StartedAt, DateTime? FinishedAt, long? DurationMs, int ProcessedCount, string? Error, string InstanceId)
{
    public static RunSummary Of(CronRun r) => new(r.Id, r.Status, r.Trigger, r.ScheduledFor, r.StartedAt, r.FinishedAt,
        r.FinishedAt is { } end ? (long)(end - r.StartedAt).TotalMilliseconds : null, r.ProcessedCount, r.ErrorMessage, r.InstanceId);
}

/// <summary>
/// A job's page: its schedule, the next occurrences, the last run (skipped ones aside: they are
/// another instance's run of the same occurrence) and the last success. <see cref="Stale"/>: see <see cref="JobStaleness"/>.
/// </summary>
public sealed record JobDetailView(
    string Name, string Cron, string TimeZone, bool Enabled, bool Paused, List<OccurrenceView> Next, RunSummary? LastRun, RunSummary? LastSuccess,
    bool Stale, int StaleAfterPeriods);

/// <summary>
/// Whether a job has gone stale: enabled, not paused, and <see cref="Periods"/> of its own scheduled
/// occurrences have come and gone since its last success. A period is the schedule's own step from
/// one occurrence to the next, as the scheduler computes it (<see cref="JobDefinition.NextAfter"/>):
/// for <c>@every 5m</c> five minutes; for <c>0 9 * * 1-5</c> a weekday, so a quiet weekend is not
/// three missed periods. The count starts at the last success, or at the first run ever recorded
/// when none succeeded; a job that never ran is not stale (its page shows no run at all). A pure
/// decision: no I/O.
/// </summary>
public static class JobStaleness
{
    public const int Periods = 3;

    public static bool IsStale(JobDefinition job, bool paused, DateTime? lastSuccessAt, DateTime? firstRunAt, DateTime now)
    {
        if (!job.Enabled || paused || (lastSuccessAt ?? firstRunAt) is not { } since)
        {
            return false;
        }
        var passed = 0;
        for (var at = job.NextAfter(since); at is { } occurrence && occurrence <= now; at = job.NextAfter(occurrence))
        {
            if (++passed == Periods)
            {
                return true;
            }
        }
        return false;
    }
}

/// <summary>The job page of the console: <c>GET /api/admin/jobs/{name}</c>. Running, pausing and resuming are the operator endpoints' routes.</summary>
public static class JobEndpoints
{
    public const int Upcoming = 5;

    public static WebApplication MapJobDetails(this WebApplication app)
    {
        app.MapAdmin("/api/admin", "Admin: jobs").MapGet("/jobs/{name}", DetailAsync)
            .WithSummary("One job: schedule and zone, the next five occurrences (UTC and local), last run, last success, paused and stale")
            .Refuses(404, "JOB.NOT_FOUND", "no job has this name");
        return app;
    }

    internal static async Task<Results<Ok<JobDetailView>, ValidationProblem, ProblemHttpResult>> DetailAsync(
        string name, JobRegistry jobs, TallyDb db, TimeProvider clock, CancellationToken ct)
    {
        if (new FieldErrors().CheckText(name, "name", OperatorEndpoints.MaxNameLength) is { Any: true } errors)
        {
            return Problems.Invalid(errors.ToDictionary());
        }
        if (jobs.Find(name) is not { } job)
        {
            return Problems.NotFound("JOB.NOT_FOUND", $"No job named '{name}'.");
        }
        var now = clock.GetUtcNow().UtcDateTime;
        var paused = await db.JobStates.AsNoTracking().Where(s => s.JobName == name).Select(s => s.Paused).FirstOrDefaultAsync(ct);
        var runs = db.CronRuns.AsNoTracking().Where(r => r.JobName == name);
        // Each a backward seek on (job_name, started_at) or (job_name, status, started_at), whatever the table holds.
        var lastRun = await runs.Where(r => r.Status != CronRunStatus.SkippedLocked).OrderByDescending(r => r.StartedAt).ThenByDescending(r => r.Id).FirstOrDefaultAsync(ct);
        var lastSuccess = await LatestAsync(runs, CronRunStatus.Success, 1, ct);
        var firstRunAt = lastSuccess.Count > 0 ? null
            : await runs.OrderBy(r => r.StartedAt).Select(r => (DateTime?)r.StartedAt).FirstOrDefaultAsync(ct);
        var success = lastSuccess.Count > 0 ? lastSuccess[0] : null;
        return TypedResults.Ok(new JobDetailView(
            job.Name, job.Cron, job.TimeZone.Id, job.Enabled, paused, NextOccurrences(job, now, Upcoming),
            lastRun is null ? null : RunSummary.Of(lastRun), success is null ? null : RunSummary.Of(success),
            JobStaleness.IsStale(job, paused, success?.StartedAt, firstRunAt, now), JobStaleness.Periods));
    }

    /// <summary>The next <paramref name="count"/> occurrences after <paramref name="now"/>, by the scheduler's own arithmetic (none for a disabled job).</summary>
    public static List<OccurrenceView> NextOccurrences(JobDefinition job, DateTime now, int count)
    {
        var next = new List<OccurrenceView>(count);
        for (var at = job.Enabled ? job.NextAfter(now) : null; at is { } occurrence && next.Count < count; at = job.NextAfter(occurrence))
        {
            next.Add(OccurrenceView.Of(occurrence, job.TimeZone));
        }
        return next;
    }

    /// <summary>A job's newest runs of one status: a backward seek on ix_cron_runs_job_status.</summary>
    public static Task<List<CronRun>> LatestAsync(IQueryable<CronRun> runsOfJob, string status, int take, CancellationToken ct) =>
        runsOfJob.Where(r => r.Status == status).OrderByDescending(r => r.StartedAt).ThenByDescending(r => r.Id).Take(take).ToListAsync(ct);
}
