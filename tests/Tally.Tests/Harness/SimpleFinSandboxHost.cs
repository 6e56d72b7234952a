using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using System.Runtime.CompilerServices;
using System.Text;
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
/// It counts the requests it gets, so a test can tell that the app never called it.
/// </summary>
public sealed class SimpleFinSandboxHost : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ConcurrentDictionary<string, string> _scenarioTokens = new(StringComparer.Ordinal);
    private readonly StrongBox<int> _requests;

    private SimpleFinSandboxHost(WebApplication app, Uri root, StrongBox<int> requests)
    {
        _app = app;
        _requests = requests;
        Root = root;
        Client = new HttpClient { BaseAddress = root };
    }

    /// <summary>Where the sandbox listens: <c>http://127.0.0.1:{port}/</c>.</summary>
    public Uri Root { get; }

    public HttpClient Client { get; }

    /// <summary>Requests the sandbox received, from anyone.</summary>
    public int Requests => Volatile.Read(ref _requests.Value);

    public static async Task<SimpleFinSandboxHost> StartAsync(TimeProvider clock, TimeSpan? driftPeriod = null, IDictionary<string, string?>? settings = null)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { EnvironmentName = "Testing" });
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Configuration["Sandbox:Enabled"] = "true";
        builder.Configuration["Sandbox:DriftPeriod"] = (driftPeriod ?? TimeSpan.FromMinutes(10)).ToString();
        foreach (var (key, value) in settings ?? new Dictionary<string, string?>())
        {
            builder.Configuration[key] = value;
        }
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(clock);
        builder.AddSimpleFinSandbox();
        var app = builder.Build();
        var requests = new StrongBox<int>();
        app.Use(async (context, next) =>
        {
            Interlocked.Increment(ref requests.Value);
            await next(context);
        });
        app.MapSimpleFinSandbox();
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new SimpleFinSandboxHost(app, new Uri(address), requests);
    }

    /// <summary>A new sandbox user: its setup token and username (its scenario token is kept for <see cref="SetScenarioAsync"/>).</summary>
    public async Task<(string SetupToken, string Username)> SetupTokenAsync(string scenario = "ok", int accounts = 3)
    {
        var body = await Client.PostJsonAsync("/sandbox/simplefin/setup-token", new { scenario, accounts }).ExpectAsync(HttpStatusCode.OK);
        var username = body.GetProperty("username").GetString()!;
        _scenarioTokens[username] = body.GetProperty("scenarioToken").GetString()!;
        return (body.GetProperty("setupToken").GetString()!, username);
    }

    /// <summary>Changes a user's scenario as the one who made the user (with its scenario token).</summary>
    public async Task SetScenarioAsync(string username, string scenario) =>
        await ChangeScenarioAsync(username, scenario, _scenarioTokens[username]).ExpectAsync(HttpStatusCode.NoContent);

    public Task<HttpResponseMessage> ChangeScenarioAsync(string username, string scenario, string? token)
    {
        var request = new HttpRequestMessage(HttpMethod.Put, $"/sandbox/simplefin/users/{username}/scenario") { Content = JsonContent.Create(new { scenario }) };
        if (token is not null)
        {
            request.Headers.Authorization = new("Bearer", token);
        }
        return Client.SendAsync(request);
    }

    public string ScenarioToken(string username) => _scenarioTokens[username];

    /// <summary>The user's Account Set, read as a SimpleFIN client with the user's access credentials.</summary>
    public Task<HttpResponseMessage> AccountsAsync(string username)
    {
        var password = _app.Services.GetRequiredService<SimpleFinSandbox.SandboxBank>().Password(username);
        var request = new HttpRequestMessage(HttpMethod.Get, "/sandbox/simplefin/accounts?balances-only=1");
        request.Headers.Authorization = new("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{username}:{password}")));
        return Client.SendAsync(request);
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
