using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Tally.Data;
using Tally.Features.Allowances;
using Tally.Hosting;

namespace Tally.Dashboard.Pages;

/// <summary>
/// Schedules found by guardian and/or junior (id or username), as <c>GET /api/admin/allowances</c>
/// answers them. <see cref="Person"/> (<c>?user=</c>, what the search box sends) finds a person's schedules on either side.
/// </summary>
public sealed class AllowancesModel(TallyDb db, TimeProvider clock) : PageModel
{
    [FromQuery]
    public string? Guardian { get; set; }

    [FromQuery]
    public string? Junior { get; set; }

    [FromQuery(Name = "user")]
    public string? Person { get; set; }

    [FromQuery]
    public string? Cursor { get; set; }

    public List<AdminScheduleView> Schedules { get; } = [];

    public string? NextCursor { get; private set; }

    public string? Error { get; private set; }

    public DateTime Now { get; } = clock.GetUtcNow().UtcDateTime;

    public async Task OnGetAsync(CancellationToken ct)
    {
        if (PageAnswer.Blank(Person) is { } person)
        {
            // Both sides of one person, one page each: a guardian's schedules, then a junior's.
            await FindAsync(person, null, ct);
            await FindAsync(null, person, ct);
            NextCursor = null;
            return;
        }
        await FindAsync(PageAnswer.Blank(Guardian), PageAnswer.Blank(Junior), ct);
    }

    private async Task FindAsync(string? guardian, string? junior, CancellationToken ct)
    {
        var answer = await AllowanceAdminEndpoints.FindAsync(db, ct, guardian, junior, PageAnswer.Blank(Cursor));
        if (PageAnswer.Read<Page<AdminScheduleView>>(answer.Result, out var error) is { } page)
        {
            Schedules.AddRange(page.Items.Where(s => Schedules.TrueForAll(seen => seen.Id != s.Id)));
            NextCursor = page.NextCursor;
        }
        Error ??= error;
    }
}
