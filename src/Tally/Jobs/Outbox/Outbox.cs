using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql;
using NpgsqlTypes;
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
        /// <param name="eventId">The id the event is published with, when the payload carries it too; a new one otherwise.</param>
        public static OutboxEvent Add(TallyDb db, string eventType, string? subjectId, object payload, DateTime occurredAt, Guid? eventId = null)
        {
            var row = new OutboxEvent
            {
                EventId = eventId ?? Guid.CreateVersion7(),
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
            var transaction = db.Database.CurrentTransaction?.GetDbTransaction() as NpgsqlTransaction
                ?? throw new InvalidOperationException("Outbox.AddManyAsync stages events in the caller's transaction; begin one first.");
            await using var insert = new NpgsqlCommand(InsertManySql, transaction.Connection, transaction);
            insert.Parameters.AddRange(InsertManyParameters(eventType, events, occurredAt));
            await insert.ExecuteNonQueryAsync(ct);
        }

        /// <summary>
        /// PostgreSQL: the same insert as a batch command, for a caller that sends it in the same round
        /// trip as its own statements.
        /// </summary>
        public static NpgsqlBatchCommand InsertMany(string eventType, IReadOnlyList<(string? SubjectId, object Payload)> events, DateTime occurredAt)
        {
            var insert = new NpgsqlBatchCommand(InsertManySql);
            insert.Parameters.AddRange(InsertManyParameters(eventType, events, occurredAt));
            return insert;
        }

        /// <summary>The events in their order: the sequence follows it.</summary>
        private const string InsertManySql = """
            INSERT INTO outbox_events (event_id, event_type, subject_id, payload, occurred_at)
            SELECT e.id, $1, e.subject_id, e.payload, $2
            FROM unnest($3::uuid[], $4::text[], $5::text[]) WITH ORDINALITY AS e(id, subject_id, payload, n)
            ORDER BY e.n
            """;

        private static NpgsqlParameter[] InsertManyParameters(string eventType, IReadOnlyList<(string? SubjectId, object Payload)> events, DateTime occurredAt) =>
        [
            new NpgsqlParameter { Value = eventType, NpgsqlDbType = NpgsqlDbType.Text },
            new NpgsqlParameter { Value = occurredAt, NpgsqlDbType = NpgsqlDbType.TimestampTz },
            new NpgsqlParameter { Value = events.Select(_ => Guid.CreateVersion7()).ToArray() },
            new NpgsqlParameter { Value = events.Select(e => e.SubjectId).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text },
            new NpgsqlParameter { Value = events.Select(e => Serialize(e.Payload)).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text },
        ];
    }
}
