using System.Net;
using System.Text.Json;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.BalanceSync;

/// <summary>A Tally instance (or two) and the sandbox core they call over HTTP, plus the steps every balance-sync test takes.</summary>
internal sealed class CoreBanking : IAsyncDisposable
{
    private readonly List<TallyApp> _apps = [];

    private CoreBanking(SandboxHost sandbox) => Sandbox = sandbox;

    public SandboxHost Sandbox { get; }

    public TallyApp App => _apps[0];

    public HttpClient Admin { get; private set; } = null!;

    /// <summary>Quiet defaults: the periodic job only runs when a test runs it, a fast core, short retry delays.</summary>
    public static Dictionary<string, string?> Defaults() => new()
    {
        ["Jobs:balance-sync.enqueue-all:Enabled"] = "false",
        ["BalanceSync:RetryBaseDelayMs"] = "100",
        ["RateLimits:t24:PermitsPerSecond"] = "100",
    };

    public static async Task<CoreBanking> StartAsync(
        string storage, IDictionary<string, string?>? tally = null, IDictionary<string, string?>? sandbox = null,
        Action<Microsoft.Extensions.DependencyInjection.IServiceCollection>? services = null)
    {
        var core = new Dictionary<string, string?>
        {
            ["Sandbox:T24:LatencyMs"] = "5",
            ["Sandbox:T24:DriftPeriodMs"] = int.MaxValue.ToString(),
        };
        Merge(core, sandbox);
        var banking = new CoreBanking(await SandboxHost.StartAsync(core));
        await banking.AddInstanceAsync(storage, tally, services);
        return banking;
    }

    /// <summary>Another instance on the same database as the first (scale-out), calling the same core.</summary>
    public async Task<TallyApp> AddInstanceAsync(
        string storage, IDictionary<string, string?>? tally = null, Action<Microsoft.Extensions.DependencyInjection.IServiceCollection>? services = null)
    {
        var settings = Defaults();
        Merge(settings, Sandbox.TallySettings);
        Merge(settings, tally);
        var app = _apps.Count == 0
            ? await Apps.CreateAsync(storage, settings, services)
            : TallyApp.Postgres(App.ConnectionString, settings, services);
        _apps.Add(app);
        if (_apps.Count == 1)
        {
            Admin = app.Admin();
        }
        return app;
    }

    private static void Merge(Dictionary<string, string?> into, IDictionary<string, string?>? from)
    {
        foreach (var (k, v) in from ?? new Dictionary<string, string?>())
        {
            into[k] = v;
        }
    }

    /// <summary>A user with one primary USD core account; answers the user id.</summary>
    public async Task<Guid> UserAsync(string accountNumber, string context = "MOBILE_BANKING", bool isActive = true)
    {
        var id = Guid.NewGuid();
        await Admin.PostJsonAsync("/api/admin/users", new { id, username = $"u-{id:N}", context, customerNumber = "1" + accountNumber.Length, isActive })
            .ExpectAsync(HttpStatusCode.Created);
        await Admin.PostJsonAsync("/api/admin/core-accounts", new { userId = id, accountNumber, accountType = "SAVINGS", isPrimary = true, currency = "USD" })
            .ExpectAsync(HttpStatusCode.Created);
        return id;
    }

    public async Task<JsonElement> LoginSyncAsync(Guid userId, HttpStatusCode expected, TallyApp? on = null)
    {
        using var client = (on ?? App).AsUser(userId);
        return await client.PostAsync("/api/me/balances/sync", null).ExpectAsync(expected);
    }

    public async Task<JsonElement> BalancesAsync(Guid userId)
    {
        using var client = App.AsUser(userId);
        return await client.GetAsync("/api/me/balances").ExpectAsync(HttpStatusCode.OK);
    }

    /// <summary>The stored mirror of the user's one account.</summary>
    public async Task<JsonElement> AccountAsync(Guid userId) => (await BalancesAsync(userId)).GetProperty("accounts")[0];

    public async Task<string> QueueAsync(Guid userId, TallyApp? on = null)
    {
        using var admin = (on ?? App).Admin();
        var body = await admin.PostAsync($"/api/admin/balance-sync/users/{userId}", null).ExpectAsync(HttpStatusCode.Accepted);
        return body.GetProperty("outcome").GetString()!;
    }

    public async Task<JsonElement> StatusAsync(TallyApp? on = null)
    {
        using var anonymous = (on ?? App).CreateClient();
        return await anonymous.GetAsync("/api/sync/status").ExpectAsync(HttpStatusCode.OK);
    }

    public async Task<JsonElement> RunEnqueueAllAsync()
    {
        var body = await Admin.PostAsync("/api/admin/jobs/balance-sync.enqueue-all/run", null).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal("SUCCESS", body.GetProperty("run").GetProperty("status").GetString());
        return body.GetProperty("detail");
    }

    public async Task DrainedAsync(TimeSpan? timeout = null, TallyApp? on = null) =>
        await Eventually.TrueAsync(async () =>
        {
            var status = await StatusAsync(on);
            return status.GetProperty("priority").GetInt64() == 0 && status.GetProperty("background").GetInt64() == 0
                && !status.GetProperty("processing").GetBoolean();
        }, "the balance-sync lanes to drain", timeout);

    public static bool Synced(JsonElement account) =>
        account.GetProperty("lastSyncedAt").ValueKind != JsonValueKind.Null && account.GetProperty("lastError").ValueKind == JsonValueKind.Null;

    public async ValueTask DisposeAsync()
    {
        Admin?.Dispose();
        foreach (var app in _apps)
        {
            await app.DisposeAsync();
        }
        await Sandbox.DisposeAsync();
    }
}
