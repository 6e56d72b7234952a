using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Tally.Data;
using Tally.Jobs.Scheduling;

namespace Tally.Dashboard.Pages;

/// <summary>The run audit (<c>cron_runs</c>) as <c>GET /api/admin/cron-runs</c> answers it, every filter in the URL.</summary>
public sealed class RunsModel(JobRegistry jobs, TallyDb db, TimeProvider clock) : PageModel
{
    public const int PageSize = 50;

    [FromQuery]
    public string? Job { get; set; }

    [FromQuery]
    public string? Status { get; set; }

    [FromQuery]
    public string? Instance { get; set; }

    [FromQuery]
    public string? Trigger { get; set; }

    [FromQuery]
    public string? From { get; set; }

    [FromQuery]
    public string? To { get; set; }

    [FromQuery]
    public bool IncludeSkipped { get; set; }

    [FromQuery]
    public long? Run { get; set; }

    [FromQuery]
    public long? Before { get; set; }

    public IReadOnlyList<string> Jobs { get; } = jobs.All.Select(j => j.Name).Order(StringComparer.Ordinal).ToList();

    public List<RunListItem> Runs { get; private set; } = [];

    public string? Error { get; private set; }

    public DateTime Now { get; } = clock.GetUtcNow().UtcDateTime;

    /// <summary>This view's query string with another cursor, for the next page's link.</summary>
    public string Query(long before) =>
        $"?job={Uri.EscapeDataString(Job ?? "")}&status={Uri.EscapeDataString(Status ?? "")}&instance={Uri.EscapeDataString(Instance ?? "")}"
        + $"&trigger={Uri.EscapeDataString(Trigger ?? "")}&from={Uri.EscapeDataString(From ?? "")}&to={Uri.EscapeDataString(To ?? "")}"
        + $"&includeSkipped={(IncludeSkipped ? "true" : "false")}&before={before}";

    public async Task OnGetAsync(CancellationToken ct)
    {
        var answer = await RunListing.ListRunsAsync(db, ct, PageAnswer.Blank(Job), PageAnswer.Blank(Status), PageAnswer.Blank(Instance), PageAnswer.Blank(Trigger),
            PageAnswer.Blank(From), PageAnswer.Blank(To), IncludeSkipped, Run, Before, PageSize);
        Runs = PageAnswer.Read<List<RunListItem>>(answer.Result, out var error) ?? [];
        Error = error;
    }
}
