using System.ComponentModel.DataAnnotations;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Tally.Data;
using Tally.Hosting;
using Tally.Jobs.Audit;

namespace Tally.Jobs.Scheduling;

/// <summary>One run in the runs listing: the <see cref="CronRun"/> fields, and <see cref="DurationMs"/> (null while it runs).</summary>
public sealed record RunListItem(
    long Id, string JobName, string Status, string Trigger, DateTime? ScheduledFor, int ProcessedCount, string? ErrorMessage,
    DateTime StartedAt, DateTime? FinishedAt, string InstanceId, long? DurationMs)
{
    public static RunListItem Of(CronRun r) => new(r.Id, r.JobName, r.Status, r.Trigger, r.ScheduledFor, r.ProcessedCount, r.ErrorMessage,
        r.StartedAt, r.FinishedAt, r.InstanceId, r.FinishedAt is { } end ? (long)(end - r.StartedAt).TotalMilliseconds : null);
}

/// <summary>
/// A checked runs filter. Every field narrows the listing (they combine with AND). SKIPPED_LOCKED
/// rows (another instance's attempt at an occurrence this one ran) are left out unless
/// <see cref="IncludeSkipped"/>, <see cref="Status"/> asks for them, or <see cref="Run"/> names one
/// row by id. <see cref="From"/> is inclusive and <see cref="To"/> exclusive, on <c>started_at</c>.
/// </summary>
public sealed record RunQuery(
    string? Job = null, string? Status = null, string? Instance = null, string? Trigger = null, DateTime? From = null, DateTime? To = null,
    bool IncludeSkipped = false, long? Run = null, long? Before = null, int Limit = RunQuery.DefaultLimit)
{
    public const int DefaultLimit = 100;
    public const int MaxLimit = 1000;

    /// <summary>The filter as a client sends it, checked: the errors name each refused field; <paramref name="query"/> is meaningful only when there are none.</summary>
    public static FieldErrors Parse(
        string? job, string? status, string? instance, string? trigger, string? from, string? to, bool? includeSkipped, long? run, long? before, int? limit,
        out RunQuery query)
    {
        var errors = new FieldErrors()
            .CheckLimit(limit, DefaultLimit, MaxLimit, out var take)
            .CheckText(job, "job", OperatorEndpoints.MaxNameLength, required: false)
            .CheckText(instance, "instance", OperatorEndpoints.MaxNameLength, required: false)
            .Check(status is null || CronRunStatus.All.Contains(status), "status", $"must be one of {string.Join(", ", CronRunStatus.All)}")
            .Check(trigger is null || JobRunner.Triggers.Contains(trigger), "trigger", $"must be one of {string.Join(", ", JobRunner.Triggers)}")
            .Check(run is null or > 0, "run", "must be a positive id")
            .Check(before is null or > 0, "before", "must be a positive id")
            .CheckWindow(from, to, out var fromUtc, out var toUtc);
        query = new RunQuery(job, status, instance, trigger, fromUtc, toUtc, includeSkipped ?? false, run, before, take);
        return errors;
    }
}

/// <summary>
/// The runs listing of the console and the admin API (<c>GET /api/admin/cron-runs</c>), newest first
/// by id. Paged by keyset: <c>before</c> is the id of the last row of the previous page, so a page is
/// an index seek and its own rows however deep it goes (indexes: migration 0016).
/// </summary>
public static class RunListing
{
    public static WebApplication MapRunListing(this WebApplication app)
    {
        app.MapAdmin("/api/admin", "Admin: operations").MapGet("/cron-runs", ListRunsAsync)
            .WithSummary("The run audit: filter by job, status, instance, trigger and time; newest first, `before` = the last row's id");
        return app;
    }

    public static IQueryable<CronRun> Matching(this IQueryable<CronRun> runs, RunQuery q)
    {
        if (q.Run is { } id)
        {
            runs = runs.Where(r => r.Id == id);
        }
        if (q.Job is not null)
        {
            runs = runs.Where(r => r.JobName == q.Job);
        }
        if (q.Status is not null)
        {
            runs = runs.Where(r => r.Status == q.Status);
        }
        else if (!q.IncludeSkipped && q.Run is null)
        {
            // A literal, not a parameter: PostgreSQL matches it to the partial indexes' predicate.
            runs = runs.Where(r => r.Status != CronRunStatus.SkippedLocked);
        }
        if (q.Instance is not null)
        {
            runs = runs.Where(r => r.InstanceId == q.Instance);
        }
        if (q.Trigger is not null)
        {
            runs = runs.Where(r => r.Trigger == q.Trigger);
        }
        if (q.From is { } from)
        {
            runs = runs.Where(r => r.StartedAt >= from);
        }
        if (q.To is { } to)
        {
            runs = runs.Where(r => r.StartedAt < to);
        }
        if (q.Before is { } before)
        {
            runs = runs.Where(r => r.Id < before);
        }
        return runs;
    }

    /// <summary>One page of runs, newest first: for a Razor page as for the API.</summary>
    public static async Task<List<RunListItem>> ListAsync(TallyDb db, RunQuery query, CancellationToken ct)
    {
        var matching = db.CronRuns.AsNoTracking().Matching(query);
        // "+ 0" keeps PostgreSQL off the primary key's order for a narrow window: see TimeWindow.NarrowWindow.
        var ordered = TimeWindow.Narrow(query.From, query.To) ? matching.OrderByDescending(r => r.Id + 0) : matching.OrderByDescending(r => r.Id);
        var rows = await ordered.Take(query.Limit).ToListAsync(ct);
        return rows.ConvertAll(RunListItem.Of);
    }

    /// <summary>
    /// <c>GET /api/admin/cron-runs?job=&amp;status=&amp;instance=&amp;trigger=&amp;from=&amp;to=&amp;includeSkipped=false&amp;run=&amp;before=&amp;limit=100</c>:
    /// a JSON array of <see cref="RunListItem"/>, newest first. See <see cref="RunQuery"/> for the filters.
    /// </summary>
    internal static async Task<Results<Ok<List<RunListItem>>, ValidationProblem>> ListRunsAsync(
        TallyDb db, CancellationToken ct, string? job = null,
        [AllowedValues(CronRunStatus.Running, CronRunStatus.Success, CronRunStatus.Failed, CronRunStatus.SkippedLocked)] string? status = null, string? instance = null,
        [AllowedValues(JobRunner.ScheduleTrigger, JobRunner.ManualTrigger)] string? trigger = null,
        string? from = null, string? to = null, bool? includeSkipped = null, long? run = null, long? before = null, int? limit = null)
    {
        var errors = RunQuery.Parse(job, status, instance, trigger, from, to, includeSkipped, run, before, limit, out var query);
        return errors.Any ? Problems.Invalid(errors.ToDictionary()) : TypedResults.Ok(await ListAsync(db, query, ct));
    }
}
