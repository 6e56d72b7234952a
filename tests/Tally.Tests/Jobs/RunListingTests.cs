using System.Net;
using System.Text.Json;
using Tally.Hosting;
using Tally.Jobs.Scheduling;
using Tally.Tests.Harness;

namespace Tally.Tests.Jobs;

/// <summary>The runs listing, <c>GET /api/admin/cron-runs</c>: its filters, its keyset paging and its refusals.</summary>
public class RunListingTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static readonly DateTime Day = new(2026, 3, 1, 0, 0, 0, DateTimeKind.Utc);

    private static Task<TallyApp> AppAsync(string storage) =>
        Apps.CreateAsync(storage, new Dictionary<string, string?> { ["Tally:Roles:0"] = "api" });

    /// <summary>
    /// 60 runs, one every hour from <see cref="Day"/>: two jobs, two instances, every 7th manual, every
    /// 10th failed, every 4th skipped (another instance held the lock), the last one still running.
    /// </summary>
    private static async Task<List<CronRun>> SeedAsync(TallyApp app)
    {
        var runs = Enumerable.Range(0, 60).Select(i => new CronRun
        {
            JobName = i % 3 == 0 ? "b.job" : "a.job",
            Status = i == 59 ? CronRunStatus.Running
                : i % 4 == 3 ? CronRunStatus.SkippedLocked
                : i % 10 == 5 ? CronRunStatus.Failed
                : CronRunStatus.Success,
            Trigger = i % 7 == 0 ? JobRunner.ManualTrigger : JobRunner.ScheduleTrigger,
            ScheduledFor = Day.AddHours(i),
            StartedAt = Day.AddHours(i),
            FinishedAt = i == 59 ? null : Day.AddHours(i).AddMilliseconds(100 + i),
            ErrorMessage = i % 10 == 5 ? $"boom {i}" : null,
            ProcessedCount = i,
            InstanceId = i % 2 == 0 ? "node-1" : "node-2",
        }).ToList();
        await using var db = app.Db();
        foreach (var run in runs)
        {
            // One at a time: the ids follow the order of the hours, as they do when runs are recorded.
            db.CronRuns.Add(run);
            await db.SaveChangesAsync(Ct);
        }
        return runs;
    }

    private static async Task<List<long>> IdsAsync(HttpClient client, string query)
    {
        var limit = query.Contains("limit=", StringComparison.Ordinal) ? "" : "limit=1000&";
        var rows = await client.GetAsync($"/api/admin/cron-runs?{limit}{query}", Ct).ExpectAsync(HttpStatusCode.OK);
        return rows.EnumerateArray().Select(r => r.GetProperty("id").GetInt64()).ToList();
    }

    private static List<long> Expected(List<CronRun> runs, Func<CronRun, bool> filter) =>
        runs.Where(filter).OrderByDescending(r => r.Id).Select(r => r.Id).ToList();

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Runs_EachFilter_AnswersExactlyItsRows_NewestFirst_SkippedHiddenUnlessAsked(string storage)
    {
        await using var app = await AppAsync(storage);
        var runs = await SeedAsync(app);
        using var viewer = app.Client(Guid.NewGuid(), Roles.Viewer);
        bool Shown(CronRun r) => r.Status != CronRunStatus.SkippedLocked;

        Assert.Equal(Expected(runs, Shown), await IdsAsync(viewer, ""));
        Assert.Equal(Expected(runs, _ => true), await IdsAsync(viewer, "includeSkipped=true"));
        Assert.Equal(Expected(runs, r => r.Status == CronRunStatus.SkippedLocked), await IdsAsync(viewer, "status=SKIPPED_LOCKED"));
        Assert.Equal(Expected(runs, r => r.Status == CronRunStatus.Failed), await IdsAsync(viewer, "status=FAILED"));
        Assert.Equal(Expected(runs, r => Shown(r) && r.JobName == "b.job"), await IdsAsync(viewer, "job=b.job"));
        Assert.Equal(Expected(runs, r => r.JobName == "a.job" && r.Status == CronRunStatus.Failed), await IdsAsync(viewer, "job=a.job&status=FAILED"));
        Assert.Equal(Expected(runs, r => Shown(r) && r.InstanceId == "node-2"), await IdsAsync(viewer, "instance=node-2"));
        Assert.Equal(Expected(runs, r => r.InstanceId == "node-2"), await IdsAsync(viewer, "instance=node-2&includeSkipped=true"));
        Assert.Equal(Expected(runs, r => Shown(r) && r.Trigger == JobRunner.ManualTrigger), await IdsAsync(viewer, "trigger=manual"));
        Assert.Equal(
            Expected(runs, r => Shown(r) && r.StartedAt >= Day.AddHours(10) && r.StartedAt < Day.AddHours(20)),
            await IdsAsync(viewer, "from=2026-03-01T10:00:00Z&to=2026-03-01T20:00:00Z"));
        // An offset is honoured: 12:00+02:00 is 10:00 UTC. From alone; to alone.
        Assert.Equal(Expected(runs, r => Shown(r) && r.StartedAt >= Day.AddHours(10)), await IdsAsync(viewer, "from=2026-03-01T12:00:00%2B02:00"));
        Assert.Equal(Expected(runs, r => Shown(r) && r.StartedAt < Day.AddHours(5)), await IdsAsync(viewer, "to=2026-03-01T05:00:00Z"));
        Assert.Empty(await IdsAsync(viewer, "job=no.such.job"));

        // run = one id exactly, skipped or not (the search box links a run id here).
        var skipped = runs.First(r => r.Status == CronRunStatus.SkippedLocked);
        Assert.Equal([skipped.Id], await IdsAsync(viewer, $"run={skipped.Id}"));
        Assert.Equal([runs[5].Id], await IdsAsync(viewer, $"run={runs[5].Id}&job=a.job"));
        Assert.Empty(await IdsAsync(viewer, $"run={runs[5].Id}&job=b.job"));
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Runs_KeepTheRunFields_AndAddTheDuration_NullWhileRunning(string storage)
    {
        await using var app = await AppAsync(storage);
        var runs = await SeedAsync(app);
        using var viewer = app.Client(Guid.NewGuid(), Roles.Viewer);
        var running = (await viewer.GetAsync("/api/admin/cron-runs?limit=1", Ct).ExpectAsync(HttpStatusCode.OK))[0];
        Assert.Equal(runs[59].Id, running.GetProperty("id").GetInt64());
        Assert.Equal("RUNNING", running.GetProperty("status").GetString());
        Assert.Equal(JsonValueKind.Null, running.GetProperty("durationMs").ValueKind);
        Assert.Equal(JsonValueKind.Null, running.GetProperty("finishedAt").ValueKind);

        var failed = (await viewer.GetAsync("/api/admin/cron-runs?status=FAILED&limit=1", Ct).ExpectAsync(HttpStatusCode.OK))[0];
        Assert.Equal(runs[45].Id, failed.GetProperty("id").GetInt64());
        Assert.Equal(145, failed.GetProperty("durationMs").GetInt64());
        Assert.Equal("boom 45", failed.GetProperty("errorMessage").GetString());
        Assert.Equal("b.job", failed.GetProperty("jobName").GetString());
        Assert.Equal("node-2", failed.GetProperty("instanceId").GetString());
        Assert.Equal("schedule", failed.GetProperty("trigger").GetString());
        Assert.Equal(45, failed.GetProperty("processedCount").GetInt32());
        Assert.Equal(Day.AddHours(45), failed.GetProperty("startedAt").GetDateTime().ToUniversalTime());
        Assert.Equal(Day.AddHours(45), failed.GetProperty("scheduledFor").GetDateTime().ToUniversalTime());
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Runs_PagedWithBefore_VisitEveryRowOnce_EvenWhenRunsArriveMeanwhile(string storage)
    {
        await using var app = await AppAsync(storage);
        var runs = await SeedAsync(app);
        using var viewer = app.Client(Guid.NewGuid(), Roles.Viewer);
        var seen = new List<long>();
        var page = await IdsAsync(viewer, "limit=7&job=a.job");
        while (page.Count > 0)
        {
            Assert.True(page.Count <= 7);
            seen.AddRange(page);
            if (seen.Count == 7)
            {
                // A new run between pages: it is newer than the cursor, so it neither repeats nor shifts a row.
                await using var db = app.Db();
                db.CronRuns.Add(new CronRun { JobName = "a.job", Status = CronRunStatus.Success, Trigger = "schedule", StartedAt = Day.AddDays(5), InstanceId = "node-1" });
                await db.SaveChangesAsync(Ct);
            }
            page = await IdsAsync(viewer, $"limit=7&job=a.job&before={page[^1]}");
        }
        Assert.Equal(Expected(runs, r => r.JobName == "a.job" && r.Status != CronRunStatus.SkippedLocked), seen);
        Assert.Equal(seen.Count, seen.Distinct().Count());
    }

    [Theory]
    [InlineData("status=DONE", "status")]
    [InlineData("status=failed", "status")]
    [InlineData("trigger=cron", "trigger")]
    [InlineData("trigger=%00", "trigger")]
    [InlineData("job=a%00b", "job")]
    [InlineData("job=a%0Ab", "job")]
    [InlineData("instance=%1B[2J", "instance")]
    [InlineData("instance={long}", "instance")]
    [InlineData("from=yesterday", "from")]
    [InlineData("from=03/01/2026", "from")]
    [InlineData("to=2026-13-01T00:00:00Z", "to")]
    [InlineData("from=1970-01-01T00:00:00Z", "from")]
    [InlineData("to=9999-12-31T23:59:59Z", "to")]
    [InlineData("from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z", "from")]
    [InlineData("from=2026-03-01T00:00:00Z&to=2026-03-01T00:00:00Z", "from")]
    [InlineData("before=0", "before")]
    [InlineData("before=-3", "before")]
    [InlineData("before=abc", "before")]
    [InlineData("run=0", "run")]
    [InlineData("run=x", "run")]
    [InlineData("includeSkipped=maybe", "includeSkipped")]
    [InlineData("limit=0", "limit")]
    [InlineData("limit=1001", "limit")]
    public async Task Runs_BadParameter_Is400NamingIt(string query, string field)
    {
        await using var app = TallyApp.Sqlite(new Dictionary<string, string?> { ["Tally:Roles:0"] = "api" });
        using var viewer = app.Client(Guid.NewGuid(), Roles.Viewer);
        using var response = await viewer.GetAsync($"/api/admin/cron-runs?{query.Replace("{long}", new string('x', 201), StringComparison.Ordinal)}", Ct);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var problem = await response.ReadJsonAsync();
        Assert.Equal([field], problem.GetProperty("errors").EnumerateObject().Select(e => e.Name));
    }
}
