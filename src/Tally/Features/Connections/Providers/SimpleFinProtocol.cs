using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Tally.Features.Connections.Providers;

/// <summary>
/// The SimpleFIN protocol's data, read without I/O: setup tokens, access URLs and Account Sets
/// (both the 1.0 shape with <c>errors</c> and <c>org</c>, and the later one with <c>errlist</c> and
/// <c>connections</c>). Balances are numeric strings and are read as exact decimals.
/// </summary>
public static partial class SimpleFinProtocol
{
    private const int MaxMessages = 3;
    private const int MaxMessageLength = 200;
    private const int MaxMetadataLength = 4_000;

    private static readonly UTF8Encoding Strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>A setup token is the base64 of a claim URL.</summary>
    public static Uri? DecodeSetupToken(string? token)
    {
        if (string.IsNullOrWhiteSpace(token) || token.Length > 2_000)
        {
            return null;
        }
        var text = token.Trim().Replace('-', '+').Replace('_', '/');
        text = text.PadRight(text.Length + ((4 - (text.Length % 4)) % 4), '=');
        try
        {
            var decoded = Strict.GetString(Convert.FromBase64String(text)).Trim();
            // A claim URL is printable ASCII; anything else (spaces, control characters) is not one.
            return decoded.All(c => c is > ' ' and < (char)127)
                && Uri.TryCreate(decoded, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https" && uri.Host.Length > 0
                ? uri
                : null;
        }
        catch (DecoderFallbackException)
        {
            return null;
        }
        catch (FormatException)
        {
            return null;
        }
    }

    /// <summary>An access URL carries basic-auth credentials: <c>https://user:pass@host/path</c>.</summary>
    public static AccessUrl? ParseAccessUrl(string? text)
    {
        if (string.IsNullOrWhiteSpace(text) || !Uri.TryCreate(text.Trim(), UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
        {
            return null;
        }
        var colon = uri.UserInfo.IndexOf(':', StringComparison.Ordinal);
        if (colon <= 0)
        {
            return null;
        }
        var root = new UriBuilder(uri) { UserName = "", Password = "", Query = "", Fragment = "" }.Uri;
        return new AccessUrl(root, Uri.UnescapeDataString(uri.UserInfo[..colon]), Uri.UnescapeDataString(uri.UserInfo[(colon + 1)..]));
    }

    /// <summary>The parts of an access URL: where to go, and the credentials sent in a header (never in the URL).</summary>
    public sealed record AccessUrl(Uri Root, string Username, string Password)
    {
        public Uri Accounts => new($"{Root.AbsoluteUri.TrimEnd('/')}/accounts?balances-only=1");

        public string BasicAuth => Convert.ToBase64String(Encoding.UTF8.GetBytes($"{Username}:{Password}"));

        public override string ToString() => Root.GetLeftPart(UriPartial.Authority);
    }

    public sealed record Error(string Code, string Message);

    /// <summary>Reads an Account Set; <paramref name="redact"/> scrubs provider messages before they go anywhere.</summary>
    public static FetchResult ReadAccountSet(JsonElement root, Func<string, string> redact)
    {
        if (root.ValueKind != JsonValueKind.Object
            || !root.TryGetProperty("accounts", out var accounts) || accounts.ValueKind != JsonValueKind.Array)
        {
            return new FetchResult.Failed(ProviderFailure.ContractMismatch("SimpleFIN answered something that is not an Account Set."));
        }
        if (ReadErrors(root, redact) is not { } errors)
        {
            return new FetchResult.Failed(ProviderFailure.ContractMismatch("SimpleFIN answered an error list Tally cannot read."));
        }
        if (Classify(errors.List, errors.Legacy, accounts.GetArrayLength()) is { } failure)
        {
            return new FetchResult.Failed(failure);
        }
        var connections = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
        if (root.TryGetProperty("connections", out var list) && list.ValueKind == JsonValueKind.Array)
        {
            foreach (var c in list.EnumerateArray().Where(c => c.ValueKind == JsonValueKind.Object))
            {
                if (Text(c, "conn_id") is { } connId)
                {
                    connections[connId] = c;
                }
            }
        }
        var read = new List<ProviderAccountData>(accounts.GetArrayLength());
        var unreadable = 0;
        foreach (var account in accounts.EnumerateArray())
        {
            if (ReadAccount(account, connections, redact) is { } data)
            {
                read.Add(data);
            }
            else
            {
                unreadable++;
            }
        }
        return new FetchResult.Fetched(read, unreadable);
    }

    /// <summary>
    /// What the errors of an Account Set mean for a balances-only sync (codes per the protocol:
    /// <c>gen.</c> general, <c>con.</c> connection, <c>act.</c> account; an unknown subcode counts as its
    /// bare prefix). Null when the answer can be applied.
    /// </summary>
    public static ProviderFailure? Classify(IReadOnlyList<Error> errlist, IReadOnlyList<string> legacy, int accountCount)
    {
        if (errlist.Count == 0)
        {
            return legacy.Count == 0 ? null
                : accountCount > 0 ? ProviderFailure.PartialData(Describe(legacy))
                : ProviderFailure.Unavailable(Describe(legacy));
        }
        string Messages(Func<Error, bool> which) => Describe(errlist.Where(which).Select(e => e.Message).ToList());
        static bool General(Error e) => e.Code.StartsWith("gen.", StringComparison.Ordinal) || !(e.Code.StartsWith("con.", StringComparison.Ordinal) || e.Code.StartsWith("act.", StringComparison.Ordinal));

        if (errlist.Any(e => e.Code == "gen.auth"))
        {
            return ProviderFailure.AuthRequired(Messages(e => e.Code == "gen.auth"), credentialsRejected: true);
        }
        if (errlist.Any(e => e.Code == "gen.api"))
        {
            return ProviderFailure.ContractMismatch(Messages(e => e.Code == "gen.api"));
        }
        if (errlist.Any(General))
        {
            return ProviderFailure.Unavailable(Messages(General));
        }
        // A bank connection needs the user at the bridge; our access URL itself is still good.
        if (errlist.Any(e => e.Code == "con.auth") && accountCount == 0)
        {
            return ProviderFailure.AuthRequired(Messages(e => e.Code == "con.auth"), credentialsRejected: false);
        }
        // act.missingdata is about transactions, which a balances-only sync does not read.
        var incomplete = errlist.Where(e => e.Code != "act.missingdata").ToList();
        return incomplete.Count == 0 ? null : ProviderFailure.PartialData(Describe(incomplete.Select(e => e.Message).ToList()));
    }

    private static (List<Error> List, List<string> Legacy)? ReadErrors(JsonElement root, Func<string, string> redact)
    {
        var list = new List<Error>();
        var legacy = new List<string>();
        if (root.TryGetProperty("errlist", out var errlist) && errlist.ValueKind != JsonValueKind.Null)
        {
            if (errlist.ValueKind != JsonValueKind.Array)
            {
                return null;
            }
            foreach (var e in errlist.EnumerateArray())
            {
                if (e.ValueKind != JsonValueKind.Object || Text(e, "code") is not { } code)
                {
                    return null;
                }
                list.Add(new Error(code.Trim().ToLowerInvariant(), Sanitize(Text(e, "msg") ?? Text(e, "message") ?? code, redact)));
            }
        }
        if (root.TryGetProperty("errors", out var errors) && errors.ValueKind == JsonValueKind.Array)
        {
            legacy.AddRange(errors.EnumerateArray().Where(e => e.ValueKind == JsonValueKind.String).Select(e => Sanitize(e.GetString()!, redact)));
        }
        // A server in migration sends both lists with the same messages; errlist is the one with codes.
        return list.Count > 0 ? (list, []) : (list, legacy);
    }

    private static ProviderAccountData? ReadAccount(JsonElement a, Dictionary<string, JsonElement> connections, Func<string, string> redact)
    {
        if (a.ValueKind != JsonValueKind.Object
            || Text(a, "id") is not { Length: > 0 and <= 200 } id
            || Text(a, "currency") is not { } currency || !IsCurrency(currency)
            || Amount(a, "balance") is not { } balance)
        {
            return null;
        }
        decimal? available = null;
        if (a.TryGetProperty("available-balance", out var av) && av.ValueKind != JsonValueKind.Null)
        {
            if (Amount(a, "available-balance") is not { } value)
            {
                return null;
            }
            available = value;
        }
        DateTime? asOf = null;
        if (a.TryGetProperty("balance-date", out var date) && date.ValueKind == JsonValueKind.Number)
        {
            if (!date.TryGetInt64(out var seconds) || seconds is < 0 or > 253_402_300_799)
            {
                return null;
            }
            asOf = DateTimeOffset.FromUnixTimeSeconds(seconds).UtcDateTime;
        }
        var name = Sanitize(Text(a, "name") ?? id, redact);
        var connection = Text(a, "conn_id") is { } connId && connections.TryGetValue(connId, out var c) ? c : (JsonElement?)null;
        return new ProviderAccountData(id, name, AccountTypes.FromName(name), null, balance, available, currency, true, asOf, Metadata(a, connection, redact));
    }

    /// <summary>What else the provider said about the account (institution, connection, extra), compact; never credentials.</summary>
    private static string? Metadata(JsonElement a, JsonElement? connection, Func<string, string> redact)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            foreach (var name in (string[])["org", "conn_id", "conn_name", "extra"])
            {
                if (a.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Null)
                {
                    writer.WritePropertyName(name);
                    value.WriteTo(writer);
                }
            }
            if (connection is { } c)
            {
                writer.WritePropertyName("connection");
                c.WriteTo(writer);
            }
            writer.WriteEndObject();
        }
        var json = redact(Encoding.UTF8.GetString(buffer.ToArray()));
        return json == "{}" ? null : json.Length <= MaxMetadataLength ? json : null;
    }

    private static string? Text(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    /// <summary>A numeric string ("-12.30") or, leniently, a JSON number; never via double.</summary>
    public static decimal? Amount(JsonElement e, string name)
    {
        if (!e.TryGetProperty(name, out var v))
        {
            return null;
        }
        return v.ValueKind switch
        {
            JsonValueKind.String => ParseAmount(v.GetString()),
            JsonValueKind.Number => ParseAmount(v.GetRawText()),
            _ => null,
        };
    }

    public static decimal? ParseAmount(string? text) =>
        text is { Length: > 0 and <= 40 }
        && decimal.TryParse(text.Trim(), NumberStyles.AllowLeadingSign | NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var value)
            ? value
            : null;

    /// <summary>An ISO 4217 code, or a custom currency's URL (the protocol allows both).</summary>
    public static bool IsCurrency(string currency) =>
        IsoCurrency().IsMatch(currency)
        || (currency.Length <= 200 && Uri.TryCreate(currency, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https");

    /// <summary>Provider text shown to users: printable, short, with anything secret taken out.</summary>
    public static string Sanitize(string text, Func<string, string> redact)
    {
        var clean = new string(text.Select(c => char.IsControl(c) ? ' ' : c).ToArray()).Trim();
        clean = redact(clean);
        return clean.Length <= MaxMessageLength ? clean : clean[..MaxMessageLength];
    }

    private static string Describe(IReadOnlyList<string> messages) =>
        "SimpleFIN reported: " + string.Join("; ", messages.Distinct(StringComparer.Ordinal).Take(MaxMessages));

    [GeneratedRegex("^[A-Z]{3}$")]
    private static partial Regex IsoCurrency();
}
