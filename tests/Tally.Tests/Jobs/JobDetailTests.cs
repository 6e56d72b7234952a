using System.Globalization;
using System.Net;
using Tally.Hosting;
using Tally.Jobs;
using Tally.Jobs.Scheduling;
using Tally.Tests.Harness;

namespace Tally.Tests.Jobs;

/// <summary>The job page: <c>GET /api/admin/jobs/{name}</c>, and the stale mark's rule.</summary>
public class JobDetailTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static DateTime Utc(string text) => DateTime.Parse(text, CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal);

    private static JobDefinition Job(string cron, bool enabled = true) => new("test.job", cron, "Europe/Paris", typeof(HeartbeatJob), enabled);

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task JobDetail_NextFiveOccurrences_ExactUtcAndLocalTimeInTheJobsZone(string storage)
    {
        await using var app = await Apps.CreateAsync(storage, new Dictionary<string, string?>
        {
            ["Tally:Roles:0"] = "api",
            [$"Jobs:{HeartbeatJob.Name}:Cron"] = "30 9 * * *",
            [$"Jobs:{HeartbeatJob.Name}:TimeZone"] = "America/New_York",
        });
        using var viewer = app.Client(Guid.NewGuid(), Roles.Viewer);
        var before = DateTime.UtcNow;
        var job = await viewer.GetAsync($"/api/admin/jobs/{HeartbeatJob.Name}", Ct).ExpectAsync(HttpStatusCode.OK);

        Assert.Equal("30 9 * * *", job.GetProperty("cron").GetString());
        Assert.Equal("America/New_York", job.GetProperty("timeZone").GetString());
        Assert.True(job.GetProperty("enabled").GetBoolean());
        Assert.False(job.GetProperty("paused").GetBoolean());
        var next = job.GetProperty("next").EnumerateArray().ToList();
        Assert.Equal(5, next.Count);
        var zone = TimeZoneInfo.FindSystemTimeZoneById("America/New_York");
        DateTimeOffset? previous = null;
        foreach (var occurrence in next)
        {
            var utc = occurrence.GetProperty("utc").GetDateTime().ToUniversalTime();
            var localText = occurrence.GetProperty("local").GetString()!;
            var local = DateTimeOffset.Parse(localText, CultureInfo.InvariantCulture);
            Assert.True(utc > before);
            Assert.Equal(utc, local.UtcDateTime);
            Assert.Equal(new TimeSpan(9, 30, 0), local.TimeOfDay);
            Assert.Equal(zone.GetUtcOffset(utc), local.Offset);
            Assert.Matches(@"T09:30:00-0[45]:00$", localText);
            if (previous is { } p)
            {
                Assert.Equal(p.Date.AddDays(1), local.Date);
            }
            previous = local;
        }
        Assert.Equal(JsonValueKindNull, job.GetProperty("lastRun").ValueKind);
        Assert.False(job.GetProperty("stale").GetBoolean());
        Assert.Equal(3, job.GetProperty("staleAfterPeriods").GetInt32());
    }

    private const System.Text.Json.JsonValueKind JsonValueKindNull = System.Text.Json.JsonValueKind.Null;

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task JobDetail_NoSuccessForThreePeriods_IsStale_UntilItSucceedsOrIsPaused(string storage)
    {
        await using var app = await Apps.CreateAsync(storage, new Dictionary<string, string?>
        {
            ["Tally:Roles:0"] = "api",
            [$"Jobs:{HeartbeatJob.Name}:Cron"] = "@every 1h",
        });
        using var op = app.Client(Guid.NewGuid(), Roles.Operator);
        var now = DateTime.UtcNow;
        await using (var db = app.Db())
        {
            db.CronRuns.AddRange(
                Run(CronRunStatus.Success, now.AddHours(-5), TimeSpan.FromMilliseconds(1500), null),
                Run(CronRunStatus.Failed, now.AddHours(-2), TimeSpan.FromSeconds(2), "TimeoutException: the core did not answer"),
                Run(CronRunStatus.Failed, now.AddHours(-1), TimeSpan.FromMilliseconds(250), "HttpRequestException: connection refused"),
                Run(CronRunStatus.SkippedLocked, now.AddMinutes(-59), TimeSpan.Zero, null));
            await db.SaveChangesAsync(Ct);
        }

        var job = await op.GetAsync($"/api/admin/jobs/{HeartbeatJob.Name}", Ct).ExpectAsync(HttpStatusCode.OK);
        Assert.True(job.GetProperty("stale").GetBoolean());
        var last = job.GetProperty("lastRun");
        Assert.Equal("FAILED", last.GetProperty("status").GetString());
        Assert.Equal(250, last.GetProperty("durationMs").GetInt64());
        Assert.Equal("HttpRequestException: connection refused", last.GetProperty("error").GetString());
        var success = job.GetProperty("lastSuccess");
        Assert.Equal("SUCCESS", success.GetProperty("status").GetString());
        Assert.Equal(1500, success.GetProperty("durationMs").GetInt64());

        // Paused: not stale (nobody expects it to run).
        await op.PostAsync($"/api/admin/jobs/{HeartbeatJob.Name}/pause", null, Ct).ExpectAsync(HttpStatusCode.NoContent);
        job = await op.GetAsync($"/api/admin/jobs/{HeartbeatJob.Name}", Ct).ExpectAsync(HttpStatusCode.OK);
        Assert.True(job.GetProperty("paused").GetBoolean());
        Assert.False(job.GetProperty("stale").GetBoolean());
        await op.PostAsync($"/api/admin/jobs/{HeartbeatJob.Name}/resume", null, Ct).ExpectAsync(HttpStatusCode.NoContent);
        Assert.True((await op.GetAsync($"/api/admin/jobs/{HeartbeatJob.Name}", Ct).ExpectAsync(HttpStatusCode.OK)).GetProperty("stale").GetBoolean());

        // A success ends it.
        await op.PostAsync($"/api/admin/jobs/{HeartbeatJob.Name}/run", null, Ct).ExpectAsync(HttpStatusCode.OK);
        job = await op.GetAsync($"/api/admin/jobs/{HeartbeatJob.Name}", Ct).ExpectAsync(HttpStatusCode.OK);
        Assert.False(job.GetProperty("stale").GetBoolean());
        Assert.Equal("SUCCESS", job.GetProperty("lastRun").GetProperty("status").GetString());
        Assert.Equal("manual", job.GetProperty("lastSuccess").GetProperty("trigger").GetString());
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task JobDetail_NeverSucceeded_CountsFromItsFirstRun(string storage)
    {
        await using var app = await Apps.CreateAsync(storage, new Dictionary<string, string?>
        {
            ["Tally:Roles:0"] = "api",
            [$"Jobs:{HeartbeatJob.Name}:Cron"] = "@every 1h",
        });
        using var viewer = app.Client(Guid.NewGuid(), Roles.Viewer);
        var now = DateTime.UtcNow;
        await using (var db = app.Db())
        {
            db.CronRuns.Add(Run(CronRunStatus.Failed, now.AddMinutes(-90), TimeSpan.FromSeconds(1), "boom"));
            await db.SaveChangesAsync(Ct);
        }
        // One or two hourly occurrences since its first run: not yet three periods.
        var job = await viewer.GetAsync($"/api/admin/jobs/{HeartbeatJob.Name}", Ct).ExpectAsync(HttpStatusCode.OK);
        Assert.False(job.GetProperty("stale").GetBoolean());
        Assert.Equal(JsonValueKindNull, job.GetProperty("lastSuccess").ValueKind);

        await using (var db = app.Db())
        {
            db.CronRuns.Add(Run(CronRunStatus.Failed, now.AddHours(-4), TimeSpan.FromSeconds(1), "boom"));
            await db.SaveChangesAsync(Ct);
        }
        job = await viewer.GetAsync($"/api/admin/jobs/{HeartbeatJob.Name}", Ct).ExpectAsync(HttpStatusCode.OK);
        Assert.True(job.GetProperty("stale").GetBoolean());
        Assert.Equal("boom", job.GetProperty("lastRun").GetProperty("error").GetString());
    }

    [Fact]
    public async Task JobDetail_UnknownOrMalformedName_IsRefusedNamingIt()
    {
        await using var app = TallyApp.Sqlite();
        using var viewer = app.Client(Guid.NewGuid(), Roles.Viewer);
        await viewer.GetAsync("/api/admin/jobs/no.such.job", Ct).ExpectProblemAsync(HttpStatusCode.NotFound, "JOB.NOT_FOUND");
        var problem = await viewer.GetAsync($"/api/admin/jobs/{new string('x', 201)}", Ct).ExpectProblemAsync(HttpStatusCode.BadRequest, "VALIDATION_FAILED");
        Assert.True(problem.GetProperty("errors").TryGetProperty("name", out _));
    }

    [Fact]
    public void Stale_CountsTheSchedulesOwnOccurrences_SoAQuietWeekendIsNotThreePeriods()
    {
        var weekdays = Job("0 9 * * 1-5");
        var fridaySuccess = Utc("2026-03-06T08:00:01Z"); // Friday 09:00:01 in Paris
        Assert.False(JobStaleness.IsStale(weekdays, paused: false, fridaySuccess, null, Utc("2026-03-09T08:30:00Z"))); // Monday: one occurrence since
        Assert.False(JobStaleness.IsStale(weekdays, paused: false, fridaySuccess, null, Utc("2026-03-10T08:30:00Z"))); // Tuesday: two
        Assert.True(JobStaleness.IsStale(weekdays, paused: false, fridaySuccess, null, Utc("2026-03-11T08:00:00Z"))); // Wednesday 09:00: three
    }

    [Fact]
    public void Stale_NeverForAPausedDisabledOrNeverRunJob()
    {
        var now = Utc("2026-03-11T12:00:00Z");
        var longAgo = now.AddDays(-30);
        Assert.True(JobStaleness.IsStale(Job("@every 5m"), paused: false, longAgo, null, now));
        Assert.False(JobStaleness.IsStale(Job("@every 5m"), paused: true, longAgo, null, now));
        Assert.False(JobStaleness.IsStale(Job("@every 5m", enabled: false), paused: false, longAgo, null, now));
        Assert.False(JobStaleness.IsStale(Job("@every 5m"), paused: false, null, null, now));
        Assert.True(JobStaleness.IsStale(Job("@every 5m"), paused: false, null, now.AddMinutes(-15), now));
        Assert.False(JobStaleness.IsStale(Job("@every 5m"), paused: false, now.AddMinutes(-10), null, now));
    }

    private static CronRun Run(string status, DateTime startedAt, TimeSpan took, string? error) => new()
    {
        JobName = HeartbeatJob.Name,
        Status = status,
        Trigger = JobRunner.ScheduleTrigger,
        StartedAt = startedAt,
        FinishedAt = startedAt + took,
        ErrorMessage = error,
        InstanceId = "test",
    };
}
