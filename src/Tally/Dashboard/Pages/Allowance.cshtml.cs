using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Tally.Data;
using Tally.Features.Allowances;

namespace Tally.Dashboard.Pages;

/// <summary>One schedule as <c>GET /api/admin/allowances/{scheduleId}</c> answers it: the rule, the next occurrences, every credit with its reason.</summary>
public sealed class AllowanceModel(TallyDb db, TimeProvider clock) : PageModel
{
    [FromQuery]
    public string? Cursor { get; set; }

    public AdminScheduleDetail? Detail { get; private set; }

    public string? Error { get; private set; }

    public DateTime Now { get; } = clock.GetUtcNow().UtcDateTime;

    public async Task OnGetAsync(Guid scheduleId, CancellationToken ct)
    {
        var answer = await AllowanceAdminEndpoints.DetailAsync(scheduleId, db, clock, ct, PageAnswer.Blank(Cursor));
        Detail = PageAnswer.Read<AdminScheduleDetail>(answer.Result, out var error);
        Error = error;
        if (Detail is null)
        {
            Response.StatusCode = StatusCodes.Status404NotFound;
        }
    }
}
