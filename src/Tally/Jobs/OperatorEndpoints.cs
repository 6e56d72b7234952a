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
/// The operator API: jobs, runs, queues, dead letters and events. Names and filters from the client are
/// checked like any text (at most <see cref="MaxNameLength"/> characters, no control characters) before
/// they reach a query: PostgreSQL refuses a NUL in a parameter with an error, not with no rows.
/// </summary>
public static class OperatorEndpoints
{
    public const int MaxNameLength = 200;
    private const int MaxLimit = 1000;

    public static WebApplication MapOperator(this WebApplication app)
    {
        var admin = app.MapAdmin("/api/admin", "Admin: operations");
        admin.MapGet("/jobs", ListJobsAsync);
        admin.MapPost("/jobs/{name}/run", RunJobAsync).ForOperators();
        admin.MapPost("/jobs/{name}/pause", (string name, JobRegistry jobs, JobRunner runner, CancellationToken ct) => SetPausedAsync(name, true, jobs, runner, ct)).ForOperators();
        admin.MapPost("/jobs/{name}/resume", (string name, JobRegistry jobs, JobRunner runner, CancellationToken ct) => SetPausedAsync(name, false, jobs, runner, ct)).ForOperators();
        admin.MapGet("/queues", ListQueuesAsync);
        admin.MapGet("/dead-letters", ListDeadLettersAsync);
        admin.MapPost("/dead-letters/{id:guid}/replay", ReplayAsync).ForOperators();
        admin.MapDelete("/dead-letters/{id:guid}", DeleteDeadLetterAsync).ForOperators();
        return app.MapAudit().MapRunListing().MapEventListing();
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
        var dead = await db.DeadLetters.AsNoTracking().GroupBy(d => d.Queue).Select(g => new { g.Key, Count = g.LongCount() }).ToListAsync(ct);
        var views = new List<QueueView>();
        foreach (var q in queues.All.Select(r => r.Definition).OrderBy(q => q.Name, StringComparer.Ordinal))
        {
            var depth = await transport.GetDepthAsync(q, ct);
            views.Add(new QueueView(q.Name, transport.Name, depth.Ready, depth.Retrying, depth.InFlight,
                dead.Find(d => d.Key == q.Name)?.Count ?? 0, q.MaxRetries, q.RetryDelay.TotalSeconds));
        }
        return TypedResults.Ok(views);
    }

    internal static async Task<Results<Ok<List<DeadLetter>>, ValidationProblem>> ListDeadLettersAsync(
        TallyDb db, CancellationToken ct, string? queue = null, int? limit = null)
    {
        var errors = Limit(limit, out var take).CheckText(queue, "queue", MaxNameLength, required: false);
        if (errors.Any)
        {
            return Problems.Invalid(errors.ToDictionary());
        }
        var query = db.DeadLetters.AsNoTracking();
        if (queue is not null)
        {
            query = query.Where(d => d.Queue == queue);
        }
        return TypedResults.Ok(await query.OrderByDescending(d => d.DeadLetteredAt).Take(take).ToListAsync(ct));
    }

    internal static async Task<Results<Accepted, ProblemHttpResult>> ReplayAsync(Guid id, DeadLetterStore store, CancellationToken ct) =>
        await store.ReplayAsync(id, ct)
            ? TypedResults.Accepted((string?)null)
            : Problems.NotFound("DEAD_LETTER.NOT_FOUND", "No such dead letter.");

    internal static async Task<Results<NoContent, ProblemHttpResult>> DeleteDeadLetterAsync(Guid id, DeadLetterStore store, CancellationToken ct) =>
        await store.DeleteAsync(id, ct)
            ? TypedResults.NoContent()
            : Problems.NotFound("DEAD_LETTER.NOT_FOUND", "No such dead letter.");

    /// <summary>A page size: 100 when not given, else between 1 and <see cref="MaxLimit"/>.</summary>
    private static FieldErrors Limit(int? limit, out int take)
    {
        take = limit ?? 100;
        return new FieldErrors().Check(take is >= 1 and <= MaxLimit, "limit", $"must be between 1 and {MaxLimit}");
    }
}
