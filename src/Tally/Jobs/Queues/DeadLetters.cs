using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using Tally.Data;

namespace Tally.Data
{
    public sealed partial class TallyDb
    {
        public DbSet<Jobs.Queues.DeadLetter> DeadLetters => Set<Jobs.Queues.DeadLetter>();
    }
}

namespace Tally.Jobs.Queues
{
    /// <summary>A message that used up its retries or was given up on; kept until replayed or deleted.</summary>
    public sealed class DeadLetter
    {
        public Guid Id { get; set; }
        public required string Queue { get; set; }
        public required string MessageId { get; set; }
        public required string Body { get; set; }
        public int Attempts { get; set; }
        public required string Reason { get; set; }
        public DateTime DeadLetteredAt { get; set; }
    }

    internal sealed class DeadLetterMap : IEntityTypeConfiguration<DeadLetter>
    {
        public void Configure(EntityTypeBuilder<DeadLetter> e) => e.ToTable("dead_letters");
    }

    /// <summary>
    /// The operator's view of dead letters, for both transports. In-process, a dead letter is written
    /// here directly; on RabbitMQ it first lands in <c>Q.dlq</c> and is moved here by the queue's
    /// drain, acked only after this row commits, so a dead letter is never lost between the two.
    /// </summary>
    public sealed class DeadLetterStore(
        IDbContextFactory<TallyDb> dbs, QueueRegistry registry, IServiceProvider services, IQueueTransport transport, TimeProvider clock)
    {
        public static readonly int MaxReasonLength = 2000;

        /// <summary>Records a dead letter and lets the queue's handler note the failure, in one transaction.</summary>
        public async Task RecordAsync(QueueDefinition queue, QueueMessage message, string reason, CancellationToken ct)
        {
            var registration = registry.Find(queue.Name);
            reason = reason.Length > MaxReasonLength ? reason[..MaxReasonLength] : reason;
            await using var db = await dbs.CreateDbContextAsync(ct);
            await using var tx = await db.Database.BeginTransactionAsync(ct);
            var row = await db.DeadLetters.FirstOrDefaultAsync(d => d.Queue == queue.Name && d.MessageId == message.Id, ct);
            if (row is null)
            {
                db.DeadLetters.Add(row = new DeadLetter { Queue = queue.Name, MessageId = message.Id, Body = message.Body, Reason = reason });
            }
            row.Body = message.Body;
            row.Reason = reason;
            row.Attempts = message.Attempt + 1;
            row.DeadLetteredAt = clock.GetUtcNow().UtcDateTime;
            await db.SaveChangesAsync(ct);
            if (registration is not null)
            {
                await using var scope = services.CreateAsyncScope();
                var handler = (IQueueHandler)scope.ServiceProvider.GetRequiredService(registration.HandlerType);
                await handler.OnDeadLetteredAsync(db, message, reason, ct);
                await db.SaveChangesAsync(ct);
            }
            await tx.CommitAsync(ct);
        }

        /// <summary>Sends a dead letter back to its queue with fresh retries. Publish first, then delete:
        /// a crash in between replays it twice, which the handlers' unique keys make harmless.</summary>
        public async Task<bool> ReplayAsync(Guid id, CancellationToken ct)
        {
            await using var db = await dbs.CreateDbContextAsync(ct);
            var row = await db.DeadLetters.AsNoTracking().FirstOrDefaultAsync(d => d.Id == id, ct);
            if (row is null)
            {
                return false;
            }
            await transport.PublishAsync(row.Queue, [new QueueMessage(row.MessageId, row.Body)], ct);
            // Delete only the row as it was read: a replay that failed again at once (give-up) has
            // already written this row anew by now, and that dead letter must stay.
            await db.DeadLetters.Where(d => d.Id == id && d.DeadLetteredAt == row.DeadLetteredAt).ExecuteDeleteAsync(ct);
            return true;
        }

        public async Task<bool> DeleteAsync(Guid id, CancellationToken ct)
        {
            await using var db = await dbs.CreateDbContextAsync(ct);
            return await db.DeadLetters.Where(d => d.Id == id).ExecuteDeleteAsync(ct) == 1;
        }
    }
}
