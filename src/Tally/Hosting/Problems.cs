using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;

namespace Tally.Hosting;

/// <summary>
/// RFC 7807 answers with a stable <c>code</c>. Endpoints return these as typed results;
/// <see cref="BadRequestHandler"/> answers what ASP.NET Core refuses before an endpoint runs in the
/// same shape, and status code pages give a bare status (404, 405, 413) its problem.
/// </summary>
public static class Problems
{
    public static ProblemHttpResult Of(int status, string code, string detail) =>
        TypedResults.Problem(detail: detail, statusCode: status, extensions: new Dictionary<string, object?> { ["code"] = code });

    public static ProblemHttpResult NotFound(string code, string detail) => Of(StatusCodes.Status404NotFound, code, detail);

    public static ProblemHttpResult Conflict(string code, string detail) => Of(StatusCodes.Status409Conflict, code, detail);

    public static ProblemHttpResult BadRequest(string code, string detail) => Of(StatusCodes.Status400BadRequest, code, detail);

    public static ProblemHttpResult Unauthorized(string code, string detail) => Of(StatusCodes.Status401Unauthorized, code, detail);

    /// <summary>A problem written by middleware, outside any endpoint, in the same shape.</summary>
    public static async Task Write(HttpContext http, int status, string code, string detail)
    {
        http.Response.StatusCode = status;
        await http.RequestServices.GetRequiredService<IProblemDetailsService>().WriteAsync(new ProblemDetailsContext
        {
            HttpContext = http,
            ProblemDetails = new ProblemDetails { Status = status, Detail = detail, Extensions = { ["code"] = code } },
        });
    }

    public static ValidationProblem Invalid(IDictionary<string, string[]> errors) =>
        TypedResults.ValidationProblem(errors, detail: "The request has invalid fields.",
            extensions: new Dictionary<string, object?> { ["code"] = "VALIDATION_FAILED" });

    public static ValidationProblem Invalid(string field, string message) =>
        Invalid(new Dictionary<string, string[]> { [field] = [message] });

    /// <summary>413 <c>PAYLOAD_TOO_LARGE</c>: a request body above the limit that applies to it.</summary>
    public static ProblemDetails PayloadTooLarge(long? limit) => new()
    {
        Status = StatusCodes.Status413PayloadTooLarge,
        Title = "The request body is too large.",
        Detail = limit is { } bytes ? $"A request body here may be at most {bytes} bytes." : "The request body is larger than this server accepts.",
        Extensions = { ["code"] = "PAYLOAD_TOO_LARGE" },
    };

    public static WebApplicationBuilder AddTallyProblems(this WebApplicationBuilder builder)
    {
        builder.Services.AddProblemDetails(options => options.CustomizeProblemDetails = context =>
        {
            var extensions = context.ProblemDetails.Extensions;
            if (!extensions.ContainsKey("code"))
            {
                extensions["code"] = context.ProblemDetails.Status switch
                {
                    400 => "BAD_REQUEST",
                    401 => "UNAUTHORIZED",
                    403 => "FORBIDDEN",
                    404 => "NOT_FOUND",
                    405 => "METHOD_NOT_ALLOWED",
                    413 => "PAYLOAD_TOO_LARGE",
                    415 => "UNSUPPORTED_MEDIA_TYPE",
                    _ => "INTERNAL_ERROR",
                };
            }
            // The W3C trace id, as in the request's spans and log scopes (a request in no trace keeps the server's request id).
            extensions["traceId"] = Tracing.CurrentTraceId() ?? context.HttpContext.TraceIdentifier;
        });
        builder.Services.AddExceptionHandler<BadRequestHandler>();
        // Binding failures throw so that BadRequestHandler can answer them as problems.
        builder.Services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
        return builder;
    }

    public static WebApplication UseTallyProblems(this WebApplication app)
    {
        app.UseExceptionHandler();
        app.UseStatusCodePages();
        return app;
    }
}
