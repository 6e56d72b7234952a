using Microsoft.Extensions.Options;
using StackExchange.Redis;
using Tally.Data;
using Tally.Hosting;
using Tally.Jobs.Outbox;
using Tally.Jobs.Queues;
using Tally.Jobs.RateLimits;
using Tally.Jobs.Scheduling;

namespace Tally.Jobs;

public static class JobRuntimeSetup
{
    /// <summary>
    /// The job runtime every feature stands on: lock, transport, scheduler, queue consumers, outbox
    /// dispatcher and rate limits. Which parts run here depends on <c>Tally:Roles</c>.
    /// </summary>
    public static WebApplicationBuilder AddJobRuntime(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        var configuration = builder.Configuration;
        var roles = configuration.Read<TallyOptions>(TallyOptions.Section);
        var storage = StorageSettings.From(configuration);
        var jobs = configuration.Read<JobsOptions>(JobsOptions.Section);
        var redisUrl = configuration["Redis:Url"];

        services.AddValidatedOptions<JobsOptions>(JobsOptions.Section)
            .Validate(o => o.LockTtl >= TimeSpan.FromSeconds(1), "Jobs:LockTtl must be at least one second.")
            .Validate(o => o.Lock is null or "inprocess" or "redis" or "postgres", "Jobs:Lock must be inprocess, redis or postgres.");
        // Every job's cron and time zone are checked with the other settings, before anything starts.
        services.AddSingleton<Microsoft.Extensions.Options.IValidateOptions<JobsOptions>, JobScheduleValidation>();
        services.AddSingleton(TimeProvider.System);

        if (!string.IsNullOrWhiteSpace(redisUrl))
        {
            services.AddSingleton<IConnectionMultiplexer>(_ => ConnectionMultiplexer.Connect(RedisConfiguration(redisUrl)));
        }
        var lockKind = jobs.Lock ?? (!string.IsNullOrWhiteSpace(redisUrl) ? "redis" : storage.Provider == StorageProvider.Postgres ? "postgres" : "inprocess");
        switch (lockKind)
        {
            case "redis" when string.IsNullOrWhiteSpace(redisUrl):
                throw new InvalidOperationException("Jobs:Lock is redis but Redis:Url is not set.");
            case "redis":
                services.AddSingleton<IDistributedLock, RedisLock>();
                break;
            case "postgres" when storage.Provider != StorageProvider.Postgres:
                throw new InvalidOperationException("Jobs:Lock is postgres but ConnectionStrings:Postgres is not set.");
            case "postgres":
                services.AddSingleton<IDistributedLock, PostgresAdvisoryLock>();
                break;
            default:
                services.AddSingleton<IDistributedLock, InProcessLock>();
                break;
        }

        AddFleetLimits(services, configuration, storage, redisUrl);

        services.AddValidatedOptions<RabbitMqOptions>(RabbitMqOptions.Section)
            .Validate(o => RabbitMqOptions.IsValidUrl(o.Url), "RabbitMq:Url must be an amqp:// or amqps:// URL.")
            .Validate(o => RabbitMqOptions.IsValidQueueType(o.QueueType), "RabbitMq:QueueType must be classic or quorum.");
        if (configuration.Read<RabbitMqOptions>(RabbitMqOptions.Section).IsConfigured)
        {
            services.AddSingleton<RabbitMqConnection>();
            services.AddSingleton<IQueueTransport, RabbitMqTransport>();
            services.AddSingleton<IEventPublisher, RabbitMqEventPublisher>();
        }
        else
        {
            services.AddSingleton<IQueueTransport, InProcessTransport>();
            services.AddSingleton<IEventPublisher, TableOnlyEventPublisher>();
        }

        services.AddSingleton<JobRegistry>();
        services.AddSingleton<JobRunner>();
        services.AddSingleton<QueueRegistry>();
        services.AddSingleton<DeadLetterStore>();
        services.AddSingleton<UpstreamRateLimits>();
        services.AddSingleton<OutboxDispatcher>();

        if (roles.IsScheduler)
        {
            services.AddHostedService<JobScheduler>();
        }
        if (roles.IsWorker)
        {
            services.AddHostedService<QueueConsumerHost>();
            services.AddHostedService(sp => sp.GetRequiredService<OutboxDispatcher>());
        }
        services.AddScheduledJob<HeartbeatJob>(HeartbeatJob.Name, "0 * * * *");
        services.AddValidatedOptions<Retention.RetentionOptions>(Retention.RetentionOptions.Section);
        services.AddScheduledJob<Retention.PruneHistory>(Retention.PruneHistory.Name, Retention.PruneHistory.DefaultCron);
        return builder;
    }

    /// <summary>Where the fleet's upstream limits are counted: <c>RateLimits:Store</c>, else Redis when configured, else PostgreSQL when it is the storage, else nowhere (one process).</summary>
    private static void AddFleetLimits(IServiceCollection services, IConfiguration configuration, StorageSettings storage, string? redisUrl)
    {
        services.AddValidatedOptions<FleetLimitOptions>(FleetLimitOptions.Section)
            .Validate(o => o.Store is null or "redis" or "postgres" or "none", "RateLimits:Store must be redis, postgres or none.");
        var store = configuration.Read<FleetLimitOptions>(FleetLimitOptions.Section).Store
            ?? (!string.IsNullOrWhiteSpace(redisUrl) ? "redis" : storage.Provider == StorageProvider.Postgres ? "postgres" : "none");
        switch (store)
        {
            case "redis" when string.IsNullOrWhiteSpace(redisUrl):
                throw new InvalidOperationException("RateLimits:Store is redis but Redis:Url is not set.");
            case "redis":
                services.AddSingleton<IFleetStore, RedisFleetStore>();
                break;
            case "postgres" when storage.Provider != StorageProvider.Postgres:
                throw new InvalidOperationException("RateLimits:Store is postgres but ConnectionStrings:Postgres is not set.");
            case "postgres":
                services.AddSingleton<IFleetStore, PostgresFleetStore>();
                break;
        }
        // Real time, whatever clock the app runs on: the store decides on its own server's clock, and
        // a wait it asks for is a wait in the world (a test's manual clock would never end it).
        services.AddSingleton(sp => new FleetLimiter(sp.GetService<IFleetStore>(), sp.GetRequiredService<IOptions<FleetLimitOptions>>().Value,
            TimeProvider.System, sp.GetRequiredService<ILogger<FleetLimiter>>()));
    }

    public static ConfigurationOptions RedisConfiguration(string url)
    {
        // Accept both "host:port" and "redis://host:port".
        var plain = url.StartsWith("redis://", StringComparison.OrdinalIgnoreCase) ? url["redis://".Length..].TrimEnd('/') : url;
        var options = ConfigurationOptions.Parse(plain);
        options.AbortOnConnectFail = false;
        return options;
    }
}

/// <summary>
/// <c>runtime.heartbeat</c>: proves the scheduler is alive (one SUCCESS row per occurrence in
/// <c>cron_runs</c>). Hourly by default; <c>Jobs:runtime.heartbeat:Cron</c> changes it.
/// </summary>
public sealed class HeartbeatJob : IScheduledJob
{
    public const string Name = "runtime.heartbeat";

    public Task<JobResult> RunAsync(JobRun run, CancellationToken ct) => Task.FromResult(new JobResult(0));
}

/// <summary>Fails start-up, naming the setting, when a job's cron expression or time zone is invalid.</summary>
internal sealed class JobScheduleValidation(IEnumerable<JobRegistration> registrations, IConfiguration configuration)
    : Microsoft.Extensions.Options.IValidateOptions<JobsOptions>
{
    public Microsoft.Extensions.Options.ValidateOptionsResult Validate(string? name, JobsOptions options)
    {
        try
        {
            _ = new JobRegistry(registrations, configuration);
            return Microsoft.Extensions.Options.ValidateOptionsResult.Success;
        }
        catch (InvalidOperationException e)
        {
            return Microsoft.Extensions.Options.ValidateOptionsResult.Fail(e.Message);
        }
    }
}
