using Cronos;

namespace Tally.Jobs.Scheduling;

/// <summary>
/// What a run of a scheduled job reports: how many items it processed, optional detail for the caller
/// of a manual run, and, for a run that failed in a way the job expects, <see cref="Failure"/>. Like a
/// queue handler's <see cref="JobOutcome"/>, an expected failure is a value: the job logs it once, in
/// its own words, and the runner records the run as FAILED without logging it again. An exception
/// still means a bug or a transient fault, and the runner logs and records that.
/// </summary>
public sealed record JobResult(int Processed, object? Detail = null)
{
    /// <summary>Why the run failed, for <c>cron_runs.error_message</c>; null for a run that succeeded.</summary>
    public string? Failure { get; init; }

    /// <summary>A run that failed as the job expected and has already logged.</summary>
    public static JobResult Failed(string failure, object? detail = null) => new(0, detail) { Failure = failure };
}

/// <summary>
/// The run a job is doing: its <c>cron_runs</c> id, written before the job starts, and what started it
/// (<see cref="JobRunner.ScheduleTrigger"/> with the occurrence it stands for, or <see cref="JobRunner.ManualTrigger"/>).
/// A job that keeps a record of its effect keys it by <see cref="RunId"/>.
/// </summary>
public sealed record JobRun(long RunId, string Trigger, DateTime? ScheduledFor);

/// <summary>A periodic job. Resolved in a fresh scope per run; the runtime locks, audits and catches around it.</summary>
public interface IScheduledJob
{
    Task<JobResult> RunAsync(JobRun run, CancellationToken ct);
}

/// <summary>
/// A registered job with its effective schedule (configuration overrides the default). The schedule
/// is a cron expression (5 or 6 fields) or a fixed interval, <c>@every 300000ms</c> (also <c>s</c>,
/// <c>m</c>, <c>h</c>), for settings given in milliseconds. Interval occurrences are aligned to the
/// Unix epoch, so every instance computes the same occurrences and the scheduler's claim runs each once.
/// </summary>
public sealed class JobDefinition
{
    public const string EveryPrefix = "@every ";

    public JobDefinition(string name, string cron, string timeZone, Type jobType, bool enabled)
    {
        Name = name;
        Cron = cron;
        JobType = jobType;
        Enabled = enabled;
        if (cron.StartsWith(EveryPrefix, StringComparison.Ordinal))
        {
            Interval = ParseInterval(cron[EveryPrefix.Length..].Trim());
        }
        else
        {
            var fields = cron.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length;
            Expression = CronExpression.Parse(cron, fields == 6 ? CronFormat.IncludeSeconds : CronFormat.Standard);
        }
        TimeZone = TimeZoneInfo.FindSystemTimeZoneById(timeZone);
    }

    public string Name { get; }
    public string Cron { get; }

    /// <summary>The cron expression, or null for an interval schedule.</summary>
    public CronExpression? Expression { get; }

    /// <summary>The fixed interval, or null for a cron schedule.</summary>
    public TimeSpan? Interval { get; }

    public TimeZoneInfo TimeZone { get; }
    public Type JobType { get; }
    public bool Enabled { get; }

    public DateTime? NextAfter(DateTime utc)
    {
        utc = DateTime.SpecifyKind(utc, DateTimeKind.Utc);
        if (Interval is not { } every)
        {
            return Expression!.GetNextOccurrence(utc, TimeZone);
        }
        var since = (utc - DateTime.UnixEpoch).Ticks;
        return DateTime.UnixEpoch.AddTicks((since / every.Ticks + 1) * every.Ticks);
    }

    /// <summary><c>300000ms</c>, <c>30s</c>, <c>5m</c>, <c>1h</c>: at least one millisecond, at most a day.</summary>
    public static TimeSpan ParseInterval(string text)
    {
        var unit = text.EndsWith("ms", StringComparison.Ordinal) ? "ms" : text.Length > 0 ? text[^1..] : "";
        var number = text[..^Math.Min(unit.Length, text.Length)];
        if (!long.TryParse(number, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var value))
        {
            throw new FormatException($"'{text}' is not an interval such as 300000ms, 30s, 5m or 1h.");
        }
        var interval = unit switch
        {
            "ms" => TimeSpan.FromMilliseconds(value),
            "s" => TimeSpan.FromSeconds(value),
            "m" => TimeSpan.FromMinutes(value),
            "h" => TimeSpan.FromHours(value),
            _ => throw new FormatException($"'{text}' has no unit; use ms, s, m or h."),
        };
        return interval >= TimeSpan.FromMilliseconds(1) && interval <= TimeSpan.FromDays(1)
            ? interval
            : throw new FormatException($"'{text}' must be between 1ms and 24h.");
    }
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
            catch (Exception e) when (e is CronFormatException or FormatException or TimeZoneNotFoundException or InvalidTimeZoneException)
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
