using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Tally.Data;
using Tally.Jobs.Audit;

namespace Tally.Dashboard.Pages;

/// <summary>The audit, as <c>GET /api/admin/audit</c> answers it, with its filters in the URL.</summary>
public sealed class AuditModel(TallyDb db, TimeProvider clock) : PageModel
{
    public const int PageSize = 50;

    [FromQuery]
    public string? Actor { get; set; }

    [FromQuery]
    public string? Outcome { get; set; }

    [FromQuery]
    public long? Before { get; set; }

    public List<AdminApi.AuditView> Rows { get; private set; } = [];

    public string? Error { get; private set; }

    public DateTime Now { get; } = clock.GetUtcNow().UtcDateTime;

    public async Task OnGetAsync(CancellationToken ct)
    {
        var answer = await AdminApi.ListAsync(db, ct, actor: PageAnswer.Blank(Actor), outcome: PageAnswer.Blank(Outcome), before: Before, limit: PageSize);
        Rows = PageAnswer.Read<List<AdminApi.AuditView>>(answer.Result, out var error) ?? [];
        Error = error;
    }
}
