using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Tally.Hosting;

/// <summary>
/// A JSON value the API refuses, with a message for the client; <see cref="JsonException.Path"/> (filled
/// in by System.Text.Json) says which field. The bad-request handler answers it as a field error.
/// </summary>
public sealed class JsonFieldException(string message) : JsonException(message);

/// <summary>
/// The HTTP API's <c>decimal</c>: a JSON number (or a string holding one, as the web defaults allow) is
/// read only when a decimal holds it exactly. The built-in converter rounds
/// <c>0.1000000000000000000000000000001</c> to 28 digits without a word; a money system refuses instead.
/// Writing is unchanged: the same <see cref="Utf8JsonWriter.WriteNumberValue(decimal)"/> as the built-in one.
/// </summary>
public sealed class ExactDecimalConverter : JsonConverter<decimal>
{
    public override decimal Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        var fromString = reader.TokenType == JsonTokenType.String
            && (options.NumberHandling & JsonNumberHandling.AllowReadingFromString) != 0;
        if (reader.TokenType != JsonTokenType.Number && !fromString)
        {
            throw new JsonFieldException("must be a number");
        }
        if (fromString)
        {
            return Parse(reader.GetString()!);
        }
        // The reader's own parse, so that an exact number reads exactly as the built-in converter reads it.
        return Checked(RawText(ref reader), reader.TryGetDecimal(out var value) ? value : null);
    }

    public override void Write(Utf8JsonWriter writer, decimal value, JsonSerializerOptions options)
    {
        if ((options.NumberHandling & JsonNumberHandling.WriteAsString) != 0)
        {
            writer.WriteStringValue(value.ToString(CultureInfo.InvariantCulture));
            return;
        }
        writer.WriteNumberValue(value);
    }

    public override decimal ReadAsPropertyName(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        Parse(reader.GetString()!);

    public override void WriteAsPropertyName(Utf8JsonWriter writer, decimal value, JsonSerializerOptions options) =>
        writer.WritePropertyName(value.ToString(CultureInfo.InvariantCulture));

    /// <summary>The decimal a JSON number (as text) stands for, or a <see cref="JsonFieldException"/> when no decimal is exactly that number.</summary>
    public static decimal Parse(string text) =>
        Checked(text, decimal.TryParse(text, NumberStyles.AllowLeadingSign | NumberStyles.AllowDecimalPoint | NumberStyles.AllowExponent,
            CultureInfo.InvariantCulture, out var value) ? value : null);

    /// <summary>
    /// <paramref name="parsed"/> when it is exactly the number <paramref name="text"/> says. Parsers round what
    /// a decimal cannot hold, so what they kept is compared with what was sent.
    /// </summary>
    private static decimal Checked(string text, decimal? parsed)
    {
        if (Normalize(text) is not { } wanted)
        {
            throw new JsonFieldException("must be a number");
        }
        if (parsed is not { } value)
        {
            throw new JsonFieldException("is beyond the largest amount Tally can hold (79228162514264337593543950335)");
        }
        if (Normalize(value.ToString(CultureInfo.InvariantCulture)) != wanted)
        {
            throw new JsonFieldException("has more significant digits than Tally can hold exactly (28); it would have to be rounded");
        }
        return value;
    }

    private static string RawText(ref Utf8JsonReader reader) =>
        reader.HasValueSequence ? Encoding.ASCII.GetString(reader.ValueSequence) : Encoding.ASCII.GetString(reader.ValueSpan);

    /// <summary>
    /// A JSON number as (sign, significant digits, exponent of the last digit), so that 1.50, 15e-1 and
    /// 1.5 compare equal; zero is ("", 0) whatever its sign. Null when the text is not a JSON number.
    /// </summary>
    private static (bool Negative, string Digits, long Exponent)? Normalize(string text)
    {
        var i = 0;
        var negative = i < text.Length && text[i] == '-';
        if (negative)
        {
            i++;
        }
        var integer = Digits(text, ref i);
        if (integer.Length == 0 || (integer.Length > 1 && integer[0] == '0'))
        {
            return null;
        }
        var fraction = "";
        if (i < text.Length && text[i] == '.')
        {
            i++;
            fraction = Digits(text, ref i);
            if (fraction.Length == 0)
            {
                return null;
            }
        }
        long exponent = 0;
        if (i < text.Length && text[i] is 'e' or 'E')
        {
            i++;
            var sign = i < text.Length && text[i] is '+' or '-' ? text[i++] : '+';
            var start = i;
            var digits = Digits(text, ref i).TrimStart('0');
            if (i == start)
            {
                return null;
            }
            // An exponent this long would overflow a long; no decimal but zero comes near it anyway.
            exponent = (digits.Length > 17 ? (long)1e17 : long.Parse("0" + digits, CultureInfo.InvariantCulture)) * (sign == '-' ? -1 : 1);
        }
        if (i != text.Length)
        {
            return null;
        }
        var all = (integer + fraction).TrimStart('0');
        var significant = all.TrimEnd('0');
        if (significant.Length == 0)
        {
            return (false, "", 0);
        }
        return (negative, significant, exponent - fraction.Length + (all.Length - significant.Length));
    }

    private static string Digits(string text, ref int i)
    {
        var start = i;
        while (i < text.Length && char.IsAsciiDigit(text[i]))
        {
            i++;
        }
        return text[start..i];
    }
}

public static class HttpJson
{
    /// <summary>
    /// The HTTP API's JSON: the web defaults, decimals read exactly or refused, strings without NUL, and a nesting limit of
    /// 64 levels (deeper bodies are refused as unreadable before any endpoint runs).
    /// </summary>
    public static WebApplicationBuilder AddHttpJson(this WebApplicationBuilder builder)
    {
        builder.Services.ConfigureHttpJsonOptions(o =>
        {
            o.SerializerOptions.Converters.Add(new ExactDecimalConverter());
            o.SerializerOptions.Converters.Add(new NulFreeStringConverter());
            o.SerializerOptions.MaxDepth = 64;
        });
        return builder;
    }
}
