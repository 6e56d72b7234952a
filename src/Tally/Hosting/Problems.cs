using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Tally.Hosting;

/// <summary>
/// RFC 7807 answers with a stable <c>code</c>. Endpoints return these as typed results; the
/// exception handler below turns what escapes (bad JSON, bugs) into the same shape.
/// </summary>
public static class Problems
{
    public static ProblemHttpResult Of(int status, string code, string detail) =>
        TypedResults.Problem(detail: detail, statusCode: status, extensions: new Dictionary<string, object?> { ["code"] = code });

    public static ProblemHttpResult NotFound(string code, string detail) => Of(StatusCodes.Status404NotFound, code, detail);

    public static ProblemHttpResult Conflict(string code, string detail) => Of(StatusCodes.Status409Conflict, code, detail);

    public static ProblemHttpResult BadRequest(string code, string detail) => Of(StatusCodes.Status400BadRequest, code, detail);

    public static ValidationProblem Invalid(IDictionary<string, string[]> errors) =>
        TypedResults.ValidationProblem(errors, detail: "The request has invalid fields.",
            extensions: new Dictionary<string, object?> { ["code"] = "VALIDATION_FAILED" });

    public static ValidationProblem Invalid(string field, string message) =>
        Invalid(new Dictionary<string, string[]> { [field] = [message] });

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
                    415 => "UNSUPPORTED_MEDIA_TYPE",
                    _ => "INTERNAL_ERROR",
                };
            }
            extensions["traceId"] = context.HttpContext.TraceIdentifier;
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

    /// <summary>Malformed JSON, a wrong type or a missing body: a 400 problem, never a 500.</summary>
    private sealed class BadRequestHandler(IProblemDetailsService problems) : IExceptionHandler
    {
        public async ValueTask<bool> TryHandleAsync(HttpContext httpContext, Exception exception, CancellationToken cancellationToken)
        {
            if (exception is not BadHttpRequestException bad)
            {
                return false;
            }
            httpContext.Response.StatusCode = bad.StatusCode;
            return await problems.TryWriteAsync(new ProblemDetailsContext
            {
                HttpContext = httpContext,
                ProblemDetails =
                {
                    Status = bad.StatusCode,
                    Title = "The request could not be read.",
                    Detail = bad.Message,
                    Extensions = { ["code"] = bad.StatusCode == 413 ? "PAYLOAD_TOO_LARGE" : "BAD_REQUEST" },
                },
            });
        }
    }
}
