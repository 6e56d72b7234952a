using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using Tally.Data;

namespace Tally.Data
{
    public sealed partial class TallyDb
    {
        public DbSet<Jobs.Outbox.OutboxEvent> OutboxEvents => Set<Jobs.Outbox.OutboxEvent>();
    }
}

namespace Tally.Jobs.Outbox
{
    /// <summary>A domain event, written in the same transaction as the change it describes.</summary>
    public sealed class OutboxEvent
    {
        public long Sequence { get; set; }
        public Guid EventId { get; set; }
        public required string EventType { get; set; }
        public string? SubjectId { get; set; }
        public required string Payload { get; set; }
        public DateTime OccurredAt { get; set; }
        public DateTime? PublishedAt { get; set; }
        public int Attempts { get; set; }
        public string? LastError { get; set; }
    }

    internal sealed class OutboxEventMap : IEntityTypeConfiguration<OutboxEvent>
    {
        public void Configure(EntityTypeBuilder<OutboxEvent> e)
        {
            e.ToTable("outbox_events");
            e.HasKey(x => x.Sequence);
        }
    }

    /// <summary>Adds events to the outbox. Nothing is published here: the dispatcher does that after commit.</summary>
    public static class Outbox
    {
        public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

        /// <summary>Stages <paramref name="payload"/> as event <paramref name="eventType"/>; it commits with the caller's SaveChanges.</summary>
        public static OutboxEvent Add(TallyDb db, string eventType, string? subjectId, object payload, DateTime occurredAt)
        {
            var row = new OutboxEvent
            {
                EventId = Guid.CreateVersion7(),
                EventType = eventType,
                SubjectId = subjectId,
                Payload = Serialize(payload),
                OccurredAt = occurredAt,
            };
            db.OutboxEvents.Add(row);
            return row;
        }

        private static string Serialize(object payload) => JsonSerializer.Serialize(payload, payload.GetType(), Json);

        /// <summary>
        /// Stages many events of one type in the caller's transaction. On PostgreSQL one insert,
        /// executed now (for a batch, the change tracker would cost more than the rows); elsewhere
        /// they commit with the caller's SaveChanges, as <see cref="Add"/>.
        /// </summary>
        public static async Task AddManyAsync(TallyDb db, string eventType, IReadOnlyList<(string? SubjectId, object Payload)> events, DateTime occurredAt, CancellationToken ct)
        {
            if (!db.Database.IsNpgsql())
            {
                foreach (var (subjectId, payload) in events)
                {
                    Add(db, eventType, subjectId, payload, occurredAt);
                }
                return;
            }
            await db.Database.ExecuteSqlAsync(
                $"""
                INSERT INTO outbox_events (event_id, event_type, subject_id, payload, occurred_at)
                SELECT e.id, {eventType}, e.subject_id, e.payload, {occurredAt}
                FROM unnest({events.Select(_ => Guid.CreateVersion7()).ToArray()}, {events.Select(e => e.SubjectId).ToArray()},
                            {events.Select(e => Serialize(e.Payload)).ToArray()})
                     WITH ORDINALITY AS e(id, subject_id, payload, n)
                ORDER BY e.n
                """, ct);
        }
    }
}
