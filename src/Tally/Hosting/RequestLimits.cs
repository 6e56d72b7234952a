using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.Extensions.Options;

namespace Tally.Hosting;

/// <summary>
/// How large a request body may be: <c>Tally:MaxRequestBodyBytes</c> (1 MiB) for every request, or
/// what an endpoint asks for with <see cref="WithRequestBodyLimit{TBuilder}"/> (the admin bulk loads).
/// A larger body is answered 413 <c>PAYLOAD_TOO_LARGE</c>: before any of it is read when it announces
/// its length, and by the server as soon as it passes the limit when it is sent chunked.
/// </summary>
public static class RequestLimits
{
    public static WebApplicationBuilder AddRequestLimits(this WebApplicationBuilder builder)
    {
        var options = builder.Configuration.Read<TallyOptions>(TallyOptions.Section);
        // The server's own limit holds for requests no endpoint matches; UseRequestLimits sets each matched one's.
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Limits.MaxRequestBodySize = Math.Max(1024, options.MaxRequestBodyBytes));
        return builder;
    }

    public static WebApplication UseRequestLimits(this WebApplication app)
    {
        var options = app.Services.GetRequiredService<IOptions<TallyOptions>>();
        var problems = app.Services.GetRequiredService<IProblemDetailsService>();
        app.Use(async (http, next) =>
        {
            var limit = LimitOf(http, options.Value);
            if (http.Request.ContentLength > limit)
            {
                http.Response.StatusCode = StatusCodes.Status413PayloadTooLarge;
                await problems.WriteAsync(new ProblemDetailsContext { HttpContext = http, ProblemDetails = Problems.PayloadTooLarge(limit) });
                return;
            }
            if (http.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } server)
            {
                server.MaxRequestBodySize = limit;
            }
            await next(http);
        });
        return app;
    }

    /// <summary>The endpoint asks for more (or less) than the default.</summary>
    public static TBuilder WithRequestBodyLimit<TBuilder>(this TBuilder builder, long bytes)
        where TBuilder : IEndpointConventionBuilder =>
        builder.WithMetadata(new BodyLimit(bytes));

    internal static long LimitOf(HttpContext http, TallyOptions options) =>
        (http.Features.Get<Microsoft.AspNetCore.Diagnostics.IExceptionHandlerFeature>()?.Endpoint ?? http.GetEndpoint())?.Metadata.GetMetadata<BodyLimit>()?.MaxRequestBodySize ?? options.MaxRequestBodyBytes;

    private sealed record BodyLimit(long? MaxRequestBodySize) : IRequestSizeLimitMetadata;
}
