using System.ComponentModel.DataAnnotations;
using System.IdentityModel.Tokens.Jwt;
using System.Security.Claims;
using System.Text;
using Microsoft.AspNetCore.Authentication.JwtBearer;
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
    public static WebApplicationBuilder AddTallyAuth(this WebApplicationBuilder builder)
    {
        builder.Services.AddValidatedOptions<AuthOptions>(AuthOptions.Section)
            .Validate(o => !string.IsNullOrWhiteSpace(o.SigningKey) || !string.IsNullOrWhiteSpace(o.Authority),
                "Auth:SigningKey (or Auth:Authority for an OIDC provider) must be set.");
        var options = builder.Configuration.Read<AuthOptions>(AuthOptions.Section);
        builder.Services.AddAuthentication(JwtBearerDefaults.AuthenticationScheme).AddJwtBearer(jwt =>
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
