using Cronos;

namespace Tally.Jobs.Scheduling;

/// <summary>What a run of a scheduled job reports: how many items it processed, and optional detail for the caller of a manual run.</summary>
public sealed record JobResult(int Processed, object? Detail = null);

/// <summary>A periodic job. Resolved in a fresh scope per run; the runtime locks, audits and catches around it.</summary>
public interface IScheduledJob
{
    Task<JobResult> RunAsync(CancellationToken ct);
}

/// <summary>A registered job with its effective schedule (configuration overrides the default).</summary>
public sealed class JobDefinition
{
    public JobDefinition(string name, string cron, string timeZone, Type jobType, bool enabled)
    {
        Name = name;
        Cron = cron;
        JobType = jobType;
        Enabled = enabled;
        var fields = cron.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length;
        Expression = CronExpression.Parse(cron, fields == 6 ? CronFormat.IncludeSeconds : CronFormat.Standard);
        TimeZone = TimeZoneInfo.FindSystemTimeZoneById(timeZone);
    }

    public string Name { get; }
    public string Cron { get; }
    public CronExpression Expression { get; }
    public TimeZoneInfo TimeZone { get; }
    public Type JobType { get; }
    public bool Enabled { get; }

    public DateTime? NextAfter(DateTime utc) => Expression.GetNextOccurrence(DateTime.SpecifyKind(utc, DateTimeKind.Utc), TimeZone);
}

public sealed record JobRegistration(string Name, string DefaultCron, Type JobType);

public sealed class JobRegistry
{
    private readonly Dictionary<string, JobDefinition> _jobs;

    public JobRegistry(IEnumerable<JobRegistration> registrations, IConfiguration configuration)
    {
        _jobs = new Dictionary<string, JobDefinition>(StringComparer.Ordinal);
        foreach (var r in registrations)
        {
            var section = configuration.GetSection($"Jobs:{r.Name}");
            var cron = section["Cron"] ?? r.DefaultCron;
            var zone = section["TimeZone"] ?? "UTC";
            try
            {
                _jobs[r.Name] = new JobDefinition(r.Name, cron, zone, r.JobType, section.GetValue("Enabled", true));
            }
            catch (Exception e) when (e is CronFormatException or TimeZoneNotFoundException or InvalidTimeZoneException)
            {
                throw new InvalidOperationException($"Jobs:{r.Name}:Cron or Jobs:{r.Name}:TimeZone is invalid ('{cron}', '{zone}'): {e.Message}", e);
            }
        }
    }

    public IReadOnlyCollection<JobDefinition> All => _jobs.Values;

    public JobDefinition? Find(string name) => _jobs.GetValueOrDefault(name);
}

public static class ScheduledJobSetup
{
    public static IServiceCollection AddScheduledJob<TJob>(this IServiceCollection services, string name, string defaultCron)
        where TJob : class, IScheduledJob
    {
        services.AddScoped<TJob>();
        services.AddSingleton(new JobRegistration(name, defaultCron, typeof(TJob)));
        return services;
    }
}
