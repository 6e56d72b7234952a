using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.EntityFrameworkCore;
using Tally.Data;
using Tally.Jobs;
using Tally.Jobs.Queues;
using Tally.Jobs.Scheduling;

namespace Tally.Dashboard.Pages;

/// <summary>The overview: queue depths (as <c>GET /api/admin/queues</c> answers them) and the latest failed runs.</summary>
public sealed class IndexModel(QueueRegistry queues, IQueueTransport transport, TallyDb db, TimeProvider clock) : PageModel
{
    public List<QueueView> Queues { get; private set; } = [];

    public List<CronRun> Failures { get; private set; } = [];

    public DateTime Now { get; } = clock.GetUtcNow().UtcDateTime;

    public async Task OnGetAsync(CancellationToken ct)
    {
        Queues = (await OperatorEndpoints.ListQueuesAsync(queues, transport, db, ct)).Value ?? [];
        Failures = await db.CronRuns.AsNoTracking().Where(r => r.Status == CronRunStatus.Failed)
            .OrderByDescending(r => r.Id).Take(5).ToListAsync(ct);
    }
}
