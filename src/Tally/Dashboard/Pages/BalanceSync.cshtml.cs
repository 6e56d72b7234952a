using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Tally.Data;
using Tally.Features.BalanceSync;
using Tally.Features.Users;
using Tally.Hosting;
using Tally.Jobs.Lanes;
using Tally.Jobs.RateLimits;

namespace Tally.Dashboard.Pages;

/// <summary>
/// Balance sync: the lanes and this instance's call gate (<c>GET /api/admin/balance-sync/lanes</c>), and one
/// user's core accounts (<c>GET /api/admin/balance-sync/users/{userId}</c>) with the button that queues a sync.
/// </summary>
public sealed class BalanceSyncModel(TallyDb db, ILaneStore lanes, CoreCallGate gate, FleetLimiter fleet, IOptions<TallyOptions> tally, TimeProvider clock) : PageModel
{
    [FromQuery(Name = "user")]
    public string? Person { get; set; }

    public LanesView? Lanes { get; private set; }

    public Guid? UserId { get; private set; }

    public BalancesView? Balances { get; private set; }

    public string? Error { get; private set; }

    public DateTime Now { get; } = clock.GetUtcNow().UtcDateTime;

    public async Task OnGetAsync(CancellationToken ct)
    {
        Lanes = await LanesView.ReadAsync(lanes, gate, fleet, tally.Value, ct);
        if (PageAnswer.Blank(Person) is not { } person)
        {
            return;
        }
        if (person.Length > UsersEndpoints.MaxUsernameLength)
        {
            Error = $"user must be an id or a username of at most {UsersEndpoints.MaxUsernameLength} characters.";
            return;
        }
        // An id or a username, as every admin filter of a user reads it.
        UserId = await db.Users.AsNoTracking().Named(person).Select(u => (Guid?)u.Id).FirstOrDefaultAsync(ct);
        if (UserId is not { } id)
        {
            Error = $"No user is named or numbered '{person}'.";
            return;
        }
        Balances = PageAnswer.Read<BalancesView>((await BalanceSyncEndpoints.UserBalancesAsync(id, db, ct)).Result, out var error);
        Error = error;
    }
}
