using Microsoft.Extensions.Options;
using Tally.Features.Connections.Providers;
using Tally.Hosting;
using Tally.Jobs.Retention;
using Tally.Jobs.Scheduling;

namespace Tally.Features.Connections;

public static class ConnectionsSetup
{
    public static WebApplicationBuilder AddConnections(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddValidatedOptions<ConnectionsOptions>(ConnectionsOptions.Section);
        services.AddSingleton<IValidateOptions<ConnectionsOptions>, ValidateConnections>();
        services.AddValidatedOptions<SimpleFinOptions>(SimpleFinOptions.Section);
        services.AddSingleton<IValidateOptions<SimpleFinOptions>, ValidateSimpleFin>();
        CredentialProtector.AddCredentialProtection(services, builder.Configuration);

        // No redirects (a redirect could lead a secret to a host SimpleFin:AllowedHosts does not list),
        // no request logging (a claim URL carries its token), and no proxy: every connection is made
        // here, to an address SimpleFinEgress checked (through a proxy it would check the proxy's).
        services.AddSingleton<SimpleFinEgress>();
        services.AddHttpClient(SimpleFinProvider.HttpClientName)
            .ConfigurePrimaryHttpMessageHandler(s => new SocketsHttpHandler
            {
                AllowAutoRedirect = false,
                UseProxy = false,
                PooledConnectionLifetime = TimeSpan.FromMinutes(5),
                ConnectCallback = s.GetRequiredService<SimpleFinEgress>().ConnectAsync,
            })
            .RemoveAllLoggers();
        services.AddSingleton<IAccountProvider, SimpleFinProvider>();
        if (LocalUpstreams.Enabled(builder.Configuration, builder.Environment))
        {
            // The sandbox bank answers on this machine over plain HTTP: let the SimpleFIN client reach
            // it, and offer the `sandbox` provider, which fetches its accounts from it.
            services.PostConfigure<SimpleFinOptions>(o => o.AllowLoopback = true);
            services.AddHttpClient(SandboxProvider.HttpClientName, c => c.Timeout = SandboxProvider.Timeout).RemoveAllLoggers();
            services.AddSingleton<IAccountProvider, SandboxProvider>();
        }
        services.AddSingleton<AccountProviders>();
        services.AddSingleton<SyncConnection>();
        services.AddScheduledJob<SyncAllConnections>(SyncAllConnections.Name, "*/5 * * * *");
        services.AddValidatedOptions<SyncRunRetentionOptions>(RetentionOptions.Section);
        services.AddSingleton<IFeatureHistory, SyncRunHistory>();
        return builder;
    }

    private sealed class ValidateConnections : IValidateOptions<ConnectionsOptions>
    {
        public ValidateOptionsResult Validate(string? name, ConnectionsOptions options) =>
            options.Invalid() is { } problem ? ValidateOptionsResult.Fail(problem) : ValidateOptionsResult.Success;
    }

    private sealed class ValidateSimpleFin : IValidateOptions<SimpleFinOptions>
    {
        public ValidateOptionsResult Validate(string? name, SimpleFinOptions options) =>
            options.Invalid() is { } problem ? ValidateOptionsResult.Fail(problem) : ValidateOptionsResult.Success;
    }
}
