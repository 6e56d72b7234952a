using System.ComponentModel.DataAnnotations;
using System.IdentityModel.Tokens.Jwt;
using System.Security.Claims;
using System.Text;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.AspNetCore.Authentication.OpenIdConnect;
using Microsoft.IdentityModel.Tokens;

namespace Tally.Hosting;

/// <summary>
/// JWT bearer auth. Embedded and development: HS256 with <c>Auth:SigningKey</c>, issuer and
/// audience <c>tally</c>. Production: set <c>Auth:Authority</c> to any OIDC authority.
/// </summary>
public sealed class AuthOptions
{
    public const string Section = "Auth";
    public const string Issuer = "tally";

    [MinLength(32, ErrorMessage = "Auth:SigningKey must be at least 32 characters.")]
    public string? SigningKey { get; set; }

    public string? Authority { get; set; }

    public string Audience { get; set; } = Issuer;

    /// <summary>The console's OpenID Connect client at <see cref="Authority"/> (authorization code flow with PKCE).</summary>
    public string? ClientId { get; set; }

    public string? ClientSecret { get; set; }

    /// <summary>How long a console session lasts without use.</summary>
    [Range(typeof(TimeSpan), "00:05:00", "7.00:00:00", ErrorMessage = "Auth:SessionIdleTimeout must be between 5 minutes and 7 days.")]
    public TimeSpan SessionIdleTimeout { get; set; } = TimeSpan.FromHours(8);

    public bool UsesOidcSignIn => !string.IsNullOrWhiteSpace(Authority) && !string.IsNullOrWhiteSpace(ClientId);
}

/// <summary>
/// The roles a token's <c>role</c> claims may carry. People: <see cref="User"/> and <see cref="Guardian"/>.
/// Operators, each including the one before: <see cref="Viewer"/> reads everything an operator sees,
/// <see cref="Operator"/> also steers the runtime, <see cref="Admin"/> also loads and moves data.
/// </summary>
public static class Roles
{
    public const string Viewer = "viewer";
    public const string Operator = "operator";
    public const string Admin = "admin";
    public const string Guardian = "guardian";
    public const string User = "user";
}

public static class Auth
{
    /// <summary>The header a cookie-authenticated change carries its antiforgery token in (the console's requests).</summary>
    public const string AntiforgeryHeader = "X-CSRF-TOKEN";

    public const string SelectScheme = "tally";
    public const string SessionCookie = "tally.session";

    /// <summary>The console's pages are sent to sign in; the API answers the bare status as a problem.</summary>
    private static Task AnswerOrRedirect(RedirectContext<CookieAuthenticationOptions> context)
    {
        if (context.Request.Path.StartsWithSegments("/api", StringComparison.Ordinal))
        {
            context.Response.StatusCode = StatusCodes.Status401Unauthorized;
        }
        else
        {
            context.Response.Redirect(context.RedirectUri);
        }
        return Task.CompletedTask;
    }

    public static WebApplicationBuilder AddTallyAuth(this WebApplicationBuilder builder)
    {
        builder.Services.AddValidatedOptions<AuthOptions>(AuthOptions.Section)
            .Validate(o => !string.IsNullOrWhiteSpace(o.SigningKey) || !string.IsNullOrWhiteSpace(o.Authority),
                "Auth:SigningKey (or Auth:Authority for an OIDC provider) must be set.");
        var options = builder.Configuration.Read<AuthOptions>(AuthOptions.Section);
        // One default scheme that picks per request: a bearer token when the request carries one (the
        // API's callers), else the console's session cookie. A request to the API with neither is
        // answered 401, never redirected to a sign-in page.
        var authentication = builder.Services.AddAuthentication(SelectScheme)
            .AddPolicyScheme(SelectScheme, "Bearer token or console session", p => p.ForwardDefaultSelector = http =>
                http.Request.Headers.Authorization.Count == 0
                    && (http.Request.Cookies.ContainsKey(SessionCookie) || http.Request.Path.StartsWithSegments("/dashboard", StringComparison.Ordinal))
                    ? CookieAuthenticationDefaults.AuthenticationScheme
                    : JwtBearerDefaults.AuthenticationScheme)
            .AddCookie(CookieAuthenticationDefaults.AuthenticationScheme, cookie =>
            {
                cookie.Cookie.Name = SessionCookie;
                cookie.Cookie.HttpOnly = true;
                cookie.Cookie.SameSite = SameSiteMode.Strict;
                cookie.Cookie.SecurePolicy = CookieSecurePolicy.SameAsRequest;
                cookie.ExpireTimeSpan = options.SessionIdleTimeout;
                cookie.SlidingExpiration = true;
                cookie.LoginPath = "/dashboard/signin";
                cookie.Events.OnRedirectToLogin = AnswerOrRedirect;
                cookie.Events.OnRedirectToAccessDenied = context =>
                {
                    // Signed in, but not in a role that may see this: say so, on the API and the console alike.
                    context.Response.StatusCode = StatusCodes.Status403Forbidden;
                    return Task.CompletedTask;
                };
            });
        if (options.UsesOidcSignIn)
        {
            authentication.AddOpenIdConnect(OpenIdConnectDefaults.AuthenticationScheme, oidc =>
            {
                oidc.Authority = options.Authority;
                oidc.ClientId = options.ClientId;
                oidc.ClientSecret = options.ClientSecret;
                oidc.ResponseType = "code";
                oidc.UsePkce = true;
                oidc.SignInScheme = CookieAuthenticationDefaults.AuthenticationScheme;
                oidc.MapInboundClaims = false;
                oidc.GetClaimsFromUserInfoEndpoint = true;
                oidc.TokenValidationParameters.NameClaimType = "sub";
                oidc.TokenValidationParameters.RoleClaimType = "role";
                oidc.CallbackPath = "/dashboard/signin-oidc";
                oidc.SignedOutCallbackPath = "/dashboard/signout-oidc";
            });
        }
        builder.Services.AddAntiforgery(o =>
        {
            o.HeaderName = AntiforgeryHeader;
            o.Cookie.Name = "tally.antiforgery";
            o.Cookie.SameSite = SameSiteMode.Strict;
        });
        authentication.AddJwtBearer(jwt =>
        {
            jwt.MapInboundClaims = false;
            if (!string.IsNullOrWhiteSpace(options.Authority))
            {
                jwt.Authority = options.Authority;
                jwt.Audience = options.Audience;
                jwt.TokenValidationParameters.NameClaimType = "sub";
                jwt.TokenValidationParameters.RoleClaimType = "role";
                return;
            }
            jwt.TokenValidationParameters = new TokenValidationParameters
            {
                ValidIssuer = AuthOptions.Issuer,
                ValidAudience = options.Audience,
                IssuerSigningKey = new SymmetricSecurityKey(Encoding.UTF8.GetBytes(options.SigningKey ?? new string('-', 32))),
                ValidAlgorithms = [SecurityAlgorithms.HmacSha256],
                NameClaimType = "sub",
                RoleClaimType = "role",
                ClockSkew = TimeSpan.FromSeconds(30),
            };
        });
        // The user and guardian policies act on the caller's own data, so they also require a person:
        // exactly one sub that is a UUID other than the all-zero one. Without that check a token whose
        // sub is "abc" would read and write the data of user 00000000-0000-0000-0000-000000000000.
        builder.Services.AddAuthorizationBuilder()
            .AddPolicy(Roles.Viewer, p => p.RequireRole(Roles.Viewer, Roles.Operator, Roles.Admin))
            .AddPolicy(Roles.Operator, p => p.RequireRole(Roles.Operator, Roles.Admin))
            .AddPolicy(Roles.Admin, p => p.RequireRole(Roles.Admin))
            .AddPolicy(Roles.Guardian, p => p.RequireRole(Roles.Guardian).RequireAssertion(c => TryGetUserId(c.User, out _)))
            .AddPolicy(Roles.User, p => p.RequireRole(Roles.User, Roles.Guardian).RequireAssertion(c => TryGetUserId(c.User, out _)));
        return builder;
    }

    /// <summary>
    /// The caller's user id (<c>sub</c>). The user and guardian policies admit only callers that have
    /// one, so reaching this without one is a bug (an endpoint mapped without its policy), not bad input.
    /// </summary>
    public static Guid UserId(this ClaimsPrincipal user) =>
        TryGetUserId(user, out var id)
            ? id
            : throw new InvalidOperationException("The caller has no user id: the endpoint is missing the user or guardian policy.");

    /// <summary>Exactly one <c>sub</c>, a UUID in its usual 8-4-4-4-12 form, and not the all-zero UUID.</summary>
    public static bool TryGetUserId(ClaimsPrincipal user, out Guid id)
    {
        id = Guid.Empty;
        var subjects = user.FindAll("sub").ToList();
        return subjects.Count == 1 && Guid.TryParseExact(subjects[0].Value, "D", out id) && id != Guid.Empty;
    }

    /// <summary>Signs a development token (HS256) for the README's examples and for tests.</summary>
    public static string CreateToken(string signingKey, Guid subject, IEnumerable<string> roles, TimeSpan lifetime)
    {
        var claims = new List<Claim> { new("sub", subject.ToString()) };
        claims.AddRange(roles.Select(r => new Claim("role", r)));
        var token = new JwtSecurityToken(
            issuer: AuthOptions.Issuer,
            audience: AuthOptions.Issuer,
            claims: claims,
            notBefore: DateTime.UtcNow.AddMinutes(-1),
            expires: DateTime.UtcNow.Add(lifetime),
            signingCredentials: new SigningCredentials(new SymmetricSecurityKey(Encoding.UTF8.GetBytes(signingKey)), SecurityAlgorithms.HmacSha256));
        return new JwtSecurityTokenHandler().WriteToken(token);
    }
}
