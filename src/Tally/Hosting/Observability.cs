using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using OpenTelemetry.Metrics;
using Scalar.AspNetCore;
using StackExchange.Redis;
using Tally.Data;
using Tally.Jobs.Queues;

namespace Tally.Hosting;

/// <summary>Health (<c>/healthz</c> liveness, <c>/readyz</c> dependencies), Prometheus <c>/metrics</c>, OpenAPI and its UI.</summary>
public static class Observability
{
    public static WebApplicationBuilder AddObservability(this WebApplicationBuilder builder)
    {
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
        builder.Services.AddOpenApi();
        return builder;
    }

    public static WebApplication MapObservability(this WebApplication app)
    {
        app.MapHealthChecks("/healthz", new HealthCheckOptions { Predicate = _ => false });
        app.MapHealthChecks("/readyz", new HealthCheckOptions { Predicate = c => c.Tags.Contains("ready") });
        app.MapPrometheusScrapingEndpoint("/metrics");
        app.MapOpenApi();
        app.MapScalarApiReference("/docs");
        return app;
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
