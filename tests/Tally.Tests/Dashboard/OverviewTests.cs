using System.Net;
using System.Text.Json;
using Tally.Features.Allowances;
using Tally.Features.Ledger;
using Tally.Hosting;
using Tally.Jobs.Outbox;
using Tally.Jobs.Queues;
using Tally.Jobs.Scheduling;
using Tally.Tests.Harness;

namespace Tally.Tests.Dashboard;

/// <summary>The console's overview (<c>GET /api/admin/overview</c>) shows exactly what was arranged.</summary>
public class OverviewTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static DateTime HourOf(DateTime t) => new(t.Ticks - (t.Ticks % TimeSpan.TicksPerHour), DateTimeKind.Utc);

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Overview_NumbersMatchWhatWasArranged(string storage)
    {
        // The API role alone: no worker consumes the queue or publishes the outbox, no scheduler adds runs.
        await using var app = await Apps.CreateAsync(storage, new Dictionary<string, string?> { ["Tally:Roles:0"] = "api", ["Tally:InstanceId"] = "overview-api" });
        using var admin = app.Admin();
        var now = DateTime.UtcNow;

        // Queue: three messages ready, three dead letters (one older than a day), two settled ones.
        await app.Get<IQueueTransport>().PublishAsync("allowance.schedule",
            [new QueueMessage("m1", "{}"), new QueueMessage("m2", "{}"), new QueueMessage("m3", "{}")], Ct);
        var newestDead = Guid.NewGuid();
        // Outbox: two events waiting (the oldest ten minutes), one published.
        // Runs: two successes and a failure within the day, a success before it.
        var failedRun = new CronRun { JobName = HeartbeatJobName, Status = CronRunStatus.Failed, Trigger = "schedule", StartedAt = now.AddHours(-3), FinishedAt = now.AddHours(-3).AddSeconds(1), ErrorMessage = "InvalidOperationException: " + new string('x', 400), InstanceId = "a" };
        await using (var db = app.Db())
        {
            db.DeadLetters.AddRange(
                new DeadLetter { Id = newestDead, Queue = "allowance.schedule", MessageId = "d1", Body = "{\"big\":true}", Attempts = 6, Reason = "max retries (5) reached: insufficient funds", DeadLetteredAt = now.AddMinutes(-10) },
                new DeadLetter { Id = Guid.NewGuid(), Queue = "allowance.schedule", MessageId = "d2", Body = "{}", Attempts = 1, Reason = "malformed", DeadLetteredAt = now.AddHours(-2) },
                new DeadLetter { Id = Guid.NewGuid(), Queue = "allowance.schedule", MessageId = "d3", Body = "{}", Attempts = 1, Reason = "old", DeadLetteredAt = now.AddHours(-30) },
                // Settled letters are records, not dead letters: counted in no queue, only in the hourly history.
                new DeadLetter { Id = Guid.NewGuid(), Queue = "allowance.schedule", MessageId = "d4", Body = "{}", Attempts = 1, Reason = "replayed", DeadLetteredAt = now.AddMinutes(-5), State = DeadLetterStates.Replayed, SettledAt = now, SettledBy = "op" },
                new DeadLetter { Id = Guid.NewGuid(), Queue = "allowance.schedule", MessageId = "d5", Body = "{}", Attempts = 1, Reason = "deleted", DeadLetteredAt = now.AddMinutes(-2), State = DeadLetterStates.Deleted, SettledAt = now, SettledBy = "op" });
            db.OutboxEvents.AddRange(
                new OutboxEvent { EventId = Guid.NewGuid(), EventType = "Test", Payload = "{}", OccurredAt = now.AddMinutes(-20), PublishedAt = now.AddMinutes(-19) },
                new OutboxEvent { EventId = Guid.NewGuid(), EventType = "Test", Payload = "{}", OccurredAt = now.AddMinutes(-10) },
                new OutboxEvent { EventId = Guid.NewGuid(), EventType = "Test", Payload = "{}", OccurredAt = now.AddMinutes(-5) });
            db.CronRuns.AddRange(
                new CronRun { JobName = HeartbeatJobName, Status = CronRunStatus.Success, Trigger = "schedule", StartedAt = now.AddMinutes(-10), FinishedAt = now.AddMinutes(-10), InstanceId = "a" },
                new CronRun { JobName = HeartbeatJobName, Status = CronRunStatus.Success, Trigger = "schedule", StartedAt = now.AddHours(-3), FinishedAt = now.AddHours(-3), InstanceId = "a" },
                failedRun,
                new CronRun { JobName = HeartbeatJobName, Status = CronRunStatus.Success, Trigger = "schedule", StartedAt = now.AddHours(-30), FinishedAt = now.AddHours(-30), InstanceId = "a" });
            await db.SaveChangesAsync(Ct);
        }

        // Credits: two paid within the day, one paid before it, one failed (not paid).
        var guardian = await admin.CreateUserAsync();
        var junior = await admin.CreateUserAsync(context: "WALLET");
        await admin.LinkAsync(guardian, junior);
        var from = await admin.CreateAccountAsync(guardian);
        var to = await admin.CreateAccountAsync(junior);
        var schedule = await app.AsGuardian(guardian).PostJsonAsync($"/api/guardians/me/allowances/{junior}", new { amount = 1m, frequency = "DAILY", status = "OFF" })
            .ExpectAsync(HttpStatusCode.Created);
        var scheduleId = schedule.GetProperty("id").GetGuid();
        await using (var db = app.Db())
        {
            var credits = new[] { (now.AddMinutes(-20), CreditOutcome.Paid), (now.AddHours(-2), CreditOutcome.Paid), (now.AddHours(-30), CreditOutcome.Paid), (now.AddHours(-1), CreditOutcome.Failed) }
                .Select(c => (At: c.Item1, Outcome: c.Item2, Transfer: c.Item2 == CreditOutcome.Paid ? Guid.NewGuid() : (Guid?)null)).ToList();
            // The transfers first: EF does not know the credit's transaction_id refers to them.
            db.LedgerTransfers.AddRange(credits.Where(c => c.Transfer is not null).Select(c => new LedgerTransfer
            {
                Id = c.Transfer!.Value,
                DebitAccountId = from,
                CreditAccountId = to,
                AmountMinor = 100,
                Currency = "USD",
                Kind = "ALLOWANCE",
                IdempotencyKey = $"k-{c.Transfer}",
                CreatedAt = c.At,
            }));
            await db.SaveChangesAsync(Ct);
            db.AllowanceCredits.AddRange(credits.Select(c => new AllowanceCredit
            {
                Id = Guid.NewGuid(),
                ScheduleId = scheduleId,
                RunAt = c.At,
                AmountMinor = 100,
                Currency = "USD",
                Outcome = c.Outcome,
                TransactionId = c.Transfer,
                Reason = c.Outcome == CreditOutcome.Failed ? "insufficient funds" : null,
                CreditedAt = c.At,
            }));
            await db.SaveChangesAsync(Ct);
        }

        using var viewer = app.Client(Guid.NewGuid(), Roles.Viewer);
        var overview = await viewer.GetAsync("/api/admin/overview", Ct).ExpectAsync(HttpStatusCode.OK);

        Assert.Equal("overview-api", overview.GetProperty("instanceId").GetString());
        var instances = overview.GetProperty("instances");
        Assert.Equal(1, instances.GetProperty("alive").GetInt32());
        Assert.Equal("overview-api", instances.GetProperty("recent")[0].GetProperty("id").GetString());

        var queue = overview.GetProperty("queues").EnumerateArray().Single(q => q.GetProperty("queue").GetString() == "allowance.schedule");
        Assert.Equal(3, queue.GetProperty("ready").GetInt64());
        Assert.Equal(0, queue.GetProperty("inFlight").GetInt64());
        Assert.Equal(3, queue.GetProperty("deadLetters").GetInt64());
        Assert.False(queue.GetProperty("deadLettersCapped").GetBoolean());

        var outbox = overview.GetProperty("outbox");
        Assert.Equal(2, outbox.GetProperty("backlog").GetInt64());
        Assert.False(outbox.GetProperty("backlogCapped").GetBoolean());
        var age = outbox.GetProperty("oldestAgeSeconds").GetDouble();
        Assert.InRange(age, 599, 600 + (DateTime.UtcNow - now).TotalSeconds + 1);

        var sync = overview.GetProperty("balanceSync");
        Assert.Equal(0, sync.GetProperty("priority").GetInt64());
        Assert.Equal("overview-api", sync.GetProperty("gateInstanceId").GetString());
        Assert.True(sync.GetProperty("gate").GetProperty("maxCalls").GetInt32() >= 1);
        Assert.Equal(JsonValueKind.Null, sync.GetProperty("gate").GetProperty("pausedUntil").ValueKind);

        var failures = overview.GetProperty("latestFailures");
        var run = Assert.Single(failures.GetProperty("runs").EnumerateArray());
        Assert.Equal(failedRun.Id, run.GetProperty("id").GetInt64());
        Assert.True(run.GetProperty("error").GetString()!.Length <= 201, "the error is shortened");
        var dead = failures.GetProperty("deadLetters").EnumerateArray().ToList();
        Assert.Equal(3, dead.Count);
        Assert.Equal(newestDead, dead[0].GetProperty("id").GetGuid());
        Assert.False(dead[0].TryGetProperty("body", out _), "a dead letter's body is not in the overview");

        var hours = overview.GetProperty("last24Hours").EnumerateArray().ToList();
        Assert.Equal(24, hours.Count);
        DateTime Hour(JsonElement h) => h.GetProperty("hour").GetDateTime().ToUniversalTime();
        Assert.Equal(HourOf(now), Hour(hours[^1]));
        Assert.Equal(HourOf(now).AddHours(-23), Hour(hours[0]));
        long At(DateTime t, string field) => hours.Single(h => Hour(h) == HourOf(t)).GetProperty(field).GetInt64();
        Assert.Equal(2, hours.Sum(h => h.GetProperty("creditsPaid").GetInt64()));
        Assert.Equal(1, At(now.AddMinutes(-20), "creditsPaid"));
        Assert.Equal(1, At(now.AddHours(-2), "creditsPaid"));
        Assert.Equal(2, hours.Sum(h => h.GetProperty("runsSucceeded").GetInt64()));
        Assert.Equal(1, hours.Sum(h => h.GetProperty("runsFailed").GetInt64()));
        Assert.Equal(1, At(now.AddHours(-3), "runsFailed"));
        Assert.Equal(1, At(now.AddHours(-3), "runsSucceeded"));
        // The chart is history: settled letters still died in their hour (d1, d2, d4, d5; d3 is older).
        Assert.Equal(4, hours.Sum(h => h.GetProperty("deadLetters").GetInt64()));
        Assert.Equal(1, At(now.AddHours(-2), "deadLetters"));
    }

    [Fact]
    public async Task Overview_AndLanes_ReadByAViewer_BadParametersRefusedNamingThem()
    {
        await using var app = TallyApp.Sqlite(new Dictionary<string, string?> { ["Tally:Roles:0"] = "api" });
        using var viewer = app.Client(Guid.NewGuid(), Roles.Viewer);
        var lanes = await viewer.GetAsync("/api/admin/balance-sync/lanes", Ct).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal("in-process", lanes.GetProperty("lanes").GetString());
        Assert.Equal(0, lanes.GetProperty("gate").GetProperty("inFlight").GetInt32());
        var problem = await viewer.GetAsync("/api/admin/overview?failures=0", Ct).ExpectProblemAsync(HttpStatusCode.BadRequest, "VALIDATION_FAILED");
        Assert.True(problem.GetProperty("errors").TryGetProperty("failures", out _));
        await app.CreateClient().GetAsync("/api/admin/overview", Ct).ExpectAsync(HttpStatusCode.Unauthorized);
    }

    private const string HeartbeatJobName = Tally.Jobs.HeartbeatJob.Name;
}
