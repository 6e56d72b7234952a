using System.Data.Common;
using System.Reflection;
using Microsoft.Data.Sqlite;
using Npgsql;

namespace Tally.Data;

/// <summary>
/// Applies the numbered SQL scripts under <c>Data/Migrations/{postgres|sqlite}</c> in order, each in
/// its own transaction together with its <c>schema_migrations</c> row, so a crash mid-way leaves
/// either the whole script or none of it. On PostgreSQL an advisory lock lets many instances start
/// at once; on SQLite <c>BEGIN IMMEDIATE</c> does the same.
/// </summary>
/// <remarks>
/// Why SQL scripts rather than EF migrations: the money guarantees live in the schema (CHECK
/// constraints, partial unique indexes, an immutability trigger), and they read best as SQL that a
/// reviewer sees exactly as the database will run it. EF Core maps onto these tables.
/// </remarks>
public static partial class Migrator
{
    private const long AdvisoryLockKey = 0x7461_6c6c_7900; // "tally"

    public static IReadOnlyList<(string Name, string Sql)> Scripts(StorageProvider provider)
    {
        var prefix = $"migrations/{(provider == StorageProvider.Postgres ? "postgres" : "sqlite")}/";
        var assembly = Assembly.GetExecutingAssembly();
        return assembly.GetManifestResourceNames()
            .Where(n => n.StartsWith(prefix, StringComparison.Ordinal))
            .Order(StringComparer.Ordinal)
            .Select(n =>
            {
                using var stream = assembly.GetManifestResourceStream(n)!;
                using var reader = new StreamReader(stream);
                return (Path.GetFileNameWithoutExtension(n[prefix.Length..]), reader.ReadToEnd());
            })
            .ToList();
    }

    public static async Task<int> ApplyAsync(StorageSettings storage, ILogger logger, CancellationToken ct)
    {
        await using DbConnection connection = storage.Provider == StorageProvider.Postgres
            ? new NpgsqlConnection(storage.ConnectionString)
            : new SqliteConnection(SqliteSetup.ConnectionString(storage.ConnectionString));
        await connection.OpenAsync(ct);
        if (storage.Provider == StorageProvider.Postgres)
        {
            await ExecuteAsync(connection, null, $"SELECT pg_advisory_lock({AdvisoryLockKey})", ct);
        }
        try
        {
            await ExecuteAsync(connection, null,
                "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)", ct);
            var applied = 0;
            foreach (var (name, sql) in Scripts(storage.Provider))
            {
                await using var tx = await connection.BeginTransactionAsync(ct);
                var seen = await ScalarAsync(connection, tx, $"SELECT count(*) FROM schema_migrations WHERE name = '{name}'", ct);
                if (Convert.ToInt64(seen, System.Globalization.CultureInfo.InvariantCulture) > 0)
                {
                    await tx.RollbackAsync(ct);
                    continue;
                }
                await ExecuteAsync(connection, tx, sql, ct);
                await ExecuteAsync(connection, tx,
                    $"INSERT INTO schema_migrations (name, applied_at) VALUES ('{name}', '{DateTime.UtcNow:O}')", ct);
                await tx.CommitAsync(ct);
                LogApplied(logger, name);
                applied++;
            }
            return applied;
        }
        finally
        {
            if (storage.Provider == StorageProvider.Postgres)
            {
                await ExecuteAsync(connection, null, $"SELECT pg_advisory_unlock({AdvisoryLockKey})", CancellationToken.None);
            }
        }
    }

    private static async Task ExecuteAsync(DbConnection connection, DbTransaction? tx, string sql, CancellationToken ct)
    {
        await using var command = connection.CreateCommand();
        command.Transaction = tx;
        command.CommandText = sql;
        command.CommandTimeout = 300;
        await command.ExecuteNonQueryAsync(ct);
    }

    private static async Task<object?> ScalarAsync(DbConnection connection, DbTransaction? tx, string sql, CancellationToken ct)
    {
        await using var command = connection.CreateCommand();
        command.Transaction = tx;
        command.CommandText = sql;
        return await command.ExecuteScalarAsync(ct);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Applied migration {Migration}")]
    private static partial void LogApplied(ILogger logger, string migration);
}
