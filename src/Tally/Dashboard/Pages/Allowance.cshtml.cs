using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.Extensions.Options;
using Tally.Data;
using Tally.Features.Allowances;
using Tally.Jobs.Queues;

namespace Tally.Dashboard.Pages;

/// <summary>
/// One schedule as <c>GET /api/admin/allowances/{scheduleId}</c> answers it: the rule, the next occurrences,
/// every credit with its reason; and its occurrences that are dead letters now, as
/// <c>GET /api/admin/dead-letters?queue=allowance.schedule&amp;text={scheduleId}</c> answers them, to replay.
/// </summary>
public sealed class AllowanceModel(TallyDb db, IOptions<AllowanceOptions> allowances, IEnumerable<IDeadLetterReader> readers, TimeProvider clock) : PageModel
{
    [FromQuery]
    public string? Cursor { get; set; }

    public AdminScheduleDetail? Detail { get; private set; }

    public List<DeadLetterView> DeadLetters { get; private set; } = [];

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
            return;
        }
        var deadLetters = await DeadLetterEndpoints.ListAsync(db, readers, ct, queue: allowances.Value.QueueName, text: scheduleId.ToString());
        DeadLetters = PageAnswer.Read<List<DeadLetterView>>(deadLetters.Result, out error) ?? [];
        Error = error;
    }
}
