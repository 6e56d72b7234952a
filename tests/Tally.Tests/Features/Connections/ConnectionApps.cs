using Microsoft.Extensions.DependencyInjection;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.Connections;

/// <summary>An app for connection tests: API role only (no background work), the sandbox provider, a clock the test moves.</summary>
internal sealed record ConnectionApp(TallyApp App, ManualClock Clock, Guid UserId, HttpClient User, HttpClient Admin) : IAsyncDisposable
{
    public static async Task<ConnectionApp> CreateAsync(string storage, IDictionary<string, string?>? settings = null, Action<IServiceCollection>? services = null)
    {
        var clock = new ManualClock();
        var all = new Dictionary<string, string?>
        {
            ["Tally:Roles:0"] = "api",
            ["Sandbox:Enabled"] = "true",
            ["Sandbox:DriftPeriod"] = "00:20:00",
            ["SimpleFin:AllowLoopback"] = "true",
            ["RateLimits:sandbox:PermitsPerSecond"] = "1000",
            ["RateLimits:simplefin:PermitsPerSecond"] = "1000",
        };
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
        return new ConnectionApp(app, clock, user, app.AsUser(user), admin);
    }

    public async ValueTask DisposeAsync() => await App.DisposeAsync();
}
