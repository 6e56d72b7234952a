using System.Net;
using Tally.Hosting;
using Tally.Jobs.Outbox;
using Tally.Tests.Harness;

namespace Tally.Tests.Jobs;

/// <summary>The events listing, <c>GET /api/admin/events</c>: its filters, its order and paging either way, and its refusals.</summary>
public class EventListingTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static readonly DateTime Day = new(2026, 3, 1, 0, 0, 0, DateTimeKind.Utc);

    // No worker: nothing publishes, so the published and pending rows are the seeded ones.
    private static Task<TallyApp> AppAsync(string storage) =>
        Apps.CreateAsync(storage, new Dictionary<string, string?> { ["Tally:Roles:0"] = "api" });

    /// <summary>50 events, one a minute from <see cref="Day"/>: three types, five subjects (every 10th none), the last 8 pending.</summary>
    private static async Task<List<OutboxEvent>> SeedAsync(TallyApp app)
    {
        var rows = Enumerable.Range(0, 50).Select(i => new OutboxEvent
        {
            EventId = Guid.NewGuid(),
            EventType = (i % 3) switch { 0 => "AllowanceCredited", 1 => "ConnectionSynced", _ => "CoreBalanceUpdated" },
            SubjectId = i % 10 == 9 ? null : $"subject-{i % 5}",
            Payload = $$"""{"n":{{i}}}""",
            OccurredAt = Day.AddMinutes(i),
            PublishedAt = i >= 42 ? null : Day.AddMinutes(i).AddSeconds(1),
        }).ToList();
        await using var db = app.Db();
        foreach (var row in rows)
        {
            db.OutboxEvents.Add(row);
            await db.SaveChangesAsync(Ct);
        }
        return rows;
    }

    private static async Task<List<long>> SequencesAsync(HttpClient client, string query)
    {
        var limit = query.Contains("limit=", StringComparison.Ordinal) ? "" : "limit=1000&";
        var rows = await client.GetAsync($"/api/admin/events?{limit}{query}", Ct).ExpectAsync(HttpStatusCode.OK);
        return rows.EnumerateArray().Select(r => r.GetProperty("sequence").GetInt64()).ToList();
    }

    private static List<long> Ascending(List<OutboxEvent> rows, Func<OutboxEvent, bool> filter) =>
        rows.Where(filter).OrderBy(e => e.Sequence).Select(e => e.Sequence).ToList();

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Events_EachFilter_AnswersExactlyItsRows(string storage)
    {
        await using var app = await AppAsync(storage);
        var rows = await SeedAsync(app);
        using var viewer = app.Client(Guid.NewGuid(), Roles.Viewer);

        Assert.Equal(Ascending(rows, _ => true), await SequencesAsync(viewer, ""));
        Assert.Equal(Ascending(rows, _ => true), await SequencesAsync(viewer, "state=all"));
        Assert.Equal(Ascending(rows, e => e.EventType == "ConnectionSynced"), await SequencesAsync(viewer, "type=ConnectionSynced"));
        Assert.Equal(Ascending(rows, e => e.SubjectId == "subject-3"), await SequencesAsync(viewer, "subject=subject-3"));
        Assert.Equal(Ascending(rows, e => e.SubjectId == "subject-3" && e.EventType == "AllowanceCredited"),
            await SequencesAsync(viewer, "subject=subject-3&type=AllowanceCredited"));
        Assert.Equal(Ascending(rows, e => e.PublishedAt is null), await SequencesAsync(viewer, "state=pending"));
        Assert.Equal(Ascending(rows, e => e.PublishedAt is not null), await SequencesAsync(viewer, "state=published"));
        Assert.Equal(Ascending(rows, e => e.PublishedAt is null && e.EventType == "CoreBalanceUpdated"),
            await SequencesAsync(viewer, "state=pending&type=CoreBalanceUpdated"));
        Assert.Equal(Ascending(rows, e => e.OccurredAt >= Day.AddMinutes(10) && e.OccurredAt < Day.AddMinutes(20)),
            await SequencesAsync(viewer, "from=2026-03-01T00:10:00Z&to=2026-03-01T00:20:00Z"));
        Assert.Equal(Ascending(rows, e => e.OccurredAt >= Day.AddMinutes(45)), await SequencesAsync(viewer, "from=2026-03-01T00:45:00Z"));
        Assert.Equal([rows[17].Sequence], await SequencesAsync(viewer, $"eventId={rows[17].EventId}"));
        Assert.Empty(await SequencesAsync(viewer, $"eventId={Guid.NewGuid()}"));
        Assert.Empty(await SequencesAsync(viewer, "subject=nobody"));

        var one = (await viewer.GetAsync($"/api/admin/events?eventId={rows[17].EventId}", Ct).ExpectAsync(HttpStatusCode.OK))[0];
        Assert.Equal(rows[17].EventId, one.GetProperty("eventId").GetGuid());
        Assert.Equal("CoreBalanceUpdated", one.GetProperty("eventType").GetString());
        Assert.Equal("subject-2", one.GetProperty("subjectId").GetString());
        Assert.Equal(17, one.GetProperty("payload").GetProperty("n").GetInt32());
        Assert.Equal(Day.AddMinutes(17), one.GetProperty("occurredAt").GetDateTime().ToUniversalTime());
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Events_PageForwardWithAfter_AndBackWithBefore_EachRowOnce(string storage)
    {
        await using var app = await AppAsync(storage);
        var rows = await SeedAsync(app);
        using var viewer = app.Client(Guid.NewGuid(), Roles.Viewer);
        var all = Ascending(rows, _ => true);

        // Forward, oldest first, as the listing always was: after = the last sequence seen.
        var forward = new List<long>();
        for (var page = await SequencesAsync(viewer, "limit=9"); page.Count > 0; page = await SequencesAsync(viewer, $"limit=9&after={page[^1]}"))
        {
            Assert.True(page.Count <= 9);
            forward.AddRange(page);
        }
        Assert.Equal(all, forward);

        // Newest first: order=desc for the first page, then before = the last sequence seen (before alone means newest first).
        var backward = new List<long>();
        for (var page = await SequencesAsync(viewer, "limit=9&order=desc"); page.Count > 0; page = await SequencesAsync(viewer, $"limit=9&before={page[^1]}"))
        {
            Assert.True(page.Count <= 9);
            backward.AddRange(page);
        }
        Assert.Equal(all.AsEnumerable().Reverse(), backward);

        // Filters page the same way; after and before together are a window, in the order asked for.
        var type = Ascending(rows, e => e.EventType == "AllowanceCredited");
        var firstPage = await SequencesAsync(viewer, "type=AllowanceCredited&order=desc&limit=5");
        Assert.Equal(type.AsEnumerable().Reverse().Take(5), firstPage);
        Assert.Equal(type.AsEnumerable().Reverse().Skip(5).Take(5), await SequencesAsync(viewer, $"type=AllowanceCredited&before={firstPage[^1]}&limit=5"));
        Assert.Equal(all.Where(s => s > all[10] && s < all[20]), await SequencesAsync(viewer, $"after={all[10]}&before={all[20]}&order=asc"));
        Assert.Equal(all.Where(s => s > all[10] && s < all[20]).Reverse(), await SequencesAsync(viewer, $"after={all[10]}&before={all[20]}"));
    }

    [Theory]
    [InlineData("type=%00", "type")]
    [InlineData("subject=a%00b", "subject")]
    [InlineData("subject={long}", "subject")]
    [InlineData("state=sent", "state")]
    [InlineData("state=PENDING", "state")]
    [InlineData("order=newest", "order")]
    [InlineData("eventId=42", "eventId")]
    [InlineData("eventId=00000000-0000-0000-0000-000000000000", "eventId")]
    [InlineData("after=-1", "after")]
    [InlineData("after=x", "after")]
    [InlineData("before=0", "before")]
    [InlineData("before=9223372036854775808", "before")]
    [InlineData("from=last-week", "from")]
    [InlineData("to=2026-02-30T00:00:00Z", "to")]
    [InlineData("from=1999-12-31T23:59:59Z", "from")]
    [InlineData("to=2100-01-01T00:00:01Z", "to")]
    [InlineData("from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z", "from")]
    [InlineData("limit=0", "limit")]
    [InlineData("limit=1001", "limit")]
    public async Task Events_BadParameter_Is400NamingIt(string query, string field)
    {
        await using var app = TallyApp.Sqlite(new Dictionary<string, string?> { ["Tally:Roles:0"] = "api" });
        using var viewer = app.Client(Guid.NewGuid(), Roles.Viewer);
        using var response = await viewer.GetAsync($"/api/admin/events?{query.Replace("{long}", new string('x', 201), StringComparison.Ordinal)}", Ct);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var problem = await response.ReadJsonAsync();
        Assert.Equal([field], problem.GetProperty("errors").EnumerateObject().Select(e => e.Name));
    }
}
