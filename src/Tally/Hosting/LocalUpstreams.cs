using System.Collections.Concurrent;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Tally.Hosting;

/// <summary>An upstream this process serves itself (a sandbox), by the name its clients know it by (<c>t24</c>, <c>simplefin</c>).</summary>
public sealed record LocalUpstream(string Name);

/// <summary>Where a <see cref="LocalUpstream"/> answers: a plain base address, and the key it expects (empty when none).</summary>
public sealed record LocalAddress(Uri BaseUrl, string ApiKey);

/// <summary>
/// Fake upstreams this process serves on its own HTTP port (the sandboxes, in embedded mode). Whoever
/// serves one declares it when registering (<see cref="Serve"/>) and fills in its address once the
/// server listens (<see cref="Listening"/>); a client without a configured URL reads
/// <see cref="AddressOf"/> and calls it over HTTP like any upstream. Neither side knows the other:
/// the client does not know a sandbox exists, and the sandbox knows no client.
/// </summary>
public sealed class LocalUpstreams(IEnumerable<LocalUpstream> served)
{
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

    /// <summary>Declares that this process serves <paramref name="name"/>; its address follows once the server listens.</summary>
    public static IServiceCollection Serve(IServiceCollection services, string name)
    {
        services.TryAddSingleton<LocalUpstreams>();
        services.AddSingleton(new LocalUpstream(name));
        return services;
    }

    /// <summary>Whether this process serves <paramref name="name"/> (known at start, before it listens).</summary>
    public bool Serves(string name) => _served.Contains(name);

    /// <summary>The server listens: <paramref name="name"/> answers at <paramref name="baseUrl"/>.</summary>
    public void Listening(string name, Uri baseUrl, string apiKey = "") => _addresses[name] = new LocalAddress(baseUrl, apiKey);

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
}
