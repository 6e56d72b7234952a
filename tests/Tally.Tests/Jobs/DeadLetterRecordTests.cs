using System.Net;
using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using Tally.Features.Allowances;
using Tally.Hosting;
using Tally.Jobs.Queues;
using Tally.Tests.Harness;

namespace Tally.Tests.Jobs;

/// <summary>
/// Dead letters as records (<c>/api/admin/dead-letters</c>): a replayed or deleted letter keeps its row
/// with who and when, a letter that dies again is dead again, the search finds by queue, reason,
/// message id and body text, allowance letters come decoded, and a bulk replay or delete acts on
/// exactly what its dry run counted. Each scenario runs on SQLite and on PostgreSQL.
/// </summary>
public class DeadLetterRecordTests
{
    private static readonly QueueDefinition Orders = new("dl.orders", 3, TimeSpan.FromSeconds(1));
    private static readonly QueueDefinition Mail = new("dl.mail", 3, TimeSpan.FromSeconds(1));

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    // The API role alone: nothing consumes what a replay publishes, so it stays countable in the queue.
    private static Task<TallyApp> StartAsync(string storage) =>
        Apps.CreateAsync(storage, new Dictionary<string, string?> { ["Tally:Roles:0"] = "api" });

    private static Task DieAsync(TallyApp app, QueueDefinition queue, string id, string body = "{}", string reason = "boom") =>
        app.Get<DeadLetterStore>().RecordAsync(queue, new QueueMessage(id, body), reason, Ct);

    private static async Task<List<JsonElement>> ListAsync(HttpClient client, string query = "") =>
        (await client.GetAsync($"/api/admin/dead-letters{query}", Ct).ExpectAsync(HttpStatusCode.OK)).EnumerateArray().ToList();

    private static async Task<JsonElement> OneAsync(HttpClient client, string queue, string messageId) =>
        Assert.Single(await ListAsync(client, $"?state=all&queue={queue}&messageId={messageId}"));

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task ReplayAndDelete_KeepTheRecord_WithWhoAndWhen_AndDyingAgainMakesItDeadAgain(string storage)
    {
        await using var app = await StartAsync(storage);
        var operatorId = Guid.NewGuid();
        using var op = app.Client(operatorId, Roles.Operator);
        await DieAsync(app, Orders, "r-1", """{"order":1}""");
        await DieAsync(app, Orders, "d-1", """{"order":2}""");
        var replay = await OneAsync(op, Orders.Name, "r-1");
        var delete = await OneAsync(op, Orders.Name, "d-1");
        Assert.Equal("dead", replay.GetProperty("state").GetString());
        Assert.Equal(JsonValueKind.Null, replay.GetProperty("settledAt").ValueKind);
        Assert.True(delete.GetProperty("sequence").GetInt64() > replay.GetProperty("sequence").GetInt64());

        var before = DateTime.UtcNow.AddSeconds(-1);
        await op.PostAsync($"/api/admin/dead-letters/{replay.GetProperty("id").GetGuid()}/replay", null, Ct).ExpectAsync(HttpStatusCode.Accepted);
        await op.DeleteAsync($"/api/admin/dead-letters/{delete.GetProperty("id").GetGuid()}", Ct).ExpectAsync(HttpStatusCode.NoContent);

        // Gone from the dead letters, kept as records: state, when, by whom, and the body.
        Assert.Empty(await ListAsync(op, $"?queue={Orders.Name}"));
        var replayed = await op.GetAsync($"/api/admin/dead-letters/{replay.GetProperty("id").GetGuid()}", Ct).ExpectAsync(HttpStatusCode.OK);
        var deleted = await op.GetAsync($"/api/admin/dead-letters/{delete.GetProperty("id").GetGuid()}", Ct).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal("replayed", replayed.GetProperty("state").GetString());
        Assert.Equal("deleted", deleted.GetProperty("state").GetString());
        foreach (var record in new[] { replayed, deleted })
        {
            Assert.Equal(operatorId.ToString(), record.GetProperty("settledBy").GetString());
            Assert.InRange(record.GetProperty("settledAt").GetDateTime().ToUniversalTime(), before, DateTime.UtcNow.AddSeconds(1));
        }
        Assert.Equal("""{"order":2}""", deleted.GetProperty("body").GetString());
        Assert.Equal([replayed.GetProperty("id").GetGuid()], (await ListAsync(op, "?state=replayed")).Select(r => r.GetProperty("id").GetGuid()));
        Assert.Equal([deleted.GetProperty("id").GetGuid()], (await ListAsync(op, "?state=deleted")).Select(r => r.GetProperty("id").GetGuid()));
        // The replay was published: nothing consumes on this instance, so it waits in the queue.
        Assert.Equal(1, (await app.Get<IQueueTransport>().GetDepthAsync(Orders, Ct)).Ready);
        // A settled letter is not settled twice.
        await op.PostAsync($"/api/admin/dead-letters/{replay.GetProperty("id").GetGuid()}/replay", null, Ct).ExpectProblemAsync(HttpStatusCode.Conflict, "DEAD_LETTER.SETTLED");
        await op.DeleteAsync($"/api/admin/dead-letters/{delete.GetProperty("id").GetGuid()}", Ct).ExpectProblemAsync(HttpStatusCode.Conflict, "DEAD_LETTER.SETTLED");
        await op.GetAsync($"/api/admin/dead-letters/{Guid.NewGuid()}", Ct).ExpectProblemAsync(HttpStatusCode.NotFound, "DEAD_LETTER.NOT_FOUND");

        // The replayed message dies again: the same record is dead again, newest, its settlement cleared.
        await DieAsync(app, Orders, "r-1", """{"order":1}""", "boom again");
        var again = Assert.Single(await ListAsync(op, $"?queue={Orders.Name}"));
        Assert.Equal(replay.GetProperty("id").GetGuid(), again.GetProperty("id").GetGuid());
        Assert.Equal("dead", again.GetProperty("state").GetString());
        Assert.Equal("boom again", again.GetProperty("reason").GetString());
        Assert.Equal(JsonValueKind.Null, again.GetProperty("settledAt").ValueKind);
        Assert.Equal(JsonValueKind.Null, again.GetProperty("settledBy").ValueKind);
        Assert.True(again.GetProperty("sequence").GetInt64() > delete.GetProperty("sequence").GetInt64());
        Assert.Equal(1, Assert.Single(await ListAsync(op, "?state=all&limit=1")).GetProperty("attempts").GetInt32());
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Search_ByQueueReasonMessageIdAndText_NewestFirst_WithTheSequenceAsCursor(string storage)
    {
        await using var app = await StartAsync(storage);
        using var viewer = app.Client(Guid.NewGuid(), Roles.Viewer);
        await DieAsync(app, Orders, "o-1", """{"sku":"RED-SHOE","note":"100% wool"}""", "max retries (3) reached: Timeout talking to stock");
        await DieAsync(app, Orders, "o-2", """{"sku":"BLUE_HAT"}""", "malformed order");
        await DieAsync(app, Mail, "m-1", """{"to":"ana@example.com"}""", "max retries (3) reached: SMTP timeout");
        await DieAsync(app, Mail, "o-1", """{"to":"bo@example.com"}""", "bounced");

        static List<string> Ids(List<JsonElement> rows) => rows.Select(r => $"{r.GetProperty("queue").GetString()}/{r.GetProperty("messageId").GetString()}").ToList();
        Assert.Equal(["dl.mail/o-1", "dl.mail/m-1", "dl.orders/o-2", "dl.orders/o-1"], Ids(await ListAsync(viewer)));
        Assert.Equal(["dl.orders/o-2", "dl.orders/o-1"], Ids(await ListAsync(viewer, "?queue=dl.orders")));
        Assert.Equal(["dl.mail/m-1", "dl.orders/o-1"], Ids(await ListAsync(viewer, "?reason=TIMEOUT")));
        Assert.Equal(["dl.mail/m-1"], Ids(await ListAsync(viewer, "?reason=timeout&queue=dl.mail")));
        Assert.Equal(["dl.mail/o-1", "dl.orders/o-1"], Ids(await ListAsync(viewer, "?messageId=o-1")));
        Assert.Equal(["dl.orders/o-1"], Ids(await ListAsync(viewer, "?text=red-shoe")));
        Assert.Equal(["dl.mail/o-1", "dl.mail/m-1"], Ids(await ListAsync(viewer, "?text=%40example.com")));
        // %, _ and \ in the text are themselves, not patterns.
        Assert.Equal(["dl.orders/o-1"], Ids(await ListAsync(viewer, "?text=100%25")));
        Assert.Equal(["dl.orders/o-2"], Ids(await ListAsync(viewer, "?text=E_H")));
        Assert.Empty(await ListAsync(viewer, "?text=E%25H"));
        Assert.Empty(await ListAsync(viewer, "?queue=dl.orders&state=replayed"));

        var first = await ListAsync(viewer, "?limit=3");
        var next = await ListAsync(viewer, $"?limit=3&before={first[^1].GetProperty("sequence").GetInt64()}");
        Assert.Equal(["dl.orders/o-1"], Ids(next));
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task AllowanceLetter_IsShownDecoded_WithItsSchedule(string storage)
    {
        await using var app = await StartAsync(storage);
        using var admin = app.Admin();
        var guardian = await admin.CreateUserAsync();
        var junior = await admin.CreateUserAsync(context: "WALLET");
        await admin.LinkAsync(guardian, junior);
        var schedule = await app.AsGuardian(guardian).PostJsonAsync($"/api/guardians/me/allowances/{junior}", new { amount = 12.5m, frequency = "DAILY", status = "OFF" })
            .ExpectAsync(HttpStatusCode.Created);
        var scheduleId = schedule.GetProperty("id").GetGuid();
        var runAt = new DateTime(2026, 3, 1, 9, 0, 0, DateTimeKind.Utc);
        var occurrence = new OccurrenceMessage(scheduleId, runAt).ToQueueMessage();
        await using (var db = app.Db())
        {
            // Written as rows, not through the worker's dead-letter hook, which would also record a failed credit.
            db.DeadLetters.AddRange(
                new DeadLetter { Id = Guid.NewGuid(), Queue = "allowance.schedule", MessageId = occurrence.Id, Body = occurrence.Body, Attempts = 6, Reason = "insufficient funds", DeadLetteredAt = DateTime.UtcNow },
                new DeadLetter { Id = Guid.NewGuid(), Queue = "allowance.schedule", MessageId = "junk", Body = "not json", Attempts = 1, Reason = "malformed allowance message", DeadLetteredAt = DateTime.UtcNow },
                new DeadLetter { Id = Guid.NewGuid(), Queue = Orders.Name, MessageId = "x", Body = occurrence.Body, Attempts = 1, Reason = "other queue", DeadLetteredAt = DateTime.UtcNow });
            await db.SaveChangesAsync(Ct);
        }

        var decoded = (await OneAsync(admin, "allowance.schedule", occurrence.Id)).GetProperty("allowance");
        Assert.Equal(scheduleId, decoded.GetProperty("scheduleId").GetGuid());
        Assert.Equal(guardian, decoded.GetProperty("guardianId").GetGuid());
        Assert.Equal(junior, decoded.GetProperty("juniorId").GetGuid());
        Assert.Equal(runAt, decoded.GetProperty("occurrence").GetDateTime().ToUniversalTime());
        Assert.Equal(12.5m, decoded.GetProperty("amount").GetDecimal());
        Assert.Equal("USD", decoded.GetProperty("currency").GetString());
        var link = decoded.GetProperty("schedule").GetString()!;
        Assert.Equal($"/api/admin/allowances/{scheduleId}", link);
        await admin.GetAsync(link, Ct).ExpectAsync(HttpStatusCode.OK);

        Assert.Equal(JsonValueKind.Null, (await OneAsync(admin, "allowance.schedule", "junk")).GetProperty("allowance").ValueKind);
        Assert.Equal(JsonValueKind.Null, (await OneAsync(admin, Orders.Name, "x")).GetProperty("allowance").ValueKind);
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task BulkReplayByFilter_ActsOnExactlyWhatTheDryRunCounted_EvenWhenALetterArrivesBetween(string storage)
    {
        await using var app = await StartAsync(storage);
        var operatorId = Guid.NewGuid();
        using var op = app.Client(operatorId, Roles.Operator);
        for (var i = 0; i < 5; i++)
        {
            await DieAsync(app, Orders, $"b-{i}", reason: "Timeout");
        }
        await DieAsync(app, Orders, "other", reason: "malformed");
        await DieAsync(app, Mail, "b-mail", reason: "Timeout");

        var filter = new { queue = Orders.Name, reason = "timeout" };
        var preview = await op.PostJsonAsync("/api/admin/dead-letters/replay", new { filter.queue, filter.reason, dryRun = true }).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(5, preview.GetProperty("matched").GetInt64());
        var upTo = preview.GetProperty("upTo").GetInt64();
        // Nothing changed by the dry run.
        Assert.Equal(7, (await ListAsync(op)).Count);

        // A letter matching the filter arrives after the preview; one previewed dies again meanwhile.
        await DieAsync(app, Orders, "late", reason: "Timeout");
        await DieAsync(app, Orders, "b-0", reason: "Timeout");
        await op.PostJsonAsync("/api/admin/dead-letters/replay", new { filter.queue, filter.reason }).ExpectProblemAsync(HttpStatusCode.BadRequest, "VALIDATION_FAILED");
        var done = await op.PostJsonAsync("/api/admin/dead-letters/replay", new { filter.queue, filter.reason, upTo }).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(4, done.GetProperty("replayed").GetInt64());
        Assert.Equal(upTo, done.GetProperty("upTo").GetInt64());

        Assert.Equal(["b-0", "late", "other"], (await ListAsync(op, $"?queue={Orders.Name}")).Select(r => r.GetProperty("messageId").GetString()).Order());
        var replayed = await ListAsync(op, "?state=replayed");
        Assert.Equal(["b-1", "b-2", "b-3", "b-4"], replayed.Select(r => r.GetProperty("messageId").GetString()).Order());
        Assert.All(replayed, r => Assert.Equal(operatorId.ToString(), r.GetProperty("settledBy").GetString()));
        Assert.Equal(4, (await app.Get<IQueueTransport>().GetDepthAsync(Orders, Ct)).Ready);

        // Preview and action agree when nothing arrives: everything live, up to the preview.
        var all = await op.PostJsonAsync("/api/admin/dead-letters/replay", new { dryRun = true }).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(4, all.GetProperty("matched").GetInt64());
        var allDone = await op.PostJsonAsync("/api/admin/dead-letters/replay", new { upTo = all.GetProperty("upTo").GetInt64() }).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(4, allDone.GetProperty("replayed").GetInt64());
        Assert.Empty(await ListAsync(op));

        // The audit says what a bulk action matched and how many it acted on.
        using var admin = app.Admin();
        var audit = await admin.GetAsync($"/api/admin/audit?actor={operatorId}&action={Uri.EscapeDataString("POST /api/admin/dead-letters/replay")}", Ct).ExpectAsync(HttpStatusCode.OK);
        var rows = audit.EnumerateArray().Reverse().Select(r => (Target: r.GetProperty("target").GetString(), Detail: r.GetProperty("detail").GetString())).ToList();
        Assert.Equal(5, rows.Count);
        Assert.Equal(("queue=dl.orders reason~timeout", $"dry run: 5 dead letter(s) up to sequence {upTo}"), rows[0]);
        Assert.Equal($"queue=dl.orders reason~timeout upTo={upTo}", rows[2].Target);
        Assert.Equal($"replayed 4 dead letter(s) up to sequence {upTo}", rows[2].Detail);
        Assert.Equal("all", rows[3].Target);
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task BulkDelete_ByIds_AndByFilter_MarksOnlyLiveLettersDeleted(string storage)
    {
        await using var app = await StartAsync(storage);
        using var op = app.Client(Guid.NewGuid(), Roles.Operator);
        for (var i = 0; i < 4; i++)
        {
            await DieAsync(app, Mail, $"x-{i}", body: $$"""{"n":{{i}}}""");
        }
        var letters = await ListAsync(op);
        var chosen = letters.Take(2).Select(l => l.GetProperty("id").GetGuid()).ToList();
        var preview = await op.PostJsonAsync("/api/admin/dead-letters/delete", new { ids = chosen, dryRun = true }).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(2, preview.GetProperty("matched").GetInt64());
        var deleted = await op.PostJsonAsync("/api/admin/dead-letters/delete", new { ids = chosen }).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(2, deleted.GetProperty("deleted").GetInt64());
        // Deleted ones are not deleted again, nor replayed by id.
        Assert.Equal(0, (await op.PostJsonAsync("/api/admin/dead-letters/replay", new { ids = chosen }).ExpectAsync(HttpStatusCode.OK)).GetProperty("replayed").GetInt64());
        Assert.Equal(2, (await ListAsync(op)).Count);
        Assert.Equal(chosen.Order(), (await ListAsync(op, "?state=deleted")).Select(r => r.GetProperty("id").GetGuid()).Order());

        var rest = await op.PostJsonAsync("/api/admin/dead-letters/delete", new { queue = Mail.Name, dryRun = true }).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(2, rest.GetProperty("matched").GetInt64());
        Assert.Equal(2, (await op.PostJsonAsync("/api/admin/dead-letters/delete", new { queue = Mail.Name, upTo = rest.GetProperty("upTo").GetInt64() })
            .ExpectAsync(HttpStatusCode.OK)).GetProperty("deleted").GetInt64());
        Assert.Empty(await ListAsync(op));
        await using var db = app.Db();
        Assert.Equal(4, await db.DeadLetters.CountAsync(d => d.State == DeadLetterStates.Deleted && d.Body.StartsWith("{\"n\":"), Ct));
        // Nothing was published by a delete.
        Assert.Equal(0, (await app.Get<IQueueTransport>().GetDepthAsync(Mail, Ct)).Ready);
    }

    public static TheoryData<string, string, string?, string> BadRequests => new()
    {
        { "GET", "/api/admin/dead-letters?state=gone", null, "state" },
        { "GET", "/api/admin/dead-letters?before=0", null, "before" },
        { "GET", "/api/admin/dead-letters?limit=1001", null, "limit" },
        { "GET", "/api/admin/dead-letters?text=a%00b", null, "text" },
        { "GET", "/api/admin/dead-letters?reason=" + new string('r', 201), null, "reason" },
        { "GET", "/api/admin/dead-letters?messageId=%1B", null, "messageId" },
        { "POST", "/api/admin/dead-letters/replay", """{"queue":"q"}""", "upTo" },
        { "POST", "/api/admin/dead-letters/delete", """{}""", "upTo" },
        { "POST", "/api/admin/dead-letters/replay", """{"upTo":-1}""", "upTo" },
        { "POST", "/api/admin/dead-letters/replay", """{"ids":[],"dryRun":true}""", "ids" },
        { "POST", "/api/admin/dead-letters/delete", """{"text":"a\u0007b","dryRun":true}""", "text" },
        { "POST", "/api/admin/dead-letters/replay", """{"queue":"q\nq","upTo":1}""", "queue" },
        { "POST", "/api/admin/dead-letters/delete", "{\"messageId\":\"" + new string('m', 201) + "\",\"upTo\":1}", "messageId" },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task BadInput_IsRefusedNamingTheField(string method, string url, string? body, string field)
    {
        await using var app = TallyApp.Sqlite();
        using var admin = app.Admin();
        var call = method == "GET" ? admin.GetAsync(url, Ct) : admin.PostRawAsync(url, body!);
        var problem = await call.ExpectProblemAsync(HttpStatusCode.BadRequest, "VALIDATION_FAILED");
        Assert.True(problem.GetProperty("errors").TryGetProperty(field, out _), $"no error for {field}: {problem}");
    }

    [Fact]
    public async Task BadInput_TooManyIdsNulOrNotJson_IsA400NeverA500()
    {
        await using var app = TallyApp.Sqlite();
        using var admin = app.Admin();
        var ids = Enumerable.Range(0, DeadLetterEndpoints.MaxIds + 1).Select(_ => Guid.NewGuid()).ToList();
        await admin.PostJsonAsync("/api/admin/dead-letters/replay", new { ids }).ExpectProblemAsync(HttpStatusCode.BadRequest, "VALIDATION_FAILED");
        foreach (var body in new[] { "not json", """{"text":"a\u0000b","dryRun":true}""", """{"ids":["nope"]}""", """{"upTo":"x"}""", """{"dryRun":"yes"}""", "" })
        {
            using var response = await admin.PostRawAsync("/api/admin/dead-letters/delete", body);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        }
    }
}
