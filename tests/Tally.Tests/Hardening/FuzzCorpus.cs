using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Tally.Tests.Hardening;

/// <summary>
/// A value to send. For a body field, <see cref="Raw"/> is JSON text spliced in as the field's value
/// (null: the field is left out); for a path or query parameter it is the text before URL escaping.
/// <see cref="Label"/> names a value too long to show.
/// </summary>
public sealed record FuzzValue(string? Raw, string? Label = null)
{
    public static readonly FuzzValue Absent = new(null, "(left out)");

    public string Shown => Label ?? FuzzCorpus.Show(Raw ?? "");
}

/// <summary>
/// Malformed and extreme values, by JSON type and by what a field's name says it holds (a time, a
/// time zone, a currency, an id). Nothing here names a route: a field is fuzzed by its schema and its name.
/// </summary>
public static class FuzzCorpus
{
    public const int HugeLength = 100 * 1024;
    public const int DeepNesting = 10_000;

    private static readonly string Huge = new('a', HugeLength);
    private static readonly string DeepArrays = new string('[', DeepNesting) + new string(']', DeepNesting);
    private static readonly string DeepObjects = string.Concat(Enumerable.Repeat("{\"a\":", 1_000)) + "1" + new string('}', 1_000);
    private static readonly string LongArray = "[" + string.Join(',', Enumerable.Repeat("1", 100_000)) + "]";
    private static readonly string ManyKeys = "{" + string.Join(',', Enumerable.Range(0, 1_000).Select(i => $"\"k{i}\":{i}")) + "}";

    /// <summary>Any JSON field, whatever its type: wrong types, emptiness, size, depth, control characters.</summary>
    private static readonly FuzzValue[] Universal =
    [
        FuzzValue.Absent,
        new("null"), new("true"), new("false"), new("0"), new("-1"), new("\"\""), new("{}"), new("[]"), new("[null]"),
        new("{\"a\":{\"b\":[1,\"x\",null]}}"),
        new(Quote(Huge), "\"a\" x 100 kB"),
        new(DeepArrays, "10,000 nested arrays"),
        new(DeepObjects, "1,000 nested objects"),
        new(LongArray, "array of 100,000 numbers"),
        new(Quote("\u0000")), new(Quote("a\u0000b")), new(Quote("\u001b[2J\u001b[31mred")), new(Quote("\u202eexe.txt")),
        new("\"\\ud800\"", "lone surrogate \\ud800"), new("\"\\udfff\\ud800\"", "reversed surrogate pair"),
        new("1e400"), new(Quote("NaN")), new(Quote("Infinity")),
    ];

    private static readonly string[] Texts =
    [
        " ", "\t\r\n", new('x', 65), new('x', 101), new('x', 201), new('x', 4_097), "😀", string.Concat(Enumerable.Repeat("😀", 300)),
        "'; DROP TABLE users; --", "%_\\", "../../etc/passwd", "<script>alert(1)</script>", "null", "0", "-1", "1e30", "ı", "\uFEFF",
        "\u00A0", "${jndi:ldap://x/a}", "%s%n%x", "\\u0000", "\u0085", "\u2028", "A\u030A",
    ];

    private static readonly string[] Numbers =
    [
        "-0", "-0.0", "1", "0.5", "1.005", "0.001", "0.1000000000000000000000000000001", "1e-30", "1e30", "1E+2", "1e308", "-1e308",
        "79228162514264337593543950335", "79228162514264337593543950336", "-79228162514264337593543950335", "-79228162514264337593543950336",
        "2147483647", "2147483648", "-2147483648", "-2147483649", "9223372036854775807", "9223372036854775808", "-9223372036854775809",
        "18446744073709551616", "99999999999999.99", "9999999999999999999.99", "123456789012345678901234567890.123",
        "0.00000000000000000000000000001", "31", "32", "-2", "367", "10000",
        "\"12.5\"", "\"NaN\"", "\"-Infinity\"", "\"1e30\"", "\"0x10\"", "\" 1\"", "\"1,5\"", "\"79228162514264337593543950336\"",
    ];

    private static readonly string[] Booleans = ["\"true\"", "\"false\"", "1", "\"yes\"", "\"True\""];

    private static readonly string[] Uuids =
    [
        "not-a-uuid", "00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff", "4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e",
        "4b0e1b9c8d594cf59d2e2f1a2b3c4d5e", "{4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e}", "4B0E1B9C-8D59-4CF5-9D2E-2F1A2B3C4D5E",
        "4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5ex", "00000000-0000-0000-0000-00000000000G", "(4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e)",
    ];

    /// <summary>The calendar's edges, impossible dates, DST gaps and folds, and garbage.</summary>
    private static readonly string[] Dates =
    [
        "0001-01-01T00:00:00", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00-12:00",
        "9999-12-31T23:59:59", "9999-12-31T23:59:59Z", "9999-12-31T23:59:59+14:00", "9999-12-31T23:59:59-12:00", "9999-12-31T23:59:59.9999999-12:00",
        "2026-02-30", "2026-02-29T00:00:00Z", "2028-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T23:59:60Z",
        "2026-03-29T02:30:00", "2026-10-25T02:30:00", "2026-03-08T02:30:00-05:00", "1970-01-01T00:00:00Z", "1969-12-31T23:59:59Z",
        "2038-01-19T03:14:08Z", "2026-01-01", "2026-01-01T00:00:00.123456789012Z", "+002026-01-01T00:00:00Z", "-0001-01-01T00:00:00Z",
        "2026-W01-1", "01/02/2026", "now", "2026-01-01T00:00:00+25:00", "2026-01-01T00:00:00+14:01", "2026-01-01T00:00:00 +05:45",
        "1700000000", "garbage", "2026-01-01T00:00:00Z\u0000",
    ];

    /// <summary>Zone names that exist only as files, links, legacy aliases, Windows names, paths, and odd offsets.</summary>
    private static readonly string[] TimeZones =
    [
        "Factory", "posixrules", "right/UTC", "US/Eastern", "../../etc/passwd", "/etc/localtime", "/usr/share/zoneinfo/UTC", "", " UTC", "utc",
        "Local", "Etc/GMT+14", "Etc/GMT-14", "Etc/GMT+12", "Pacific/Kiritimati", "Pacific/Apia", "Pacific/Chatham", "Asia/Kathmandu",
        "America/St_Johns", "Antarctica/Troll", "Europe/Dublin", "Africa/Casablanca", "Asia/Tehran", "Australia/Lord_Howe", "EST5EDT", "CET",
        "Z", "+05:00", "GMT+5", "Eastern Standard Time", "America/Argentina/ComodRivadavia", "Europe/Paris\u0000", "Europe/../Europe/Paris",
        "zone.tab", "tzdata.zi", "leapseconds", "SystemV/AST4", "Europe/Kyiv", "Europe/Kiev",
    ];

    private static readonly string[] Currencies =
    [
        "usd", "XXX", "XTS", "ZZZ", "US", "USDD", "BTC", "JPY", "BHD", "CLF", "UYW", "XAU", "EUR", "€", "ÜSD", " USD", "USD\u0000", "U\u0000D",
    ];

    /// <summary>Text for a path or query parameter, before URL escaping.</summary>
    private static readonly string[] Parameters =
    [
        "", " ", "-1", "0", "1", "2147483647", "2147483648", "-2147483649", "9223372036854775808", "1.5", "1e3", "abc", " 1", "0x10", "NaN",
        "١٢", "\u0000", "\u001b[2J", "\u202e", "😀", "'; DROP TABLE users; --", "%", "_", "*", "..", "a/b", "?x=1", "#", new('x', 10_000),
        "00000000-0000-0000-0000-000000000000", "4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e", "not-a-uuid", "4b0e1b9c8d594cf59d2e2f1a2b3c4d5e",
        "{4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e}", "4B0E1B9C-8D59-4CF5-9D2E-2F1A2B3C4D5E",
    ];

    /// <summary>Values for one body field: every universal value, those of its type and of what its name says, and twists of its valid value.</summary>
    public static IReadOnlyList<FuzzValue> ForJson(string name, FieldSchema schema, JsonNode? valid, IEnumerable<string> realIds)
    {
        var values = new List<FuzzValue>(Universal);
        var kind = KindOf(schema, valid);
        switch (kind)
        {
            case "string":
                values.AddRange(Texts.Select(t => new FuzzValue(Quote(t))));
                break;
            case "integer" or "number":
                values.AddRange(Numbers.Select(n => new FuzzValue(n)));
                break;
            case "boolean":
                values.AddRange(Booleans.Select(b => new FuzzValue(b)));
                break;
            case "array":
                var first = valid is JsonArray { Count: > 0 } items ? items[0]?.ToJsonString() ?? "null" : "\"x\"";
                values.Add(new("[" + string.Join(',', Enumerable.Repeat(first, 1_000)) + "]", $"[{Show(first)} x 1,000]"));
                values.Add(new($"[{first},{first}]"));
                values.Add(new($"[[{first}]]"));
                values.Add(new("[1,\"x\",null,{},[]]"));
                break;
            case "object" or "any":
                values.Add(new(ManyKeys, "object with 1,000 keys"));
                values.Add(new("{\"\":\"\"}"));
                values.Add(new("{\"__proto__\":{\"x\":1}}"));
                values.Add(new("{" + Quote(Huge) + ":1}", "object with a 100 kB key"));
                values.Add(new("{\"a\":1,\"a\":2}"));
                break;
        }
        if (schema.IsUuid || LooksLikeUuid(valid))
        {
            values.AddRange(Uuids.Select(u => new FuzzValue(Quote(u))));
            values.AddRange(realIds.Select(id => new FuzzValue(Quote(id), $"real id {id}")));
        }
        values.AddRange(ByName(name).Select(v => new FuzzValue(Quote(v))));
        values.AddRange(Twists(valid));
        return Distinct(values);
    }

    /// <summary>Values for a path or query parameter (raw text, escaped when the URL is built).</summary>
    public static IReadOnlyList<FuzzValue> ForParameter(string name, IEnumerable<string> realValues)
    {
        var values = Parameters.Select(p => new FuzzValue(p)).ToList();
        values.AddRange(ByName(name).Select(v => new FuzzValue(v)));
        values.AddRange(realValues.Select(v => new FuzzValue(v, $"real {Show(v)}")));
        return Distinct(values);
    }

    /// <summary>What a field's name says it holds: a time, a time zone, a currency.</summary>
    private static IEnumerable<string> ByName(string name)
    {
        var lower = name.ToLowerInvariant();
        if (lower.Contains("zone", StringComparison.Ordinal) || lower is "tz")
        {
            return TimeZones;
        }
        if (lower.Contains("currency", StringComparison.Ordinal))
        {
            return Currencies;
        }
        if (name.EndsWith("At", StringComparison.Ordinal) || lower.EndsWith("date", StringComparison.Ordinal) || lower.EndsWith("time", StringComparison.Ordinal)
            || lower is "from" or "to" or "since" or "until" or "before")
        {
            return Dates;
        }
        return [];
    }

    /// <summary>The valid value bent a little: case, padding, a trailing NUL, a sign, a huge scale.</summary>
    private static IEnumerable<FuzzValue> Twists(JsonNode? valid)
    {
        if (valid is not JsonValue value)
        {
            yield break;
        }
        if (value.TryGetValue<string>(out var text))
        {
            yield return new(Quote(text.ToLowerInvariant()));
            yield return new(Quote(text.ToUpperInvariant()));
            yield return new(Quote($" {text} "));
            yield return new(Quote(text + "\u0000"));
            yield return new(Quote(text.Replace('I', 'İ').Replace('i', 'ı')));
        }
        else if (value.GetValueKind() == JsonValueKind.Number)
        {
            var raw = value.ToJsonString();
            yield return new(raw.StartsWith('-') ? raw[1..] : "-" + raw);
            yield return new(raw + "00000000000000000000000000000000");
            yield return new(Quote(raw));
        }
    }

    private static string KindOf(FieldSchema schema, JsonNode? valid) => schema.Kind != "any" ? schema.Kind : valid switch
    {
        JsonObject => "object",
        JsonArray => "array",
        JsonValue v => v.GetValueKind() switch
        {
            JsonValueKind.String => "string",
            JsonValueKind.Number => "number",
            JsonValueKind.True or JsonValueKind.False => "boolean",
            _ => "any",
        },
        _ => "any",
    };

    private static bool LooksLikeUuid(JsonNode? valid) => valid is JsonValue v && v.TryGetValue<string>(out var s) && Guid.TryParseExact(s, "D", out _);

    private static List<FuzzValue> Distinct(List<FuzzValue> values)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        return values.Where(v => seen.Add(v.Raw ?? "\u0001absent")).ToList();
    }

    /// <summary>JSON string text, escaped by hand so that lone surrogates and control characters go out exactly as written.</summary>
    public static string Quote(string text)
    {
        var json = new StringBuilder(text.Length + 2).Append('"');
        foreach (var c in text)
        {
            switch (c)
            {
                case '"':
                    json.Append("\\\"");
                    break;
                case '\\':
                    json.Append("\\\\");
                    break;
                default:
                    if (c < 0x20 || c == 0x7f || char.IsSurrogate(c))
                    {
                        json.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    }
                    else
                    {
                        json.Append(c);
                    }
                    break;
            }
        }
        return json.Append('"').ToString();
    }

    /// <summary>A value as a report shows it: control and direction characters escaped, at most <paramref name="max"/> characters.</summary>
    public static string Show(string text, int max = 80)
    {
        var shown = new StringBuilder();
        foreach (var c in text.Length > max ? text[..max] : text)
        {
            if (char.IsControl(c) || char.IsSurrogate(c) || c is >= '\u202a' and <= '\u202e' or >= '\u2066' and <= '\u2069' or '\ufeff')
            {
                shown.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
            }
            else
            {
                shown.Append(c);
            }
        }
        return text.Length > max ? $"{shown}... ({text.Length} chars)" : shown.ToString();
    }
}
