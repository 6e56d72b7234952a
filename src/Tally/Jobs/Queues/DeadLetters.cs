using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using Tally.Data;
using Tally.Hosting;

namespace Tally.Data
{
    public sealed partial class TallyDb
    {
        public DbSet<Jobs.Queues.DeadLetter> DeadLetters => Set<Jobs.Queues.DeadLetter>();
    }
}

namespace Tally.Jobs.Queues
{
    /// <summary>
    /// A message that used up its retries or was given up on. It stays a record when an operator
    /// settles it: <see cref="State"/> turns from dead to replayed or deleted, with who and when.
    /// </summary>
    public sealed class DeadLetter
    {
        public Guid Id { get; set; }
        public required string Queue { get; set; }
        public required string MessageId { get; set; }
        public required string Body { get; set; }
        public int Attempts { get; set; }
        public required string Reason { get; set; }
        public DateTime DeadLetteredAt { get; set; }

        /// <summary>Given by the database when the letter dies (and anew each time it dies again): the listing's cursor and a bulk action's watermark.</summary>
        public long Sequence { get; set; }

        public string State { get; set; } = DeadLetterStates.Dead;
        public DateTime? SettledAt { get; set; }

        /// <summary>Who replayed or deleted it: the caller as the audit names it (<see cref="Audit.AuditLog.ActorOf"/>).</summary>
        public string? SettledBy { get; set; }
    }

    public static class DeadLetterStates
    {
        public const string Dead = "dead";
        public const string Replayed = "replayed";
        public const string Deleted = "deleted";

        public static readonly string[] All = [Dead, Replayed, Deleted];
    }

    internal sealed class DeadLetterMap : IEntityTypeConfiguration<DeadLetter>
    {
        public void Configure(EntityTypeBuilder<DeadLetter> e)
        {
            e.ToTable("dead_letters");
            e.Property(d => d.Sequence).ValueGeneratedOnAdd();
        }
    }

    public static class DeadLetterQueries
    {
        /// <summary>The letters still dead: what every count of dead letters counts (replayed and deleted ones are records).</summary>
        public static IQueryable<DeadLetter> Live(this IQueryable<DeadLetter> letters) => letters.Where(d => d.State == DeadLetterStates.Dead);
    }

    /// <summary>
    /// Which dead letters a search or a bulk action means: each given field narrows it. The queue and
    /// the message id match exactly; the reason and the text (searched in the body) match anywhere,
    /// ignoring case (ILIKE on PostgreSQL, served by trigram indexes; LIKE on SQLite, ASCII case only).
    /// </summary>
    public sealed record DeadLetterFilter(string? Queue = null, string? Reason = null, string? MessageId = null, string? Text = null)
    {
        public const int MaxTextLength = 200;

        public FieldErrors Check(FieldErrors errors) => errors
            .CheckText(Queue, "queue", MaxTextLength, required: false)
            .CheckText(Reason, "reason", MaxTextLength, required: false)
            .CheckText(MessageId, "messageId", MaxTextLength, required: false)
            .CheckText(Text, "text", MaxTextLength, required: false);

        public IQueryable<DeadLetter> Apply(TallyDb db, IQueryable<DeadLetter> letters)
        {
            if (Queue is not null)
            {
                letters = letters.Where(d => d.Queue == Queue);
            }
            if (MessageId is not null)
            {
                letters = letters.Where(d => d.MessageId == MessageId);
            }
            var likeIgnoresCase = DeadLetterSql.For(db.Database).LikeIgnoresCase;
            if (Reason is not null)
            {
                var pattern = Contains(Reason);
                letters = likeIgnoresCase
                    ? letters.Where(d => EF.Functions.Like(d.Reason, pattern, EscapeCharacter))
                    : letters.Where(d => EF.Functions.ILike(d.Reason, pattern, EscapeCharacter));
            }
            if (Text is not null)
            {
                var pattern = Contains(Text);
                letters = likeIgnoresCase
                    ? letters.Where(d => EF.Functions.Like(d.Body, pattern, EscapeCharacter))
                    : letters.Where(d => EF.Functions.ILike(d.Body, pattern, EscapeCharacter));
            }
            return letters;
        }

        /// <summary>Says what it matches, for the audit: <c>queue=q reason~timeout</c>, or <c>all</c>.</summary>
        public override string ToString()
        {
            var parts = new[] { ("queue=", Queue), ("reason~", Reason), ("messageId=", MessageId), ("text~", Text) }
                .Where(p => p.Item2 is not null).Select(p => p.Item1 + p.Item2).ToList();
            return parts.Count == 0 ? "all" : string.Join(' ', parts);
        }

        private const string EscapeCharacter = "\\";

        /// <summary>A LIKE pattern for the text anywhere: its own %, _ and \ match themselves.</summary>
        private static string Contains(string text) =>
            "%" + text.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("%", "\\%", StringComparison.Ordinal).Replace("_", "\\_", StringComparison.Ordinal) + "%";
    }

    /// <summary>
    /// The letters a bulk action acts on: those matching <see cref="Filter"/>, narrowed to <see cref="Ids"/>
    /// when given, and no newer than <see cref="UpTo"/> (the sequence a preview answered) when given.
    /// </summary>
    public sealed record DeadLetterSelection(DeadLetterFilter Filter, IReadOnlyList<Guid>? Ids = null, long? UpTo = null)
    {
        public IQueryable<DeadLetter> Apply(TallyDb db, IQueryable<DeadLetter> letters)
        {
            letters = Filter.Apply(db, letters);
            if (Ids is { } ids)
            {
                letters = letters.Where(d => ids.Contains(d.Id));
            }
            if (UpTo is { } upTo)
            {
                letters = letters.Where(d => d.Sequence <= upTo);
            }
            return letters;
        }

        public override string ToString() =>
            Filter + (Ids is null ? "" : $" ids={Ids.Count}") + (UpTo is null ? "" : $" upTo={UpTo}");
    }

    /// <summary>What settling one dead letter came to.</summary>
    public enum SettleOutcome
    {
        Settled,
        NotFound,

        /// <summary>Already replayed or deleted: only a dead letter is settled.</summary>
        AlreadySettled,
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

        /// <summary>How many letters a bulk replay reads, publishes and marks at a time.</summary>
        public const int BatchSize = 1000;

        /// <summary>
        /// Records a dead letter and lets the queue's handler note the failure, in one transaction. One
        /// row per (queue, message id): a letter that dies again, even after it was replayed or deleted,
        /// is dead again with a new sequence (so it is newest, and above every earlier bulk watermark).
        /// </summary>
        public async Task RecordAsync(QueueDefinition queue, QueueMessage message, string reason, CancellationToken ct)
        {
            var registration = registry.Find(queue.Name);
            reason = reason.Length > MaxReasonLength ? reason[..MaxReasonLength] : reason;
            await using var db = await dbs.CreateDbContextAsync(ct);
            await using var tx = await db.Database.BeginTransactionAsync(ct);
            var now = clock.GetUtcNow().UtcDateTime;
            // One statement, so two deaths of the same message at once cannot both insert.
            await db.Database.ExecuteSqlRawAsync(DeadLetterSql.For(db.Database).Record,
                [Guid.CreateVersion7(), queue.Name, message.Id, message.Body, message.Attempt + 1, reason, now], ct);
            if (registration is not null)
            {
                await using var scope = services.CreateAsyncScope();
                var handler = (IQueueHandler)scope.ServiceProvider.GetRequiredService(registration.HandlerType);
                await handler.OnDeadLetteredAsync(db, message, reason, ct);
                await db.SaveChangesAsync(ct);
            }
            await tx.CommitAsync(ct);
        }

        /// <summary>Sends a dead letter back to its queue with fresh retries. Publish first, then mark it
        /// replayed: a crash in between replays it twice, which the handlers' unique keys make harmless.</summary>
        public async Task<SettleOutcome> ReplayAsync(Guid id, string actor, CancellationToken ct)
        {
            await using var db = await dbs.CreateDbContextAsync(ct);
            var row = await db.DeadLetters.AsNoTracking().FirstOrDefaultAsync(d => d.Id == id, ct);
            if (row is not { State: DeadLetterStates.Dead })
            {
                return row is null ? SettleOutcome.NotFound : SettleOutcome.AlreadySettled;
            }
            await transport.PublishAsync(row.Queue, [new QueueMessage(row.MessageId, row.Body)], ct);
            // Mark only the row as it was read: a replay that failed again at once (give-up) has
            // already written this row anew by now (a new time and sequence), and it must stay dead.
            await Settle(db.DeadLetters.Live().Where(d => d.Id == id && d.DeadLetteredAt == row.DeadLetteredAt && d.Sequence == row.Sequence),
                DeadLetterStates.Replayed, actor, ct);
            return SettleOutcome.Settled;
        }

        /// <summary>Marks a dead letter deleted: it is never delivered again, and its record (body included) stays.</summary>
        public async Task<SettleOutcome> DeleteAsync(Guid id, string actor, CancellationToken ct)
        {
            await using var db = await dbs.CreateDbContextAsync(ct);
            if (await Settle(db.DeadLetters.Live().Where(d => d.Id == id), DeadLetterStates.Deleted, actor, ct) == 1)
            {
                return SettleOutcome.Settled;
            }
            return await db.DeadLetters.AnyAsync(d => d.Id == id, ct) ? SettleOutcome.AlreadySettled : SettleOutcome.NotFound;
        }

        /// <summary>
        /// Replays every dead letter of <paramref name="selection"/>, a batch at a time in sequence order:
        /// the batch is published, then its rows are marked replayed in one statement, by sequence (a
        /// letter that died again meanwhile has a new one and stays dead). Answers how many were published.
        /// </summary>
        public async Task<long> ReplayAsync(DeadLetterSelection selection, string actor, CancellationToken ct)
        {
            await using var db = await dbs.CreateDbContextAsync(ct);
            var replayed = 0L;
            var after = 0L;
            while (true)
            {
                var batch = await selection.Apply(db, db.DeadLetters.AsNoTracking().Live()).Where(d => d.Sequence > after)
                    .OrderBy(d => d.Sequence).Take(BatchSize)
                    .Select(d => new { d.Sequence, d.Queue, d.MessageId, d.Body }).ToListAsync(ct);
                if (batch.Count == 0)
                {
                    return replayed;
                }
                foreach (var queue in batch.GroupBy(d => d.Queue))
                {
                    await transport.PublishAsync(queue.Key, queue.Select(d => new QueueMessage(d.MessageId, d.Body)).ToList(), ct);
                }
                var sequences = batch.Select(d => d.Sequence).ToList();
                await Settle(db.DeadLetters.Live().Where(d => sequences.Contains(d.Sequence)), DeadLetterStates.Replayed, actor, ct);
                replayed += batch.Count;
                after = batch[^1].Sequence;
            }
        }

        /// <summary>Marks every dead letter of <paramref name="selection"/> deleted, in one statement. Answers how many.</summary>
        public async Task<long> DeleteAsync(DeadLetterSelection selection, string actor, CancellationToken ct)
        {
            await using var db = await dbs.CreateDbContextAsync(ct);
            return await Settle(selection.Apply(db, db.DeadLetters.Live()), DeadLetterStates.Deleted, actor, ct);
        }

        private async Task<int> Settle(IQueryable<DeadLetter> letters, string state, string actor, CancellationToken ct)
        {
            var now = clock.GetUtcNow().UtcDateTime;
            return await letters.ExecuteUpdateAsync(
                s => s.SetProperty(d => d.State, state).SetProperty(d => d.SettledAt, now).SetProperty(d => d.SettledBy, actor), ct);
        }
    }
}
