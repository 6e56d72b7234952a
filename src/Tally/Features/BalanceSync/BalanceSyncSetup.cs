using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Tally.Data;
using Tally.Hosting;
using Tally.Jobs.Lanes;
using Tally.Jobs.Queues;
using Tally.Jobs.RateLimits;
using Tally.Jobs.Scheduling;

namespace Tally.Features.BalanceSync;

public static class BalanceSyncSetup
{
    /// <summary>
    /// Balance sync: the T24 client, the runtime's lanes (in memory when embedded, a shared PostgreSQL
    /// table otherwise, or as <c>BalanceSync:Lanes</c> says), the gate to the core, the lane workers
    /// (role <c>worker</c>) and the periodic job <c>balance-sync.enqueue-all</c> (role <c>scheduler</c>).
    /// </summary>
    public static WebApplicationBuilder AddBalanceSync(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        var configuration = builder.Configuration;
        services.AddValidatedOptions<BalanceSyncOptions>(BalanceSyncOptions.Section)
            .Validate(o => o.PriorityReserve < o.MaxConcurrentCalls,
                "BalanceSync:PriorityReserve must be below BalanceSync:MaxConcurrentCalls.")
            .Validate(o => o.Lanes is null or "inprocess" or "postgres",
                "BalanceSync:Lanes must be inprocess or postgres.")
            .Validate(o => o.MirrorCommit is BalanceSyncOptions.AsyncCommit or BalanceSyncOptions.DurableCommit,
                "BalanceSync:MirrorCommit must be async or durable.")
            .Validate<IConfiguration>((o, c) => o.PriorityReserve < CoreRateOf(c, o).Permits,
                "BalanceSync:PriorityReserve must be below RateLimits:t24:PermitsPerSecond.")
            .Validate<IConfiguration>((_, c) => (c.GetSection($"RateLimits:{BalanceSyncOptions.Upstream}").Get<RateLimitOptions>() ?? new RateLimitOptions()).PermitsPerSecond > 0,
                "RateLimits:t24:PermitsPerSecond must be above 0.");
        // Only the worker role calls the core (the api and scheduler roles queue users for it). Without
        // T24:BaseUrl it has nowhere real to call, and outside Development it never falls back to a fake.
        var tally = configuration.Read<TallyOptions>(TallyOptions.Section);
        services.AddValidatedOptions<T24Options>(T24Options.Section)
            .Validate(o => string.IsNullOrEmpty(o.BaseUrl) || (Uri.TryCreate(o.BaseUrl, UriKind.Absolute, out var url) && url.Scheme is "http" or "https"),
                "T24:BaseUrl must be an absolute http(s) URL.")
            .Validate<LocalUpstreams>((o, local) => !tally.IsWorker || local.Serves(BalanceSyncOptions.Upstream) || !string.IsNullOrWhiteSpace(o.BaseUrl),
                "T24:BaseUrl must be set on an instance with the worker role: it syncs balances with the core, and the sandbox core is off (Sandbox:Enabled is on by default in Development only).");

        var options = configuration.Read<BalanceSyncOptions>(BalanceSyncOptions.Section);
        var storage = StorageSettings.From(configuration);
        var lanes = options.Lanes ?? (storage.Provider == StorageProvider.Postgres ? "postgres" : "inprocess");
        if (lanes == "postgres" && storage.Provider != StorageProvider.Postgres)
        {
            throw new InvalidOperationException("BalanceSync:Lanes is postgres but ConnectionStrings:Postgres is not set.");
        }
        // The durability of the mirror's writes is a setting; unset, it is what it always was.
        var brokered = configuration.Read<RabbitMqOptions>(RabbitMqOptions.Section).IsConfigured;
        var mirrorCommit = options.MirrorCommit ?? BalanceSyncOptions.DefaultMirrorCommit(storage.Provider, brokered);
        if (BalanceSyncOptions.RefuseMirrorCommit(mirrorCommit, storage.Provider, brokered) is { } refusal)
        {
            throw new InvalidOperationException(refusal);
        }
        services.PostConfigure<BalanceSyncOptions>(o => o.MirrorCommit ??= mirrorCommit);

        if (lanes == "postgres")
        {
            services.AddPostgresLanes(sp => BalanceSyncLanes.PostgresOptions(sp.GetRequiredService<IOptions<BalanceSyncOptions>>().Value));
            services.AddSingleton<ILoginQueue, PostgresLoginQueue>();
        }
        else
        {
            services.AddInProcessLanes();
            services.AddScoped<ILoginQueue, LanesLoginQueue>();
        }
        services.AddLaneWorkers<SyncUserBalances, BalanceSyncLanes>(
            sp => BalanceSyncLanes.WorkerSettings(sp.GetRequiredService<IOptions<BalanceSyncOptions>>().Value), run: tally.IsWorker);

        services.AddSingleton(sp =>
        {
            var o = sp.GetRequiredService<IOptions<BalanceSyncOptions>>().Value;
            return new CoreCallGate(o.MaxConcurrentCalls, o.PriorityReserve, CoreRateOf(configuration, o), sp.GetRequiredService<TimeProvider>());
        });
        // The same limits for the whole fleet (Jobs/RateLimits/FleetLimits.cs): a call dead with its
        // instance stops counting as in flight after the call's own timeout and a margin.
        services.AddKeyedSingleton(BalanceSyncOptions.Upstream, (sp, _) =>
        {
            var o = sp.GetRequiredService<IOptions<BalanceSyncOptions>>().Value;
            var rate = CoreRateOf(configuration, o);
            var timeout = sp.GetRequiredService<IOptions<T24Options>>().Value.Timeout + TimeSpan.FromSeconds(5);
            return new FleetLimit(BalanceSyncOptions.Upstream, rate.Permits, rate.Window, o.MaxConcurrentCalls, o.PriorityReserve, Even: true, timeout);
        });
        services.AddSingleton<T24Endpoint>();
        services.AddHttpClient<T24Client>(http =>
        {
            // The client's own deadline (T24:TimeoutMs) applies per call, as a typed Timeout failure.
            http.Timeout = Timeout.InfiniteTimeSpan;
            http.MaxResponseContentBufferSize = 1 << 20;
        }).RemoveAllLoggers();
        services.AddScheduledJob<EnqueueAllBalances>(EnqueueAllBalances.Name, $"{JobDefinition.EveryPrefix}{options.IntervalMs}ms");
        return builder;
    }

    private static CoreRate CoreRateOf(IConfiguration configuration, BalanceSyncOptions options) =>
        CoreRate.From(
            configuration.GetSection($"RateLimits:{BalanceSyncOptions.Upstream}").Get<RateLimitOptions>() ?? new RateLimitOptions(),
            TimeSpan.FromMilliseconds(options.RateWindowGuardMs));
}
