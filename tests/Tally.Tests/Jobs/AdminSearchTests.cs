using System.Net;
using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using Tally.Dashboard;
using Tally.Features.Allowances;
using Tally.Features.BalanceSync;
using Tally.Features.Connections;
using Tally.Features.StoreIntegrity;
using Tally.Hosting;
using Tally.Jobs.Outbox;
using Tally.Jobs.Queues;
using Tally.Jobs.Scheduling;
using Tally.Tests.Harness;

namespace Tally.Tests.Jobs;

/// <summary>The console's search box, <c>GET /api/admin/search?q=</c>: any id leads to the page that shows it.</summary>
public class AdminSearchTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private sealed record World(
        Guid Guardian, Guid Junior, Guid Loner, Guid Schedule, Guid Connection, Guid Transfer, Guid Event, Guid CoreAccount,
        Guid DeadLetter, long Run, long RepairRun);

    /// <summary>One thing of each kind: users through the admin API and a deposit for a transfer; the rest written as the features write them.</summary>
    private static async Task<World> SeedAsync(TallyApp app)
    {
        using var admin = app.Admin();
        var guardian = await admin.CreateUserAsync("Grace.Guardian");
        var junior = await admin.CreateUserAsync("june", context: "WALLET");
        var loner = await admin.CreateUserAsync("loner");
        await admin.LinkAsync(guardian, junior);
        await admin.DepositAsync(await admin.CreateAccountAsync(guardian), 25m);
        var now = DateTime.UtcNow;
        await using var db = app.Db();
        var transfer = await db.LedgerTransfers.Select(t => t.Id).SingleAsync(Ct);
        var schedule = new AllowanceSchedule
        {
            Id = Guid.NewGuid(),
            GuardianId = guardian,
            JuniorId = junior,
            AmountMinor = 500,
            Currency = "USD",
            Frequency = Frequency.Weekly,
            TimeZone = "UTC",
            StartAt = now,
            Status = ScheduleStatus.On,
            ActiveFrom = now,
            CreatedAt = now,
            UpdatedAt = now,
        };
        var connection = new ProviderConnection
        {
            Id = Guid.NewGuid(),
            UserId = loner,
            ProviderSlug = "simplefin",
            Name = "Checking",
            Status = ConnectionStatus.Active,
            CreatedAt = now,
            UpdatedAt = now,
        };
        var core = new CoreAccount
        {
            Id = Guid.NewGuid(),
            UserId = guardian,
            AccountNumber = "0012345",
            AccountType = "SAVINGS",
            Currency = "USD",
            IsActive = true,
            CreatedAt = now,
            UpdatedAt = now,
        };
        var dead = new DeadLetter
        {
            Id = Guid.NewGuid(),
            Queue = "allowances",
            MessageId = "occ/42 & more",
            Body = "{}",
            Attempts = 5,
            Reason = "boom",
            DeadLetteredAt = now,
        };
        var run = new CronRun { JobName = "balance-sync.enqueue-all", Status = CronRunStatus.Failed, Trigger = "schedule", StartedAt = now, FinishedAt = now, InstanceId = "n1" };
        var repair = new CronRun { JobName = RepairHasOrders.Name, Status = CronRunStatus.Success, Trigger = "manual", StartedAt = now, FinishedAt = now, InstanceId = "n1" };
        db.AddRange(schedule, connection, core, dead, run, repair);
        var outboxEvent = Outbox.Add(db, "AllowanceCredited", schedule.Id.ToString(), new { n = 1 }, now);
        await db.SaveChangesAsync(Ct);
        return new World(guardian, junior, loner, schedule.Id, connection.Id, transfer, outboxEvent.EventId, core.Id, dead.Id, run.Id, repair.Id);
    }

    private static async Task<List<(string Kind, string Id, string Label, string Href)>> SearchAsync(HttpClient client, string q)
    {
        var hits = await client.GetAsync($"/api/admin/search?q={Uri.EscapeDataString(q)}", Ct).ExpectAsync(HttpStatusCode.OK);
        return hits.EnumerateArray().Select(h => (
            h.GetProperty("kind").GetString()!, h.GetProperty("id").GetString()!, h.GetProperty("label").GetString()!, h.GetProperty("href").GetString()!)).ToList();
    }

    private static List<(string Kind, string Href)> KindsAndPages(List<(string Kind, string Id, string Label, string Href)> hits) =>
        hits.Select(h => (h.Kind, h.Href)).ToList();

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Search_FindsEachKind_AndLeadsToItsPage(string storage)
    {
        await using var app = await Apps.CreateAsync(storage, new Dictionary<string, string?> { ["Tally:Roles:0"] = "api" });
        var w = await SeedAsync(app);
        using var viewer = app.Client(Guid.NewGuid(), Roles.Viewer);

        // A user by username or by id: a page in each area; the allowances page only for a guardian or a junior.
        var byName = await SearchAsync(viewer, "Grace.Guardian");
        Assert.Equal(
        [
            ("user", $"/dashboard/allowances?user={w.Guardian}"),
            ("user", $"/dashboard/balance-sync?user={w.Guardian}"),
            ("user", $"/dashboard/connections?user={w.Guardian}"),
        ], KindsAndPages(byName));
        Assert.All(byName, h => Assert.StartsWith("Grace.Guardian: ", h.Label, StringComparison.Ordinal));
        Assert.Equal(KindsAndPages(byName), KindsAndPages(await SearchAsync(viewer, w.Guardian.ToString())));
        Assert.Equal($"/dashboard/allowances?user={w.Junior}", (await SearchAsync(viewer, w.Junior.ToString().ToUpperInvariant()))[0].Href);
        Assert.Equal(
            [("user", $"/dashboard/balance-sync?user={w.Loner}"), ("user", $"/dashboard/connections?user={w.Loner}")],
            KindsAndPages(await SearchAsync(viewer, " loner ")));

        Assert.Equal([("schedule", $"/dashboard/allowances/{w.Schedule}")], KindsAndPages(await SearchAsync(viewer, w.Schedule.ToString())));
        Assert.Equal([("connection", $"/dashboard/connections?user={w.Loner}&connection={w.Connection}")], KindsAndPages(await SearchAsync(viewer, w.Connection.ToString())));
        Assert.Equal([("transfer", $"/api/admin/ledger/transfers/{w.Transfer}")], KindsAndPages(await SearchAsync(viewer, w.Transfer.ToString())));
        Assert.Equal([("event", $"/dashboard/events?eventId={w.Event}")], KindsAndPages(await SearchAsync(viewer, w.Event.ToString())));
        Assert.Equal([("coreAccount", $"/dashboard/balance-sync?user={w.Guardian}")], KindsAndPages(await SearchAsync(viewer, w.CoreAccount.ToString())));

        // A dead letter by its id or by its message id; the message id is escaped in the link.
        var deadPage = "/dashboard/dead-letters?messageId=occ%2F42%20%26%20more";
        Assert.Equal([("deadLetter", deadPage)], KindsAndPages(await SearchAsync(viewer, w.DeadLetter.ToString())));
        var byMessage = Assert.Single(await SearchAsync(viewer, "occ/42 & more"));
        Assert.Equal(("deadLetter", w.DeadLetter.ToString(), deadPage), (byMessage.Kind, byMessage.Id, byMessage.Href));

        // A run by its number; a store repair run also leads to the store page.
        Assert.Equal([("run", $"/dashboard/runs?run={w.Run}")], KindsAndPages(await SearchAsync(viewer, w.Run.ToString(System.Globalization.CultureInfo.InvariantCulture))));
        Assert.Equal(
            [("run", $"/dashboard/runs?run={w.RepairRun}"), ("run", $"/dashboard/store?run={w.RepairRun}")],
            KindsAndPages(await SearchAsync(viewer, w.RepairRun.ToString(System.Globalization.CultureInfo.InvariantCulture))));

        // Nothing found: an empty array. Usernames match exactly, as everywhere in the admin API.
        Assert.Empty(await SearchAsync(viewer, Guid.NewGuid().ToString()));
        Assert.Empty(await SearchAsync(viewer, "987654321"));
        Assert.Empty(await SearchAsync(viewer, "grace"));

        // The same search from C#, as a Razor page calls it.
        await using var db = app.Db();
        var hits = await ConsoleSearch.FindAsync(db, "Grace.Guardian", Ct);
        Assert.Equal(KindsAndPages(byName), hits.Select(h => (h.Kind, h.Href)).ToList());
        Assert.True(ConsoleSearch.Check("a\u0000b").Any);
        await Assert.ThrowsAsync<ArgumentException>(() => ConsoleSearch.FindAsync(db, "", Ct));
    }

    [Theory]
    [InlineData("")]
    [InlineData("%20%20")]
    [InlineData("a%00b")]
    [InlineData("line%0Abreak")]
    [InlineData("%1B[2J")]
    [InlineData("{long}")]
    public async Task Search_BadQuery_Is400NamingQ(string q)
    {
        await using var app = TallyApp.Sqlite(new Dictionary<string, string?> { ["Tally:Roles:0"] = "api" });
        using var viewer = app.Client(Guid.NewGuid(), Roles.Viewer);
        using var response = await viewer.GetAsync($"/api/admin/search?q={q.Replace("{long}", new string('x', 201), StringComparison.Ordinal)}", Ct);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var problem = await response.ReadJsonAsync();
        Assert.Equal(["q"], problem.GetProperty("errors").EnumerateObject().Select(e => e.Name));
        using var missing = await viewer.GetAsync("/api/admin/search", Ct);
        Assert.Equal(HttpStatusCode.BadRequest, missing.StatusCode);
    }

    [Fact]
    public async Task Search_TwoHundredCharacters_IsAnswered()
    {
        await using var app = TallyApp.Sqlite(new Dictionary<string, string?> { ["Tally:Roles:0"] = "api" });
        using var viewer = app.Client(Guid.NewGuid(), Roles.Viewer);
        var hits = await viewer.GetAsync($"/api/admin/search?q={new string('x', 200)}", Ct).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(JsonValueKind.Array, hits.ValueKind);
        Assert.Equal(0, hits.GetArrayLength());
    }
}
