using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Tally.Data;
using Tally.Features.Connections;
using Tally.Hosting;

namespace Tally.Dashboard.Pages;

/// <summary>
/// A user's connections (<c>GET /api/admin/connections?user=</c>) and one connection's sync runs
/// (<c>GET /api/admin/connections/{id}/sync-runs</c>). The answers carry no credential in any form.
/// </summary>
public sealed class ConnectionsModel(TallyDb db, TimeProvider clock) : PageModel
{
    [FromQuery(Name = "user")]
    public string? Person { get; set; }

    [FromQuery]
    public Guid? Connection { get; set; }

    [FromQuery]
    public string? Cursor { get; set; }

    public Page<AdminConnectionView>? Connections { get; private set; }

    public Page<SyncRunView>? Runs { get; private set; }

    public string? Error { get; private set; }

    public DateTime Now { get; } = clock.GetUtcNow().UtcDateTime;

    public async Task OnGetAsync(CancellationToken ct)
    {
        Connections = PageAnswer.Read<Page<AdminConnectionView>>(
            (await ConnectionAdminEndpoints.FindAsync(db, ct, PageAnswer.Blank(Person), Connection is null ? PageAnswer.Blank(Cursor) : null)).Result, out var error);
        Error = error;
        if (Connection is { } id)
        {
            Runs = PageAnswer.Read<Page<SyncRunView>>((await ConnectionAdminEndpoints.SyncRunsAsync(id, db, ct, PageAnswer.Blank(Cursor))).Result, out error);
            Error ??= error;
        }
    }
}
