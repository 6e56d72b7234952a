using System.Collections.Concurrent;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Tally.Hosting;

/// <summary>An upstream this process serves itself (a sandbox), by the name its clients know it by (<c>t24</c>).</summary>
public sealed record LocalUpstream(string Name);

/// <summary>Where a <see cref="LocalUpstream"/> answers: a plain base address, and the key it expects.</summary>
public sealed record LocalAddress(Uri BaseUrl, string ApiKey);

/// <summary>
/// Fake upstreams this process serves on its own HTTP port (the sandbox, in embedded mode). Whoever
/// serves one declares it when registering (<see cref="Serve"/>) and fills in its address once the
/// server listens (<see cref="Listening"/>); a client without a configured URL reads
/// <see cref="AddressOf"/> and calls it over HTTP like any upstream. Neither side knows the other:
/// the client does not know a sandbox exists, and the sandbox knows no client.
/// </summary>
public sealed class LocalUpstreams(IEnumerable<LocalUpstream> served)
{
    private readonly HashSet<string> _served = served.Select(u => u.Name).ToHashSet(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, LocalAddress> _addresses = new(StringComparer.Ordinal);

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
    public void Listening(string name, Uri baseUrl, string apiKey) => _addresses[name] = new LocalAddress(baseUrl, apiKey);

    /// <summary>Where <paramref name="name"/> answers; null when this process does not serve it, or does not listen on a socket (yet).</summary>
    public LocalAddress? AddressOf(string name) => _addresses.GetValueOrDefault(name);
}
