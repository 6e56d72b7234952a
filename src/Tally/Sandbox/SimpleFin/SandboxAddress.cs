using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Options;
using Tally.Hosting;

namespace Tally.Sandbox.SimpleFin;

/// <summary>
/// Where the SimpleFIN sandbox is reached, for the URLs it hands out: <c>Sandbox:SimpleFin:PublicUrl</c>,
/// else the address the server itself is bound to. Never a request's Host header: anyone can write
/// that, and a setup token built from it would send Tally (or a person) wherever the writer chose.
/// </summary>
public sealed class SandboxAddress(IOptions<Tally.Sandbox.SandboxOptions> options, IServer server)
{
    private Uri? _root;

    /// <summary>The sandbox's root (<c>.../sandbox/simplefin</c>); null while the server has no address (not started, or in memory).</summary>
    public Uri? Root => _root ??= Resolve();

    /// <summary>Scheme, host and port of <see cref="Root"/>: the one plain-HTTP origin Tally's own SimpleFIN client may call.</summary>
    public Uri? Origin => Root is { } root ? new Uri(root.GetLeftPart(UriPartial.Authority)) : null;

    private Uri? Resolve()
    {
        var configured = options.Value.SimpleFin.PublicUrl;
        var at = configured is not null ? Parse(configured) : LocalUpstreams.FromBinding(server.Features.Get<IServerAddressesFeature>()?.Addresses ?? []);
        return at is null ? null : new Uri(at.AbsoluteUri.TrimEnd('/') + SimpleFinSandbox.BasePath);
    }

    /// <summary>An absolute http(s) URL with no user, query or fragment; null otherwise.</summary>
    public static Uri? Parse(string url) =>
        Uri.TryCreate(url, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https"
            && uri.UserInfo.Length == 0 && uri.Query.Length == 0 && uri.Fragment.Length == 0 && !url.Contains('#', StringComparison.Ordinal)
            ? uri
            : null;
}

/// <summary>
/// At most <c>Sandbox:SimpleFin:MaxSetupTokensPerHour</c> setup tokens in any hour, for this instance
/// (the sandbox keeps its users in memory, so its bound is per instance too).
/// </summary>
public sealed class SetupTokenWindow(IOptions<Tally.Sandbox.SandboxOptions> options, TimeProvider clock)
{
    private static readonly TimeSpan Window = TimeSpan.FromHours(1);

    private readonly Queue<DateTimeOffset> _issued = new();
    private readonly Lock _lock = new();

    /// <summary>Takes a place in the window; null when taken, else how long until one frees.</summary>
    public TimeSpan? TryTake()
    {
        var now = clock.GetUtcNow();
        lock (_lock)
        {
            while (_issued.TryPeek(out var oldest) && oldest <= now - Window)
            {
                _issued.Dequeue();
            }
            if (Wait(_issued, now, options.Value.SimpleFin.MaxSetupTokensPerHour) is { } wait)
            {
                return wait;
            }
            _issued.Enqueue(now);
            return null;
        }
    }

    /// <summary>With these tokens issued in the last hour (oldest first): null if one more fits, else the wait until one does.</summary>
    public static TimeSpan? Wait(IReadOnlyCollection<DateTimeOffset> issuedThisHour, DateTimeOffset now, int max) =>
        issuedThisHour.Count < max ? null : issuedThisHour.ElementAt(issuedThisHour.Count - max) + Window - now;
}
