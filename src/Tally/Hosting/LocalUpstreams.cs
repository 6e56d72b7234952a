using System.Collections.Concurrent;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Tally.Hosting;

/// <summary>
/// An upstream this process serves itself (a sandbox), by the name its clients know it by (<c>t24</c>,
/// <c>simplefin</c>), and where it answers once the server listens: <see cref="Locate"/> is given the
/// services and the server's bound root (null on an in-memory server) and answers null when it has no address.
/// </summary>
public sealed record LocalUpstream(string Name, Func<IServiceProvider, Uri?, LocalAddress?> Locate);

/// <summary>Where a <see cref="LocalUpstream"/> answers: a plain base address, and the key it expects (empty when none).</summary>
public sealed record LocalAddress(Uri BaseUrl, string ApiKey);

/// <summary>
/// Fake upstreams this process serves on its own HTTP port (the sandboxes, in embedded mode). Whoever
/// serves one declares it when registering (<see cref="Serve"/>) and fills in its address once the
/// server listens (its <see cref="LocalUpstream.Locate"/>); a client without a configured URL reads
/// <see cref="AddressOf"/> and calls it over HTTP like any upstream. Neither side knows the other:
/// the client does not know a sandbox exists, and the sandbox knows no client.
/// </summary>
public sealed class LocalUpstreams(IEnumerable<LocalUpstream> served)
{
    private readonly IReadOnlyList<LocalUpstream> _upstreams = [.. served];

    /// <summary>The fake SimpleFIN bridge (its root, <c>.../sandbox/simplefin</c>).</summary>
    public const string SimpleFin = "simplefin";

    private static readonly HashSet<string> ThisMachine = new(StringComparer.OrdinalIgnoreCase) { "+", "*", "0.0.0.0", "[::]", "::", "localhost" };

    private readonly HashSet<string> _served = served.Select(u => u.Name).ToHashSet(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, LocalAddress> _addresses = new(StringComparer.Ordinal);

    /// <summary>Whether this instance serves fake upstreams: <c>Sandbox:Enabled</c>, else on in Development only.</summary>
    /// <remarks>
    /// Never decided by the storage in use: a Production instance on SQLite would otherwise serve the
    /// fake core, its reset route included, and sync real users' balances from it.
    /// </remarks>
    public static bool Enabled(IConfiguration configuration, IHostEnvironment environment) =>
        configuration.GetValue<bool?>("Sandbox:Enabled") ?? environment.IsDevelopment();

    /// <summary>
    /// Declares that this process serves <paramref name="name"/>; once the server listens, <paramref name="locate"/>
    /// gives its address (from the services and the server's bound root), and clients can read it.
    /// </summary>
    public static IServiceCollection Serve(IServiceCollection services, string name, Func<IServiceProvider, Uri?, LocalAddress?> locate)
    {
        services.TryAddSingleton<LocalUpstreams>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, Announce>());
        services.AddSingleton(new LocalUpstream(name, locate));
        return services;
    }

    /// <summary>Whether this process serves <paramref name="name"/> (known at start, before it listens).</summary>
    public bool Serves(string name) => _served.Contains(name);

    /// <summary>Where <paramref name="name"/> answers; null when this process does not serve it, or does not listen on a socket (yet).</summary>
    public LocalAddress? AddressOf(string name) => _addresses.GetValueOrDefault(name);

    /// <summary>
    /// The server's first plain-HTTP address (else its first), as Kestrel reports it, with a wildcard
    /// host (<c>+</c>, <c>*</c>, <c>0.0.0.0</c>, <c>[::]</c>) or <c>localhost</c> made 127.0.0.1: the
    /// one spelling of this machine that every later check compares against. Null when unbound.
    /// </summary>
    public static Uri? FromBinding(IEnumerable<string> addresses)
    {
        var all = addresses.ToList();
        var chosen = all.FirstOrDefault(a => a.StartsWith("http://", StringComparison.OrdinalIgnoreCase)) ?? all.FirstOrDefault();
        var separator = chosen?.IndexOf("://", StringComparison.Ordinal) ?? -1;
        if (chosen is null || separator < 0)
        {
            return null;
        }
        var scheme = chosen[..separator];
        var rest = chosen[(separator + 3)..];
        var authority = rest.Split('/')[0];
        var colon = authority.LastIndexOf(':');
        var (host, port) = colon > authority.LastIndexOf(']') ? (authority[..colon], authority[(colon + 1)..]) : (authority, "");
        if (ThisMachine.Contains(host))
        {
            host = "127.0.0.1";
        }
        var text = port.Length > 0 ? $"{scheme}://{host}:{port}" : $"{scheme}://{host}";
        return Uri.TryCreate(text, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https" ? uri : null;
    }

    /// <summary>
    /// Tells this process's clients where each declared upstream answers, once the server listens:
    /// after every hosted service started, Kestrel included, and before the application counts as
    /// started, which is when workers begin to call. An upstream with no address (an in-memory server)
    /// stays unknown, as it is to a client with no URL.
    /// </summary>
    private sealed class Announce(IServer server, IServiceProvider services, LocalUpstreams upstreams) : IHostedLifecycleService
    {
        public Task StartedAsync(CancellationToken cancellationToken)
        {
            var root = FromBinding(server.Features.Get<IServerAddressesFeature>()?.Addresses ?? []);
            foreach (var upstream in upstreams._upstreams)
            {
                if (upstream.Locate(services, root) is { } address)
                {
                    upstreams._addresses[upstream.Name] = address;
                }
            }
            return Task.CompletedTask;
        }

        public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
