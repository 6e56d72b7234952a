using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Tally.Hosting;
using Tally.Sandbox.SimpleFin;

namespace Tally.Sandbox;

/// <summary>
/// <c>Sandbox</c>: fake upstreams served by Tally itself over real HTTP, so embedded mode works with no
/// outside service. On by default in Development only; anywhere else only when <c>Sandbox:Enabled</c>
/// is <c>true</c>, and then with a warning at start.
/// </summary>
public sealed class SandboxOptions
{
    public const string Section = "Sandbox";

    /// <summary>The one switch for every sandbox (the fake T24 core and the SimpleFIN bank), read by <see cref="LocalUpstreams.Enabled"/>.</summary>
    public bool? Enabled { get; set; }

    /// <summary><c>Sandbox:T24</c>: how the fake core behaves.</summary>
    public SandboxT24Settings T24 { get; set; } = new();

    /// <summary>Balances move once per period (and stay put within one). Also what the <c>sandbox</c> connection provider fetches.</summary>
    public TimeSpan DriftPeriod { get; set; } = TimeSpan.FromHours(1);

    /// <summary>Signs the sandbox's claim tokens and passwords. A sandbox secret, not a production one.</summary>
    public string SimpleFinSecret { get; set; } = "tally-simplefin-sandbox";

    /// <summary><c>Sandbox:SimpleFin</c>: where the SimpleFIN sandbox says it lives, and how much it hands out.</summary>
    public SimpleFinSandboxSettings SimpleFin { get; set; } = new();

    internal string? Invalid()
    {
        if (DriftPeriod < TimeSpan.FromSeconds(1))
        {
            return "Sandbox:DriftPeriod must be at least one second.";
        }
        if (SimpleFin.MaxSetupTokensPerHour is < 1 or > 100_000)
        {
            return "Sandbox:SimpleFin:MaxSetupTokensPerHour must be between 1 and 100000.";
        }
        if (SimpleFin.PublicUrl is { } url && SandboxAddress.Parse(url) is null)
        {
            return "Sandbox:SimpleFin:PublicUrl must be an absolute http or https URL with no user, query or fragment (where this server is reached, e.g. http://127.0.0.1:5080).";
        }
        return null;
    }
}

public static partial class SandboxSetup
{
    public static WebApplicationBuilder AddSandbox(this WebApplicationBuilder builder)
    {
        if (!LocalUpstreams.Enabled(builder.Configuration, builder.Environment))
        {
            return builder;
        }
        AddSandboxOptions(builder.Services)
            .Validate(o => o.T24.LatencyMs >= 0 && o.T24.JitterMs >= 0 && o.T24.SlowLatencyMs >= 0 && o.T24.DriftPeriodMs > 0 && o.T24.RateLimitPerSecond >= 0 && o.T24.RetryAfterSeconds >= 0,
                "Sandbox:T24 latencies, DriftPeriodMs, RateLimitPerSecond and RetryAfterSeconds must not be negative (DriftPeriodMs above 0).")
            .Validate(o => o.T24.SlowRate is >= 0 and <= 1 && o.T24.ErrorRate is >= 0 and <= 1 && o.T24.ThrottleRate is >= 0 and <= 1,
                "Sandbox:T24 SlowRate, ErrorRate and ThrottleRate must be between 0 and 1.")
            .ValidateOnStart();
        builder.Services.AddSingleton<SandboxT24>();
        // The fake core is reached like the real one, by URL over HTTP: its address once Kestrel listens.
        LocalUpstreams.Serve(builder.Services, SandboxT24.Upstream, (services, root) => root is null ? null
            : new LocalAddress(new Uri(root, SandboxT24.BasePath), services.GetRequiredService<SandboxT24>().Settings.ApiKey));
        return builder;
    }

    /// <summary>The one <c>Sandbox</c> section, bound once however many sandboxes are registered (each adds its own checks).</summary>
    internal static OptionsBuilder<SandboxOptions> AddSandboxOptions(IServiceCollection services)
    {
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IConfigureOptions<SandboxOptions>, BindSandboxSection>());
        return services.AddOptions<SandboxOptions>().ValidateOnStart();
    }

    private sealed class BindSandboxSection(IConfiguration configuration) : IConfigureOptions<SandboxOptions>
    {
        public void Configure(SandboxOptions options) => configuration.GetSection(SandboxOptions.Section).Bind(options);
    }

    public static WebApplication MapSandbox(this WebApplication app)
    {
        if (app.Services.GetService<SandboxT24>() is null)
        {
            return app;
        }
        if (!app.Environment.IsDevelopment())
        {
            LogEnabledOutsideDevelopment(app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Tally.Sandbox"), app.Environment.EnvironmentName);
        }
        var t24 = app.MapGroup("/sandbox/t24").WithTags("Sandbox: T24").AllowAnonymous();
        t24.MapGet("/holdings/accounts/{accountId}/balances", (string accountId, HttpContext http, SandboxT24 sandbox, CancellationToken ct) =>
            sandbox.HandleAsync(accountId, http, ct))
            .WithSummary("Fake T24: an account's balances in the Transact holdings shape (development and tests only)");
        t24.MapGet("/_stats", (SandboxT24 sandbox) => TypedResults.Ok(sandbox.Stats())).WithSummary("Fake T24: calls served, in flight and the peak");
        t24.MapPost("/_reset", (SandboxT24 sandbox) =>
        {
            sandbox.ResetStats();
            return TypedResults.NoContent();
        }).WithSummary("Fake T24: reset the call statistics");
        return app;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Sandbox:Enabled is true in {Environment}: the fake upstreams answer anonymously under /sandbox, and balance sync calls the fake core unless T24:BaseUrl is set")]
    private static partial void LogEnabledOutsideDevelopment(ILogger logger, string environment);
}
