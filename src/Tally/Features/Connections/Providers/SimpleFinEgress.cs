using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Options;
using Tally.Hosting;

namespace Tally.Features.Connections.Providers;

/// <summary>
/// Where Tally's SimpleFIN client may send a request, and with it a secret. A setup token is user
/// input, so the claim URL in it (and the access URL a server answers) is checked twice:
/// <list type="number">
/// <item>as written (<see cref="AllowsUrl"/>): HTTPS to a host of <c>SimpleFin:AllowedHosts</c>, or
/// the sandbox's own origin, character for character. 127.1, 0x7f.0.0.1, 2130706433, [::1],
/// localhost. are all this machine to <see cref="Uri"/>, and none of them is the sandbox's address;</item>
/// <item>at connect time (<see cref="ConnectAsync"/>, the HTTP handler's connect callback), on the
/// addresses the host name resolved to: a public address, or the sandbox's own address and port
/// for a request to the sandbox. A name that resolves to loopback or a private network is refused,
/// whatever it is called.</item>
/// </list>
/// </summary>
public sealed class SimpleFinEgress(IOptions<SimpleFinOptions> options, LocalUpstreams upstreams)
{
    /// <summary>The one plain-HTTP origin allowed: <c>SimpleFin:SandboxUrl</c>, else the built-in sandbox's when loopback is allowed.</summary>
    public Uri? SandboxOrigin =>
        options.Value.SandboxUrl is { } configured ? OriginOf(configured)
        : options.Value.AllowLoopback && upstreams.AddressOf(LocalUpstreams.SimpleFin) is { } served ? new Uri(served.BaseUrl.GetLeftPart(UriPartial.Authority))
        : null;

    /// <summary>Whether a request may be sent to <paramref name="url"/>, judged on the text as written.</summary>
    public bool Allows(string? url) => AllowsUrl(url, options.Value.EffectiveHosts, SandboxOrigin);

    /// <summary>The connect callback: connects only to the addresses <see cref="AllowsAddress"/> allows, else throws <see cref="RefusedException"/>.</summary>
    public async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, CancellationToken ct)
    {
        var url = context.InitialRequestMessage.RequestUri?.OriginalString;
        var host = context.DnsEndPoint.Host.TrimStart('[').TrimEnd(']');
        var sandbox = SandboxOrigin;
        if (!AllowsUrl(url, options.Value.EffectiveHosts, sandbox))
        {
            throw new RefusedException();
        }
        var candidates = IPAddress.TryParse(host, out var literal) ? [literal] : await Dns.GetHostAddressesAsync(host, ct);
        var toSandbox = sandbox is not null && IsSandbox(url!, sandbox);
        var allowed = candidates.Where(a => AllowsAddress(a, context.DnsEndPoint.Port, toSandbox ? sandbox : null)).ToArray();
        if (allowed.Length == 0)
        {
            throw new RefusedException();
        }
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(allowed, context.DnsEndPoint.Port, ct);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>A connection this policy refused; the HTTP client wraps it in an <see cref="HttpRequestException"/>.</summary>
    public sealed class RefusedException() : IOException("SimpleFIN: destination not allowed.");

    public static bool IsRefusal(Exception e)
    {
        for (Exception? x = e; x is not null; x = x.InnerException)
        {
            if (x is RefusedException)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>
    /// The text-level rule: HTTPS to one of <paramref name="httpsHosts"/>, or exactly the sandbox's
    /// scheme and authority (host and port as the sandbox writes them). Pure, for tests.
    /// </summary>
    public static bool AllowsUrl(string? url, IReadOnlyList<string> httpsHosts, Uri? sandboxOrigin)
    {
        if (url is null || !Uri.TryCreate(url, UriKind.Absolute, out var uri) || WrittenAuthority(url) is not { } written)
        {
            return false;
        }
        if (sandboxOrigin is not null && IsSandbox(url, sandboxOrigin))
        {
            return true;
        }
        return uri.Scheme == Uri.UriSchemeHttps
            && httpsHosts.Contains(written.Host, StringComparer.OrdinalIgnoreCase)
            && string.Equals(uri.IdnHost, written.Host, StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>
    /// The connect-level rule: a public address, or (for a request to the sandbox) the sandbox's own
    /// address and port. Pure, for tests.
    /// </summary>
    public static bool AllowsAddress(IPAddress address, int port, Uri? sandboxOrigin)
    {
        if (sandboxOrigin is not null && port == sandboxOrigin.Port)
        {
            // A sandbox named by an address is that address only; one named by a host name (set by
            // an operator in SimpleFin:SandboxUrl) is wherever that name leads.
            return !IPAddress.TryParse(sandboxOrigin.IdnHost.TrimStart('[').TrimEnd(']'), out var own) || Same(own, address);
        }
        return IsPublic(address);
    }

    /// <summary>Scheme, host and port of an http(s) URL with nothing else (a path of "/" at most); null otherwise.</summary>
    public static Uri? OriginOf(string url) =>
        Uri.TryCreate(url, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https" && uri.UserInfo.Length == 0
            && uri.AbsolutePath == "/" && uri.Query.Length == 0 && uri.Fragment.Length == 0 && WrittenAuthority(url) is not null
            ? new Uri(uri.GetLeftPart(UriPartial.Authority))
            : null;

    /// <summary>Whether an address is on the public internet: not loopback, private, link-local, shared, documentation, multicast or reserved.</summary>
    public static bool IsPublic(IPAddress address)
    {
        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }
        if (address.AddressFamily == AddressFamily.InterNetwork)
        {
            var b = address.GetAddressBytes();
            return !(b[0] is 0 or 10 or 127 or >= 224
                || (b[0] == 100 && b[1] is >= 64 and <= 127)
                || (b[0] == 169 && b[1] == 254)
                || (b[0] == 172 && b[1] is >= 16 and <= 31)
                || (b[0] == 192 && b[1] == 0 && b[2] is 0 or 2)
                || (b[0] == 192 && b[1] == 88 && b[2] == 99)
                || (b[0] == 192 && b[1] == 168)
                || (b[0] == 198 && b[1] is 18 or 19)
                || (b[0] == 198 && b[1] == 51 && b[2] == 100)
                || (b[0] == 203 && b[1] == 0 && b[2] == 113));
        }
        if (address.AddressFamily != AddressFamily.InterNetworkV6)
        {
            return false;
        }
        var v6 = address.GetAddressBytes();
        // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address: that one decides.
        if (v6[0] == 0x00 && v6[1] == 0x64 && v6[2] == 0xff && v6[3] == 0x9b && v6.AsSpan(4, 8).IndexOfAnyExcept((byte)0) < 0)
        {
            return IsPublic(new IPAddress(v6.AsSpan(12, 4)));
        }
        if (v6[0] == 0x20 && v6[1] == 0x02)
        {
            return IsPublic(new IPAddress(v6.AsSpan(2, 4)));
        }
        return !(address.Equals(IPAddress.IPv6Any) || address.Equals(IPAddress.IPv6Loopback)
            || v6.AsSpan(0, 12).IndexOfAnyExcept((byte)0) < 0 // ::/96, IPv4-compatible (deprecated)
            || address.IsIPv6LinkLocal || address.IsIPv6SiteLocal || address.IsIPv6Multicast || address.IsIPv6UniqueLocal
            || (v6[0] == 0x20 && v6[1] == 0x01 && v6[2] == 0x0d && v6[3] == 0xb8) // 2001:db8::/32, documentation
            || (v6[0] == 0x20 && v6[1] == 0x01 && v6[2] == 0x00 && v6[3] == 0x00) // 2001::/32, Teredo
            || (v6[0] == 0x01 && v6[1] == 0x00 && v6.AsSpan(2, 6).IndexOfAnyExcept((byte)0) < 0)); // 100::/64, discard
    }

    private static bool IsSandbox(string url, Uri sandboxOrigin) =>
        Uri.TryCreate(url, UriKind.Absolute, out var uri) && uri.Scheme == sandboxOrigin.Scheme
        && WrittenAuthority(url) is { } written
        && string.Equals(written.Port.Length == 0 ? written.Host : $"{written.Host}:{written.Port}", sandboxOrigin.Authority, StringComparison.OrdinalIgnoreCase);

    private static bool Same(IPAddress a, IPAddress b) =>
        (a.IsIPv4MappedToIPv6 ? a.MapToIPv4() : a).Equals(b.IsIPv4MappedToIPv6 ? b.MapToIPv4() : b);

    /// <summary>Host and port exactly as written in the URL (user info dropped), before any parser's normalising.</summary>
    private static (string Host, string Port)? WrittenAuthority(string url)
    {
        var start = url.IndexOf("://", StringComparison.Ordinal);
        if (start <= 0)
        {
            return null;
        }
        var rest = url[(start + 3)..];
        var end = rest.IndexOfAny(['/', '\\', '?', '#']);
        var authority = end < 0 ? rest : rest[..end];
        authority = authority[(authority.LastIndexOf('@') + 1)..];
        var colon = authority.LastIndexOf(':');
        return colon > authority.LastIndexOf(']') ? (authority[..colon], authority[(colon + 1)..]) : (authority, "");
    }
}
