using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Tally.Data;
using Tally.Jobs;
using Tally.Jobs.Outbox;

namespace Tally.Dashboard.Pages;

/// <summary>The outbox, newest first, as <c>GET /api/admin/events?order=desc</c> answers it, every filter in the URL.</summary>
public sealed class EventsModel(TallyDb db, TimeProvider clock) : PageModel
{
    public const int PageSize = 50;

    [FromQuery]
    public string? Type { get; set; }

    [FromQuery]
    public string? Subject { get; set; }

    [FromQuery]
    public string? From { get; set; }

    [FromQuery]
    public string? To { get; set; }

    [FromQuery]
    public string? State { get; set; }

    [FromQuery]
    public Guid? EventId { get; set; }

    [FromQuery]
    public long? Before { get; set; }

    public List<EventView> Events { get; private set; } = [];

    public string? Error { get; private set; }

    public DateTime Now { get; } = clock.GetUtcNow().UtcDateTime;

    public string Query(long before) =>
        $"?type={Uri.EscapeDataString(Type ?? "")}&subject={Uri.EscapeDataString(Subject ?? "")}&from={Uri.EscapeDataString(From ?? "")}"
        + $"&to={Uri.EscapeDataString(To ?? "")}&state={Uri.EscapeDataString(State ?? "")}&before={before}";

    public async Task OnGetAsync(CancellationToken ct)
    {
        var answer = await EventListing.ListEventsAsync(db, ct, PageAnswer.Blank(Type), PageAnswer.Blank(Subject), PageAnswer.Blank(From), PageAnswer.Blank(To),
            PageAnswer.Blank(State), EventId, after: null, Before, order: "desc", PageSize);
        Events = PageAnswer.Read<List<EventView>>(answer.Result, out var error) ?? [];
        Error = error;
    }
}
