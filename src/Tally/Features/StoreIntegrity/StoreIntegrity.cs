using Tally.Data;
using Tally.Hosting;
using Tally.Jobs.Retention;
using Tally.Jobs.Scheduling;

namespace Tally.Features.StoreIntegrity;

/// <summary>The <c>StoreIntegrity</c> section.</summary>
public sealed class StoreIntegrityOptions
{
    public const string Section = "StoreIntegrity";

    /// <summary>Used when nothing is configured (set in code, not appsettings.json, so a host without that file still starts).</summary>
    public static readonly IReadOnlyList<string> DefaultManagedSubscriptionTypes = ["managed_subscription", "managed_subscription_annual"];

    /// <summary>
    /// Product types whose active orders mean an account has orders (the seed's
    /// <c>MANAGED_SUBSCRIPTIONS</c>), compared exactly. Empty here and defaulted after binding:
    /// the configuration binder appends to an array it finds already filled.
    /// </summary>
    public string[] ManagedSubscriptionTypes { get; set; } = [];

    public IReadOnlyList<string> Types =>
        ManagedSubscriptionTypes.Select(t => t.Trim()).Where(t => t.Length > 0).Distinct(StringComparer.Ordinal).ToArray();
}

public static class StoreIntegritySetup
{
    /// <summary>The has_orders repair: its options and the <c>store.sync-accounts</c> job (every 5 minutes unless configured).</summary>
    public static WebApplicationBuilder AddStoreIntegrity(this WebApplicationBuilder builder)
    {
        builder.Services.AddValidatedOptions<StoreIntegrityOptions>(StoreIntegrityOptions.Section)
            .PostConfigure(o =>
            {
                if (o.ManagedSubscriptionTypes.Length == 0)
                {
                    o.ManagedSubscriptionTypes = [.. StoreIntegrityOptions.DefaultManagedSubscriptionTypes];
                }
            })
            .Validate(o => o.ManagedSubscriptionTypes.Length > 0 && o.ManagedSubscriptionTypes.All(t => !string.IsNullOrWhiteSpace(t)),
                "StoreIntegrity:ManagedSubscriptionTypes must list product types (for example [\"managed_subscription\"]) and no blank ones.");
        builder.Services.AddScheduledJob<RepairHasOrders>(RepairHasOrders.Name, RepairHasOrders.DefaultCron);
        builder.Services.AddSingleton<IKeepsRuns, RepairRuns>();
        return builder;
    }

    /// <summary>A repair's run is kept with its rows: <c>/api/admin/store/repairs/{runId}</c> serves the ids it flagged.</summary>
    private sealed class RepairRuns : IKeepsRuns
    {
        public IQueryable<long> RunsInUse(TallyDb db) => db.StoreAccountRepairs.Select(x => x.RunId);
    }
}
