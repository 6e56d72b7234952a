using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using Microsoft.OpenApi;
using OpenTelemetry.Metrics;
using Scalar.AspNetCore;
using StackExchange.Redis;
using Tally.Data;
using Tally.Jobs.Queues;

namespace Tally.Hosting;

/// <summary>
/// Health (<c>/healthz</c> liveness, <c>/readyz</c> dependencies; always anonymous), Prometheus
/// <c>/metrics</c>, OpenAPI (<c>/openapi/v1.json</c>) and its UI (<c>/docs</c>). The last three describe
/// the service to whoever asks, so they are anonymous in Development only; elsewhere they need the admin
/// role, or, with <c>Tally:ManagementPort</c>, are served on that port alone (anonymously: it is not
/// exposed publicly), and answer 404 on every other.
/// </summary>
public static class Observability
{
    private const string BearerScheme = "Bearer";

    public static WebApplicationBuilder AddObservability(this WebApplicationBuilder builder)
    {
        if (builder.Configuration.Read<TallyOptions>(TallyOptions.Section).ManagementPort is { } port)
        {
            ListenAlsoOn(builder, port);
        }
        var checks = builder.Services.AddHealthChecks()
            .AddCheck<DatabaseCheck>("database", tags: ["ready"]);
        if (!string.IsNullOrWhiteSpace(builder.Configuration["Redis:Url"]))
        {
            checks.AddCheck<RedisCheck>("redis", tags: ["ready"]);
        }
        if (builder.Configuration.Read<RabbitMqOptions>(RabbitMqOptions.Section).IsConfigured)
        {
            checks.AddCheck<BrokerCheck>("broker", tags: ["ready"]);
        }
        builder.Services.AddOpenTelemetry().WithMetrics(m => m
            .AddAspNetCoreInstrumentation()
            .AddRuntimeInstrumentation()
            .AddMeter("Tally.*")
            .AddPrometheusExporter());
        builder.Services.AddOpenApi(o =>
        {
            ApiReference.Configure(o);
            o.AddSchemaTransformer((schema, context, _) =>
            {
                DescribeDecimal(schema, context.JsonTypeInfo.Type);
                return Task.CompletedTask;
            });
            o.AddDocumentTransformer((document, _, _) =>
            {
                // The bearer scheme every protected route uses, so a reader can authorize and try calls in /docs.
                document.Components ??= new OpenApiComponents();
                document.Components.SecuritySchemes ??= new Dictionary<string, IOpenApiSecurityScheme>();
                document.Components.SecuritySchemes[BearerScheme] = new OpenApiSecurityScheme
                {
                    Type = SecuritySchemeType.Http,
                    Scheme = "bearer",
                    BearerFormat = "JWT",
                    Description = "A JWT whose `role` claims name the caller's roles (`user`, `guardian`, `viewer`, `operator`, `admin`).",
                };
                document.Security ??= [];
                document.Security.Add(new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference(BearerScheme, document)] = [] });
                return Task.CompletedTask;
            });
        });
        return builder;
    }

    public static WebApplication MapObservability(this WebApplication app)
    {
        app.MapHealthChecks("/healthz", new HealthCheckOptions { Predicate = _ => false }).AllowAnonymous();
        app.MapHealthChecks("/readyz", new HealthCheckOptions { Predicate = c => c.Tags.Contains("ready") }).AllowAnonymous();
        var port = app.Services.GetRequiredService<IOptions<TallyOptions>>().Value.ManagementPort;
        IEndpointConventionBuilder[] management = [app.MapPrometheusScrapingEndpoint("/metrics"), app.MapOpenApi(), app.MapScalarApiReference("/docs", docs => docs
            .WithTitle("Tally API")
            .AddPreferredSecuritySchemes(BearerScheme)
            // An internal money API: nothing in the reference reaches outside services.
            .DisableAgent()
            .DisableMcp()
            .DisableTelemetry()
            .HideDeveloperTools()
            .HideClientButton()
            .WithProxy(null!))];
        foreach (var endpoint in management)
        {
            if (port is not null)
            {
                endpoint.AllowAnonymous().WithMetadata(ManagementOnly.Instance);
            }
            else if (app.Environment.IsDevelopment())
            {
                endpoint.AllowAnonymous();
            }
            else
            {
                endpoint.RequireAuthorization(Roles.Viewer);
            }
        }
        if (port is { } managementPort)
        {
            // The local port of the connection, not the Host header: a client picks the header, not the socket.
            app.Use((http, next) =>
            {
                if (http.GetEndpoint()?.Metadata.GetMetadata<ManagementOnly>() is not null && http.Connection.LocalPort != managementPort)
                {
                    http.Response.StatusCode = StatusCodes.Status404NotFound;
                    return Task.CompletedTask;
                }
                return next(http);
            });
        }
        return app;
    }

    /// <summary>
    /// Adds <c>http://*:{port}</c> to the addresses the server listens on (<c>urls</c>, else
    /// <c>http_ports</c> / <c>https_ports</c>, else Kestrel's default), unless one of them has that port
    /// already. With Kestrel endpoints in configuration (<c>Kestrel:Endpoints</c>) those win, and the
    /// management port must be listed there.
    /// </summary>
    private static void ListenAlsoOn(WebApplicationBuilder builder, int port)
    {
        var configuration = builder.Configuration;
        static IEnumerable<string> Split(string? list) => (list ?? "").Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var addresses = Split(configuration[WebHostDefaults.ServerUrlsKey]).ToList();
        if (addresses.Count == 0)
        {
            addresses.AddRange(Split(configuration[WebHostDefaults.HttpPortsKey]).Select(p => $"http://*:{p}"));
            addresses.AddRange(Split(configuration[WebHostDefaults.HttpsPortsKey]).Select(p => $"https://*:{p}"));
        }
        if (addresses.Count == 0)
        {
            addresses.Add("http://localhost:5000");
        }
        if (!addresses.Any(a => BindingAddress.Parse(a).Port == port))
        {
            addresses.Add($"http://*:{port}");
        }
        builder.WebHost.UseUrls([.. addresses]);
    }

    /// <summary>
    /// A decimal read by <see cref="ExactDecimalConverter"/> is described as the built-in converter's was
    /// (a number, or a string holding one): the document generator describes no custom converter by itself.
    /// </summary>
    private static void DescribeDecimal(OpenApiSchema schema, Type type)
    {
        if ((Nullable.GetUnderlyingType(type) ?? type) != typeof(decimal) || schema.Type is not null)
        {
            return;
        }
        schema.Type = JsonSchemaType.Number | JsonSchemaType.String | (type == typeof(decimal) ? 0 : JsonSchemaType.Null);
        schema.Pattern = @"^-?(?:0|[1-9]\d*)(?:\.\d+)?$";
        schema.Format ??= "double";
    }

    /// <summary>Marks an endpoint served on the management port only.</summary>
    private sealed class ManagementOnly
    {
        public static readonly ManagementOnly Instance = new();
    }

    private sealed class DatabaseCheck(IDbContextFactory<TallyDb> dbs) : IHealthCheck
    {
        public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
        {
            await using var db = await dbs.CreateDbContextAsync(cancellationToken);
            return await db.Database.CanConnectAsync(cancellationToken)
                ? HealthCheckResult.Healthy()
                : HealthCheckResult.Unhealthy("database unreachable");
        }
    }

    private sealed class RedisCheck(IConnectionMultiplexer redis) : IHealthCheck
    {
        public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
        {
            try
            {
                await redis.GetDatabase().PingAsync();
                return HealthCheckResult.Healthy();
            }
            catch (RedisException e)
            {
                return HealthCheckResult.Unhealthy("redis unreachable", e);
            }
        }
    }

    private sealed class BrokerCheck(RabbitMqConnection broker) : IHealthCheck
    {
        public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(5));
            try
            {
                var connection = await broker.GetConnectionAsync(timeout.Token);
                return connection.IsOpen ? HealthCheckResult.Healthy() : HealthCheckResult.Unhealthy("broker connection closed");
            }
            catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                return HealthCheckResult.Unhealthy("broker unreachable", e);
            }
        }
    }
}
