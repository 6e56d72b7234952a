using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Tally.Data;
using Tally.Features.Allowances;
using Tally.Jobs.Queues;

namespace Tally.Dashboard.Pages;

/// <summary>
/// Dead letters as <c>GET /api/admin/dead-letters</c> answers them, its filters in the URL. Operators
/// replay or delete the checked letters, or everything matching the filter, through the bulk routes:
/// a dry run first, whose count the confirmation shows, then the call bounded by the dry run's <c>upTo</c>.
/// </summary>
public sealed class DeadLettersModel(TallyDb db, IEnumerable<IDeadLetterReader> readers, QueueRegistry queues, TimeProvider clock) : PageModel
{
    public const int PageSize = 50;

    [FromQuery]
    public string? Queue { get; set; }

    [FromQuery]
    public string? Reason { get; set; }

    [FromQuery]
    public string? MessageId { get; set; }

    [FromQuery]
    public string? Text { get; set; }

    [FromQuery]
    public string? State { get; set; }

    [FromQuery]
    public long? Before { get; set; }

    public IReadOnlyList<string> Queues { get; } = queues.All.Select(q => q.Definition.Name).Order(StringComparer.Ordinal).ToList();

    public List<DeadLetterView> Letters { get; private set; } = [];

    public string? Error { get; private set; }

    public DateTime Now { get; } = clock.GetUtcNow().UtcDateTime;

    /// <summary>The filter as the bulk routes take it (JSON), for the "everything matching" buttons.</summary>
    public string FilterJson => System.Text.Json.JsonSerializer.Serialize(
        new { queue = PageAnswer.Blank(Queue), reason = PageAnswer.Blank(Reason), messageId = PageAnswer.Blank(MessageId), text = PageAnswer.Blank(Text) });

    /// <summary>This view's query string without the cursor, for the next page's link.</summary>
    public string Query(long before) =>
        $"?queue={Uri.EscapeDataString(Queue ?? "")}&reason={Uri.EscapeDataString(Reason ?? "")}&messageId={Uri.EscapeDataString(MessageId ?? "")}"
        + $"&text={Uri.EscapeDataString(Text ?? "")}&state={Uri.EscapeDataString(State ?? "")}&before={before}";

    public async Task OnGetAsync(CancellationToken ct)
    {
        var answer = await DeadLetterEndpoints.ListAsync(db, readers, ct, PageAnswer.Blank(Queue), PageAnswer.Blank(Reason),
            PageAnswer.Blank(MessageId), PageAnswer.Blank(Text), PageAnswer.Blank(State), Before, PageSize);
        Letters = PageAnswer.Read<List<DeadLetterView>>(answer.Result, out var error) ?? [];
        Error = error;
    }
}
