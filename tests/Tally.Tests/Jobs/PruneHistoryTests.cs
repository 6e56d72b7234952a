using System.Net;
using Microsoft.EntityFrameworkCore;
using Tally.Features.Connections;
using Tally.Features.StoreIntegrity;
using Tally.Jobs.Outbox;
using Tally.Jobs.Queues;
using Tally.Jobs.Retention;
using Tally.Jobs.Scheduling;
using Tally.Tests.Harness;

namespace Tally.Tests.Jobs;

/// <summary><c>runtime.prune-history</c> removes old history in batches and keeps everything it must.</summary>
public class PruneHistoryTests
{
    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Prune_RemovesOldHistoryOnly_KeepsRunningRunsRepairRunsUnpublishedEventsAndLiveDeadLetters(string storage)
    {
        var ct = TestContext.Current.CancellationToken;
        // A batch of 10, so the 25 old runs take three batches.
        await using var app = await Apps.CreateAsync(storage, new Dictionary<string, string?>
        {
            ["Tally:Roles:0"] = "api",
            ["Retention:BatchSize"] = "10",
        });
        var admin = app.Admin();
        var owner = await admin.CreateUserAsync();
        var now = DateTime.UtcNow;
        var connection = new ProviderConnection
        {
            Id = Guid.NewGuid(),
            UserId = owner,
            ProviderSlug = "simplefin",
            Name = "Checking",
            Status = ConnectionStatus.Active,
            CreatedAt = now,
            UpdatedAt = now,
        };
        var old = now.AddDays(-200);
        var recent = now.AddDays(-1);
        long repairRun;
        await using (var db = app.Db())
        {
            CronRun Run(string status, DateTime at) => new() { JobName = "test.old", Status = status, Trigger = "schedule", StartedAt = at, FinishedAt = at, InstanceId = "t" };
            db.CronRuns.AddRange(Enumerable.Range(0, 25).Select(_ => Run(CronRunStatus.Success, old)));
            db.CronRuns.AddRange(Run(CronRunStatus.Running, old), Run(CronRunStatus.Success, recent));
            var repair = Run(CronRunStatus.Success, old);
            repair.JobName = RepairHasOrders.Name;
            db.CronRuns.Add(repair);
            await db.SaveChangesAsync(ct);
            repairRun = repair.Id;
            db.StoreAccountRepairs.Add(new StoreAccountRepair { RunId = repairRun, AccountId = Guid.NewGuid(), RepairedAt = old });

            OutboxEvent Event(DateTime at, DateTime? published) => new() { EventId = Guid.NewGuid(), EventType = "Old", Payload = "{}", OccurredAt = at, PublishedAt = published };
            db.OutboxEvents.AddRange(Event(old, old), Event(old, old), Event(old, null), Event(recent, recent));

            DeadLetter Letter(string id, string state, DateTime? settled) => new()
            {
                Id = Guid.NewGuid(),
                Queue = "q",
                MessageId = id,
                Body = "{}",
                Attempts = 1,
                Reason = "r",
                DeadLetteredAt = old,
                State = state,
                SettledAt = settled,
                SettledBy = settled is null ? null : "op",
            };
            db.DeadLetters.AddRange(Letter("replayed-old", DeadLetterStates.Replayed, old), Letter("deleted-old", DeadLetterStates.Deleted, old),
                Letter("dead-old", DeadLetterStates.Dead, null), Letter("replayed-recent", DeadLetterStates.Replayed, recent));

            db.ProviderConnections.Add(connection);
            ConnectionSyncRun Sync(DateTime at) => new() { Id = Guid.NewGuid(), ConnectionId = connection.Id, Trigger = "api", Status = "SUCCEEDED", StartedAt = at, FinishedAt = at };
            db.ConnectionSyncRuns.AddRange(Sync(old), Sync(old), Sync(recent));
            await db.SaveChangesAsync(ct);
        }

        var answer = await admin.PostAsync($"/api/admin/jobs/{PruneHistory.Name}/run", null, ct).ExpectAsync(HttpStatusCode.OK);
        var detail = answer.GetProperty("detail");
        Assert.Equal(25, detail.GetProperty("cronRuns").GetInt64());
        Assert.Equal(2, detail.GetProperty("publishedEvents").GetInt64());
        Assert.Equal(2, detail.GetProperty("settledDeadLetters").GetInt64());
        Assert.Equal(2, detail.GetProperty("syncRuns").GetInt64());
        Assert.Equal(31, answer.GetProperty("run").GetProperty("processedCount").GetInt32());

        await using (var db = app.Db())
        {
            var runs = await db.CronRuns.AsNoTracking().Where(r => r.JobName == "test.old").ToListAsync(ct);
            Assert.Equal(2, runs.Count); // the running one and the recent one
            Assert.Contains(runs, r => r.Status == CronRunStatus.Running);
            Assert.True(await db.CronRuns.AnyAsync(r => r.Id == repairRun, ct));
            Assert.Equal(2, await db.OutboxEvents.CountAsync(e => e.EventType == "Old", ct));
            Assert.Equal(1, await db.OutboxEvents.CountAsync(e => e.EventType == "Old" && e.PublishedAt == null, ct));
            Assert.Equal(["dead-old", "replayed-recent"], (await db.DeadLetters.Select(d => d.MessageId).ToListAsync(ct)).Order().ToArray());
            Assert.Equal(1, await db.ConnectionSyncRuns.CountAsync(ct));
        }
        // A repair's run stays with its ids: the repairs listing still reads it.
        await admin.GetAsync($"/api/admin/store/repairs/{repairRun}", ct).ExpectAsync(HttpStatusCode.OK);
        await admin.GetAsync("/api/admin/store/repairs", ct).ExpectAsync(HttpStatusCode.OK);

        // Nothing is old any more: a second run removes nothing.
        var again = await admin.PostAsync($"/api/admin/jobs/{PruneHistory.Name}/run", null, ct).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(0, again.GetProperty("run").GetProperty("processedCount").GetInt32());
    }
}
