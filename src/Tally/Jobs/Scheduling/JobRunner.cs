using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Tally.Data;
using Tally.Hosting;

namespace Tally.Jobs.Scheduling;

public sealed class JobsOptions
{
    public const string Section = "Jobs";

    /// <summary><c>inprocess</c>, <c>redis</c> or <c>postgres</c>; chosen from what is configured when empty.</summary>
    public string? Lock { get; set; }

    /// <summary>How long a lock outlives a holder that stopped renewing it (Redis).</summary>
    public TimeSpan LockTtl { get; set; } = TimeSpan.FromSeconds(20);
}

/// <summary>
/// Runs one job once: takes the job's lock (or records SKIPPED_LOCKED), claims the scheduled
/// occurrence so no other instance runs it again, writes a RUNNING row, runs the job, and records
/// SUCCESS or FAILED. A job that throws is recorded and never takes the scheduler down with it.
/// </summary>
public sealed partial class JobRunner(
    IDbContextFactory<TallyDb> dbs,
    IDistributedLock distributedLock,
    IServiceProvider services,
    IOptions<JobsOptions> options,
    IOptions<TallyOptions> tally,
    TimeProvider clock,
    ILogger<JobRunner> logger)
{
    public const string ScheduleTrigger = "schedule";
    public const string ManualTrigger = "manual";

    /// <summary>Every trigger a run is recorded with.</summary>
    public static readonly string[] Triggers = [ScheduleTrigger, ManualTrigger];
    private const int MaxErrorLength = 2000;

    public sealed record Outcome(CronRun? Run, object? Detail);

    /// <summary>Runs <paramref name="job"/>. For a scheduled run, <paramref name="occurrence"/> is the cron time it stands for.</summary>
    public async Task<Outcome> RunAsync(JobDefinition job, string trigger, DateTime? occurrence, CancellationToken ct)
    {
        // A scheduled run starts a trace; a manual one is part of the request's.
        using var activity = Tracing.Source.StartActivity($"job {job.Name}");
        activity?.SetTag("tally.job.name", job.Name);
        activity?.SetTag("tally.job.trigger", trigger);
        var instance = tally.Value.ResolvedInstanceId;
        await using var held = await distributedLock.TryAcquireAsync(job.Name, options.Value.LockTtl, ct);
        if (held is null)
        {
            var skipped = await InsertRunAsync(job.Name, CronRunStatus.SkippedLocked, trigger, occurrence, instance, finished: true, ct);
            LogSkipped(logger, job.Name, instance);
            activity?.SetTag("tally.job.status", skipped.Status);
            return new Outcome(skipped, null);
        }
        if (occurrence is { } at && !await ClaimOccurrenceAsync(job.Name, at, ct))
        {
            return new Outcome(null, null); // Paused, or another instance already ran this occurrence.
        }

        var run = await InsertRunAsync(job.Name, CronRunStatus.Running, trigger, occurrence, instance, finished: false, ct);
        activity?.SetTag("tally.job.run_id", run.Id);
        // Every line logged by the run, in any category (the job's own included), names it.
        using var logScope = RunScope(logger, run.Id, job.Name);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, held.Lost);
        object? detail = null;
        try
        {
            await using var scope = services.CreateAsyncScope();
            var instanceOfJob = (IScheduledJob)scope.ServiceProvider.GetRequiredService(job.JobType);
            var result = await instanceOfJob.RunAsync(new JobRun(run.Id, trigger, occurrence), linked.Token);
            run.ProcessedCount = result.Processed;
            detail = result.Detail;
            if (result.Failure is { } failure)
            {
                // The job has logged its failure in its own words: record it, do not log it twice.
                Fail(run, failure, activity, "reported");
                LogReportedFailure(logger, job.Name);
            }
            else
            {
                run.Status = CronRunStatus.Success;
                LogSucceeded(logger, job.Name, result.Processed);
            }
        }
        catch (Exception e)
        {
            Fail(run, held.Lost.IsCancellationRequested ? $"lock lost: {e.Message}" : $"{e.GetType().Name}: {e.Message}", activity, e.GetType().Name);
            LogFailed(logger, e, job.Name);
        }
        activity?.SetTag("tally.job.status", run.Status);
        run.FinishedAt = clock.GetUtcNow().UtcDateTime;
        await using (var db = await dbs.CreateDbContextAsync(CancellationToken.None))
        {
            db.CronRuns.Update(run);
            await db.SaveChangesAsync(CancellationToken.None);
        }
        return new Outcome(run, detail);
    }

    private static void Fail(CronRun run, string message, System.Diagnostics.Activity? activity, string status)
    {
        run.Status = CronRunStatus.Failed;
        run.ErrorMessage = message.Length > MaxErrorLength ? message[..MaxErrorLength] : message;
        activity?.SetStatus(System.Diagnostics.ActivityStatusCode.Error, status);
    }

    private async Task<bool> ClaimOccurrenceAsync(string jobName, DateTime occurrence, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var now = clock.GetUtcNow().UtcDateTime;
        await db.Database.ExecuteSqlAsync(
            $"INSERT INTO job_states (job_name, paused, last_occurrence, updated_at) VALUES ({jobName}, {false}, {null as DateTime?}, {now}) ON CONFLICT DO NOTHING", ct);
        // The conditional update is the claim: of all instances, exactly one moves last_occurrence forward.
        var claimed = await db.JobStates
            .Where(s => s.JobName == jobName && !s.Paused && (s.LastOccurrence == null || s.LastOccurrence < occurrence))
            .ExecuteUpdateAsync(s => s.SetProperty(x => x.LastOccurrence, occurrence).SetProperty(x => x.UpdatedAt, now), ct);
        return claimed == 1;
    }

    private async Task<CronRun> InsertRunAsync(string jobName, string status, string trigger, DateTime? occurrence, string instance, bool finished, CancellationToken ct)
    {
        var now = clock.GetUtcNow().UtcDateTime;
        var run = new CronRun
        {
            JobName = jobName,
            Status = status,
            Trigger = trigger,
            ScheduledFor = occurrence,
            StartedAt = now,
            FinishedAt = finished ? now : null,
            InstanceId = instance,
        };
        await using var db = await dbs.CreateDbContextAsync(ct);
        db.CronRuns.Add(run);
        await db.SaveChangesAsync(ct);
        return run;
    }

    /// <summary>Pauses or resumes scheduled runs of a job on every instance (manual runs still work).</summary>
    public async Task SetPausedAsync(string jobName, bool paused, CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var now = clock.GetUtcNow().UtcDateTime;
        await db.Database.ExecuteSqlAsync(
            $"INSERT INTO job_states (job_name, paused, last_occurrence, updated_at) VALUES ({jobName}, {paused}, {null as DateTime?}, {now}) ON CONFLICT DO NOTHING", ct);
        await db.JobStates.Where(s => s.JobName == jobName)
            .ExecuteUpdateAsync(s => s.SetProperty(x => x.Paused, paused).SetProperty(x => x.UpdatedAt, now), ct);
    }

    private static readonly Func<ILogger, long, string, IDisposable?> RunScope =
        LoggerMessage.DefineScope<long, string>("Run {RunId} of {Job}");

    [LoggerMessage(Level = LogLevel.Debug, Message = "Job {Job} skipped on {Instance}: locked elsewhere")]
    private static partial void LogSkipped(ILogger logger, string job, string instance);

    [LoggerMessage(Level = LogLevel.Information, Message = "Job {Job} succeeded, processed {Processed}")]
    private static partial void LogSucceeded(ILogger logger, string job, int processed);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Job {Job} reported a failure, recorded on its run")]
    private static partial void LogReportedFailure(ILogger logger, string job);

    [LoggerMessage(Level = LogLevel.Error, Message = "Job {Job} failed")]
    private static partial void LogFailed(ILogger logger, Exception e, string job);
}

/// <summary>
/// The scheduler role: one loop per enabled job, sleeping until the next cron occurrence in the
/// job's time zone and handing it to <see cref="JobRunner"/>. Each iteration has its own error
/// boundary, so a failing database only costs that occurrence.
/// </summary>
public sealed partial class JobScheduler(JobRegistry registry, JobRunner runner, TimeProvider clock, ILogger<JobScheduler> logger) : BackgroundService
{
    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Task.WhenAll(registry.All.Where(j => j.Enabled).Select(j => LoopAsync(j, stoppingToken)));

    private async Task LoopAsync(JobDefinition job, CancellationToken stoppingToken)
    {
        var from = clock.GetUtcNow().UtcDateTime;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                if (job.NextAfter(from) is not { } next)
                {
                    return;
                }
                var wait = next - clock.GetUtcNow().UtcDateTime;
                if (wait > TimeSpan.Zero)
                {
                    await Task.Delay(wait, clock, stoppingToken);
                }
                await runner.RunAsync(job, JobRunner.ScheduleTrigger, next, stoppingToken);
                // A run longer than the interval skips the occurrences it overlapped rather than queueing them.
                var now = clock.GetUtcNow().UtcDateTime;
                from = next > now ? next : now;
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                LogLoopFailed(logger, e, job.Name);
                await Task.Delay(TimeSpan.FromSeconds(1), clock, stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Scheduling {Job} failed; carrying on with the next occurrence")]
    private static partial void LogLoopFailed(ILogger logger, Exception e, string job);
}
