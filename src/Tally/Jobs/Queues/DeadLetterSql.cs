using Microsoft.EntityFrameworkCore.Infrastructure;
using Tally.Data;

namespace Tally.Jobs.Queues;

/// <summary>The dead-letter store's SQL for PostgreSQL and SQLite, side by side.</summary>
/// <param name="Provider">The database these statements are for.</param>
/// <param name="Record">
/// Records a letter: one row per (queue, message id), so two deaths of the same message at once
/// cannot both insert; a letter that dies again is dead again with a new sequence.
/// </param>
/// <param name="LikeIgnoresCase">
/// Whether LIKE already ignores case (SQLite, for ASCII); where it does not (PostgreSQL), a search
/// uses ILIKE, served by the trigram indexes.
/// </param>
public sealed record DeadLetterSql(StorageProvider Provider, string Record, bool LikeIgnoresCase) : Dialect(Provider)
{
    private const string Upsert = """
        INSERT INTO dead_letters (id, queue, message_id, body, attempts, reason, dead_lettered_at, state)
        VALUES ({0}, {1}, {2}, {3}, {4}, {5}, {6}, 'dead')
        ON CONFLICT (queue, message_id) DO UPDATE SET
            body = excluded.body, attempts = excluded.attempts, reason = excluded.reason,
            dead_lettered_at = excluded.dead_lettered_at, state = excluded.state,
            settled_at = NULL, settled_by = NULL, sequence =
        """;

    // The next sequence is the one difference: the identity on PostgreSQL; on SQLite one above the
    // highest (the rowid), read within the statement, under SQLite's one write lock.
    public static readonly DeadLetterSql Postgres = new(
        StorageProvider.Postgres, Upsert + " nextval(pg_get_serial_sequence('dead_letters', 'sequence'))", LikeIgnoresCase: false);

    public static readonly DeadLetterSql Sqlite = new(
        StorageProvider.Sqlite, Upsert + " (SELECT max(sequence) + 1 FROM dead_letters)", LikeIgnoresCase: true);

    public static DeadLetterSql For(DatabaseFacade db) => db.Pick(Postgres, Sqlite);
}
