using System.Net;
using Deque.AxeCore.Commons;
using Deque.AxeCore.Playwright;
using Microsoft.Playwright;
using Tally.Hosting;
using Tally.Tests.Harness;

namespace Tally.Tests.Dashboard;

/// <summary>Browser tests run one at a time, after the parallel ones: each drives a real Chromium.</summary>
[CollectionDefinition(nameof(BrowserTests), DisableParallelization = true)]
public sealed class BrowserTests;

/// <summary>The console in a real headless Chromium against Tally on a Kestrel port.</summary>
[Collection(nameof(BrowserTests))]
public class ConsoleBrowserTests
{
    private static readonly string[] Pages =
    [
        "/dashboard", "/dashboard/jobs", "/dashboard/runs", "/dashboard/dead-letters", "/dashboard/events", "/dashboard/allowances",
        "/dashboard/balance-sync", "/dashboard/connections", "/dashboard/store", "/dashboard/audit", "/dashboard/search?q=nobody",
    ];

    [Fact]
    public async Task ViewerSeesEveryPageWithoutButtons_OperatorPausesResumesAndRunsAJob_AndTheAuditShowsWho()
    {
        await using var app = TallyApp.Sqlite();
        await using var browser = await ConsoleBrowser.StartAsync(app);

        // A viewer: every page, no button that changes anything; the API refuses the change anyway.
        var viewer = await browser.SignInAsync("vera", Roles.Viewer);
        Assert.EndsWith("/dashboard", viewer.Url);
        foreach (var path in Pages)
        {
            await viewer.GotoAsync(path);
            Assert.Equal(0, await viewer.Locator("main button[data-url]").CountAsync());
            await AssertAccessibleAsync(viewer);
        }
        Assert.True(browser.Errors.Count == 0, string.Join(Environment.NewLine, browser.Errors));
        var refused = await viewer.EvaluateAsync<int>("""
            async () => (await fetch('/api/admin/jobs/store.sync-accounts/pause', { method: 'POST',
                headers: { 'X-CSRF-TOKEN': document.querySelector('meta[name="csrf-token"]').content } })).status
            """);
        Assert.Equal(403, refused);
        // Chromium reports the refused call itself as a console error: expected here, and only that one.
        Assert.Contains("403", Assert.Single(browser.Errors));
        browser.Errors.Clear();

        // An operator pauses (after confirming), resumes and runs the job from the Jobs page.
        var op = await browser.SignInAsync("olga", Roles.Operator);
        await op.GotoAsync("/dashboard/jobs");
        var row = op.Locator("tr[data-job='store.sync-accounts']");
        await row.GetByRole(AriaRole.Button, new() { Name = "Pause" }).ClickAsync();
        await Assertions.Expect(op.Locator("#status")).ToContainTextAsync("Paused store.sync-accounts");
        await Assertions.Expect(row.Locator("td.state")).ToHaveTextAsync("paused");
        await row.GetByRole(AriaRole.Button, new() { Name = "Resume" }).ClickAsync();
        await Assertions.Expect(row.Locator("td.state")).ToHaveTextAsync("active");
        await row.GetByRole(AriaRole.Button, new() { Name = "Run now" }).ClickAsync();
        await Assertions.Expect(op.Locator("#status")).ToContainTextAsync("SUCCESS");
        await op.ReloadAsync();
        await Assertions.Expect(row.Locator(".status")).ToHaveTextAsync("SUCCESS");
        await AssertAccessibleAsync(op);
        await ConsoleBrowser.ScreenshotAsync(op, "jobs");

        // The runs, filtered by status and time in the form; the filters land in the URL.
        await op.GotoAsync("/dashboard/runs");
        await op.GetByLabel("Status").SelectOptionAsync("SUCCESS");
        await op.GetByLabel("Started from (UTC)").FillAsync(DateTime.UtcNow.AddHours(-1).ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture));
        await op.GetByRole(AriaRole.Button, new() { Name = "Filter" }).ClickAsync();
        await Assertions.Expect(op).ToHaveURLAsync(new System.Text.RegularExpressions.Regex("status=SUCCESS&.*from=20"));
        var statuses = await op.Locator("tr[data-run] td.status").AllInnerTextsAsync();
        Assert.NotEmpty(statuses);
        Assert.All(statuses, status => Assert.Equal("SUCCESS", status));
        Assert.Contains("store.sync-accounts", string.Join(" ", await op.Locator("tr[data-run]").AllInnerTextsAsync()));
        await AssertAccessibleAsync(op);
        await ConsoleBrowser.ScreenshotAsync(op, "runs");
        await op.GetByLabel("Started from (UTC)").FillAsync(DateTime.UtcNow.AddHours(1).ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture));
        await op.GetByRole(AriaRole.Button, new() { Name = "Filter" }).ClickAsync();
        await Assertions.Expect(op.Locator("main")).ToContainTextAsync("No run matches.");

        // The audit names who did what, in order, and the viewer's refused attempt.
        await op.GotoAsync("/dashboard/audit?outcome=succeeded");
        var actions = await op.Locator("tbody tr td:nth-child(3)").AllInnerTextsAsync();
        Assert.Equal(["POST /api/admin/jobs/{name}/run", "POST /api/admin/jobs/{name}/resume", "POST /api/admin/jobs/{name}/pause"], actions);
        Assert.All(await op.Locator("tbody tr td:nth-child(2)").AllInnerTextsAsync(), who => Assert.Contains("(olga)", who));
        await op.GotoAsync("/dashboard/audit?outcome=forbidden");
        Assert.Contains("(vera)", await op.Locator("tbody tr td:nth-child(2)").First.InnerTextAsync());
        await AssertAccessibleAsync(op);
        await op.GotoAsync("/dashboard/audit");
        await ConsoleBrowser.ScreenshotAsync(op, "audit");

        Assert.True(browser.Errors.Count == 0, string.Join(Environment.NewLine, browser.Errors));
    }

    [Fact]
    public async Task RepairLoop_DeadLetterFoundByJuniorUsername_ReplayedFromTheConsole_PaysOnce_AndBulkReplayReplaysWhatItPreviewed()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var app = TallyApp.Sqlite(new Dictionary<string, string?>
        {
            ["Allowances:RetryDelayMs"] = "200",
            ["Allowances:MaxRetries"] = "1",
        });
        await using var browser = await ConsoleBrowser.StartAsync(app);
        var admin = app.Admin();

        // A guardian without funds: the occurrence due yesterday is retried, then dead-lettered.
        var junior = $"junior-{Guid.NewGuid():N}"[..20];
        var (guardianAccount, juniorAccount) = await FamilyAsync(app, admin, junior, DateTime.UtcNow.AddDays(-1).AddMinutes(5), ct);
        await RunProducerAsync(admin);
        await Eventually.TrueAsync(async () => (await admin.GetAsync("/api/admin/dead-letters?queue=allowance.schedule", ct).ExpectAsync(HttpStatusCode.OK)).GetArrayLength() == 1,
            "the occurrence to be dead-lettered");

        // The operator finds it by the junior's username, from the search box.
        var op = await browser.SignInAsync("olga", Roles.Operator);
        await op.GetByRole(AriaRole.Searchbox).FillAsync(junior);
        await op.GetByRole(AriaRole.Button, new() { Name = "Search" }).ClickAsync();
        await op.GetByRole(AriaRole.Link, new() { Name = $"{junior}: allowances" }).ClickAsync();
        await op.Locator("tr[data-schedule] a").First.ClickAsync();
        var letter = op.Locator("tr[data-dead-letter]");
        await Assertions.Expect(letter).ToHaveCountAsync(1);
        await Assertions.Expect(letter.Locator(".error")).ToContainTextAsync("insufficient funds");
        await AssertAccessibleAsync(op);
        await ConsoleBrowser.ScreenshotAsync(op, "allowance");

        // Funds arrive (admin API); the replay from the console pays the occurrence once.
        await admin.DepositAsync(guardianAccount, 100m);
        await letter.GetByRole(AriaRole.Button, new() { Name = "Replay" }).ClickAsync();
        await Assertions.Expect(op.Locator("#status")).ToContainTextAsync("Replayed allowance:");
        await Eventually.TrueAsync(async () => await admin.BalanceAsync(juniorAccount) == 7.25m, "the junior to be paid");
        await op.ReloadAsync();
        await Assertions.Expect(op.Locator("td.status-paid")).ToHaveCountAsync(1);
        await Assertions.Expect(op.Locator("tr[data-dead-letter]")).ToHaveCountAsync(0);
        Assert.Equal(7.25m, await admin.BalanceAsync(juniorAccount));
        Assert.Equal(100m - 7.25m, await admin.BalanceAsync(guardianAccount));

        // The record stays, replayed by olga; the audit shows who replayed it.
        await op.GotoAsync("/dashboard/dead-letters?state=replayed");
        await Assertions.Expect(op.Locator("tr[data-dead-letter] td.state")).ToContainTextAsync("olga");
        await op.GotoAsync("/dashboard/audit?outcome=succeeded");
        await Assertions.Expect(op.Locator("tbody tr").First).ToContainTextAsync("POST /api/admin/dead-letters/{id}/replay");
        await Assertions.Expect(op.Locator("tbody tr").First).ToContainTextAsync("(olga)");

        // Three more families short of funds: three dead letters. Bulk replay by filter after a preview.
        var accounts = new List<(Guid Guardian, Guid Junior)>();
        for (var i = 0; i < 3; i++)
        {
            accounts.Add(await FamilyAsync(app, admin, $"bulk-{i}-{Guid.NewGuid():N}"[..20], DateTime.UtcNow.AddDays(-1).AddMinutes(5), ct));
        }
        await RunProducerAsync(admin);
        await Eventually.TrueAsync(async () => (await admin.GetAsync("/api/admin/dead-letters?queue=allowance.schedule", ct).ExpectAsync(HttpStatusCode.OK)).GetArrayLength() == 3,
            "three dead letters");
        foreach (var (guardian, _) in accounts)
        {
            await admin.DepositAsync(guardian, 10m);
        }
        var asked = new List<string>();
        op.Dialog += (_, dialog) => asked.Add(dialog.Message);
        await op.GotoAsync("/dashboard/dead-letters?queue=allowance.schedule&reason=insufficient");
        await Assertions.Expect(op.Locator("tr[data-dead-letter]")).ToHaveCountAsync(3);
        await ConsoleBrowser.ScreenshotAsync(op, "dead-letters");
        await op.GetByRole(AriaRole.Button, new() { Name = "Replay all matching" }).ClickAsync();
        await Assertions.Expect(op.Locator("#status")).ToContainTextAsync("Replayed 3 of 3 dead letter(s) previewed.");
        Assert.Equal("Replay 3 dead letter(s)?", Assert.Single(asked));
        foreach (var (_, juniorOf) in accounts)
        {
            await Eventually.TrueAsync(async () => await admin.BalanceAsync(juniorOf) == 7.25m, "each junior paid");
        }
        Assert.Equal(0, (await admin.GetAsync("/api/admin/dead-letters", ct).ExpectAsync(HttpStatusCode.OK)).GetArrayLength());

        // The overview's charts count the four credits paid in this hour; the events page lists them.
        await op.GotoAsync("/dashboard");
        await Assertions.Expect(op.Locator("figure.chart").First).ToContainTextAsync("Allowance credits paid 4");
        await AssertAccessibleAsync(op);
        await ConsoleBrowser.ScreenshotAsync(op, "overview");
        await op.GotoAsync("/dashboard/events?type=AllowanceCredited");
        await Assertions.Expect(op.Locator("tr[data-event]")).ToHaveCountAsync(4);
        await AssertAccessibleAsync(op);
        Assert.True(browser.Errors.Count == 0, string.Join(Environment.NewLine, browser.Errors));
    }

    /// <summary>A guardian with an empty account, a junior named <paramref name="junior"/>, and a daily 7.25 USD allowance from <paramref name="start"/>.</summary>
    private static async Task<(Guid GuardianAccount, Guid JuniorAccount)> FamilyAsync(TallyApp app, HttpClient admin, string junior, DateTime start, CancellationToken ct)
    {
        var guardianId = await admin.CreateUserAsync();
        var juniorId = await admin.CreateUserAsync(junior, context: "WALLET");
        await admin.LinkAsync(guardianId, juniorId);
        var guardianAccount = await admin.CreateAccountAsync(guardianId);
        var juniorAccount = await admin.CreateAccountAsync(juniorId);
        await app.AsGuardian(guardianId).PostJsonAsync($"/api/guardians/me/allowances/{juniorId}", new
        {
            amount = 7.25m,
            frequency = "DAILY",
            status = "ON",
            startAt = start.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture),
        }).ExpectAsync(HttpStatusCode.Created);
        return (guardianAccount, juniorAccount);
    }

    private static async Task RunProducerAsync(HttpClient admin) =>
        await admin.PostAsync("/api/admin/jobs/allowances.enqueue-due/run", null).ExpectAsync(HttpStatusCode.OK);

    /// <summary>axe-core finds no serious or critical violation on the page as it stands.</summary>
    private static async Task AssertAccessibleAsync(IPage page)
    {
        var result = await page.RunAxe();
        var bad = result.Violations.Where(v => v.Impact is "serious" or "critical")
            .Select(v => $"{v.Id} ({v.Impact}): {v.Help} at {string.Join(", ", v.Nodes.Select(n => n.Target?.ToString()))}").ToList();
        Assert.True(bad.Count == 0, $"{page.Url}: {string.Join("; ", bad)}");
    }
}
