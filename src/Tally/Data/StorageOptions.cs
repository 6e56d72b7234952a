namespace Tally.Data;

public enum StorageProvider
{
    Sqlite,
    Postgres,
}

/// <summary>Which database Tally uses: PostgreSQL when <c>ConnectionStrings:Postgres</c> is set, else SQLite.</summary>
public sealed record StorageSettings(StorageProvider Provider, string ConnectionString)
{
    public const string DefaultSqlite = "Data Source=data/tally.db";

    public static StorageSettings From(IConfiguration configuration)
    {
        var postgres = configuration.GetConnectionString("Postgres");
        if (!string.IsNullOrWhiteSpace(postgres))
        {
            return new StorageSettings(StorageProvider.Postgres, postgres);
        }
        var sqlite = configuration.GetConnectionString("Sqlite");
        return new StorageSettings(StorageProvider.Sqlite, string.IsNullOrWhiteSpace(sqlite) ? DefaultSqlite : sqlite);
    }
}
