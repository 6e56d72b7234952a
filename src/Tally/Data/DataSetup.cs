using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace Tally.Data;

public static partial class DataSetup
{
    public static WebApplicationBuilder AddTallyData(this WebApplicationBuilder builder)
    {
        var storage = StorageSettings.From(builder.Configuration);
        builder.Services.AddSingleton(storage);
        if (storage.Provider == StorageProvider.Postgres)
        {
            // One pool for the whole process: EF Core, the job runtime, the lanes and the ledger's raw
            // statements borrow from it, so the connection string's Maximum Pool Size holds for the process.
            builder.Services.AddSingleton(_ => NpgsqlDataSource.Create(storage.ConnectionString));
        }
        builder.Services.AddDbContextFactory<TallyDb>((sp, options) => Configure(options, storage, sp.GetService<NpgsqlDataSource>()), ServiceLifetime.Singleton);
        builder.Services.AddScoped(sp => sp.GetRequiredService<IDbContextFactory<TallyDb>>().CreateDbContext());
        // First of all hosted services, including those registered before this call (authentication's
        // Data Protection reads its key ring from the database at start).
        builder.Services.Insert(0, ServiceDescriptor.Singleton<IHostedService, MigrateOnStart>());
        return builder;
    }

    /// <summary>Points EF Core at the configured database; on PostgreSQL through the process's shared pool when one is given.</summary>
    public static void Configure(DbContextOptionsBuilder options, StorageSettings storage, NpgsqlDataSource? dataSource = null)
    {
        if (storage.Provider == StorageProvider.Postgres)
        {
            if (dataSource is not null)
            {
                options.UseNpgsql(dataSource);
            }
            else
            {
                options.UseNpgsql(storage.ConnectionString);
            }
        }
        else
        {
            options.UseSqlite(SqliteSetup.ConnectionString(storage.ConnectionString))
                .AddInterceptors(new SqliteSetup.PragmaInterceptor());
        }
    }

    /// <summary>Runs before every other hosted service, so no job or consumer sees an old schema.</summary>
    private sealed partial class MigrateOnStart(StorageSettings storage, ILogger<MigrateOnStart> logger) : IHostedService
    {
        public async Task StartAsync(CancellationToken cancellationToken)
        {
            var applied = await Migrator.ApplyAsync(storage, logger, cancellationToken);
            LogReady(logger, storage.Provider.ToString(), applied);
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        [LoggerMessage(Level = LogLevel.Information, Message = "Storage {Provider} ready, {Applied} migrations applied now")]
        private static partial void LogReady(ILogger logger, string provider, int applied);
    }
}
