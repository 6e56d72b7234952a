using Tally.Data;

namespace Tally.Jobs.Outbox;

/// <summary>
/// Writes many outbox events of any types now, in the caller's transaction: a sync that changes
/// thousands of balances stages their events in a few statements instead of one per event. Through
/// the outbox's one writer, so the same rows as <see cref="Outbox.Add"/>, in the order given.
/// </summary>
public static class OutboxBatch
{
    /// <param name="EventId">The id the event is published with, when the payload carries it too; a new one otherwise.</param>
    public sealed record Event(string EventType, string SubjectId, object Payload, Guid? EventId = null);

    public static async Task<int> InsertAsync(TallyDb db, IReadOnlyList<Event> events, DateTime occurredAt, CancellationToken ct)
    {
        var rows = events.Select(e => Outbox.Row(e.EventType, e.SubjectId, e.Payload, occurredAt, e.EventId)).ToList();
        await Outbox.WriteAsync(db, rows, ct);
        return rows.Count;
    }
}
