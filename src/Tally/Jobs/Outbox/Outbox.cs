using System.Data.Common;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using Npgsql;
using NpgsqlTypes;
using Tally.Data;

namespace Tally.Data
{
    public sealed partial class TallyDb
    {
        public DbSet<Jobs.Outbox.OutboxEvent> OutboxEvents => Set<Jobs.Outbox.OutboxEvent>();

        /// <summary>The events <see cref="Jobs.Outbox.Outbox.Add"/> staged, in the order staged, for the next SaveChanges.</summary>
        internal List<Jobs.Outbox.OutboxEvent> StagedEvents { get; } = [];

        /// <summary>
        /// Saves the tracked changes and writes the staged outbox events with them, through the
        /// outbox's one insert, in one transaction (the caller's, or one of its own): an event commits
        /// with the change it describes, or neither does.
        /// </summary>
        public override async Task<int> SaveChangesAsync(bool acceptAllChangesOnSuccess, CancellationToken cancellationToken = default)
        {
            var staged = Jobs.Outbox.Outbox.Unstage(this);
            if (staged.Count == 0)
            {
                return await base.SaveChangesAsync(acceptAllChangesOnSuccess, cancellationToken);
            }
            int saved;
            var autoSavepoints = Database.AutoSavepointsEnabled;
            try
            {
                await using var tx = Database.CurrentTransaction is null ? await Database.BeginTransactionAsync(cancellationToken) : null;
                // In a transaction of its own, a savepoint around the changes would only add round trips.
                Database.AutoSavepointsEnabled = autoSavepoints && tx is null;
                saved = await base.SaveChangesAsync(acceptAllChangesOnSuccess, cancellationToken);
                await Jobs.Outbox.Outbox.WriteAsync(this, staged, cancellationToken);
                if (tx is not null)
                {
                    await tx.CommitAsync(cancellationToken);
                }
            }
            catch (Exception e)
            {
                // As EF Core leaves a failed save: the events still staged, a database's refusal a DbUpdateException.
                Jobs.Outbox.Outbox.Restage(this, staged);
                if (e is DbException)
                {
                    throw new DbUpdateException("An error occurred while saving the outbox events.", e);
                }
                throw;
            }
            finally
            {
                Database.AutoSavepointsEnabled = autoSavepoints;
            }
            Jobs.Outbox.Outbox.Saved(this, staged);
            return saved + staged.Count;
        }

        /// <summary>Synchronous saves write no outbox events: stage them for <see cref="SaveChangesAsync(bool, CancellationToken)"/>.</summary>
        public override int SaveChanges(bool acceptAllChangesOnSuccess) =>
            StagedEvents.Count == 0 ? base.SaveChanges(acceptAllChangesOnSuccess) : throw new InvalidOperationException("Outbox events are written by SaveChangesAsync.");
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

    /// <summary>
    /// Adds events to the outbox. Nothing is published here: the dispatcher does that after commit.
    /// Every entry point writes its rows through one statement (<see cref="OutboxSql.Insert"/>) and one
    /// method (<see cref="WriteAsync"/>), or, for a caller batching its own PostgreSQL commands, the same
    /// statement as a batch command (<see cref="InsertMany"/>).
    /// </summary>
    public static partial class Outbox
    {
        public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

        /// <summary>Stages <paramref name="payload"/> as event <paramref name="eventType"/>; it commits with the caller's SaveChanges.</summary>
        /// <param name="eventId">The id the event is published with, when the payload carries it too; a new one otherwise.</param>
        public static OutboxEvent Add(TallyDb db, string eventType, string? subjectId, object payload, DateTime occurredAt, Guid? eventId = null)
        {
            var row = Row(eventType, subjectId, payload, occurredAt, eventId);
            // Tracked as well, so that a cleared change tracker drops it, as it drops every other unsaved change.
            db.OutboxEvents.Add(row);
            db.StagedEvents.Add(row);
            return row;
        }

        /// <summary>Writes many events of one type now, in the caller's transaction (for a batch, the change tracker would cost more than the rows).</summary>
        public static async Task AddManyAsync(TallyDb db, string eventType, IReadOnlyList<(string? SubjectId, object Payload)> events, DateTime occurredAt, CancellationToken ct)
        {
            if (db.Database.CurrentTransaction is null)
            {
                throw new InvalidOperationException("Outbox.AddManyAsync writes events in the caller's transaction; begin one first.");
            }
            await WriteAsync(db, [.. events.Select(e => Row(eventType, e.SubjectId, e.Payload, occurredAt))], ct);
        }

        /// <summary>
        /// PostgreSQL: the same insert as a batch command, for a caller that sends it in the same round
        /// trip as its own statements.
        /// </summary>
        public static NpgsqlBatchCommand InsertMany(string eventType, IReadOnlyList<(string? SubjectId, object Payload)> events, DateTime occurredAt)
        {
            var columns = Columns([.. events.Select(e => Row(eventType, e.SubjectId, e.Payload, occurredAt))]);
            var insert = new NpgsqlBatchCommand(Placeholder().Replace(OutboxSql.Postgres.Insert.Text, m => "$" + (int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) + 1)));
            for (var c = 0; c < columns.Length; c++)
            {
                insert.Parameters.Add(new NpgsqlParameter { Value = columns[c], NpgsqlDbType = NpgsqlDbType.Array | ColumnTypes[c] });
            }
            return insert;
        }

        /// <summary>
        /// The one writer: inserts <paramref name="rows"/> in their order, in the caller's transaction
        /// if any, and sets each row's <see cref="OutboxEvent.Sequence"/>.
        /// </summary>
        internal static async Task WriteAsync(TallyDb db, IReadOnlyList<OutboxEvent> rows, CancellationToken ct)
        {
            var sequences = await OutboxSql.For(db.Database).Insert.QueryAsync(db.Database.SqlQueryRaw<long>, [], Columns(rows), ct);
            // The sequence follows the order of the rows (see OutboxSql.Insert).
            sequences.Sort();
            for (var i = 0; i < rows.Count; i++)
            {
                rows[i].Sequence = sequences[i];
            }
        }

        /// <summary>The staged events still to write (a cleared change tracker dropped the others), no longer tracked for EF Core to insert.</summary>
        internal static List<OutboxEvent> Unstage(TallyDb db)
        {
            if (db.StagedEvents.Count == 0)
            {
                return [];
            }
            var staged = db.StagedEvents.Where(row => db.Entry(row).State == EntityState.Added).ToList();
            db.StagedEvents.Clear();
            foreach (var row in staged)
            {
                db.Entry(row).State = EntityState.Detached;
            }
            return staged;
        }

        /// <summary>After the commit: the rows are tracked as saved, as EF Core leaves the rows it inserts.</summary>
        internal static void Saved(TallyDb db, List<OutboxEvent> rows)
        {
            foreach (var row in rows)
            {
                db.Entry(row).State = EntityState.Unchanged;
            }
        }

        /// <summary>After a failed save: the rows staged again, for the next SaveChanges.</summary>
        internal static void Restage(TallyDb db, List<OutboxEvent> rows)
        {
            foreach (var row in rows)
            {
                row.Sequence = 0;
                db.Entry(row).State = EntityState.Added;
            }
            db.StagedEvents.InsertRange(0, rows);
        }

        internal static OutboxEvent Row(string eventType, string? subjectId, object payload, DateTime occurredAt, Guid? eventId = null) => new()
        {
            EventId = eventId ?? Guid.CreateVersion7(),
            EventType = eventType,
            SubjectId = subjectId,
            Payload = JsonSerializer.Serialize(payload, payload.GetType(), Json),
            OccurredAt = occurredAt,
        };

        /// <summary>The rows as the columns of <see cref="OutboxSql.Insert"/>.</summary>
        private static Array[] Columns(IReadOnlyList<OutboxEvent> rows) =>
        [
            rows.Select(r => r.EventId).ToArray(),
            rows.Select(r => r.EventType).ToArray(),
            rows.Select(r => r.SubjectId).ToArray(),
            rows.Select(r => r.Payload).ToArray(),
            rows.Select(r => r.OccurredAt).ToArray(),
        ];

        private static readonly NpgsqlDbType[] ColumnTypes = [NpgsqlDbType.Uuid, NpgsqlDbType.Text, NpgsqlDbType.Text, NpgsqlDbType.Text, NpgsqlDbType.TimestampTz];

        [GeneratedRegex(@"\{(\d+)\}")]
        private static partial Regex Placeholder();
    }
}
