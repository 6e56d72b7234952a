using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql;
using Tally.Jobs.Outbox;
using Tally.Tests.Harness;

namespace Tally.Tests.Jobs;

/// <summary>One outbox writer: every entry point writes the same row, in the order called.</summary>
public class OutboxWriterTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task EveryEntryPoint_WritesTheSameRow_InTheOrderCalled(string storage)
    {
        // API role only: no dispatcher publishes (and marks) the rows under test.
        await using var app = await Apps.CreateAsync(storage, new Dictionary<string, string?> { ["Tally:Roles:0"] = "api" });
        var at = new DateTime(2026, 3, 4, 5, 6, 7, DateTimeKind.Utc).AddTicks(1230);
        var payload = new { amount = 12.34m, currency = "USD", note = "ü \" '" };
        OutboxEvent staged;
        await using (var db = app.Db())
        {
            await using var tx = await db.Database.BeginTransactionAsync(Ct);
            staged = Outbox.Add(db, "TestHappened", "subject", payload, at);
            await db.SaveChangesAsync(Ct);
            await Outbox.AddManyAsync(db, "TestHappened", [("subject", payload), ("subject", payload)], at, Ct);
            await OutboxBatch.InsertAsync(db, [new OutboxBatch.Event("TestHappened", "subject", payload)], at, Ct);
            if (db.Database.GetDbConnection() is NpgsqlConnection connection)
            {
                await using var batch = new NpgsqlBatch(connection, (NpgsqlTransaction)db.Database.CurrentTransaction!.GetDbTransaction());
                batch.BatchCommands.Add(Outbox.InsertMany("TestHappened", [("subject", payload)], at));
                await batch.ExecuteNonQueryAsync(Ct);
            }
            await tx.CommitAsync(Ct);
        }

        await using var check = app.Db();
        var rows = await check.OutboxEvents.AsNoTracking().OrderBy(e => e.Sequence).ToListAsync(Ct);
        Assert.Equal(storage == "postgres" ? 5 : 4, rows.Count);
        Assert.Equal(staged.EventId, rows[0].EventId);
        Assert.Equal(rows[0].Sequence, staged.Sequence);
        Assert.All(rows, r => Assert.Equal(
            ("TestHappened", "subject", JsonSerializer.Serialize(payload, Outbox.Json), at, (DateTime?)null, 0),
            (r.EventType, r.SubjectId, r.Payload, r.OccurredAt, r.PublishedAt, r.Attempts)));
        Assert.Equal(rows.Count, rows.Select(r => r.EventId).Distinct().Count());
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task StagedEvent_IsWrittenWithItsChanges_AndDroppedWithThem(string storage)
    {
        await using var app = await Apps.CreateAsync(storage, new Dictionary<string, string?> { ["Tally:Roles:0"] = "api" });
        var eventId = Guid.NewGuid();
        await using (var db = app.Db())
        {
            // Dropped with the change tracker, as every other unsaved change.
            Outbox.Add(db, "Dropped", "one", new { n = 1 }, DateTime.UtcNow);
            db.ChangeTracker.Clear();
            // Written by a save of its own (no transaction open), under the id it was given.
            Outbox.Add(db, "Kept", "two", new { n = 2 }, DateTime.UtcNow, eventId);
            Assert.Equal(1, await db.SaveChangesAsync(Ct));
            // Nothing staged twice: a second save writes nothing more.
            Assert.Equal(0, await db.SaveChangesAsync(Ct));
        }

        await using var check = app.Db();
        var row = Assert.Single(await check.OutboxEvents.AsNoTracking().ToListAsync(Ct));
        Assert.Equal(("Kept", "two", eventId), (row.EventType, row.SubjectId, row.EventId));
    }
}
