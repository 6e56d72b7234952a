using System.Net;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.Allowances;

public class AllowanceApiTests
{
    private static async Task<(TallyApp App, Guid Guardian, Guid Junior, HttpClient Client)> ArrangeAsync()
    {
        var app = TallyApp.Sqlite(new Dictionary<string, string?> { ["Tally:Roles:0"] = "api" });
        var admin = app.Admin();
        var guardian = await admin.CreateUserAsync();
        var junior = await admin.CreateUserAsync(context: "WALLET");
        await admin.LinkAsync(guardian, junior);
        return (app, guardian, junior, app.AsGuardian(guardian));
    }

    [Fact]
    public async Task Create_ValidSchedule_AnswersCreatedWithNextRun()
    {
        var (app, guardian, junior, client) = await ArrangeAsync();
        await using var owned = app;
        var body = await client.PostJsonAsync($"/api/guardians/me/allowances/{junior}", new
        {
            amount = 12.50m,
            frequency = "WEEKLY",
            status = "ON",
            startAt = "2030-01-07T09:00:00",
            timeZone = "Europe/London",
            byDay = new[] { "MO", "FR" },
        }).ExpectAsync(HttpStatusCode.Created);

        Assert.Equal(12.50m, body.GetProperty("amount").GetDecimal());
        Assert.Equal("USD", body.GetProperty("currency").GetString());
        Assert.Equal(guardian, body.GetProperty("guardianId").GetGuid());
        Assert.Equal(junior, body.GetProperty("juniorId").GetGuid());
        Assert.Equal(new DateTime(2030, 1, 7, 9, 0, 0, DateTimeKind.Utc), body.GetProperty("nextRunAt").GetDateTime().ToUniversalTime());
        Assert.Equal(["MO", "FR"], body.GetProperty("byDay").EnumerateArray().Select(d => d.GetString()!).ToArray());

        var upcoming = await client.GetAsync($"/api/guardians/me/allowances/{junior}/upcoming?count=3").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(
            [new DateTime(2030, 1, 7, 9, 0, 0, DateTimeKind.Utc), new DateTime(2030, 1, 11, 9, 0, 0, DateTimeKind.Utc), new DateTime(2030, 1, 14, 9, 0, 0, DateTimeKind.Utc)],
            upcoming.EnumerateArray().Select(o => o.GetProperty("runAt").GetDateTime().ToUniversalTime()).ToArray());
    }

    [Fact]
    public async Task Create_SecondScheduleForSameJunior_Conflicts()
    {
        var (app, _, junior, client) = await ArrangeAsync();
        await using var owned = app;
        var body = new { amount = 1m, frequency = "DAILY", status = "ON" };
        await client.PostJsonAsync($"/api/guardians/me/allowances/{junior}", body).ExpectAsync(HttpStatusCode.Created);
        await client.PostJsonAsync($"/api/guardians/me/allowances/{junior}", body).ExpectProblemAsync(HttpStatusCode.Conflict, "ALLOWANCE.ALREADY_EXISTS");
    }

    [Fact]
    public async Task Create_JuniorNotLinkedOrMissing_AnswersTheSame404()
    {
        var (app, _, _, client) = await ArrangeAsync();
        await using var owned = app;
        var admin = app.Admin();
        var otherGuardian = await admin.CreateUserAsync();
        var otherJunior = await admin.CreateUserAsync();
        await admin.LinkAsync(otherGuardian, otherJunior);
        var body = new { amount = 1m, frequency = "DAILY", status = "ON" };

        var foreign = await client.PostJsonAsync($"/api/guardians/me/allowances/{otherJunior}", body).ExpectAsync(HttpStatusCode.NotFound);
        var missing = await client.PostJsonAsync($"/api/guardians/me/allowances/{Guid.NewGuid()}", body).ExpectAsync(HttpStatusCode.NotFound);
        Assert.Equal(foreign.GetProperty("code").GetString(), missing.GetProperty("code").GetString());
        Assert.Equal(foreign.GetProperty("detail").GetString(), missing.GetProperty("detail").GetString());

        // Nor can the other guardian's schedule be read, changed or deleted.
        await app.AsGuardian(otherGuardian).PostJsonAsync($"/api/guardians/me/allowances/{otherJunior}", body).ExpectAsync(HttpStatusCode.Created);
        await client.GetAsync($"/api/guardians/me/allowances/{otherJunior}").ExpectProblemAsync(HttpStatusCode.NotFound, "ALLOWANCE.NOT_FOUND");
        await client.DeleteAsync($"/api/guardians/me/allowances/{otherJunior}").ExpectProblemAsync(HttpStatusCode.NotFound, "ALLOWANCE.NOT_FOUND");
        Assert.Equal(0, (await client.GetAsync("/api/guardians/me/allowances").ExpectAsync(HttpStatusCode.OK)).GetArrayLength());
    }

    public static TheoryData<string, string> InvalidBodies => new()
    {
        { """{"frequency":"DAILY","status":"ON"}""", "amount" },
        { """{"amount":0,"frequency":"DAILY","status":"ON"}""", "amount" },
        { """{"amount":-5,"frequency":"DAILY","status":"ON"}""", "amount" },
        { """{"amount":1.001,"frequency":"DAILY","status":"ON"}""", "amount" },
        { """{"amount":1.5,"currency":"JPY","frequency":"DAILY","status":"ON"}""", "amount" },
        { """{"amount":1,"currency":"ABC","frequency":"DAILY","status":"ON"}""", "currency" },
        { """{"amount":1,"frequency":"HOURLY","status":"ON"}""", "frequency" },
        { """{"amount":1,"status":"ON"}""", "frequency" },
        { """{"amount":1,"frequency":"DAILY","status":"MAYBE"}""", "status" },
        { """{"amount":1,"frequency":"DAILY"}""", "status" },
        { """{"amount":1,"frequency":"DAILY","status":"ON","timeZone":"Mars/Olympus"}""", "timeZone" },
        { """{"amount":1,"frequency":"DAILY","status":"ON","interval":0}""", "interval" },
        { """{"amount":1,"frequency":"DAILY","status":"ON","byDay":["MO"]}""", "byDay" },
        { """{"amount":1,"frequency":"WEEKLY","status":"ON","byDay":["XX"]}""", "byDay" },
        { """{"amount":1,"frequency":"WEEKLY","status":"ON","byDay":[]}""", "byDay" },
        { """{"amount":1,"frequency":"WEEKLY","status":"ON","byMonthDay":3}""", "byMonthDay" },
        { """{"amount":1,"frequency":"MONTHLY","status":"ON","byMonthDay":32}""", "byMonthDay" },
        { """{"amount":1,"frequency":"MONTHLY","status":"ON","byMonthDay":-2}""", "byMonthDay" },
        { """{"amount":1,"frequency":"MONTHLY","status":"ON","startAt":"next tuesday"}""", "startAt" },
    };

    [Theory]
    [MemberData(nameof(InvalidBodies))]
    public async Task Create_InvalidField_Answers400NamingItAndCreatesNothing(string json, string field)
    {
        var (app, _, junior, client) = await ArrangeAsync();
        await using var owned = app;
        var problem = await client.PostRawAsync($"/api/guardians/me/allowances/{junior}", json).ExpectProblemAsync(HttpStatusCode.BadRequest, "VALIDATION_FAILED");
        Assert.True(problem.GetProperty("errors").TryGetProperty(field, out _), $"errors should name {field}: {problem}");
        Assert.Equal(0, (await client.GetAsync("/api/guardians/me/allowances").ExpectAsync(HttpStatusCode.OK)).GetArrayLength());
    }

    [Theory]
    [InlineData("not json")]
    [InlineData("""{"amount":"ten","frequency":"DAILY","status":"ON"}""")]
    [InlineData("[]")]
    public async Task Create_UnreadableBody_Answers400Problem(string json)
    {
        var (app, _, junior, client) = await ArrangeAsync();
        await using var owned = app;
        await client.PostRawAsync($"/api/guardians/me/allowances/{junior}", json).ExpectProblemAsync(HttpStatusCode.BadRequest, "BAD_REQUEST");
    }

    [Fact]
    public async Task Endpoints_RequireAGuardianToken()
    {
        var (app, _, junior, _) = await ArrangeAsync();
        await using var owned = app;
        var anonymous = app.CreateClient();
        await anonymous.GetAsync("/api/guardians/me/allowances").ExpectProblemAsync(HttpStatusCode.Unauthorized, "UNAUTHORIZED");
        var plainUser = app.AsUser(Guid.NewGuid());
        await plainUser.PostJsonAsync($"/api/guardians/me/allowances/{junior}", new { amount = 1m, frequency = "DAILY", status = "ON" })
            .ExpectProblemAsync(HttpStatusCode.Forbidden, "FORBIDDEN");
    }

    [Fact]
    public async Task Change_FrequencyAndAmount_RecomputesNextRunAndDropsStaleRules()
    {
        var (app, _, junior, client) = await ArrangeAsync();
        await using var owned = app;
        await client.PostJsonAsync($"/api/guardians/me/allowances/{junior}", new
        {
            amount = 2m,
            frequency = "WEEKLY",
            status = "ON",
            byDay = new[] { "SA" },
            startAt = "2030-06-01T10:00:00Z",
        }).ExpectAsync(HttpStatusCode.Created);

        var changed = await client.PatchAsync($"/api/guardians/me/allowances/{junior}",
            new StringContent("""{"amount":3.25,"frequency":"MONTHLY","byMonthDay":-1}""", System.Text.Encoding.UTF8, "application/json"))
            .ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(3.25m, changed.GetProperty("amount").GetDecimal());
        Assert.Equal("MONTHLY", changed.GetProperty("frequency").GetString());
        Assert.Equal(JsonValueKindNull, changed.GetProperty("byDay").ValueKind);
        Assert.Equal(-1, changed.GetProperty("byMonthDay").GetInt32());
        Assert.Equal(new DateTime(2030, 6, 30, 10, 0, 0, DateTimeKind.Utc), changed.GetProperty("nextRunAt").GetDateTime().ToUniversalTime());

        await client.PatchAsync($"/api/guardians/me/allowances/{junior}",
            new StringContent("""{"byDay":["MO"]}""", System.Text.Encoding.UTF8, "application/json"))
            .ExpectProblemAsync(HttpStatusCode.BadRequest, "VALIDATION_FAILED");

        await client.DeleteAsync($"/api/guardians/me/allowances/{junior}").ExpectAsync(HttpStatusCode.NoContent);
        await client.GetAsync($"/api/guardians/me/allowances/{junior}").ExpectProblemAsync(HttpStatusCode.NotFound, "ALLOWANCE.NOT_FOUND");
        // Deleted schedules free the pair for a new one.
        await client.PostJsonAsync($"/api/guardians/me/allowances/{junior}", new { amount = 1m, frequency = "DAILY", status = "OFF" }).ExpectAsync(HttpStatusCode.Created);
    }

    private const System.Text.Json.JsonValueKind JsonValueKindNull = System.Text.Json.JsonValueKind.Null;
}
