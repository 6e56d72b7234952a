using Microsoft.EntityFrameworkCore.Infrastructure;
using Tally.Data;

namespace Tally.Features.Connections;

/// <summary>What the connections feature does differently on PostgreSQL and SQLite, side by side.</summary>
/// <param name="Provider">The database this is for.</param>
/// <param name="LockUser">
/// Holds the user's row until the transaction ends, so decisions about the user's connections (how
/// many) are taken one at a time. Null on SQLite, where a write transaction already holds the
/// database's single write lock.
/// </param>
/// <param name="SingleWriter">
/// Whether the database has one writer at a time (SQLite): a long sync then leaves a moment between
/// its chunks for other writers.
/// </param>
public sealed record ConnectionSql(StorageProvider Provider, string? LockUser, bool SingleWriter) : Dialect(Provider)
{
    public static readonly ConnectionSql Postgres = new(
        StorageProvider.Postgres,
        LockUser: """SELECT id AS "Value" FROM users WHERE id = {0} FOR UPDATE""",
        SingleWriter: false);

    public static readonly ConnectionSql Sqlite = new(StorageProvider.Sqlite, LockUser: null, SingleWriter: true);

    public static ConnectionSql For(DatabaseFacade db) => db.Pick(Postgres, Sqlite);
}
