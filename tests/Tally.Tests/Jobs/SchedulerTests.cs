using System.Net;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using StackExchange.Redis;
using Tally.Jobs.Scheduling;
using Tally.Tests.Harness;

namespace Tally.Tests.Jobs;

/// <summary>A job that takes longer than its one-second interval, so instances contend for it.</summary>
public sealed class SlowJob : IScheduledJob
{
    public const string Name = "test.slow";

    public async Task<JobResult> RunAsync(JobRun run, CancellationToken ct)
    {
        await Task.Delay(TimeSpan.FromMilliseconds(1200), ct);
        return new JobResult(1);
    }
}

public sealed class ThrowingJob : IScheduledJob
{
    public const string Name = "test.throws";

    public Task<JobResult> RunAsync(JobRun run, CancellationToken ct) => throw new InvalidOperationException("the job broke");
}

public class SchedulerTests
{
    private static Dictionary<string, string?> SchedulerSettings(string instance, string lockKind, string? redis = null) => new()
    {
        ["Tally:Roles:0"] = "scheduler",
        ["Tally:Roles:1"] = "api",
        ["Tally:InstanceId"] = instance,
        ["Jobs:Lock"] = lockKind,
        ["Jobs:LockTtl"] = "00:00:03",
        ["Redis:Url"] = redis,
        [$"Jobs:{SlowJob.Name}:Cron"] = "* * * * * *",
        [$"Jobs:{ThrowingJob.Name}:Cron"] = "0 0 1 1 *",
    };

    private static void AddTestJobs(IServiceCollection services)
    {
        services.AddScheduledJob<SlowJob>(SlowJob.Name, "* * * * * *");
        services.AddScheduledJob<ThrowingJob>(ThrowingJob.Name, "0 0 1 1 *");
    }

    private static async Task<List<CronRun>> RunsAsync(TallyApp app, string job)
    {
        await using var db = app.Db();
        return await db.CronRuns.AsNoTracking().Where(r => r.JobName == job).OrderBy(r => r.Id).ToListAsync();
    }

    private static void AssertNoOverlap(List<CronRun> runs)
    {
        var ran = runs.Where(r => r.Status is CronRunStatus.Success or CronRunStatus.Failed).OrderBy(r => r.StartedAt).ToList();
        for (var i = 1; i < ran.Count; i++)
        {
            Assert.True(ran[i].StartedAt >= ran[i - 1].FinishedAt,
                $"run {ran[i].Id} on {ran[i].InstanceId} started at {ran[i].StartedAt:O} before run {ran[i - 1].Id} on {ran[i - 1].InstanceId} finished at {ran[i - 1].FinishedAt:O}");
        }
    }

    [Theory]
    [InlineData("redis")]
    [InlineData("postgres")]
    public async Task ThreeInstances_JobEverySecond_RunsNeverOverlap(string lockKind)
    {
        var database = await Servers.NewPostgresDatabaseAsync();
        var redis = lockKind == "redis" ? Servers.RequireRedis() : null;
        var apps = Enumerable.Range(1, 3).Select(i => TallyApp.Postgres(database, SchedulerSettings($"node-{i}", lockKind, redis), AddTestJobs)).ToList();
        try
        {
            foreach (var app in apps)
            {
                _ = app.Server; // start all three
            }
            await Eventually.TrueAsync(async () => (await RunsAsync(apps[0], SlowJob.Name)).Count(r => r.Status == CronRunStatus.Success) >= 5,
                "five successful runs", TimeSpan.FromSeconds(40));

            var runs = await RunsAsync(apps[0], SlowJob.Name);
            AssertNoOverlap(runs);
            // All three instances took part: each ran the job or found it locked.
            Assert.Equal(3, runs.Select(r => r.InstanceId).Distinct().Count());
            Assert.Contains(runs, r => r.Status == CronRunStatus.SkippedLocked);
            // No occurrence ran twice.
            var scheduled = runs.Where(r => r.Status == CronRunStatus.Success).Select(r => r.ScheduledFor).ToList();
            Assert.Equal(scheduled.Count, scheduled.Distinct().Count());
        }
        finally
        {
            foreach (var app in apps)
            {
                await app.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task Redis_LockLeftByAKilledHolder_BlocksTheJobNoLongerThanItsTtl()
    {
        var database = await Servers.NewPostgresDatabaseAsync();
        var redisUrl = Servers.RequireRedis();
        await using var app = TallyApp.Postgres(database, SchedulerSettings("survivor", "redis", redisUrl), AddTestJobs);
        _ = app.Server;
        await Eventually.TrueAsync(async () => (await RunsAsync(app, SlowJob.Name)).Any(r => r.Status == CronRunStatus.Success), "a first run");

        // What `kill -9` of the holder leaves behind: its key, with its TTL, and nobody renewing it.
        // Wait for the survivor's own run to finish and release, then plant the dead holder's key.
        var redis = await ConnectionMultiplexer.ConnectAsync(Tally.Jobs.JobRuntimeSetup.RedisConfiguration(redisUrl));
        var key = $"tally:lock:{SlowJob.Name}";
        var ttl = TimeSpan.FromSeconds(3);
        await Eventually.TrueAsync(() => redis.GetDatabase().StringSetAsync(key, "dead-holder", ttl, When.NotExists), "the lock to be free");
        var planted = DateTime.UtcNow;

        await Eventually.TrueAsync(async () => (await RunsAsync(app, SlowJob.Name)).Any(r => r.Status == CronRunStatus.Success && r.StartedAt > planted),
            "a run after the dead holder's lock expired", TimeSpan.FromSeconds(15));
        var runs = await RunsAsync(app, SlowJob.Name);
        var resumed = runs.First(r => r.Status == CronRunStatus.Success && r.StartedAt > planted);
        Assert.True(resumed.StartedAt >= planted + ttl - TimeSpan.FromMilliseconds(100), $"ran at {resumed.StartedAt:O} while the dead holder's lock (until {planted + ttl:O}) was still there");
        Assert.Contains(runs, r => r.Status == CronRunStatus.SkippedLocked && r.StartedAt > planted);
        // Back to one run per second within the TTL plus one tick and the job's own length.
        Assert.True(resumed.StartedAt <= planted + ttl + TimeSpan.FromSeconds(2.5), $"resumed only at {resumed.StartedAt:O}");
        await redis.DisposeAsync();
    }

    [Fact]
    public async Task Postgres_HolderConnectionKilled_FreesTheLockAtOnce()
    {
        var database = await Servers.NewPostgresDatabaseAsync();
        var locks = new Tally.Jobs.Scheduling.PostgresAdvisoryLock(NpgsqlDataSource.Create(database));
        await using (var held = await locks.TryAcquireAsync("x", TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken))
        {
            Assert.NotNull(held);
            Assert.Null(await locks.TryAcquireAsync("x", TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken));
            // Kill the holder's backend, as a crashed process's connection would die.
            await using var admin = new NpgsqlConnection(database);
            await admin.OpenAsync(TestContext.Current.CancellationToken);
            await using var kill = new NpgsqlCommand(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND pid <> pg_backend_pid()", admin);
            await kill.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
            await Eventually.TrueAsync(async () =>
            {
                await using var again = await locks.TryAcquireAsync("x", TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
                return again is not null;
            }, "the lock to be free once its holder is gone");
        }
    }

    [Fact]
    public async Task Run_JobThatThrows_IsRecordedFailedAndTheSchedulerCarriesOn()
    {
        await using var app = TallyApp.Sqlite(SchedulerSettings("solo", "inprocess"), AddTestJobs);
        var admin = app.Admin();
        var body = await admin.PostAsync($"/api/admin/jobs/{ThrowingJob.Name}/run", null).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal("FAILED", body.GetProperty("run").GetProperty("status").GetString());
        Assert.Contains("the job broke", body.GetProperty("run").GetProperty("errorMessage").GetString());
        // The every-second job keeps running beside it.
        await Eventually.TrueAsync(async () => (await RunsAsync(app, SlowJob.Name)).Count(r => r.Status == CronRunStatus.Success) >= 2, "the other job to keep running");
    }

    [Fact]
    public async Task PauseAndResume_StopAndRestartScheduledRuns()
    {
        await using var app = TallyApp.Sqlite(SchedulerSettings("solo", "inprocess"), AddTestJobs);
        var admin = app.Admin();
        await Eventually.TrueAsync(async () => (await RunsAsync(app, SlowJob.Name)).Count > 0, "a first run");
        await admin.PostAsync($"/api/admin/jobs/{SlowJob.Name}/pause", null).ExpectAsync(HttpStatusCode.NoContent);
        await Task.Delay(1500); // let a run in progress finish
        var before = (await RunsAsync(app, SlowJob.Name)).Count;
        await Task.Delay(2500);
        Assert.Equal(before, (await RunsAsync(app, SlowJob.Name)).Count);
        var jobs = await admin.GetAsync("/api/admin/jobs").ExpectAsync(HttpStatusCode.OK);
        Assert.True(jobs.EnumerateArray().Single(j => j.GetProperty("name").GetString() == SlowJob.Name).GetProperty("paused").GetBoolean());

        await admin.PostAsync($"/api/admin/jobs/{SlowJob.Name}/resume", null).ExpectAsync(HttpStatusCode.NoContent);
        await Eventually.TrueAsync(async () => (await RunsAsync(app, SlowJob.Name)).Count > before, "runs after resume");
        await admin.PostAsync("/api/admin/jobs/no.such.job/pause", null).ExpectProblemAsync(HttpStatusCode.NotFound, "JOB.NOT_FOUND");
    }
}
