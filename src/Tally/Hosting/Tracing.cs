using System.Diagnostics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Tally.Hosting;

/// <summary>The <c>Otel</c> section: where traces go.</summary>
public sealed class OtelOptions
{
    public const string Section = "Otel";

    /// <summary>
    /// The OTLP endpoint traces are exported to, used as given (gRPC by default, e.g.
    /// <c>http://collector:4317</c>). Unset: the standard <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> and its
    /// companions configure the exporter; neither set: no exporter, and no spans are made at all.
    /// </summary>
    public string? Endpoint { get; set; }

    internal static bool IsValidEndpoint(string? endpoint) =>
        string.IsNullOrWhiteSpace(endpoint)
        || (Uri.TryCreate(endpoint, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https");
}

/// <summary>
/// OpenTelemetry tracing: an HTTP request or a scheduler tick, through the queue (W3C trace context in
/// the message), to the worker and its PostgreSQL and upstream HTTP calls. Tally's own spans come from
/// <see cref="Source"/>. Without an exporter no tracer provider listens, so <c>StartActivity</c>
/// returns null and tracing costs a check per operation.
/// </summary>
public static class Tracing
{
    public const string SourceName = "Tally";

    /// <summary>Npgsql's own spans: one per command, with its SQL text but never its parameter values.</summary>
    public const string NpgsqlSourceName = "Npgsql";

    public static readonly ActivitySource Source = new(SourceName);

    public static WebApplicationBuilder AddTracing(this WebApplicationBuilder builder)
    {
        var configuration = builder.Configuration;
        builder.Services.AddValidatedOptions<OtelOptions>(OtelOptions.Section)
            .Validate(o => OtelOptions.IsValidEndpoint(o.Endpoint), "Otel:Endpoint must be an http:// or https:// URL.");
        var endpoint = configuration.Read<OtelOptions>(OtelOptions.Section).Endpoint;
        var fromEnvironment = !string.IsNullOrWhiteSpace(configuration["OTEL_EXPORTER_OTLP_ENDPOINT"])
            || !string.IsNullOrWhiteSpace(configuration["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]);
        if ((string.IsNullOrWhiteSpace(endpoint) && !fromEnvironment) || !OtelOptions.IsValidEndpoint(endpoint))
        {
            return builder; // No exporter (or an invalid one, which stops start-up with the options check).
        }
        var instance = configuration.Read<TallyOptions>(TallyOptions.Section).ResolvedInstanceId;
        builder.Services.AddOpenTelemetry()
            .ConfigureResource(r =>
            {
                // OTEL_SERVICE_NAME, when set, names the service instead.
                if (string.IsNullOrWhiteSpace(configuration["OTEL_SERVICE_NAME"]))
                {
                    r.AddService("tally", serviceInstanceId: instance);
                }
            })
            .WithTracing(t => t
                .AddSource(SourceName, NpgsqlSourceName)
                .AddAspNetCoreInstrumentation(o => o.Filter = http => !IsProbe(http.Request.Path))
                .AddHttpClientInstrumentation()
                .AddOtlpExporter(o =>
                {
                    if (!string.IsNullOrWhiteSpace(endpoint))
                    {
                        o.Endpoint = new Uri(endpoint);
                    }
                }));
        return builder;
    }

    /// <summary>Health probes and scrapes: frequent, and of no interest in a trace.</summary>
    private static bool IsProbe(PathString path) =>
        path.StartsWithSegments("/healthz") || path.StartsWithSegments("/readyz") || path.StartsWithSegments("/metrics");

    /// <summary>The W3C trace id of the current span, or null outside any.</summary>
    public static string? CurrentTraceId() =>
        Activity.Current is { IdFormat: ActivityIdFormat.W3C } current ? current.TraceId.ToHexString() : null;
}
