using System.Collections.Concurrent;

namespace Tally.Hosting;

/// <summary>
/// Where an upstream that this same process serves (a sandbox) is reached, by name. A sandbox says
/// where it answers once it knows; a feature's client asks for the name when no URL is configured
/// and calls it over HTTP like any other upstream. Neither knows the other: this is the only thing
/// they share.
/// </summary>
public sealed class LocalUpstreams
{
    /// <summary>The fake SimpleFIN bridge's root (<c>.../sandbox/simplefin</c>).</summary>
    public const string SimpleFin = "simplefin";

    private readonly ConcurrentDictionary<string, Func<Uri?>> _roots = new(StringComparer.Ordinal);

    /// <summary>Whether fake upstreams are served by this instance: <c>Sandbox:Enabled</c>, else on in Development only.</summary>
    /// <remarks>
    /// Never decided by the storage in use: a Production instance on SQLite would otherwise serve the
    /// fake core, its reset route included, and sync real users' balances from it.
    /// </remarks>
    public static bool Enabled(IConfiguration configuration, IHostEnvironment environment) =>
        configuration.GetValue<bool?>("Sandbox:Enabled") ?? environment.IsDevelopment();

    /// <summary>Records where <paramref name="name"/> answers; <paramref name="root"/> may answer null until the server is bound.</summary>
    public void Serve(string name, Func<Uri?> root) => _roots[name] = root;

    /// <summary>The root of <paramref name="name"/> served by this process; null when it serves none or does not know its address yet.</summary>
    public Uri? Root(string name) => _roots.TryGetValue(name, out var root) ? root() : null;
}
