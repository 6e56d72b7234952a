using Microsoft.AspNetCore.Mvc.RazorPages;
using Tally.Data;
using Tally.Jobs;
using Tally.Jobs.Scheduling;

namespace Tally.Dashboard.Pages;

/// <summary>The jobs, as <c>GET /api/admin/jobs</c> answers them; their buttons call the admin API.</summary>
public sealed class JobsModel(JobRegistry jobs, TallyDb db, TimeProvider clock) : PageModel
{
    public List<JobView> Jobs { get; private set; } = [];

    public DateTime Now { get; } = clock.GetUtcNow().UtcDateTime;

    public async Task OnGetAsync(CancellationToken ct) =>
        Jobs = (await OperatorEndpoints.ListJobsAsync(jobs, db, clock, ct)).Value ?? [];
}
