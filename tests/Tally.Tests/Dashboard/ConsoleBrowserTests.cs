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
        "/dashboard", "/dashboard/jobs", "/dashboard/allowances", "/dashboard/balance-sync", "/dashboard/connections",
        "/dashboard/store", "/dashboard/audit",
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

    /// <summary>axe-core finds no serious or critical violation on the page as it stands.</summary>
    private static async Task AssertAccessibleAsync(IPage page)
    {
        var result = await page.RunAxe();
        var bad = result.Violations.Where(v => v.Impact is "serious" or "critical")
            .Select(v => $"{v.Id} ({v.Impact}): {v.Help} at {string.Join(", ", v.Nodes.Select(n => n.Target?.ToString()))}").ToList();
        Assert.True(bad.Count == 0, $"{page.Url}: {string.Join("; ", bad)}");
    }
}
