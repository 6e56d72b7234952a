using System.IdentityModel.Tokens.Jwt;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Claims;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.IdentityModel.Tokens;
using Tally.Hosting;
using Tally.Tests.Harness;

namespace Tally.Tests.Hosting;

/// <summary>
/// Every endpoint that acts on the caller's own data (policies <c>user</c> and <c>guardian</c>) admits
/// only a token of a person: a user or guardian role and exactly one <c>sub</c> that is a UUID other
/// than the all-zero one. Anything else is 401 or 403, never the data of user 00000000-....
/// </summary>
public partial class TokenTests
{
    public static TheoryData<string, string?, string[]> NotAPerson => new()
    {
        { "no role", Guid.NewGuid().ToString(), [] },
        { "an unknown role", Guid.NewGuid().ToString(), ["superuser"] },
        { "an admin, not a person", Guid.NewGuid().ToString(), [Roles.Admin] },
        { "sub not a uuid", "abc", [Roles.User, Roles.Guardian] },
        { "sub the all-zero uuid", Guid.Empty.ToString(), [Roles.User, Roles.Guardian] },
        { "sub missing", null, [Roles.User, Roles.Guardian] },
        { "sub empty", "", [Roles.User, Roles.Guardian] },
        { "sub a uuid in braces", "{" + Guid.NewGuid() + "}", [Roles.User, Roles.Guardian] },
    };

    [Theory]
    [MemberData(nameof(NotAPerson))]
    public async Task EveryUserEndpoint_RefusesATokenThatIsNotAPersons(string why, string? subject, string[] roles)
    {
        await using var app = TallyApp.Sqlite();
        var client = app.CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Token(subject, roles));
        var before = await Rows.CountAsync(app);

        var routes = UserRoutes(app);
        Assert.Contains(routes, r => r.Path.StartsWith("/api/me/", StringComparison.Ordinal));
        foreach (var (method, path) in routes)
        {
            using var request = new HttpRequestMessage(new HttpMethod(method), path);
            if (method is "POST" or "PUT" or "PATCH")
            {
                request.Content = new StringContent("{}", Encoding.UTF8, "application/json");
            }
            using var response = await client.SendAsync(request);
            Assert.True(response.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden,
                $"{why}: {method} {path} answered {(int)response.StatusCode}");
        }
        Assert.Equal(before, await Rows.CountAsync(app));
    }

    [Fact]
    public async Task APersonsToken_StillReadsTheirOwnData()
    {
        await using var app = TallyApp.Sqlite();
        var admin = app.Admin();
        var user = await admin.CreateUserAsync();
        var client = app.CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Token(user.ToString(), [Roles.User]));
        var balances = await client.GetAsync("/api/me/balances").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(0, balances.GetProperty("accounts").GetArrayLength());
        await client.GetAsync("/api/me/ledger/accounts").ExpectAsync(HttpStatusCode.OK);
        await client.GetAsync("/api/connections").ExpectAsync(HttpStatusCode.OK);
        // A guardian is a person too; an upper-case sub is the same UUID.
        var guardian = app.CreateClient();
        guardian.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Token(user.ToString().ToUpperInvariant(), [Roles.Guardian]));
        await guardian.GetAsync("/api/me/balances").ExpectAsync(HttpStatusCode.OK);
        await guardian.GetAsync("/api/guardians/me/allowances").ExpectAsync(HttpStatusCode.OK);
    }

    /// <summary>Every route behind the user or guardian policy, with a fresh UUID for each route value.</summary>
    private static List<(string Method, string Path)> UserRoutes(TallyApp app) =>
        [.. app.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>()
            .Where(e => e.Metadata.GetOrderedMetadata<IAuthorizeData>().Any(a => a.Policy is Roles.User or Roles.Guardian))
            .SelectMany(e => (e.Metadata.GetMetadata<IHttpMethodMetadata>()?.HttpMethods ?? ["GET"])
                .Select(m => (m, RouteValue().Replace("/" + e.RoutePattern.RawText!.TrimStart('/'), Guid.NewGuid().ToString()))))];

    [GeneratedRegex(@"\{[^}]+\}")]
    private static partial Regex RouteValue();

    /// <summary>A token signed with the test key, with exactly the claims given (any sub, or none).</summary>
    private static string Token(string? subject, string[] roles)
    {
        var claims = new List<Claim>();
        if (subject is not null)
        {
            claims.Add(new Claim("sub", subject));
        }
        claims.AddRange(roles.Select(r => new Claim("role", r)));
        var token = new JwtSecurityToken(AuthOptions.Issuer, AuthOptions.Issuer, claims, DateTime.UtcNow.AddMinutes(-1), DateTime.UtcNow.AddHours(1),
            new SigningCredentials(new SymmetricSecurityKey(Encoding.UTF8.GetBytes(TallyApp.SigningKey)), SecurityAlgorithms.HmacSha256));
        return new JwtSecurityTokenHandler().WriteToken(token);
    }
}
