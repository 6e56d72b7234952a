using System.Globalization;
using System.Net;
using System.Text.Json;
using Tally.Features.Allowances;
using Tally.Hosting;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.Allowances;

/// <summary>The console's allowances: <c>/api/admin/allowances</c>: find, read with every credit, turn on and off.</summary>
public class AllowanceAdminTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string Iso(DateTime utc) => utc.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);

    private static async Task<Guid> ScheduleAsync(TallyApp app, Guid guardian, Guid junior, object body)
    {
        var created = await app.AsGuardian(guardian).PostJsonAsync($"/api/guardians/me/allowances/{junior}", body).ExpectAsync(HttpStatusCode.Created);
        return created.GetProperty("id").GetGuid();
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Admin_FindsSchedulesByGuardianOrJunior_IdOrUsername_AndReadsEveryCreditWithItsReason(string storage)
    {
        await using var app = await Apps.CreateAsync(storage, new Dictionary<string, string?>
        {
            ["Tally:Roles:0"] = "api",
            ["Tally:Roles:1"] = "worker",
            ["Allowances:MaxCatchUp"] = "2",
            ["Allowances:MaxRetries"] = "0",
        });
        using var admin = app.Admin();
        var tag = Guid.NewGuid().ToString("N")[..8];
        var guardian = await admin.CreateUserAsync($"mum-{tag}");
        var otherGuardian = await admin.CreateUserAsync($"dad-{tag}");
        var junior = await admin.CreateUserAsync($"kid-{tag}", context: "WALLET");
        await admin.LinkAsync(guardian, junior);
        await admin.LinkAsync(otherGuardian, junior);
        var account = await admin.CreateAccountAsync(guardian);
        await admin.CreateAccountAsync(junior);
        await admin.DepositAsync(account, 5m);

        // Five days missed, two caught up: the older ones skipped in one row, one paid, one failing for want of funds.
        var paying = await ScheduleAsync(app, guardian, junior, new { amount = 3m, frequency = "DAILY", status = "ON", startAt = Iso(DateTime.UtcNow.AddDays(-5).AddMinutes(1)), timeZone = "Europe/Paris" });
        var other = await ScheduleAsync(app, otherGuardian, junior, new { amount = 1m, frequency = "WEEKLY", byDay = new[] { "MO", "TH" }, status = "OFF" });
        await admin.PostAsync("/api/admin/jobs/allowances.enqueue-due/run", null, Ct).ExpectAsync(HttpStatusCode.OK);

        using var viewer = app.Client(Guid.NewGuid(), Roles.Viewer);
        async Task<List<Guid>> Find(string query) =>
            [.. (await viewer.GetAsync($"/api/admin/allowances?{query}", Ct).ExpectAsync(HttpStatusCode.OK)).GetProperty("items").EnumerateArray().Select(s => s.GetProperty("id").GetGuid())];
        Assert.Equal([paying], await Find($"guardian=mum-{tag}"));
        Assert.Equal([paying], await Find($"guardian={guardian}"));
        Assert.Equal([other], await Find($"guardian=dad-{tag}&junior=kid-{tag}"));
        Assert.Equal([paying, other], await Find($"junior=kid-{tag}"));
        Assert.Equal([paying, other], await Find($"junior={junior}"));
        Assert.Empty(await Find("guardian=nobody-at-all"));

        // A page at a time, by the cursor each page gives.
        var first = await viewer.GetAsync($"/api/admin/allowances?junior=kid-{tag}&limit=1", Ct).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(paying, Assert.Single(first.GetProperty("items").EnumerateArray()).GetProperty("id").GetGuid());
        var cursor = first.GetProperty("nextCursor").GetString();
        var second = await viewer.GetAsync($"/api/admin/allowances?junior=kid-{tag}&limit=1&cursor={cursor}", Ct).ExpectAsync(HttpStatusCode.OK);
        var otherView = Assert.Single(second.GetProperty("items").EnumerateArray());
        Assert.Equal(other, otherView.GetProperty("id").GetGuid());
        Assert.Equal(JsonValueKind.Null, second.GetProperty("nextCursor").ValueKind);
        Assert.Equal($"dad-{tag}", otherView.GetProperty("guardianUsername").GetString());
        Assert.Equal($"kid-{tag}", otherView.GetProperty("juniorUsername").GetString());
        Assert.Equal("FREQ=WEEKLY;INTERVAL=1;BYDAY=MO,TH", otherView.GetProperty("rule").GetString());

        await Eventually.TrueAsync(async () =>
        {
            var detail = await viewer.GetAsync($"/api/admin/allowances/{paying}", Ct).ExpectAsync(HttpStatusCode.OK);
            return detail.GetProperty("credits").GetProperty("items").GetArrayLength() == 3;
        }, "the skipped, paid and failed credits");
        var read = await viewer.GetAsync($"/api/admin/allowances/{paying}", Ct).ExpectAsync(HttpStatusCode.OK);
        var schedule = read.GetProperty("schedule");
        Assert.Equal("ON", schedule.GetProperty("status").GetString());
        Assert.Equal("FREQ=DAILY;INTERVAL=1", schedule.GetProperty("rule").GetString());
        Assert.Equal("Europe/Paris", schedule.GetProperty("timeZone").GetString());
        Assert.Equal($"mum-{tag}", schedule.GetProperty("guardianUsername").GetString());
        var upcoming = read.GetProperty("upcoming").EnumerateArray().ToList();
        Assert.Equal(5, upcoming.Count);
        Assert.All(upcoming, u => Assert.Equal(u.GetProperty("runAt").GetDateTime().ToUniversalTime(), DateTimeOffset.Parse(u.GetProperty("localTime").GetString()!, CultureInfo.InvariantCulture).UtcDateTime));

        var credits = read.GetProperty("credits").GetProperty("items").EnumerateArray().ToList();
        var runAts = credits.Select(c => c.GetProperty("runAt").GetDateTime()).ToList();
        Assert.Equal(runAts.OrderDescending(), runAts); // newest first
        Assert.Equal("SKIPPED", credits[^1].GetProperty("outcome").GetString());
        Assert.False(string.IsNullOrEmpty(credits[^1].GetProperty("reason").GetString()));
        var paid = Assert.Single(credits, c => c.GetProperty("outcome").GetString() == "PAID");
        Assert.Equal(JsonValueKind.String, paid.GetProperty("transactionId").ValueKind);
        Assert.Equal(3m, paid.GetProperty("amount").GetDecimal());
        var failed = Assert.Single(credits, c => c.GetProperty("outcome").GetString() == "FAILED");
        Assert.Contains("insufficient funds", failed.GetProperty("reason").GetString(), StringComparison.Ordinal);

        // Credits a page at a time too.
        var page = await viewer.GetAsync($"/api/admin/allowances/{paying}?limit=2", Ct).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(2, page.GetProperty("credits").GetProperty("items").GetArrayLength());
        var rest = await viewer.GetAsync($"/api/admin/allowances/{paying}?limit=2&cursor={page.GetProperty("credits").GetProperty("nextCursor").GetString()}", Ct).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal("SKIPPED", Assert.Single(rest.GetProperty("credits").GetProperty("items").EnumerateArray()).GetProperty("outcome").GetString());
        Assert.Equal(JsonValueKind.Null, rest.GetProperty("credits").GetProperty("nextCursor").ValueKind);

        // An OFF schedule has nothing coming.
        Assert.Equal(0, (await viewer.GetAsync($"/api/admin/allowances/{other}", Ct).ExpectAsync(HttpStatusCode.OK)).GetProperty("upcoming").GetArrayLength());
    }

    [Fact]
    public async Task Operator_TurnsAScheduleOffAndOn_AsItsGuardianWould_Audited_AndAViewerMayNot()
    {
        await using var app = TallyApp.Sqlite(new Dictionary<string, string?> { ["Tally:Roles:0"] = "api" });
        using var admin = app.Admin();
        var guardian = await admin.CreateUserAsync();
        var junior = await admin.CreateUserAsync(context: "WALLET");
        await admin.LinkAsync(guardian, junior);
        var id = await ScheduleAsync(app, guardian, junior, new { amount = 2m, frequency = "DAILY", status = "ON", startAt = Iso(DateTime.UtcNow.AddDays(-3)) });
        var operatorId = Guid.NewGuid();
        using var op = app.Client(operatorId, Roles.Operator);
        using var viewer = app.Client(Guid.NewGuid(), Roles.Viewer);

        await viewer.PostAsync($"/api/admin/allowances/{id}/off", null, Ct).ExpectAsync(HttpStatusCode.Forbidden);
        var off = await op.PostAsync($"/api/admin/allowances/{id}/off", null, Ct).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal("OFF", off.GetProperty("status").GetString());
        Assert.Equal(JsonValueKind.Null, off.GetProperty("nextRunAt").ValueKind);
        var seen = await app.AsGuardian(guardian).GetAsync($"/api/guardians/me/allowances/{junior}", Ct).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal("OFF", seen.GetProperty("status").GetString());

        // Back on: as when the guardian turns it on, nothing is paid for the time it was off (nor the days missed before).
        var before = DateTime.UtcNow;
        var on = await op.PostAsync($"/api/admin/allowances/{id}/on", null, Ct).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal("ON", on.GetProperty("status").GetString());
        Assert.True(on.GetProperty("nextRunAt").GetDateTime().ToUniversalTime() >= before.AddSeconds(-1));
        Assert.True(on.GetProperty("activeFrom").GetDateTime().ToUniversalTime() >= before.AddSeconds(-1));

        var audit = await op.GetAsync($"/api/admin/audit?actor={operatorId}", Ct).ExpectAsync(HttpStatusCode.OK);
        var rows = audit.EnumerateArray().Reverse().Select(r => (
            Action: r.GetProperty("action").GetString(), Outcome: r.GetProperty("outcome").GetString(),
            Target: r.GetProperty("target").GetString(), Detail: r.GetProperty("detail").GetString())).ToList();
        Assert.Equal(
        [
            ("POST /api/admin/allowances/{scheduleId}/off", "succeeded", $"scheduleId={id}", $"schedule {id}: ON -> OFF"),
            ("POST /api/admin/allowances/{scheduleId}/on", "succeeded", $"scheduleId={id}", $"schedule {id}: OFF -> ON"),
        ], rows);
        var refused = await op.GetAsync("/api/admin/audit?outcome=forbidden", Ct).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal("POST /api/admin/allowances/{scheduleId}/off", Assert.Single(refused.EnumerateArray()).GetProperty("action").GetString());

        await op.PostAsync($"/api/admin/allowances/{Guid.NewGuid()}/on", null, Ct).ExpectProblemAsync(HttpStatusCode.NotFound, "ALLOWANCE.NOT_FOUND");
        await app.AsGuardian(guardian).DeleteAsync($"/api/guardians/me/allowances/{junior}", Ct).ExpectAsync(HttpStatusCode.NoContent);
        await op.PostAsync($"/api/admin/allowances/{id}/on", null, Ct).ExpectProblemAsync(HttpStatusCode.Conflict, "ALLOWANCE.DELETED");
        // Deleted, yet still found, with its history.
        var found = await viewer.GetAsync($"/api/admin/allowances?guardian={guardian}", Ct).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(JsonValueKind.String, Assert.Single(found.GetProperty("items").EnumerateArray()).GetProperty("deletedAt").ValueKind);
    }

    [Fact]
    public async Task Admin_BadParameters_AreRefusedNamingThem()
    {
        await using var app = TallyApp.Sqlite(new Dictionary<string, string?> { ["Tally:Roles:0"] = "api" });
        using var viewer = app.Client(Guid.NewGuid(), Roles.Viewer);
        foreach (var (query, field) in new[]
        {
            ("cursor=not-a-cursor", "cursor"), ("limit=0", "limit"), ("limit=501", "limit"),
            ("guardian=" + new string('g', 201), "guardian"), ("junior=%01", "junior"),
        })
        {
            var problem = await viewer.GetAsync($"/api/admin/allowances?{query}", Ct).ExpectProblemAsync(HttpStatusCode.BadRequest, "VALIDATION_FAILED");
            Assert.True(problem.GetProperty("errors").TryGetProperty(field, out _), $"{query} names {field}");
        }
        await viewer.GetAsync($"/api/admin/allowances/{Guid.NewGuid()}", Ct).ExpectProblemAsync(HttpStatusCode.NotFound, "ALLOWANCE.NOT_FOUND");
        await viewer.GetAsync($"/api/admin/allowances/{Guid.NewGuid()}?cursor=1-2", Ct).ExpectProblemAsync(HttpStatusCode.BadRequest, "VALIDATION_FAILED");
    }
}
