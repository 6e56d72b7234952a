using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Antiforgery;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Authentication.OpenIdConnect;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Tally.Data;
using Tally.Hosting;

namespace Tally.Dashboard;

/// <summary>
/// A one-time sign-in code for the console: <c>base64url(payload).base64url(HMAC-SHA256)</c> signed with
/// <c>Auth:SigningKey</c>, valid for minutes. Single use is the schema's: spending a code inserts its
/// nonce into <c>signin_codes_used</c>, whose primary key refuses a second use on every instance.
/// </summary>
public static class SignInCode
{
    public const int MaxLength = 2048;
    private static readonly byte[] Purpose = Encoding.UTF8.GetBytes("tally-console-signin:");

    public sealed record Payload(Guid Sub, string? Name, string[] Roles, string Nonce, long Expires);

    public static string Create(string signingKey, Guid sub, string? name, IEnumerable<string> roles, TimeSpan lifetime, DateTimeOffset now)
    {
        var payload = new Payload(sub, name, [.. roles], Convert.ToHexString(RandomNumberGenerator.GetBytes(16)), now.Add(lifetime).ToUnixTimeSeconds());
        var body = Base64Url(JsonSerializer.SerializeToUtf8Bytes(payload));
        return $"{body}.{Base64Url(Sign(signingKey, body))}";
    }

    /// <summary>The payload of a code whose signature holds and whose time has not run out; null otherwise.</summary>
    public static Payload? Read(string signingKey, string? code, DateTimeOffset now)
    {
        if (code is not { Length: > 0 and <= MaxLength } || code.Split('.') is not [var body, var signature])
        {
            return null;
        }
        try
        {
            if (!CryptographicOperations.FixedTimeEquals(Sign(signingKey, body), FromBase64Url(signature)))
            {
                return null;
            }
            var payload = JsonSerializer.Deserialize<Payload>(FromBase64Url(body));
            return payload is { Roles: not null, Nonce.Length: > 0 } && payload.Expires > now.ToUnixTimeSeconds() ? payload : null;
        }
        catch (Exception e) when (e is FormatException or JsonException)
        {
            return null;
        }
    }

    private static byte[] Sign(string key, string body) =>
        HMACSHA256.HashData(Encoding.UTF8.GetBytes(key), (byte[])[.. Purpose, .. Encoding.ASCII.GetBytes(body)]);

    private static string Base64Url(byte[] bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    private static byte[] FromBase64Url(string text)
    {
        var padded = text.Replace('-', '+').Replace('_', '/');
        return Convert.FromBase64String(padded.PadRight(padded.Length + ((4 - (padded.Length % 4)) % 4), '='));
    }
}

/// <summary>
/// Browser sign-in for the console: a cookie session (Data Protection keys shared by every instance
/// in the database, so any instance reads any session), opened by a one-time code (Development and
/// embedded: <c>scripts/start.sh</c> prints the link) or by OpenID Connect when <c>Auth:Authority</c>
/// and <c>Auth:ClientId</c> are set. Bearer tokens keep working for the API. A change asked with the
/// cookie must carry the antiforgery token (header <c>X-CSRF-TOKEN</c>): a bearer token is never sent
/// by a browser on its own, a cookie is.
/// </summary>
public static partial class SignIn
{
    public const string CookieScheme = CookieAuthenticationDefaults.AuthenticationScheme;
    public const string OidcScheme = OpenIdConnectDefaults.AuthenticationScheme;
    public const string AntiforgeryHeader = Auth.AntiforgeryHeader;
    public static readonly TimeSpan CodeLifetime = TimeSpan.FromMinutes(10);
    private static readonly string[] ConsoleRoles = [Roles.Viewer, Roles.Operator, Roles.Admin];

    public sealed record Session(string Sub, string? Name, string[] Roles, string AntiforgeryToken);

    public static WebApplication MapSignIn(this WebApplication app)
    {
        app.MapGet("/dashboard/signin", SignInAsync).AllowAnonymous().ExcludeFromDescription();
        app.MapPost("/dashboard/signout", (Delegate)SignOutAsync).AllowAnonymous().ExcludeFromDescription();
        app.MapGet("/dashboard/session", CurrentSession).RequireAuthorization(Roles.Viewer).ExcludeFromDescription();
        return app;
    }

    /// <summary>With <c>code</c>: spend it and open the session. Without: OpenID Connect when configured.</summary>
    internal static async Task<IResult> SignInAsync(
        HttpContext http, IDbContextFactory<TallyDb> dbs, IOptions<AuthOptions> auth, TimeProvider clock, ILoggerFactory loggers, string? code = null)
    {
        var options = auth.Value;
        if (code is null)
        {
            return options.UsesOidcSignIn
                ? TypedResults.Challenge(new AuthenticationProperties { RedirectUri = "/dashboard" }, [OidcScheme])
                : Problems.Unauthorized("SIGNIN.CODE_REQUIRED", "Open the sign-in link scripts/start.sh printed, or make one with `dotnet run --project src/Tally -- signin-link`.");
        }
        var now = clock.GetUtcNow();
        if (options.SigningKey is not { } key || SignInCode.Read(key, code, now) is not { } payload
            || payload.Sub == Guid.Empty || payload.Roles.Length == 0 || !payload.Roles.All(r => ConsoleRoles.Contains(r)))
        {
            return Problems.Unauthorized("SIGNIN.CODE_INVALID", "The sign-in code is not valid or has expired: make a new one.");
        }
        await using (var db = await dbs.CreateDbContextAsync(http.RequestAborted))
        {
            try
            {
                await db.Database.ExecuteSqlAsync($"INSERT INTO signin_codes_used (nonce, used_at) VALUES ({payload.Nonce}, {now.UtcDateTime})", http.RequestAborted);
            }
            catch (Exception e) when (DbErrors.IsUniqueViolation(e))
            {
                return Problems.Unauthorized("SIGNIN.CODE_USED", "This sign-in code was used already: make a new one.");
            }
        }
        var identity = new ClaimsIdentity(
            [
                new Claim("sub", payload.Sub.ToString()),
                .. payload.Name is { Length: > 0 and <= 100 } name ? [new Claim("name", name)] : Array.Empty<Claim>(),
                .. payload.Roles.Select(r => new Claim("role", r)),
            ],
            CookieScheme, "sub", "role");
        await http.SignInAsync(CookieScheme, new ClaimsPrincipal(identity));
        LogSignedIn(loggers.CreateLogger(typeof(SignIn)), payload.Sub, string.Join(',', payload.Roles));
        return TypedResults.Redirect("/dashboard");
    }

    internal static async Task<IResult> SignOutAsync(HttpContext http)
    {
        await http.SignOutAsync(CookieScheme);
        return TypedResults.Redirect("/dashboard/signin");
    }

    internal static Ok<Session> CurrentSession(HttpContext http, IAntiforgery antiforgery) =>
        TypedResults.Ok(new Session(
            http.User.FindFirst("sub")?.Value ?? "",
            http.User.FindFirst("name")?.Value,
            [.. http.User.FindAll("role").Select(c => c.Value)],
            antiforgery.GetAndStoreTokens(http).RequestToken ?? ""));

    /// <summary>
    /// Changes asked with the session cookie need the antiforgery token; bearer calls do not. Runs after
    /// authentication, so it knows which one the caller used.
    /// </summary>
    public static WebApplication UseCookieAntiforgery(this WebApplication app)
    {
        app.Use(async (http, next) =>
        {
            var method = http.Request.Method;
            if (http.User.Identity is { IsAuthenticated: true, AuthenticationType: CookieScheme }
                && !(HttpMethods.IsGet(method) || HttpMethods.IsHead(method) || HttpMethods.IsOptions(method))
                && !http.Request.Path.StartsWithSegments("/dashboard/signout", StringComparison.Ordinal))
            {
                var antiforgery = http.RequestServices.GetRequiredService<IAntiforgery>();
                if (!await antiforgery.IsRequestValidAsync(http))
                {
                    await Problems.Write(http, StatusCodes.Status400BadRequest, "ANTIFORGERY.INVALID",
                        $"A change asked with the console's session needs its antiforgery token in the {AntiforgeryHeader} header.");
                    return;
                }
            }
            await next(http);
        });
        return app;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Console session opened for {Sub} with roles {Roles}")]
    private static partial void LogSignedIn(ILogger logger, Guid sub, string roles);
}
