using System.Net;
using Microsoft.AspNetCore.Mvc.Testing;
using Tally.Dashboard;
using Tally.Hosting;
using Tally.Tests.Harness;

namespace Tally.Tests.Hosting;

/// <summary>The console's browser session: a one-time sign-in link opens a cookie session, changes need the antiforgery token, any instance reads the session.</summary>
public class ConsoleSignInTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static HttpClient Browser(TallyApp app) =>
        app.CreateClient(new WebApplicationFactoryClientOptions { AllowAutoRedirect = false, HandleCookies = true });

    private static string Code(string? name = "ops", params string[] roles) =>
        SignInCode.Create(TallyApp.SigningKey, Guid.NewGuid(), name, roles.Length == 0 ? [Roles.Operator] : roles, SignIn.CodeLifetime, DateTimeOffset.UtcNow);

    [Fact]
    public async Task SignInLink_OpensASession_OnceOnly_AndOnlyForConsoleRoles()
    {
        await using var app = TallyApp.Sqlite();
        using var browser = Browser(app);
        var code = Code();

        using (var signedIn = await browser.GetAsync($"/dashboard/signin?code={code}", Ct))
        {
            Assert.Equal(HttpStatusCode.Redirect, signedIn.StatusCode);
            Assert.Equal("/dashboard", signedIn.Headers.Location?.OriginalString);
            var cookie = Assert.Single(signedIn.Headers.GetValues("Set-Cookie"), c => c.StartsWith(Auth.SessionCookie + "=", StringComparison.Ordinal));
            Assert.Contains("httponly", cookie, StringComparison.OrdinalIgnoreCase);
            Assert.Contains("samesite=strict", cookie, StringComparison.OrdinalIgnoreCase);
        }
        var session = await browser.GetAsync("/dashboard/session", Ct).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal("ops", session.GetProperty("name").GetString());
        Assert.Equal([Roles.Operator], session.GetProperty("roles").EnumerateArray().Select(r => r.GetString()));
        await browser.GetAsync("/api/admin/jobs", Ct).ExpectAsync(HttpStatusCode.OK);

        // The same link again, on a fresh browser: refused. So are a forged, an expired and a non-console code.
        using var other = Browser(app);
        await other.GetAsync($"/dashboard/signin?code={code}", Ct).ExpectProblemAsync(HttpStatusCode.Unauthorized, "SIGNIN.CODE_USED");
        await other.GetAsync($"/dashboard/signin?code={code[..^2]}xx", Ct).ExpectProblemAsync(HttpStatusCode.Unauthorized, "SIGNIN.CODE_INVALID");
        var expired = SignInCode.Create(TallyApp.SigningKey, Guid.NewGuid(), null, [Roles.Admin], SignIn.CodeLifetime, DateTimeOffset.UtcNow.AddMinutes(-11));
        await other.GetAsync($"/dashboard/signin?code={expired}", Ct).ExpectProblemAsync(HttpStatusCode.Unauthorized, "SIGNIN.CODE_INVALID");
        await other.GetAsync($"/dashboard/signin?code={Code("x", Roles.User)}", Ct).ExpectProblemAsync(HttpStatusCode.Unauthorized, "SIGNIN.CODE_INVALID");
        await other.GetAsync("/dashboard/signin", Ct).ExpectProblemAsync(HttpStatusCode.Unauthorized, "SIGNIN.CODE_REQUIRED");

        // Without a session: the API answers 401, a console page sends the browser to sign in.
        await other.GetAsync("/api/admin/jobs", Ct).ExpectAsync(HttpStatusCode.Unauthorized);
        using var page = await other.GetAsync("/dashboard/session", Ct);
        Assert.Equal(HttpStatusCode.Redirect, page.StatusCode);
        Assert.StartsWith("http://localhost/dashboard/signin", page.Headers.Location?.ToString());

        // Signing out ends the session.
        await browser.PostAsync("/dashboard/signout", null, Ct).ExpectAsync(HttpStatusCode.Redirect);
        await browser.GetAsync("/api/admin/jobs", Ct).ExpectAsync(HttpStatusCode.Unauthorized);
    }

    [Fact]
    public async Task SessionChange_NeedsTheAntiforgeryToken_ABearerCallDoesNot_AndTheAuditNamesTheSessionsUser()
    {
        await using var app = TallyApp.Sqlite();
        using var browser = Browser(app);
        await browser.GetAsync($"/dashboard/signin?code={Code("night shift")}", Ct).ExpectAsync(HttpStatusCode.Redirect);

        await browser.PostAsync("/api/admin/jobs/store.sync-accounts/pause", null, Ct).ExpectProblemAsync(HttpStatusCode.BadRequest, "ANTIFORGERY.INVALID");
        var token = (await browser.GetAsync("/dashboard/session", Ct).ExpectAsync(HttpStatusCode.OK)).GetProperty("antiforgeryToken").GetString();
        using (var request = new HttpRequestMessage(HttpMethod.Post, "/api/admin/jobs/store.sync-accounts/pause"))
        {
            request.Headers.Add(SignIn.AntiforgeryHeader, token);
            await browser.SendAsync(request, Ct).ExpectAsync(HttpStatusCode.NoContent);
        }
        using var bearer = app.Client(Guid.NewGuid(), Roles.Operator);
        await bearer.PostAsync("/api/admin/jobs/store.sync-accounts/resume", null, Ct).ExpectAsync(HttpStatusCode.NoContent);

        var audit = await bearer.GetAsync("/api/admin/audit?action=POST%20/api/admin/jobs/{name}/pause", Ct).ExpectAsync(HttpStatusCode.OK);
        var row = Assert.Single(audit.EnumerateArray());
        Assert.EndsWith("(night shift)", row.GetProperty("actor").GetString());
        Assert.Equal("succeeded", row.GetProperty("outcome").GetString());
    }

    [Fact]
    public async Task Session_OpenedOnOneInstance_IsReadByAnother_AndItsCodeIsSpentForBoth()
    {
        var database = await Servers.NewPostgresDatabaseAsync();
        await using var a = TallyApp.Postgres(database);
        await using var b = TallyApp.Postgres(database);
        using var browserA = Browser(a);
        var code = Code();
        using var signedIn = await browserA.GetAsync($"/dashboard/signin?code={code}", Ct);
        Assert.Equal(HttpStatusCode.Redirect, signedIn.StatusCode);
        var cookie = signedIn.Headers.GetValues("Set-Cookie").First(c => c.StartsWith(Auth.SessionCookie + "=", StringComparison.Ordinal)).Split(';')[0];

        using var browserB = Browser(b);
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/admin/jobs");
        request.Headers.Add("Cookie", cookie);
        await browserB.SendAsync(request, Ct).ExpectAsync(HttpStatusCode.OK);
        await browserB.GetAsync($"/dashboard/signin?code={code}", Ct).ExpectProblemAsync(HttpStatusCode.Unauthorized, "SIGNIN.CODE_USED");
    }
}
