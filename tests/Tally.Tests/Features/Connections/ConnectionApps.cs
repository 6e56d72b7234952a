using Microsoft.Extensions.DependencyInjection;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.Connections;

/// <summary>
/// An app for connection tests: API role only (no background work), the sandbox provider, a clock the
/// test moves, and on request a SimpleFIN sandbox bank on a real socket that the app may call.
/// </summary>
internal sealed record ConnectionApp(TallyApp App, ManualClock Clock, Guid UserId, HttpClient User, HttpClient Admin, SimpleFinSandboxHost? BankOrNull)
    : IAsyncDisposable
{
    public SimpleFinSandboxHost Bank => BankOrNull ?? throw new InvalidOperationException("Create the app with bank: true.");

    public static async Task<ConnectionApp> CreateAsync(
        string storage, IDictionary<string, string?>? settings = null, Action<IServiceCollection>? services = null, bool bank = false)
    {
        // Balances drift once per 10 minutes, and the clock starts just after a drift: a test that
        // moves it less than 10 minutes sees the same balances, one that moves it more sees new ones.
        var clock = new ManualClock(alignTo: TimeSpan.FromMinutes(10));
        var sandbox = bank ? await SimpleFinSandboxHost.StartAsync(clock) : null;
        var all = new Dictionary<string, string?>
        {
            ["Tally:Roles:0"] = "api",
            ["Sandbox:Enabled"] = "true",
            ["Sandbox:DriftPeriod"] = "00:10:00",
            // The in-memory server is bound to no address: the sandbox bank (and the `sandbox` provider
            // that fetches from it) is reached at this name, through the in-memory pipeline.
            ["Sandbox:SimpleFin:PublicUrl"] = "http://sandbox.tally.test",
            ["SimpleFin:AllowLoopback"] = "true",
            ["RateLimits:sandbox:PermitsPerSecond"] = "1000",
            ["RateLimits:simplefin:PermitsPerSecond"] = "1000",
        };
        if (sandbox is not null)
        {
            all["SimpleFin:SandboxUrl"] = sandbox.Root.GetLeftPart(UriPartial.Authority);
        }
        foreach (var (k, v) in settings ?? new Dictionary<string, string?>())
        {
            all[k] = v;
        }
        var app = await Apps.CreateAsync(storage, all, s =>
        {
            s.AddSingleton<TimeProvider>(clock);
            services?.Invoke(s);
        });
        var admin = app.Admin();
        var user = await admin.CreateUserAsync();
        return new ConnectionApp(app, clock, user, app.AsUser(user), admin, sandbox);
    }

    public async ValueTask DisposeAsync()
    {
        await App.DisposeAsync();
        if (BankOrNull is { } bank)
        {
            await bank.DisposeAsync();
        }
    }
}
