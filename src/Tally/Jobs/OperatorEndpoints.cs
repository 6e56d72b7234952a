using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Tally.Data;
using Tally.Hosting;
using Tally.Jobs.Audit;
using Tally.Jobs.Outbox;
using Tally.Jobs.Queues;
using Tally.Jobs.Scheduling;

namespace Tally.Jobs;

public sealed record JobView(string Name, string Cron, string TimeZone, bool Enabled, bool Paused, DateTime? NextRunAt, CronRun? LastRun);

public sealed record JobRunView(CronRun? Run, object? Detail);

public sealed record QueueView(string Queue, string Transport, long Ready, long Retrying, long InFlight, long DeadLetters, int MaxRetries, double RetryDelaySeconds);

public sealed record EventView(long Sequence, Guid EventId, string EventType, string? SubjectId, System.Text.Json.JsonElement Payload, DateTime OccurredAt, DateTime? PublishedAt);

/// <summary>
/// The operator API: jobs, runs, queues and events (dead letters: <see cref="DeadLetterEndpoints"/>). Names and filters from the client are
/// checked like any text (at most <see cref="MaxNameLength"/> characters, no control characters) before
/// they reach a query: PostgreSQL refuses a NUL in a parameter with an error, not with no rows.
/// </summary>
public static class OperatorEndpoints
{
    public const int MaxNameLength = 200;

    public static WebApplication MapOperator(this WebApplication app)
    {
        var admin = app.MapAdmin("/api/admin", "Admin: operations");
        admin.MapGet("/jobs", ListJobsAsync).WithSummary("Every scheduled job: schedule and zone, next run, last run, paused");
        admin.MapPost("/jobs/{name}/run", RunJobAsync).ForOperators()
            .WithSummary("Run a job now, under its distributed lock, and answer its run (recorded in cron_runs like a scheduled one)")
            .Refuses(404, "JOB.NOT_FOUND", "no job has this name");
        admin.MapPost("/jobs/{name}/pause", (string name, JobRegistry jobs, JobRunner runner, CancellationToken ct) => SetPausedAsync(name, true, jobs, runner, ct)).ForOperators()
            .WithSummary("Pause a job on every instance: it does not run on its schedule until resumed (run now still works)")
            .Refuses(404, "JOB.NOT_FOUND", "no job has this name");
        admin.MapPost("/jobs/{name}/resume", (string name, JobRegistry jobs, JobRunner runner, CancellationToken ct) => SetPausedAsync(name, false, jobs, runner, ct)).ForOperators()
            .WithSummary("Resume a paused job; occurrences missed while paused are not run")
            .Refuses(404, "JOB.NOT_FOUND", "no job has this name");
        admin.MapGet("/queues", ListQueuesAsync).WithSummary("Each queue's ready, in-flight, waiting-to-retry and dead letters, with its retry policy");
        return app.MapDeadLetters().MapAudit().MapRunListing().MapEventListing();
    }

    internal static async Task<Ok<List<JobView>>> ListJobsAsync(JobRegistry jobs, TallyDb db, TimeProvider clock, CancellationToken ct)
    {
        var states = await db.JobStates.AsNoTracking().ToDictionaryAsync(s => s.JobName, ct);
        var names = jobs.All.Select(j => j.Name).ToList();
        var lastRuns = await db.CronRuns.AsNoTracking()
            .Where(r => names.Contains(r.JobName) && r.Status != CronRunStatus.SkippedLocked)
            .GroupBy(r => r.JobName)
            .Select(g => g.OrderByDescending(r => r.Id).First())
            .ToListAsync(ct);
        var now = clock.GetUtcNow().UtcDateTime;
        return TypedResults.Ok(jobs.All.OrderBy(j => j.Name, StringComparer.Ordinal).Select(j => new JobView(
            j.Name, j.Cron, j.TimeZone.Id, j.Enabled, states.GetValueOrDefault(j.Name)?.Paused ?? false,
            j.Enabled ? j.NextAfter(now) : null, lastRuns.Find(r => r.JobName == j.Name))).ToList());
    }

    internal static async Task<Results<Ok<JobRunView>, ValidationProblem, ProblemHttpResult>> RunJobAsync(
        string name, JobRegistry jobs, JobRunner runner, IHostApplicationLifetime lifetime)
    {
        if (new FieldErrors().CheckText(name, "name", MaxNameLength) is { Any: true } errors)
        {
            return Problems.Invalid(errors.ToDictionary());
        }
        if (jobs.Find(name) is not { } job)
        {
            return Problems.NotFound("JOB.NOT_FOUND", $"No job named '{name}'.");
        }
        // The run belongs to the service, not to the HTTP request: a dropped connection does not cancel it.
        var outcome = await runner.RunAsync(job, JobRunner.ManualTrigger, null, lifetime.ApplicationStopping);
        return TypedResults.Ok(new JobRunView(outcome.Run, outcome.Detail));
    }

    private static async Task<Results<NoContent, ValidationProblem, ProblemHttpResult>> SetPausedAsync(string name, bool paused, JobRegistry jobs, JobRunner runner, CancellationToken ct)
    {
        if (new FieldErrors().CheckText(name, "name", MaxNameLength) is { Any: true } errors)
        {
            return Problems.Invalid(errors.ToDictionary());
        }
        if (jobs.Find(name) is null)
        {
            return Problems.NotFound("JOB.NOT_FOUND", $"No job named '{name}'.");
        }
        await runner.SetPausedAsync(name, paused, ct);
        return TypedResults.NoContent();
    }

    internal static async Task<Ok<List<QueueView>>> ListQueuesAsync(QueueRegistry queues, IQueueTransport transport, TallyDb db, CancellationToken ct)
    {
        var dead = await db.DeadLetters.AsNoTracking().Live().GroupBy(d => d.Queue).Select(g => new { g.Key, Count = g.LongCount() }).ToListAsync(ct);
        var views = new List<QueueView>();
        foreach (var q in queues.All.Select(r => r.Definition).OrderBy(q => q.Name, StringComparer.Ordinal))
        {
            var depth = await transport.GetDepthAsync(q, ct);
            views.Add(new QueueView(q.Name, transport.Name, depth.Ready, depth.Retrying, depth.InFlight,
                dead.Find(d => d.Key == q.Name)?.Count ?? 0, q.MaxRetries, q.RetryDelay.TotalSeconds));
        }
        return TypedResults.Ok(views);
    }
}
