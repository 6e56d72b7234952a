using System.Text;
using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using Tally.Data;

namespace Tally.Jobs.Outbox;

/// <summary>
/// Writes many outbox events with multi-row INSERTs, in the caller's transaction: a sync that changes
/// thousands of balances stages their events in a few statements instead of one per event (SQLite
/// has no statement batching). Same rows as <see cref="Outbox.Add"/>, in the order given.
/// </summary>
public static class OutboxBatch
{
    private const int RowsPerStatement = 1_000;

    /// <param name="EventId">The id the event is published with, when the payload carries it too; a new one otherwise.</param>
    public sealed record Event(string EventType, string SubjectId, object Payload, Guid? EventId = null);

    public static async Task<int> InsertAsync(TallyDb db, IReadOnlyList<Event> events, DateTime occurredAt, CancellationToken ct)
    {
        var written = 0;
        foreach (var chunk in events.Chunk(RowsPerStatement))
        {
            var sql = new StringBuilder("INSERT INTO outbox_events (event_id, event_type, subject_id, payload, occurred_at) VALUES ");
            var values = new List<object>(chunk.Length * 5);
            for (var i = 0; i < chunk.Length; i++)
            {
                var p = values.Count;
                sql.Append(i == 0 ? "" : ", ").Append($"({{{p}}}, {{{p + 1}}}, {{{p + 2}}}, {{{p + 3}}}, {{{p + 4}}})");
                values.Add(chunk[i].EventId ?? Guid.CreateVersion7());
                values.Add(chunk[i].EventType);
                values.Add(chunk[i].SubjectId);
                values.Add(JsonSerializer.Serialize(chunk[i].Payload, chunk[i].Payload.GetType(), Outbox.Json));
                values.Add(occurredAt);
            }
            written += await db.Database.ExecuteSqlRawAsync(sql.ToString(), values, ct);
        }
        return written;
    }
}
