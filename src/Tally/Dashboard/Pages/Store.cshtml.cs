using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Tally.Data;
using Tally.Features.StoreIntegrity;

namespace Tally.Dashboard.Pages;

/// <summary>
/// Store integrity: the <c>has_orders</c> repair runs that repaired something (<c>GET /api/admin/store/repairs</c>)
/// and the account ids of one of them (<c>GET /api/admin/store/repairs/{runId}</c>).
/// </summary>
public sealed class StoreModel(TallyDb db, TimeProvider clock) : PageModel
{
    public const int PageSize = 50;

    [FromQuery]
    public long? Run { get; set; }

    [FromQuery]
    public long? Before { get; set; }

    public List<StoreRepairSummary> Repairs { get; private set; } = [];

    public StoreRepairView? Repair { get; private set; }

    public string? Error { get; private set; }

    public DateTime Now { get; } = clock.GetUtcNow().UtcDateTime;

    public async Task OnGetAsync(CancellationToken ct)
    {
        Repairs = PageAnswer.Read<List<StoreRepairSummary>>((await StoreEndpoints.ListRepairsAsync(db, ct, Before, PageSize)).Result, out var error) ?? [];
        Error = error;
        if (Run is { } run)
        {
            Repair = PageAnswer.Read<StoreRepairView>((await StoreEndpoints.GetRepairAsync(run, db, ct)).Result, out error);
            Error ??= error;
        }
    }
}
