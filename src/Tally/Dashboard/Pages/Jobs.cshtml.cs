using Microsoft.AspNetCore.Mvc.RazorPages;
using Tally.Data;
using Tally.Jobs.Scheduling;

namespace Tally.Dashboard.Pages;

/// <summary>
/// Every job as <c>GET /api/admin/jobs/{name}</c> answers it: schedule and zone, the next five
/// occurrences, the last run, paused or stale. Its buttons call the operator routes of the admin API.
/// </summary>
public sealed class JobsModel(JobRegistry jobs, TallyDb db, TimeProvider clock) : PageModel
{
    public List<JobDetailView> Jobs { get; } = [];

    public DateTime Now { get; } = clock.GetUtcNow().UtcDateTime;

    public async Task OnGetAsync(CancellationToken ct)
    {
        // Each job's detail already carries its last run: the listing's query would be read and thrown away.
        foreach (var job in jobs.All.OrderBy(j => j.Name, StringComparer.Ordinal))
        {
            if (PageAnswer.Read<JobDetailView>((await JobEndpoints.DetailAsync(job.Name, jobs, db, clock, ct)).Result, out _) is { } detail)
            {
                Jobs.Add(detail);
            }
        }
    }
}
