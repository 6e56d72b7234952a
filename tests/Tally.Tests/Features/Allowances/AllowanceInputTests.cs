using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.Allowances;

/// <summary>
/// Edge values through the real HTTP API (create and change, on SQLite): each is accepted or
/// answers 400 naming the field as the client sent it, never a 500, and a refused request writes
/// nothing. One app serves the class; each test has a guardian and junior of its own.
/// </summary>
public class AllowanceInputTests(AllowanceInputTests.SharedApp shared) : IClassFixture<AllowanceInputTests.SharedApp>
{
    /// <summary>Stands for a 100,000-character string in the bodies below (kept out of the test names).</summary>
    private const string Huge = "{huge}";

    public sealed class SharedApp : IAsyncDisposable
    {
        public TallyApp App { get; } = TallyApp.Sqlite(new Dictionary<string, string?> { ["Tally:Roles:0"] = "api" });

        public ValueTask DisposeAsync() => App.DisposeAsync();
    }

    private static async Task<(Guid Guardian, Guid Junior, HttpClient Client)> AddFamilyAsync(TallyApp app)
    {
        var admin = app.Admin();
        var guardian = await admin.CreateUserAsync();
        var junior = await admin.CreateUserAsync(context: "WALLET");
        await admin.LinkAsync(guardian, junior);
        return (guardian, junior, app.AsGuardian(guardian));
    }

    private static string Body(string json) => json.Replace(Huge, new string('x', 100_000), StringComparison.Ordinal);

    private static Task<HttpResponseMessage> PatchRawAsync(HttpClient client, string url, string json) =>
        client.PatchAsync(url, new StringContent(json, Encoding.UTF8, "application/json"));

    /// <summary>Every column of a guardian's schedules, and their credits, to show that a refused request changed nothing.</summary>
    private static async Task<string> SchedulesAsync(TallyApp app, Guid guardian)
    {
        await using var db = app.Db();
        var rows = await db.AllowanceSchedules.AsNoTracking().Where(s => s.GuardianId == guardian).OrderBy(s => s.Id).ToListAsync(TestContext.Current.CancellationToken);
        var ids = rows.Select(r => r.Id).ToList();
        var credits = await db.AllowanceCredits.CountAsync(c => ids.Contains(c.ScheduleId), TestContext.Current.CancellationToken);
        return JsonSerializer.Serialize(rows) + $" credits={credits}";
    }

    private static void AssertNames(JsonElement problem, string field)
    {
        // A value refused while the body is read (a NUL, an inexact number) is BAD_REQUEST and names its
        // element (byDay[0]); a value the endpoint refuses is VALIDATION_FAILED.
        Assert.Contains(problem.GetProperty("code").GetString(), new[] { "VALIDATION_FAILED", "BAD_REQUEST" });
        var named = problem.GetProperty("errors").EnumerateObject().Where(e => e.Name == field || e.Name.StartsWith(field + "[", StringComparison.Ordinal)).ToList();
        Assert.True(named.Count > 0, $"errors should name {field}: {problem}");
        Assert.All(named.SelectMany(e => e.Value.EnumerateArray()), m => Assert.True(m.GetString()!.Length < 300, "a message does not echo the client's input"));
    }

    public static TheoryData<string, string> RefusedFields => new()
    {
        // Amounts: beyond what an account may hold (10^15 minor units), too many decimals, not positive.
        { """{"amount":79228162514264337593543950335}""", "amount" },
        { """{"amount":-79228162514264337593543950335}""", "amount" },
        { """{"amount":10000000000000.01}""", "amount" },
        { """{"amount":1000000000000001,"currency":"JPY"}""", "amount" },
        { """{"amount":0.0000000000000000000000000001}""", "amount" },
        { """{"amount":-0.01}""", "amount" },
        { """{"amount":1,"currency":"usd"}""", "currency" },
        { """{"amount":1,"currency":""}""", "currency" },
        { """{"amount":1,"currency":"{huge}"}""", "currency" },
        // Intervals.
        { """{"interval":0}""", "interval" },
        { """{"interval":-1}""", "interval" },
        { """{"interval":367}""", "interval" },
        { """{"interval":2147483647}""", "interval" },
        { """{"interval":-2147483648}""", "interval" },
        // Rule fields.
        { """{"frequency":"WEEKLY","byDay":["MO",null]}""", "byDay" },
        { """{"frequency":"WEEKLY","byDay":[null]}""", "byDay" },
        { """{"frequency":"WEEKLY","byDay":[""]}""", "byDay" },
        { """{"frequency":"WEEKLY","byDay":["mo"]}""", "byDay" },
        { """{"frequency":"WEEKLY","byDay":["MO\u0000"]}""", "byDay" },
        { """{"frequency":"WEEKLY","byDay":["{huge}"]}""", "byDay" },
        { """{"frequency":"WEEKLY","byDay":["MO","TU","WE","TH","FR","SA","SU","MO"]}""", "byDay" },
        { """{"frequency":"WEEKLY","byDay":[""" + string.Join(',', Enumerable.Repeat("\"MO\"", 5000)) + "]}", "byDay" },
        { """{"frequency":"MONTHLY","byMonthDay":0}""", "byMonthDay" },
        { """{"frequency":"MONTHLY","byMonthDay":32}""", "byMonthDay" },
        { """{"frequency":"MONTHLY","byMonthDay":-2}""", "byMonthDay" },
        { """{"frequency":"MONTHLY","byMonthDay":2147483647}""", "byMonthDay" },
        { """{"frequency":"MONTHLY","byMonthDay":-2147483648}""", "byMonthDay" },
        { """{"frequency":"{huge}"}""", "frequency" },
        { """{"frequency":""}""", "frequency" },
        { """{"frequency":"daily"}""", "frequency" },
        { """{"status":"{huge}"}""", "status" },
        { """{"status":""}""", "status" },
        // Time zones: the zone database's technical entries, paths, blanks, control characters, long strings.
        { """{"timeZone":""}""", "timeZone" },
        { """{"timeZone":" "}""", "timeZone" },
        { """{"timeZone":"Factory"}""", "timeZone" },
        { """{"timeZone":"posixrules"}""", "timeZone" },
        { """{"timeZone":"localtime"}""", "timeZone" },
        { """{"timeZone":"right/Europe/London"}""", "timeZone" },
        { """{"timeZone":"posix/Europe/London"}""", "timeZone" },
        { """{"timeZone":"SystemV/EST5"}""", "timeZone" },
        { """{"timeZone":"../../../../etc/passwd"}""", "timeZone" },
        { """{"timeZone":"/etc/localtime"}""", "timeZone" },
        { """{"timeZone":"Europe/London\u0000"}""", "timeZone" },
        { """{"timeZone":"Europe/London\n"}""", "timeZone" },
        { """{"timeZone":"Eastern Standard Time"}""", "timeZone" },
        { """{"timeZone":"America/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}""", "timeZone" },
        { """{"timeZone":"{huge}"}""", "timeZone" },
        // Starts: the calendar's ends in every form, just outside the range, unreadable text.
        { """{"startAt":"0001-01-01T00:00:00"}""", "startAt" },
        { """{"startAt":"0001-01-01T00:00:00","timeZone":"Pacific/Kiritimati"}""", "startAt" },
        { """{"startAt":"0001-01-01T00:00:00","timeZone":"Etc/GMT+12"}""", "startAt" },
        { """{"startAt":"0001-01-01T00:00:00Z"}""", "startAt" },
        { """{"startAt":"0001-01-01T00:00:00+14:00"}""", "startAt" },
        { """{"startAt":"0001-01-01T00:00:00-12:00"}""", "startAt" },
        { """{"startAt":"9999-12-31T23:59:59"}""", "startAt" },
        { """{"startAt":"9999-12-31T23:59:59","timeZone":"Pacific/Kiritimati"}""", "startAt" },
        { """{"startAt":"9999-12-31T23:59:59","timeZone":"Etc/GMT+12"}""", "startAt" },
        { """{"startAt":"9999-12-31T23:59:59Z"}""", "startAt" },
        { """{"startAt":"9999-12-31T23:59:59.9999999Z"}""", "startAt" },
        { """{"startAt":"9999-12-31T23:59:59+14:00"}""", "startAt" },
        { """{"startAt":"9999-12-31T23:59:59-12:00"}""", "startAt" },
        { """{"startAt":"1899-12-31T23:59:59Z"}""", "startAt" },
        { """{"startAt":"1900-01-01T00:00:00","timeZone":"Europe/Paris"}""", "startAt" },
        { """{"startAt":"2200-01-01T00:00:00Z"}""", "startAt" },
        { """{"startAt":"2199-12-31T23:00:00","timeZone":"Etc/GMT+12"}""", "startAt" },
        { """{"startAt":"2030-02-30T09:00:00Z"}""", "startAt" },
        { """{"startAt":"2030-01-01T09:00:00+15:00"}""", "startAt" },
        { """{"startAt":""}""", "startAt" },
        { """{"startAt":"{huge}"}""", "startAt" },
    };

    /// <summary>The fields a test does not name: a valid daily schedule.</summary>
    private static string WithDefaults(string json)
    {
        var body = JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(Body(json))!;
        var valid = new Dictionary<string, object> { ["amount"] = 1m, ["frequency"] = "DAILY", ["status"] = "ON" };
        foreach (var (key, value) in valid)
        {
            if (!body.ContainsKey(key))
            {
                body[key] = JsonSerializer.SerializeToElement(value);
            }
        }
        return JsonSerializer.Serialize(body);
    }

    [Theory]
    [MemberData(nameof(RefusedFields))]
    public async Task Create_EdgeValue_Answers400NamingTheFieldAndWritesNothing(string json, string field)
    {
        var app = shared.App;
        var (guardian, junior, client) = await AddFamilyAsync(app);
        var problem = await client.PostRawAsync($"/api/guardians/me/allowances/{junior}", WithDefaults(json)).ExpectAsync(HttpStatusCode.BadRequest);
        AssertNames(problem, field);
        Assert.Equal("[] credits=0", await SchedulesAsync(app, guardian));
    }

    [Theory]
    [MemberData(nameof(RefusedFields))]
    public async Task Change_EdgeValue_Answers400NamingTheFieldAndChangesNothing(string json, string field)
    {
        var app = shared.App;
        var (guardian, junior, client) = await AddFamilyAsync(app);
        await client.PostJsonAsync($"/api/guardians/me/allowances/{junior}",
            new { amount = 2m, frequency = "DAILY", status = "ON", startAt = "2030-01-01T09:00:00Z", timeZone = "Europe/London" }).ExpectAsync(HttpStatusCode.Created);
        var before = await SchedulesAsync(app, guardian);

        var problem = await PatchRawAsync(client, $"/api/guardians/me/allowances/{junior}", Body(json)).ExpectAsync(HttpStatusCode.BadRequest);
        AssertNames(problem, field);
        Assert.Equal(before, await SchedulesAsync(app, guardian));
    }

    /// <summary>Values the JSON types cannot hold are refused while reading the body: 400, nothing written.</summary>
    [Theory]
    [InlineData("""{"amount":1e30,"frequency":"DAILY","status":"ON"}""")]
    [InlineData("""{"amount":1,"frequency":"DAILY","status":"ON","interval":2147483648}""")]
    [InlineData("""{"amount":1,"frequency":"DAILY","status":"ON","interval":1e100}""")]
    [InlineData("""{"amount":1,"frequency":"DAILY","status":"ON","interval":1.5}""")]
    [InlineData("""{"amount":1,"frequency":"MONTHLY","status":"ON","byMonthDay":99999999999}""")]
    [InlineData("""{"amount":1,"frequency":"WEEKLY","status":"ON","byDay":"MO"}""")]
    [InlineData("""{"amount":1,"frequency":"WEEKLY","status":"ON","byDay":[1,2]}""")]
    [InlineData("""{"amount":1,"frequency":"DAILY","status":"ON","startAt":20300101}""")]
    [InlineData("""{"amount":1,"frequency":"DAILY","status":["ON"]}""")]
    [InlineData("null")]
    public async Task CreateAndChange_ValueTheJsonTypeCannotHold_Answers400AndWritesNothing(string json)
    {
        var app = shared.App;
        var (guardian, junior, client) = await AddFamilyAsync(app);
        await client.PostRawAsync($"/api/guardians/me/allowances/{junior}", json).ExpectAsync(HttpStatusCode.BadRequest);
        Assert.Equal("[] credits=0", await SchedulesAsync(app, guardian));

        await client.PostJsonAsync($"/api/guardians/me/allowances/{junior}", new { amount = 2m, frequency = "DAILY", status = "ON" }).ExpectAsync(HttpStatusCode.Created);
        var before = await SchedulesAsync(app, guardian);
        await PatchRawAsync(client, $"/api/guardians/me/allowances/{junior}", json).ExpectAsync(HttpStatusCode.BadRequest);
        Assert.Equal(before, await SchedulesAsync(app, guardian));
    }

    [Theory]
    [InlineData("""{"startAt":"1900-01-01T00:00:00Z"}""", "1900-01-01T00:00:00Z")]
    [InlineData("""{"startAt":"1899-12-31T12:00:00","timeZone":"Etc/GMT+12"}""", "1900-01-01T00:00:00Z")]
    [InlineData("""{"startAt":"2199-12-31T23:59:59.9999999Z"}""", "2199-12-31T23:59:59Z")]
    [InlineData("""{"startAt":"2199-12-31T23:00:00","timeZone":"Pacific/Kiritimati"}""", "2199-12-31T09:00:00Z")]
    [InlineData("""{"startAt":"2030-07-01T09:00:00.123456789+02:00","timeZone":"US/Eastern"}""", "2030-07-01T07:00:00Z")]
    [InlineData("""{"startAt":"2030-07-01T09:00","timeZone":"Europe/Kiev"}""", "2030-07-01T06:00:00Z")]
    [InlineData("""{"startAt":"2030-07-01","timeZone":"Etc/GMT+5"}""", "2030-07-01T05:00:00Z")]
    [InlineData("""{"startAt":"2030-07-01T09:00:00","timeZone":"Etc/UTC"}""", "2030-07-01T09:00:00Z")]
    [InlineData("""{"frequency":"WEEKLY","byDay":["SU","MO","MO","SU","MO","MO","MO"],"startAt":"2030-07-01T09:00:00Z"}""", "2030-07-01T09:00:00Z")]
    [InlineData("""{"amount":10000000000000,"startAt":"2030-07-01T09:00:00Z"}""", "2030-07-01T09:00:00Z")]
    [InlineData("""{"frequency":"MONTHLY","byMonthDay":-1,"interval":366,"startAt":"2199-12-31T23:59:59Z"}""", "2199-12-31T23:59:59Z")]
    public async Task Create_EdgeValueInsideTheLimits_IsAccepted(string json, string startAt)
    {
        var (_, junior, client) = await AddFamilyAsync(shared.App);
        var created = await client.PostRawAsync($"/api/guardians/me/allowances/{junior}", WithDefaults(json)).ExpectAsync(HttpStatusCode.Created);
        Assert.Equal(DateTime.Parse(startAt, System.Globalization.CultureInfo.InvariantCulture).ToUniversalTime(), created.GetProperty("startAt").GetDateTime().ToUniversalTime());
        await client.GetAsync($"/api/guardians/me/allowances/{junior}/upcoming?count=100").ExpectAsync(HttpStatusCode.OK);
    }

    [Theory]
    [InlineData("/api/guardians/me/allowances/not-a-guid", HttpStatusCode.NotFound)]
    [InlineData("/api/guardians/me/allowances/00000000-0000-0000-0000-000000000000", HttpStatusCode.NotFound)]
    [InlineData("/api/guardians/me/allowances/{junior}/upcoming?count=0", HttpStatusCode.BadRequest)]
    [InlineData("/api/guardians/me/allowances/{junior}/upcoming?count=101", HttpStatusCode.BadRequest)]
    [InlineData("/api/guardians/me/allowances/{junior}/upcoming?count=-2147483648", HttpStatusCode.BadRequest)]
    [InlineData("/api/guardians/me/allowances/{junior}/upcoming?count=2147483648", HttpStatusCode.BadRequest)]
    [InlineData("/api/guardians/me/allowances/{junior}/upcoming?count=ten", HttpStatusCode.BadRequest)]
    [InlineData("/api/guardians/me/allowances/{junior}/upcoming?count=100", HttpStatusCode.OK)]
    [InlineData("/api/guardians/me/allowances/{junior}/credits?limit=0", HttpStatusCode.BadRequest)]
    [InlineData("/api/guardians/me/allowances/{junior}/credits?limit=1001", HttpStatusCode.BadRequest)]
    [InlineData("/api/guardians/me/allowances/{junior}/credits?limit=99999999999", HttpStatusCode.BadRequest)]
    [InlineData("/api/guardians/me/allowances/{junior}/credits?limit=1000", HttpStatusCode.OK)]
    public async Task Read_PathAndQueryEdgeValues_AnswerWithoutAServerError(string path, HttpStatusCode expected)
    {
        var (_, junior, client) = await AddFamilyAsync(shared.App);
        // The earliest start there is, so that the upcoming occurrences are computed from 1900.
        await client.PostJsonAsync($"/api/guardians/me/allowances/{junior}",
            new { amount = 1m, frequency = "MONTHLY", byMonthDay = 31, interval = 366, status = "OFF", startAt = "1900-01-01T00:00:00Z" }).ExpectAsync(HttpStatusCode.Created);
        await client.GetAsync(path.Replace("{junior}", junior.ToString(), StringComparison.Ordinal)).ExpectAsync(expected);
        await client.PatchAsync(path.Replace("{junior}", junior.ToString(), StringComparison.Ordinal), new StringContent("{}", Encoding.UTF8, "application/json"))
            .ExpectAsync(path.Contains('?', StringComparison.Ordinal) ? HttpStatusCode.MethodNotAllowed : HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task Change_ZoneAndFrequencyAtTheEdgesOfTheRange_RecomputesOrRefuses()
    {
        var app = shared.App;
        var (guardian, junior, client) = await AddFamilyAsync(app);
        var url = $"/api/guardians/me/allowances/{junior}";
        await client.PostJsonAsync(url, new { amount = 1m, frequency = "DAILY", status = "ON", startAt = "2199-12-31T23:59:59Z" }).ExpectAsync(HttpStatusCode.Created);

        // The start is an instant: another zone keeps it, and the first run with it.
        var moved = await PatchRawAsync(client, url, """{"timeZone":"Etc/GMT+12"}""").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(new DateTime(2199, 12, 31, 23, 59, 59, DateTimeKind.Utc), moved.GetProperty("nextRunAt").GetDateTime().ToUniversalTime());
        var monthly = await PatchRawAsync(client, url, """{"frequency":"MONTHLY","byMonthDay":-1,"interval":366,"timeZone":"Pacific/Kiritimati"}""").ExpectAsync(HttpStatusCode.OK);
        // 2200-01-01T13:59:59 there, not the last day of its month: the first run is at the end of January.
        Assert.Equal(new DateTime(2200, 1, 30, 23, 59, 59, DateTimeKind.Utc), monthly.GetProperty("nextRunAt").GetDateTime().ToUniversalTime());
        // A wall-clock start read in the new zone: just inside in one zone, just outside in another.
        await PatchRawAsync(client, url, """{"startAt":"2199-12-31T23:00:00","timeZone":"Pacific/Kiritimati"}""").ExpectAsync(HttpStatusCode.OK);
        var before = await SchedulesAsync(app, guardian);
        AssertNames(await PatchRawAsync(client, url, """{"startAt":"2199-12-31T23:00:00","timeZone":"Etc/GMT+12"}""").ExpectAsync(HttpStatusCode.BadRequest), "startAt");
        Assert.Equal(before, await SchedulesAsync(app, guardian));

        // The earliest start, turned into a weekly rule in the zone furthest ahead: due at once, nothing thrown.
        await PatchRawAsync(client, url, """{"startAt":"1900-01-01T00:00:00Z","frequency":"WEEKLY","byDay":["SU"],"timeZone":"Pacific/Kiritimati"}""").ExpectAsync(HttpStatusCode.OK);
        await client.GetAsync($"{url}/upcoming?count=100").ExpectAsync(HttpStatusCode.OK);
        await PatchRawAsync(client, url, """{"timeZone":"Etc/GMT+12","frequency":"DAILY","status":"OFF"}""").ExpectAsync(HttpStatusCode.OK);
        await PatchRawAsync(client, url, """{"status":"ON"}""").ExpectAsync(HttpStatusCode.OK);
    }

    [Fact]
    public async Task Create_OneMoreScheduleThanTheGuardianMayHave_Answers409AndWritesNothing()
    {
        await using var app = TallyApp.Sqlite(new Dictionary<string, string?> { ["Tally:Roles:0"] = "api", ["Allowances:MaxSchedulesPerGuardian"] = "2" });
        var (guardian, junior, client) = await AddFamilyAsync(app);
        var admin = app.Admin();
        var juniors = new List<Guid>();
        for (var i = 0; i < 3; i++)
        {
            var other = await admin.CreateUserAsync(context: "WALLET");
            await admin.LinkAsync(guardian, other);
            juniors.Add(other);
        }
        var body = new { amount = 1m, frequency = "DAILY", status = "OFF" };
        await client.PostJsonAsync($"/api/guardians/me/allowances/{junior}", body).ExpectAsync(HttpStatusCode.Created);
        await client.PostJsonAsync($"/api/guardians/me/allowances/{juniors[0]}", body).ExpectAsync(HttpStatusCode.Created);
        var before = await SchedulesAsync(app, guardian);

        var refused = await client.PostJsonAsync($"/api/guardians/me/allowances/{juniors[1]}", body).ExpectProblemAsync(HttpStatusCode.Conflict, "ALLOWANCE.SCHEDULE_LIMIT");
        Assert.Contains("2", refused.GetProperty("detail").GetString());
        Assert.Equal(before, await SchedulesAsync(app, guardian));
        // An existing pair still answers as such; a deleted schedule frees a place.
        await client.PostJsonAsync($"/api/guardians/me/allowances/{junior}", body).ExpectProblemAsync(HttpStatusCode.Conflict, "ALLOWANCE.ALREADY_EXISTS");
        await client.DeleteAsync($"/api/guardians/me/allowances/{junior}").ExpectAsync(HttpStatusCode.NoContent);
        await client.PostJsonAsync($"/api/guardians/me/allowances/{juniors[1]}", body).ExpectAsync(HttpStatusCode.Created);
        await client.PostJsonAsync($"/api/guardians/me/allowances/{juniors[2]}", body).ExpectProblemAsync(HttpStatusCode.Conflict, "ALLOWANCE.SCHEDULE_LIMIT");
        // Another guardian has places of their own.
        var otherGuardian = await admin.CreateUserAsync();
        await admin.LinkAsync(otherGuardian, juniors[2]);
        await app.AsGuardian(otherGuardian).PostJsonAsync($"/api/guardians/me/allowances/{juniors[2]}", body).ExpectAsync(HttpStatusCode.Created);
    }

    [Theory]
    [InlineData(0, false)]
    [InlineData(1, true)]
    [InlineData(100_000, true)]
    [InlineData(100_001, false)]
    public void Settings_ScheduleLimit_IsValidatedInItsRange(int value, bool valid)
    {
        var options = new Tally.Features.Allowances.AllowanceOptions { MaxSchedulesPerGuardian = value };
        var results = new List<System.ComponentModel.DataAnnotations.ValidationResult>();
        Assert.Equal(valid, System.ComponentModel.DataAnnotations.Validator.TryValidateObject(options, new(options), results, validateAllProperties: true));
        Assert.All(results, r => Assert.Contains("Allowances:MaxSchedulesPerGuardian", r.ErrorMessage));
    }
}
