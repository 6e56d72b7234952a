using System.Text.Json;
using System.Text.Json.Serialization;

namespace Tally.Hosting;

/// <summary>
/// The text the API reads. Bodies are UTF-8, as JSON is (RFC 8259): a body declaring another charset
/// is answered 415, never read with a guess (an unknown charset name used to end in a 500).
/// NUL never enters Tally: PostgreSQL's text cannot hold it (it answers an encoding error), logs and
/// exports cut strings at it, and no name, key or code needs it. JSON strings holding one are refused
/// as a field error by <see cref="NulFreeStringConverter"/>, query values here.
/// </summary>
public static class RequestText
{
    public const string NulMessage = "must not contain NUL characters";

    public static IApplicationBuilder UseRequestText(this IApplicationBuilder app) => app.Use(async (http, next) =>
    {
        if (http.Request.ContentType is { } contentType
            && Microsoft.Net.Http.Headers.MediaTypeHeaderValue.TryParse(contentType, out var media)
            && media.Charset.HasValue && !IsUtf8(media.Charset.Value!))
        {
            await Problems.Of(StatusCodes.Status415UnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE",
                "The request body must be UTF-8 (Content-Type: application/json; charset=utf-8).").ExecuteAsync(http);
            return;
        }
        foreach (var (name, values) in http.Request.Query)
        {
            if (name.Contains('\0') || values.Any(v => v is not null && v.Contains('\0')))
            {
                await Problems.Invalid(name.Replace("\0", "", StringComparison.Ordinal), NulMessage).ExecuteAsync(http);
                return;
            }
        }
        await next(http);
    });

    private static bool IsUtf8(string charset) =>
        charset.Trim('"').Equals("utf-8", StringComparison.OrdinalIgnoreCase) || charset.Trim('"').Equals("utf8", StringComparison.OrdinalIgnoreCase);
}

/// <summary>The HTTP API's <c>string</c>: read as the built-in converter reads it, refused when it holds a NUL.</summary>
public sealed class NulFreeStringConverter : JsonConverter<string>
{
    public override string? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType != JsonTokenType.String)
        {
            throw new JsonFieldException("must be a string");
        }
        return Checked(reader.GetString()!);
    }

    public override void Write(Utf8JsonWriter writer, string value, JsonSerializerOptions options) => writer.WriteStringValue(value);

    public override string ReadAsPropertyName(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        Checked(reader.GetString()!);

    public override void WriteAsPropertyName(Utf8JsonWriter writer, string value, JsonSerializerOptions options) =>
        writer.WritePropertyName(value);

    private static string Checked(string value) =>
        value.Contains('\0') ? throw new JsonFieldException(RequestText.NulMessage) : value;
}
