using Tally.Hosting;

namespace Tally.Sandbox;

/// <summary>
/// <c>Sandbox</c>: fake upstreams served by Tally itself over real HTTP, so embedded mode works with no
/// outside service. On by default in Development only; anywhere else only when <c>Sandbox:Enabled</c>
/// is <c>true</c>, and then with a warning at start.
/// </summary>
public sealed class SandboxOptions
{
    public const string Section = "Sandbox";

    public bool? Enabled { get; set; }

    public SandboxT24Settings T24 { get; set; } = new();

    /// <summary>
    /// The one switch for every sandbox (the fake T24 core and the SimpleFIN bank). Never on by the
    /// storage in use: a Production instance on SQLite would otherwise serve the fake core, its reset
    /// route included, and sync real users' balances from it.
    /// </summary>
    public static bool IsEnabled(IConfiguration configuration, IHostEnvironment environment) =>
        configuration.GetValue<bool?>($"{Section}:Enabled") ?? environment.IsDevelopment();
}

public static partial class SandboxSetup
{
    public static WebApplicationBuilder AddSandbox(this WebApplicationBuilder builder)
    {
        if (!SandboxOptions.IsEnabled(builder.Configuration, builder.Environment))
        {
            return builder;
        }
        builder.Services.AddOptions<SandboxOptions>().BindConfiguration(SandboxOptions.Section)
            .Validate(o => o.T24.LatencyMs >= 0 && o.T24.JitterMs >= 0 && o.T24.SlowLatencyMs >= 0 && o.T24.DriftPeriodMs > 0 && o.T24.RateLimitPerSecond >= 0 && o.T24.RetryAfterSeconds >= 0,
                "Sandbox:T24 latencies, DriftPeriodMs, RateLimitPerSecond and RetryAfterSeconds must not be negative (DriftPeriodMs above 0).")
            .Validate(o => o.T24.SlowRate is >= 0 and <= 1 && o.T24.ErrorRate is >= 0 and <= 1 && o.T24.ThrottleRate is >= 0 and <= 1,
                "Sandbox:T24 SlowRate, ErrorRate and ThrottleRate must be between 0 and 1.")
            .ValidateOnStart();
        builder.Services.AddSingleton<SandboxT24>();
        // The fake core is reached like the real one, by URL over HTTP: its address once Kestrel listens.
        LocalUpstreams.Serve(builder.Services, SandboxT24.Upstream);
        builder.Services.AddHostedService<SandboxT24Address>();
        return builder;
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
