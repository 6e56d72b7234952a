using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Extensions.Options;

namespace Tally.Hosting;

/// <summary>
/// What ASP.NET Core refuses before an endpoint runs, answered in the client's terms. A JSON body that
/// does not read names the field by its path as sent (<c>amount</c>, <c>byDay[2]</c>, <c>[0].active</c>)
/// and says what it must be; a query, route or header value that does not parse names the parameter as
/// the client spells it; a missing body, a wrong content type (415) and a body too large (413) each get
/// their own answer. Never the framework's message: it names CLR types (<c>"AllowanceRequest body"</c>).
/// </summary>
internal sealed partial class BadRequestHandler(IProblemDetailsService problems, IOptions<Microsoft.AspNetCore.Http.Json.JsonOptions> json, IOptions<TallyOptions> tally)
    : IExceptionHandler
{
    public async ValueTask<bool> TryHandleAsync(HttpContext httpContext, Exception exception, CancellationToken cancellationToken)
    {
        if (exception is not BadHttpRequestException bad)
        {
            return false;
        }
        var problem = Describe(httpContext, bad);
        httpContext.Response.StatusCode = problem.Status ?? bad.StatusCode;
        return await problems.TryWriteAsync(new ProblemDetailsContext { HttpContext = httpContext, ProblemDetails = problem });
    }

    private ProblemDetails Describe(HttpContext http, BadHttpRequestException bad)
    {
        if (bad.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return Problems.PayloadTooLarge(RequestLimits.LimitOf(http, tally.Value));
        }
        if (bad.StatusCode == StatusCodes.Status415UnsupportedMediaType)
        {
            return new ProblemDetails
            {
                Status = StatusCodes.Status415UnsupportedMediaType,
                Title = "The request body is not JSON.",
                Detail = "Send the body as JSON, with Content-Type: application/json.",
                Extensions = { ["code"] = "UNSUPPORTED_MEDIA_TYPE" },
            };
        }
        if (bad.InnerException is JsonException error)
        {
            return Unreadable("The request body could not be read as this endpoint's JSON.", FieldOf(error.Path), MessageFor(http, error));
        }
        if (FailedParameter().Match(bad.Message) is { Success: true } failed && ParameterOf(http, failed.Groups["name"].Value) is { } parameter)
        {
            var missing = !failed.Groups["verb"].Value.StartsWith("Failed", StringComparison.Ordinal);
            return IsBody(http, parameter)
                ? Unreadable("The request needs a JSON body.", "$", "is required: send a JSON body")
                : Unreadable("A parameter could not be read.", ClientName(parameter), missing ? "is required" : Expectation(parameter.ParameterType));
        }
        return Unreadable("The request could not be read.", "$", "could not be read");
    }

    private static HttpValidationProblemDetails Unreadable(string detail, string field, string message) =>
        new(new Dictionary<string, string[]> { [field] = [message] })
        {
            Status = StatusCodes.Status400BadRequest,
            Title = "The request could not be read.",
            Detail = detail,
            Extensions = { ["code"] = "BAD_REQUEST" },
        };

    private string MessageFor(HttpContext http, JsonException error)
    {
        if (error is JsonFieldException)
        {
            return error.Message;
        }
        // The reader's own failures (not JSON at all, too deep) arrive wrapped; a value of the wrong
        // type or format arrives without a JSON exception inside. The reader names no depth failure but
        // in its message, and its path stops at the field holding the deep value.
        if (error.InnerException is JsonException reader)
        {
            return reader.Message.Contains("maximum configured depth", StringComparison.Ordinal)
                ? $"is nested more than {MaxDepth} levels deep"
                : "is not valid JSON";
        }
        var body = EndpointOf(http)?.Metadata.GetMetadata<IAcceptsMetadata>()?.RequestType;
        return Expectation(body is null ? null : TypeAt(body, Segments(error.Path)));
    }

    /// <summary>The endpoint that refused the request: the exception handler clears it from the context, and keeps it here.</summary>
    private static Endpoint? EndpointOf(HttpContext http) =>
        http.Features.Get<IExceptionHandlerFeature>()?.Endpoint ?? http.GetEndpoint();

    private int MaxDepth => json.Value.SerializerOptions.MaxDepth is > 0 and var depth ? depth : 64;

    /// <summary>The field as the client sent it: <c>$.byDay[2]</c> is <c>byDay[2]</c>, <c>$[0].active</c> is <c>[0].active</c>, the body itself is <c>$</c>.</summary>
    internal static string FieldOf(string? path) => path switch
    {
        null or "" or "$" => "$",
        _ when path.StartsWith("$.", StringComparison.Ordinal) => path[2..],
        _ when path.StartsWith('$') => path[1..],
        _ => path,
    };

    /// <summary>A JSON path's steps: property names (strings) and array indexes (ints).</summary>
    internal static List<object> Segments(string? path)
    {
        var steps = new List<object>();
        var i = path?.StartsWith('$') == true ? 1 : 0;
        while (path is not null && i < path.Length)
        {
            int end;
            if (path[i] == '.')
            {
                end = path.IndexOfAny(['.', '['], i + 1);
                end = end < 0 ? path.Length : end;
                steps.Add(path[(i + 1)..end]);
            }
            else if (path.AsSpan(i).StartsWith("['"))
            {
                end = path.IndexOf("']", i + 2, StringComparison.Ordinal);
                if (end < 0)
                {
                    break;
                }
                steps.Add(path[(i + 2)..end]);
                end += 2;
            }
            else if (path[i] == '[' && (end = path.IndexOf(']', i)) > 0 && int.TryParse(path.AsSpan(i + 1, end - i - 1), out var index))
            {
                steps.Add(index);
                end++;
            }
            else
            {
                break;
            }
            i = end;
        }
        return steps;
    }

    /// <summary>The .NET type the body holds at a path, through the same serializer metadata that read it; null when the path leaves the contract.</summary>
    private Type? TypeAt(Type root, List<object> steps)
    {
        var options = json.Value.SerializerOptions;
        var type = root;
        foreach (var step in steps)
        {
            var info = options.GetTypeInfo(Nullable.GetUnderlyingType(type) ?? type);
            type = (step, info.Kind) switch
            {
                (int, JsonTypeInfoKind.Enumerable) => info.ElementType,
                (string, JsonTypeInfoKind.Dictionary) => info.ElementType,
                (string name, JsonTypeInfoKind.Object) => info.Properties.FirstOrDefault(p => string.Equals(p.Name, name,
                    options.PropertyNameCaseInsensitive ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal))?.PropertyType,
                _ => null,
            };
            if (type is null)
            {
                return null;
            }
        }
        return type;
    }

    /// <summary>What a value of this type must look like, in JSON and query-string terms.</summary>
    private string Expectation(Type? type)
    {
        var t = type is null ? null : Nullable.GetUnderlyingType(type) ?? type;
        return t switch
        {
            null => "has the wrong type or format for this field",
            _ when t == typeof(string) => "must be a string",
            _ when t == typeof(bool) => "must be true or false",
            _ when t == typeof(Guid) => "must be a UUID",
            _ when t == typeof(decimal) || t == typeof(double) || t == typeof(float) => "must be a number",
            _ when t.IsPrimitive => "must be a whole number within range",
            _ when t == typeof(DateTime) || t == typeof(DateTimeOffset) => "must be an ISO 8601 date and time",
            _ when t == typeof(DateOnly) => "must be an ISO 8601 date (yyyy-mm-dd)",
            _ when t == typeof(TimeOnly) || t == typeof(TimeSpan) => "must be a time (hh:mm:ss)",
            _ when t.IsEnum => "is not one of the values this field takes",
            _ when t == typeof(JsonElement) => "must be JSON",
            _ when json.Value.SerializerOptions.GetTypeInfo(t).Kind == JsonTypeInfoKind.Enumerable => "must be an array",
            _ => "must be an object",
        };
    }

    /// <summary>The handler's parameter a binding failure names (the endpoint carries its method).</summary>
    private static ParameterInfo? ParameterOf(HttpContext http, string name) =>
        EndpointOf(http)?.Metadata.GetMetadata<MethodInfo>()?.GetParameters().FirstOrDefault(p => p.Name == name);

    private static bool IsBody(HttpContext http, ParameterInfo parameter) =>
        parameter.GetCustomAttributes().OfType<IFromBodyMetadata>().Any()
        || EndpointOf(http)?.Metadata.GetMetadata<IAcceptsMetadata>()?.RequestType == parameter.ParameterType;

    /// <summary>The name the client uses: <c>[FromQuery(Name = "x")]</c> and its kin, else the parameter's own.</summary>
    private static string ClientName(ParameterInfo parameter)
    {
        var attributes = parameter.GetCustomAttributes().ToList();
        return attributes.OfType<IFromQueryMetadata>().FirstOrDefault()?.Name
            ?? attributes.OfType<IFromRouteMetadata>().FirstOrDefault()?.Name
            ?? attributes.OfType<IFromHeaderMetadata>().FirstOrDefault()?.Name
            ?? parameter.Name
            ?? "$";
    }

    // The request delegate factory's messages ("Failed to bind parameter \"int? limit\" from \"abc\".",
    // "Required parameter \"CreateUser body\" was not provided from body.", "Implicit body inferred for
    // parameter ..."): the quoted part ends with the parameter's name, which is all that is used.
    [GeneratedRegex("""^(?<verb>Failed to bind|Required|Implicit body inferred for) parameter "(?:[^"]* )?(?<name>[A-Za-z_@][A-Za-z0-9_]*)"\s""")]
    private static partial Regex FailedParameter();
}
