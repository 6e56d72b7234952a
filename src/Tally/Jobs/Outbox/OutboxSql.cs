using Microsoft.EntityFrameworkCore.Infrastructure;
using Tally.Data;

namespace Tally.Jobs.Outbox;

/// <summary>The outbox's one insert, for PostgreSQL and SQLite side by side.</summary>
/// <param name="Insert">
/// Events in the order given, which the sequence follows: rows <c>(event_id, event_type, subject_id,
/// payload, occurred_at)</c>. Answers each row's sequence (as <c>"Value"</c>, the column EF Core reads).
/// </param>
public sealed record OutboxSql(StorageProvider Provider, RowsStatement Insert) : Dialect(Provider)
{
    public static readonly OutboxSql Postgres = new(
        StorageProvider.Postgres,
        Insert: new(StorageProvider.Postgres, """
            INSERT INTO outbox_events (event_id, event_type, subject_id, payload, occurred_at)
            SELECT e.event_id, e.event_type, e.subject_id, e.payload, e.occurred_at
            FROM unnest({0}::uuid[], {1}::text[], {2}::text[], {3}::text[], {4}::timestamptz[])
                 WITH ORDINALITY AS e(event_id, event_type, subject_id, payload, occurred_at, n)
            ORDER BY e.n
            RETURNING sequence AS "Value"
            """, Columns: 5));

    // A VALUES list is inserted in its order.
    public static readonly OutboxSql Sqlite = new(
        StorageProvider.Sqlite,
        Insert: new(StorageProvider.Sqlite, """
            INSERT INTO outbox_events (event_id, event_type, subject_id, payload, occurred_at)
            VALUES {rows}
            RETURNING sequence AS "Value"
            """, Columns: 5));

    public static OutboxSql For(DatabaseFacade db) => db.Pick(Postgres, Sqlite);

    protected override IEnumerable<(string Name, string Sql)> Examples() => RowsStatement.ExamplesOf(this);
}
