using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Tally.Data;

namespace Tally.Dashboard.Pages;

/// <summary>The search box's answer, as <c>GET /api/admin/search?q=</c> gives it: every page the id or username leads to.</summary>
public sealed class SearchModel(TallyDb db) : PageModel
{
    [FromQuery]
    public string? Q { get; set; }

    public List<SearchHit> Hits { get; private set; } = [];

    public string? Error { get; private set; }

    /// <summary>One hit leads straight to its page; several are listed.</summary>
    public async Task<IActionResult> OnGetAsync(CancellationToken ct)
    {
        if (PageAnswer.Blank(Q) is null)
        {
            return Page();
        }
        Hits = PageAnswer.Read<List<SearchHit>>((await ConsoleSearch.SearchAsync(db, ct, Q)).Result, out var error) ?? [];
        Error = error;
        return Hits is [{ } only] ? LocalRedirect(only.Href) : Page();
    }
}
