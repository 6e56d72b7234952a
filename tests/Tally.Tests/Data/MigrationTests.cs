using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Logging.Abstractions;
using Tally.Data;
using Tally.Tests.Harness;

namespace Tally.Tests.Data;

public class MigrationTests
{
    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Migrations_ApplyFromEmptyOnceAndMatchTheModel(string storage)
    {
        var settings = storage == "postgres"
            ? new StorageSettings(StorageProvider.Postgres, await Servers.NewPostgresDatabaseAsync())
            : new StorageSettings(StorageProvider.Sqlite, $"Data Source={Path.Combine(Path.GetTempPath(), $"tally-migrate-{Guid.NewGuid():N}.db")}");
        var ct = TestContext.Current.CancellationToken;
        var scripts = Migrator.Scripts(settings.Provider);
        Assert.NotEmpty(scripts);

        Assert.Equal(scripts.Count, await Migrator.ApplyAsync(settings, NullLogger.Instance, ct));
        Assert.Equal(0, await Migrator.ApplyAsync(settings, NullLogger.Instance, ct));

        // Every mapped entity can be read: the EF model and the SQL schema agree on tables and columns.
        var options = new DbContextOptionsBuilder<TallyDb>();
        DataSetup.Configure(options, settings);
        await using var db = new TallyDb(options.Options);
        foreach (var entity in db.Model.GetEntityTypes())
        {
            var table = entity.GetTableName()!;
            var columns = string.Join(", ", entity.GetProperties().Select(p => p.GetColumnName()));
            // Names come from the model, not from input.
            var sql = "SELECT " + columns + " FROM " + table + " WHERE 1 = 0";
            await db.Database.ExecuteSqlRawAsync(sql, ct);
        }
    }

    [Fact]
    public void Migrations_ExistForBothDatabasesWithTheSameNames() =>
        Assert.Equal(
            Migrator.Scripts(StorageProvider.Postgres).Select(s => s.Name),
            Migrator.Scripts(StorageProvider.Sqlite).Select(s => s.Name));
}
