using System.Data.Common;
using System.Text.RegularExpressions;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using Tally.Data;
using Tally.Tests.Harness;

namespace Tally.Tests.Data;

/// <summary>
/// Every statement of every feature's <see cref="Dialect"/> is prepared by the database it is written
/// for, against the migrated schema: the server parses it, resolves every table, column and function,
/// and infers its parameters' types. Found by reflection, so a new dialect or statement is covered
/// without being listed here (the way River runs one driver suite against each driver).
/// </summary>
public partial class DialectConformanceTests
{
    public static TheoryData<string> Databases => new() { "postgres", "sqlite" };

    [Theory]
    [MemberData(nameof(Databases))]
    public async Task EveryDialectStatement_IsValidOnItsDatabase(string storage)
    {
        var ct = TestContext.Current.CancellationToken;
        var provider = storage == "postgres" ? StorageProvider.Postgres : StorageProvider.Sqlite;
        var settings = provider == StorageProvider.Postgres
            ? new StorageSettings(provider, await Servers.NewPostgresDatabaseAsync())
            : new StorageSettings(provider, $"Data Source={Path.Combine(Path.GetTempPath(), $"tally-dialect-{Guid.NewGuid():N}.db")}");
        await Migrator.ApplyAsync(settings, NullLogger.Instance, ct);

        var dialects = AllDialects(provider).ToList();
        Assert.NotEmpty(dialects);
        var failures = new List<string>();
        var checkedCount = 0;
        await using DbConnection connection = provider == StorageProvider.Postgres
            ? new NpgsqlConnection(settings.ConnectionString)
            : new SqliteConnection(settings.ConnectionString);
        await connection.OpenAsync(ct);
        foreach (var dialect in dialects)
        {
            foreach (var (name, sql) in dialect.Statements())
            {
                checkedCount++;
                try
                {
                    await PrepareAsync(connection, sql, ct);
                }
                catch (DbException e)
                {
                    failures.Add($"{dialect.GetType().Name}.{name}: {e.Message}");
                }
            }
        }
        Assert.True(checkedCount > 0, "no dialect statements found");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    /// <summary>Each dialect's instance for <paramref name="provider"/>, from its static <c>Postgres</c> / <c>Sqlite</c> member.</summary>
    internal static IEnumerable<Dialect> AllDialects(StorageProvider provider)
    {
        var member = provider == StorageProvider.Postgres ? "Postgres" : "Sqlite";
        foreach (var type in typeof(Dialect).Assembly.GetTypes().Where(t => t.IsSubclassOf(typeof(Dialect)) && !t.IsAbstract))
        {
            var value = type.GetField(member, System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)?.GetValue(null)
                ?? type.GetProperty(member, System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)?.GetValue(null)
                ?? throw new InvalidOperationException($"{type.Name} has no static {member} instance.");
            var dialect = (Dialect)value;
            Assert.Equal(provider, dialect.Provider);
            yield return dialect;
        }
    }

    /// <summary>
    /// Prepares <paramref name="sql"/> inside a transaction that is rolled back. Parameters are bound
    /// as untyped nulls, so PostgreSQL infers their types the way it will when the job runs; EF
    /// Core's <c>{0}</c> placeholders are read as <c>@p0</c>.
    /// </summary>
    private static async Task PrepareAsync(DbConnection connection, string sql, CancellationToken ct)
    {
        sql = EfPlaceholder().Replace(sql, m => "@p" + m.Groups[1].Value);
        await using var transaction = await connection.BeginTransactionAsync(ct);
        await using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = sql;
        if (command is NpgsqlCommand npgsql)
        {
            var positional = Positional().Matches(sql).Select(m => int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)).DefaultIfEmpty(0).Max();
            if (positional > 0)
            {
                for (var i = 0; i < positional; i++)
                {
                    npgsql.Parameters.Add(new NpgsqlParameter { Value = DBNull.Value });
                }
            }
            else
            {
                foreach (var name in Named().Matches(sql).Select(m => m.Groups[1].Value).Distinct())
                {
                    npgsql.Parameters.Add(new NpgsqlParameter(name, DBNull.Value));
                }
            }
        }
        await command.PrepareAsync(ct);
        await transaction.RollbackAsync(ct);
    }

    [GeneratedRegex(@"\{(\d+)\}")]
    private static partial Regex EfPlaceholder();

    [GeneratedRegex(@"\$(\d+)")]
    private static partial Regex Positional();

    [GeneratedRegex(@"(?<![@:\w])@(\w+)")]
    private static partial Regex Named();
}
