using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Tally.Sandbox;

namespace Tally.Tests.Harness;

/// <summary>
/// The fake core (Tally's own sandbox code) on a real Kestrel port on loopback, so the T24 client
/// under test makes real HTTP calls, and several Tally instances can share one core. Tally instances
/// hosted by <see cref="TallyApp"/> run on an in-memory test server and cannot be called over a
/// socket, hence this separate host.
/// </summary>
public sealed class SandboxHost : IAsyncDisposable
{
    private readonly WebApplication _app;

    private SandboxHost(WebApplication app, string baseUrl)
    {
        _app = app;
        BaseUrl = baseUrl;
    }

    public string BaseUrl { get; }

    public SandboxT24 T24 => _app.Services.GetRequiredService<SandboxT24>();

    /// <summary>What a Tally instance needs to call this core.</summary>
    public Dictionary<string, string?> TallySettings => new()
    {
        ["T24:BaseUrl"] = BaseUrl,
        ["T24:ApiKey"] = T24.Settings.ApiKey,
    };

    public static async Task<SandboxHost> StartAsync(IDictionary<string, string?>? settings = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseKestrel().UseUrls("http://127.0.0.1:0");
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        var all = new Dictionary<string, string?> { ["Sandbox:Enabled"] = "true", ["Sandbox:T24:JitterMs"] = "0" };
        foreach (var (k, v) in settings ?? new Dictionary<string, string?>())
        {
            all[k] = v;
        }
        builder.Configuration.AddInMemoryCollection(all);
        builder.AddSandbox();
        var app = builder.Build();
        app.MapSandbox();
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new SandboxHost(app, $"{address}/sandbox/t24");
    }

    public async ValueTask DisposeAsync()
    {
        T24.Release();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
