using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Tally.Features.Connections.Providers;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.Connections;

/// <summary>
/// A provider whose next answer the test writes, for what the sandbox banks never say: a zero
/// balance, a type Tally does not know, a renamed or closed account, accounts it could not read.
/// Only the provider is scripted: the sync, its database and its events are the app's own.
/// </summary>
internal sealed class ScriptedProvider : IAccountProvider
{
    public const string ProviderSlug = "scripted";

    private volatile FetchResult _next = new FetchResult.Fetched([], 0);

    public string Slug => ProviderSlug;

    /// <summary>What every fetch from now on answers: these accounts, and <paramref name="unreadable"/> more it could not read.</summary>
    public void Answer(int unreadable, params ProviderAccountData[] accounts) => _next = new FetchResult.Fetched(accounts, unreadable);

    public void Answer(params ProviderAccountData[] accounts) => Answer(0, accounts);

    public Task<ConnectResult> ConnectAsync(ConnectInput input, CancellationToken ct) =>
        Task.FromResult<ConnectResult>(new ConnectResult.Connected(new ProviderSecret("{}"), null));

    public Task<FetchResult> FetchAccountsAsync(ProviderSecret secret, CancellationToken ct) => Task.FromResult(_next);

    public static ProviderAccountData Account(
        string id, decimal balance, string currency = "USD", string type = AccountTypes.Checking, string? name = null, bool active = true,
        string? metadata = """{"branch":"main"}""") =>
        new(id, name ?? $"Account {id}", type, null, balance, null, currency, active, null, metadata);

    /// <summary>A connection app that also knows this provider.</summary>
    public static Task<ConnectionApp> AppAsync(string storage, ScriptedProvider provider) =>
        ConnectionApp.CreateAsync(storage, new Dictionary<string, string?> { [$"RateLimits:{ProviderSlug}:PermitsPerSecond"] = "1000" },
            services: s => s.AddSingleton<IAccountProvider>(provider));

    /// <summary>A new connection of the user's to this provider.</summary>
    public static async Task<Guid> ConnectAsync(HttpClient user)
    {
        var body = await user.PostJsonAsync("/api/connections", new { providerSlug = ProviderSlug, credentials = new { } })
            .ExpectAsync(HttpStatusCode.Created);
        return body.GetProperty("id").GetGuid();
    }
}
