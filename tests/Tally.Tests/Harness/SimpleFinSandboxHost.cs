using System.Net;
using System.Net.Http.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Tally.Sandbox.SimpleFin;

namespace Tally.Tests.Harness;

/// <summary>
/// Tally's SimpleFIN sandbox on a real Kestrel socket (127.0.0.1, a free port), apart from the app
/// under test: the app's SimpleFIN client reaches it over real HTTP, as it would a bank's server.
/// </summary>
public sealed class SimpleFinSandboxHost : IAsyncDisposable
{
    private readonly WebApplication _app;

    private SimpleFinSandboxHost(WebApplication app, Uri root)
    {
        _app = app;
        Root = root;
        Client = new HttpClient { BaseAddress = root };
    }

    public Uri Root { get; }

    public HttpClient Client { get; }

    public static async Task<SimpleFinSandboxHost> StartAsync(TimeProvider clock, TimeSpan? driftPeriod = null)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { EnvironmentName = "Testing" });
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Configuration["Sandbox:Enabled"] = "true";
        builder.Configuration["Sandbox:DriftPeriod"] = (driftPeriod ?? TimeSpan.FromMinutes(10)).ToString();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(clock);
        builder.AddSimpleFinSandbox();
        var app = builder.Build();
        app.MapSimpleFinSandbox();
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new SimpleFinSandboxHost(app, new Uri(address));
    }

    /// <summary>A new sandbox user: its setup token and username.</summary>
    public async Task<(string SetupToken, string Username)> SetupTokenAsync(string scenario = "ok", int accounts = 3)
    {
        var body = await Client.PostJsonAsync("/sandbox/simplefin/setup-token", new { scenario, accounts }).ExpectAsync(HttpStatusCode.OK);
        return (body.GetProperty("setupToken").GetString()!, body.GetProperty("username").GetString()!);
    }

    public async Task SetScenarioAsync(string username, string scenario) =>
        await Client.PutAsJsonAsync($"/sandbox/simplefin/users/{username}/scenario", new { scenario }).ExpectAsync(HttpStatusCode.NoContent);

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
