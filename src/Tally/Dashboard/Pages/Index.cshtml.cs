using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.Extensions.Options;
using Tally.Data;
using Tally.Features.BalanceSync;
using Tally.Hosting;
using Tally.Jobs;
using Tally.Jobs.Lanes;
using Tally.Jobs.Queues;
using Tally.Jobs.RateLimits;
using Tally.Jobs.Scheduling;

namespace Tally.Dashboard.Pages;

/// <summary>The overview, exactly as <c>GET /api/admin/overview</c> answers it.</summary>
public sealed class IndexModel(
    TallyDb db, QueueRegistry queues, IQueueTransport transport, JobRegistry jobs, ILaneStore lanes, CoreCallGate gate, FleetLimiter fleet,
    IOptions<TallyOptions> tally, TimeProvider clock) : PageModel
{
    public OverviewView? View { get; private set; }

    public DateTime Now => View?.At ?? clock.GetUtcNow().UtcDateTime;

    public async Task OnGetAsync(CancellationToken ct) =>
        View = PageAnswer.Read<OverviewView>((await Overview.ReadAsync(db, queues, transport, jobs, lanes, gate, fleet, tally, clock, ct)).Result, out _);
}
