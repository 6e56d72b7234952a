using System.Data.Common;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore.Diagnostics;

namespace Tally.Data;

/// <summary>
/// SQLite in embedded mode: WAL so readers never wait for the writer, full fsync so a committed
/// credit survives a crash, and a generous busy timeout. Write transactions start with
/// <c>BEGIN IMMEDIATE</c> (Microsoft.Data.Sqlite's default), so writers queue for the one write
/// lock instead of failing with "database is locked" when a read lock cannot be upgraded.
/// </summary>
public static class SqliteSetup
{
    public static string ConnectionString(string configured)
    {
        var builder = new SqliteConnectionStringBuilder(configured)
        {
            DefaultTimeout = 60,
            ForeignKeys = true,
            Pooling = true,
        };
        var folder = Path.GetDirectoryName(Path.GetFullPath(builder.DataSource));
        if (!string.IsNullOrEmpty(folder) && builder.DataSource != ":memory:")
        {
            Directory.CreateDirectory(folder);
        }
        return builder.ToString();
    }

    public sealed class PragmaInterceptor : DbConnectionInterceptor
    {
        private const string Pragmas = "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=60000;";

        // EF's CanConnect (the /readyz database check) opens the file read-only, and switching a file
        // that is not yet in WAL mode is a write: it failed there, so /readyz answered 503 until some
        // writer had opened the file. WAL is a property of the file; the first writer sets it.
        private const string ReadOnlyPragmas = "PRAGMA busy_timeout=60000;";

        public override void ConnectionOpened(DbConnection connection, ConnectionEndEventData eventData)
        {
            using var command = connection.CreateCommand();
            command.CommandText = PragmasFor(connection);
            command.ExecuteNonQuery();
        }

        public override async Task ConnectionOpenedAsync(DbConnection connection, ConnectionEndEventData eventData, CancellationToken cancellationToken = default)
        {
            await using var command = connection.CreateCommand();
            command.CommandText = PragmasFor(connection);
            await command.ExecuteNonQueryAsync(cancellationToken);
        }

        private static string PragmasFor(DbConnection connection) =>
            new SqliteConnectionStringBuilder(connection.ConnectionString).Mode == SqliteOpenMode.ReadOnly ? ReadOnlyPragmas : Pragmas;
    }
}
