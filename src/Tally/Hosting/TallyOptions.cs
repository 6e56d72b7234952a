using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Tally.Hosting;

/// <summary>
/// The <c>Tally</c> section: which roles this instance plays, the default currency, how large a request
/// body may be, and the management port.
/// </summary>
public sealed class TallyOptions
{
    public const string Section = "Tally";

    /// <summary>Any of <c>api</c>, <c>scheduler</c>, <c>worker</c>; all three when empty.</summary>
    public string[] Roles { get; set; } = [];

    [Required, RegularExpression("^[A-Z]{3}$", ErrorMessage = "Tally:DefaultCurrency must be a three-letter ISO 4217 code.")]
    public string DefaultCurrency { get; set; } = "USD";

    /// <summary>A name for this process in <c>cron_runs.instance_id</c>; host name and process id when empty.</summary>
    public string? InstanceId { get; set; }

    /// <summary>
    /// How often this instance stamps its row in <c>instances</c> (<c>GET /api/admin/instances</c>). An
    /// instance not heard from for three of its heartbeats is shown as no longer alive.
    /// </summary>
    [Range(1, 3600, ErrorMessage = "Tally:HeartbeatSeconds must be between 1 and 3600.")]
    public int HeartbeatSeconds { get; set; } = 5;

    /// <summary>
    /// How long a stopping instance (SIGTERM) waits for the work in hand: it stops taking work at once,
    /// finishes what it holds (or hands it back: an unacknowledged delivery returns to the queue, a
    /// claim is released), then exits. Work cut off at the deadline is redone elsewhere, never twice
    /// (every settlement is idempotent).
    /// </summary>
    public TimeSpan ShutdownTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>The largest request body the API reads; a larger one is answered 413 <c>PAYLOAD_TOO_LARGE</c>.</summary>
    [Range(1024, 1L << 30, ErrorMessage = "Tally:MaxRequestBodyBytes must be between 1024 and 1073741824.")]
    public long MaxRequestBodyBytes { get; set; } = 1 << 20;

    /// <summary>The same for the admin bulk loads (<c>POST /api/admin/store/accounts|orders</c>, up to 10,000 rows each).</summary>
    [Range(1024, 1L << 30, ErrorMessage = "Tally:MaxBulkRequestBodyBytes must be between 1024 and 1073741824.")]
    public long MaxBulkRequestBodyBytes { get; set; } = 32 << 20;

    /// <summary>
    /// A port, not exposed publicly, on which <c>/metrics</c>, <c>/openapi</c> and <c>/docs</c> are served
    /// anonymously, and only there. Unset: they are anonymous in Development and need the admin role elsewhere.
    /// </summary>
    [Range(1, 65535, ErrorMessage = "Tally:ManagementPort must be between 1 and 65535.")]
    public int? ManagementPort { get; set; }

    public bool Has(string role) => Roles.Length == 0 || Roles.Contains(role, StringComparer.OrdinalIgnoreCase);

    public bool IsApi => Has("api");
    public bool IsScheduler => Has("scheduler");
    public bool IsWorker => Has("worker");

    /// <summary>The roles this instance plays, spelled out (all three when <see cref="Roles"/> is empty).</summary>
    public string[] EffectiveRoles => Roles.Length == 0 ? ["api", "scheduler", "worker"] : [.. Roles.Select(r => r.ToLowerInvariant()).Distinct()];

    public string ResolvedInstanceId => string.IsNullOrWhiteSpace(InstanceId)
        ? $"{Environment.MachineName}-{Environment.ProcessId}"
        : InstanceId;

    internal static ValidationResult? ValidateRoles(TallyOptions options)
    {
        var unknown = options.Roles.Where(r => r is not ("api" or "scheduler" or "worker")).ToList();
        return unknown.Count == 0
            ? ValidationResult.Success
            : new ValidationResult($"Tally:Roles has unknown role(s) {string.Join(", ", unknown)}; use api, scheduler, worker.");
    }
}

public static class OptionsSetup
{
    /// <summary>Binds a section to an options class, validates its data annotations, and fails start-up if invalid.</summary>
    public static OptionsBuilder<T> AddValidatedOptions<T>(this IServiceCollection services, string section)
        where T : class
        => services.AddOptions<T>().BindConfiguration(section).ValidateDataAnnotations().ValidateOnStart();

    /// <summary>
    /// <c>Tally:Roles</c> as people write it: a list (<c>Tally__Roles__0=worker</c>, a JSON array) or
    /// one string (<c>Tally__Roles=worker</c>, <c>api,scheduler</c>, any case), which the configuration
    /// binder would silently ignore for an array. The string becomes the list's entries; both forms at
    /// once are refused, naming the setting, rather than one quietly winning.
    /// </summary>
    public static Dictionary<string, string?> RolesAsList(IConfigurationSection roles)
    {
        if (string.IsNullOrWhiteSpace(roles.Value))
        {
            return [];
        }
        if (roles.GetChildren().Any())
        {
            throw new InvalidOperationException(
                $"{roles.Path} is set both as one string ('{roles.Value}') and as a list ({roles.Path}:0, ...); set it one way.");
        }
        return roles.Value.Split([',', ';', ' '], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select((role, i) => (Key: $"{roles.Path}:{i}", Value: role.ToLowerInvariant()))
            .ToDictionary(e => e.Key, e => (string?)e.Value);
    }

    /// <summary>Reads the options once at registration time (for decisions such as which roles to host).</summary>
    public static T Read<T>(this IConfiguration configuration, string section)
        where T : new()
        => configuration.GetSection(section).Get<T>() ?? new T();

    public static WebApplicationBuilder AddTallyOptions(this WebApplicationBuilder builder)
    {
        builder.Configuration.AddInMemoryCollection(RolesAsList(builder.Configuration.GetSection($"{TallyOptions.Section}:Roles")));
        builder.Services.AddValidatedOptions<TallyOptions>(TallyOptions.Section)
            .Validate(o => TallyOptions.ValidateRoles(o) == ValidationResult.Success,
                "Tally:Roles may only contain api, scheduler and worker.")
            .Validate(o => o.ShutdownTimeout >= TimeSpan.Zero && o.ShutdownTimeout <= TimeSpan.FromHours(1),
                "Tally:ShutdownTimeout must be between 00:00:00 and 01:00:00.");
        builder.Services.AddOptions<HostOptions>().Configure<IOptions<TallyOptions>>((host, tally) => host.ShutdownTimeout = tally.Value.ShutdownTimeout);
        builder.Services.TryAddSingleton<LocalUpstreams>();
        return builder;
    }
}
