using Microsoft.EntityFrameworkCore;
using Tally.Data;

namespace Tally.Jobs.Outbox;

/// <summary>Where published events go: RabbitMQ's <c>tally.events</c> topic exchange, or nowhere beyond the table in embedded mode.</summary>
public interface IEventPublisher
{
    string Name { get; }

    /// <summary>Returns once the events are safely with the broker.</summary>
    Task PublishAsync(IReadOnlyList<OutboxEvent> events, CancellationToken ct);
}

/// <summary>Embedded mode: the outbox table is the event log, read through the admin API.</summary>
public sealed class TableOnlyEventPublisher : IEventPublisher
{
    public string Name => "table";

    public Task PublishAsync(IReadOnlyList<OutboxEvent> events, CancellationToken ct) => Task.CompletedTask;
}

/// <summary>
/// Publishes outbox rows in sequence order, at least once: a row is marked published only after the
/// broker confirmed it, so a crash in between publishes it again (consumers dedupe by event id).
/// On PostgreSQL, <c>FOR UPDATE SKIP LOCKED</c> lets several workers dispatch without doubling up,
/// and nothing is published before it is durable: a writer may commit asynchronously (to spare a
/// hot path the WAL flush), and such a commit is visible before its WAL is flushed, so a batch is
/// taken only from rows a synchronous commit has made durable (<see cref="OutboxDispatchSql"/>).
/// </summary>
public sealed partial class OutboxDispatcher(
    IDbContextFactory<TallyDb> dbs, IEventPublisher publisher, TimeProvider clock, ILogger<OutboxDispatcher> logger) : BackgroundService
{
    public const int BatchSize = 500;
    private static readonly TimeSpan IdleDelay = TimeSpan.FromMilliseconds(500);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var published = await DispatchBatchAsync(stoppingToken);
                if (published < BatchSize)
                {
                    await Task.Delay(IdleDelay, clock, stoppingToken);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                LogDispatchFailed(logger, e);
                await Task.Delay(TimeSpan.FromSeconds(2), clock, stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }
    }

    public async Task<int> DispatchBatchAsync(CancellationToken ct)
    {
        await using var db = await dbs.CreateDbContextAsync(ct);
        var sql = OutboxDispatchSql.For(db.Database);
        var durable = sql is { MakeDurable: { } makeDurable, PendingSequences: { } pending } ? await LockDurablyAsync(db, makeDurable, pending, ct) : null;
        if (durable is { Count: 0 })
        {
            return 0;
        }
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        var batch = durable is not null && sql.LockBatch is { } lockBatch
            ? await db.OutboxEvents.FromSqlRaw(lockBatch, [durable.ToArray()]).AsNoTracking().ToListAsync(ct)
            : await db.OutboxEvents.AsNoTracking().Where(e => e.PublishedAt == null).OrderBy(e => e.Sequence).Take(BatchSize).ToListAsync(ct);
        if (batch.Count == 0)
        {
            return 0;
        }
        var sequences = batch.Select(e => e.Sequence).ToList();
        var rows = db.OutboxEvents.Where(e => sequences.Contains(e.Sequence));
        try
        {
            await publisher.PublishAsync(batch, ct);
            var now = clock.GetUtcNow().UtcDateTime;
            await rows.ExecuteUpdateAsync(
                u => u.SetProperty(e => e.PublishedAt, now).SetProperty(e => e.Attempts, e => e.Attempts + 1).SetProperty(e => e.LastError, (string?)null), ct);
        }
        catch (Exception e) when (!ct.IsCancellationRequested)
        {
            var error = e.Message.Length > 500 ? e.Message[..500] : e.Message;
            await rows.ExecuteUpdateAsync(u => u.SetProperty(e => e.LastError, error).SetProperty(e => e.Attempts, e => e.Attempts + 1), ct);
            LogPublishFailed(logger, e, batch.Count);
        }
        await tx.CommitAsync(ct);
        return batch.Count;
    }

    /// <summary>
    /// The sequences of the next pending rows, known durable (PostgreSQL). They are row-locked in a
    /// transaction of their own that commits synchronously: locking writes WAL, so that commit
    /// flushes the WAL through its own commit record, which lies after the commit record of every row
    /// it saw, asynchronous ones included. The batch then locks them again (those another dispatcher
    /// took in between are skipped, or already published).
    /// </summary>
    private static async Task<List<long>> LockDurablyAsync(TallyDb db, string makeDurable, string pending, CancellationToken ct)
    {
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        await db.Database.ExecuteSqlRawAsync(makeDurable, ct);
        var sequences = await db.Database.SqlQueryRaw<long>(pending).ToListAsync(ct);
        await tx.CommitAsync(ct);
        return sequences;
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Outbox dispatch failed; retrying")]
    private static partial void LogDispatchFailed(ILogger logger, Exception e);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Publishing {Count} outbox events failed; they stay pending")]
    private static partial void LogPublishFailed(ILogger logger, Exception e, int count);
}
