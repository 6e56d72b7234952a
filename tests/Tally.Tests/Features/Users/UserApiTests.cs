using System.Net;
using Microsoft.EntityFrameworkCore;
using Tally.Features.Users;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.Users;

/// <summary>The admin API that loads users and links guardians to juniors.</summary>
public class UserApiTests
{
    private static readonly (string Json, string Field)[] BadText =
    [
        ("""{"username":"a\u0000b"}""", "username"),
        ("""{"username":"line\nbreak"}""", "username"),
        ("""{"username":"bell\u0007"}""", "username"),
        ("""{"username":"   "}""", "username"),
        ("""{"username":""}""", "username"),
        ($$"""{"username":"{{new string('u', UsersEndpoints.MaxUsernameLength + 1)}}"}""", "username"),
        ("""{"username":"ok","customerNumber":"12\t34"}""", "customerNumber"),
        ("""{"username":"ok","customerNumber":"\u001b[31m"}""", "customerNumber"),
        ($$"""{"username":"ok","customerNumber":"{{new string('1', UsersEndpoints.MaxCustomerNumberLength + 1)}}"}""", "customerNumber"),
    ];

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Create_ControlCharactersOrOverlongText_RefusedNamingTheField_AndNothingWritten(string storage)
    {
        await using var app = await Apps.CreateAsync(storage);
        var admin = app.Admin();
        foreach (var (json, field) in BadText)
        {
            // NUL is refused while the body is read (no string in Tally may hold one), other text by the endpoint.
            var code = json.Contains("\\u0000", StringComparison.Ordinal) ? "BAD_REQUEST" : "VALIDATION_FAILED";
            var problem = await admin.PostRawAsync("/api/admin/users", json).ExpectProblemAsync(HttpStatusCode.BadRequest, code);
            Assert.True(problem.GetProperty("errors").TryGetProperty(field, out _), $"{json}: errors should name {field}: {problem}");
        }
        await using var db = app.Db();
        Assert.Equal(0, await db.Users.CountAsync(TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task Create_TextAtItsLimits_IsStoredAsSent()
    {
        await using var app = TallyApp.Sqlite();
        var admin = app.Admin();
        var username = "ü" + new string('u', UsersEndpoints.MaxUsernameLength - 1);
        var customer = new string('7', UsersEndpoints.MaxCustomerNumberLength);
        var created = await admin.PostJsonAsync("/api/admin/users", new { username, customerNumber = customer, context = "WALLET" }).ExpectAsync(HttpStatusCode.Created);
        var id = created.GetProperty("id").GetGuid();
        var read = await admin.GetAsync($"/api/admin/users/{id}").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(username, read.GetProperty("username").GetString());
        Assert.Equal(customer, read.GetProperty("customerNumber").GetString());
        Assert.Equal("WALLET", read.GetProperty("context").GetString());
    }

    [Fact]
    public async Task Create_RepeatedImportIsAnswered_ConflictingOneRefused()
    {
        await using var app = TallyApp.Sqlite();
        var admin = app.Admin();
        var id = Guid.NewGuid();
        await admin.PostJsonAsync("/api/admin/users", new { id, username = "repeat" }).ExpectAsync(HttpStatusCode.Created);
        await admin.PostJsonAsync("/api/admin/users", new { id, username = "repeat" }).ExpectAsync(HttpStatusCode.OK);
        await admin.PostJsonAsync("/api/admin/users", new { id = Guid.NewGuid(), username = "repeat" }).ExpectProblemAsync(HttpStatusCode.Conflict, "USER.ALREADY_EXISTS");
        await admin.PostJsonAsync("/api/admin/users", new { id, username = "another" }).ExpectProblemAsync(HttpStatusCode.Conflict, "USER.ALREADY_EXISTS");
    }

    [Fact]
    public async Task UserEndpoints_AreForAdminsOnly()
    {
        await using var app = TallyApp.Sqlite();
        var user = await app.Admin().CreateUserAsync();
        await app.AsUser(user).PostJsonAsync("/api/admin/users", new { username = "x" }).ExpectProblemAsync(HttpStatusCode.Forbidden, "FORBIDDEN");
        await app.AsUser(user).GetAsync($"/api/admin/users/{user}").ExpectProblemAsync(HttpStatusCode.Forbidden, "FORBIDDEN");
        await app.CreateClient().GetAsync($"/api/admin/users/{user}").ExpectProblemAsync(HttpStatusCode.Unauthorized, "UNAUTHORIZED");
    }
}
