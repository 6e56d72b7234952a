using Microsoft.EntityFrameworkCore.Infrastructure;
using Tally.Data;

namespace Tally.Jobs.Outbox;

/// <summary>
/// The outbox dispatcher's SQL for PostgreSQL and SQLite, side by side. The difference between the two
/// is one capability: on PostgreSQL a writer may commit asynchronously, and such a commit is visible
/// before its WAL is flushed, so the dispatcher first makes the pending rows durable
/// (<see cref="MakeDurable"/> and <see cref="PendingSequences"/>, then <see cref="LockBatch"/>). SQLite
/// has no durable point to wait for: there the statements are null and the batch is read with EF Core;
/// a writer that relaxes its commit on SQLite must not do so while events leave Tally (a broker).
/// </summary>
/// <param name="Provider">The database these statements are written for.</param>
/// <param name="MakeDurable">The first statement of the durable lock's transaction: its commit waits for the WAL flush, whatever the connection's default.</param>
/// <param name="PendingSequences">The next pending rows, locked (<c>FOR UPDATE SKIP LOCKED</c>, so dispatchers do not double up) in that transaction.</param>
/// <param name="LockBatch">The batch: the rows of <c>{0}</c> (the durable sequences) still pending, locked again for the publish.</param>
public sealed record OutboxDispatchSql(StorageProvider Provider, string? MakeDurable, string? PendingSequences, string? LockBatch) : Dialect(Provider)
{
    public static readonly OutboxDispatchSql Postgres = new(
        StorageProvider.Postgres,
        MakeDurable: "SET LOCAL synchronous_commit = on",
        PendingSequences: $"SELECT sequence AS \"Value\" FROM outbox_events WHERE published_at IS NULL ORDER BY sequence LIMIT {OutboxDispatcher.BatchSize} FOR UPDATE SKIP LOCKED",
        LockBatch: "SELECT * FROM outbox_events WHERE published_at IS NULL AND sequence = ANY({0}) ORDER BY sequence FOR UPDATE SKIP LOCKED");

    public static readonly OutboxDispatchSql Sqlite = new(StorageProvider.Sqlite, MakeDurable: null, PendingSequences: null, LockBatch: null);

    public static OutboxDispatchSql For(DatabaseFacade db) => db.Pick(Postgres, Sqlite);
}
