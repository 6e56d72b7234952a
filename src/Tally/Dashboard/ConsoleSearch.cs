using System.Globalization;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Tally.Data;
using Tally.Features.Allowances;
using Tally.Features.Ledger;
using Tally.Features.StoreIntegrity;
using Tally.Features.Users;
using Tally.Hosting;
using Tally.Jobs.Audit;

namespace Tally.Dashboard;

public static class SearchKinds
{
    public const string User = "user";
    public const string Schedule = "schedule";
    public const string Connection = "connection";
    public const string DeadLetter = "deadLetter";
    public const string Run = "run";
    public const string Transfer = "transfer";
    public const string Event = "event";
    public const string CoreAccount = "coreAccount";
}

/// <summary>One thing the search box found: <see cref="Href"/> is the console page that shows it (the admin API's route for a transfer, which has no page).</summary>
public sealed record SearchHit(string Kind, string Id, string Label, string Href);

/// <summary>
/// The console's search box, <c>GET /api/admin/search?q=</c>: any id leads to its page. A GUID is looked
/// up as a user, an allowance schedule, a provider connection, a dead letter, a ledger transfer, an
/// outbox event (its event id) and a core account; a whole number as a run; any text as a username
/// (exact, as the admin API matches usernames everywhere: <see cref="UserQueries.Named"/>) and as a
/// dead letter's message id. Each lookup is a seek on a primary key or a unique or plain index
/// (dead_letters.message_id: migration 0016), so the answer costs the same on any size of table.
/// </summary>
public static class ConsoleSearch
{
    public const int MaxQueryLength = 200;

    public static WebApplication MapConsoleSearch(this WebApplication app)
    {
        app.MapAdmin("/api/admin", "Admin: search").MapGet("/search", SearchAsync)
            .WithSummary("Search any id (user, schedule, connection, dead letter or message id, run, transfer, event, core account) or a username: the console pages it leads to");
        return app;
    }

    /// <summary>Whether <paramref name="q"/> (trimmed) can be searched: 1 to 200 characters, no control characters.</summary>
    public static FieldErrors Check(string? q) => new FieldErrors().CheckText(q?.Trim(), "q", MaxQueryLength);

    /// <summary>Everything <paramref name="q"/> names, for a Razor page as for the API. <paramref name="q"/> must pass <see cref="Check"/>.</summary>
    public static async Task<List<SearchHit>> FindAsync(TallyDb db, string q, CancellationToken ct)
    {
        if (Check(q).Any)
        {
            throw new ArgumentException("Check the search text first (ConsoleSearch.Check).", nameof(q));
        }
        q = q.Trim();
        var hits = new List<SearchHit>();
        foreach (var user in await db.Users.AsNoTracking().Named(q).ToListAsync(ct))
        {
            await AddUserAsync(db, user, hits, ct);
        }
        Guid? id = Guid.TryParse(q, out var guid) ? guid : null;
        if (id is { } key)
        {
            await AddByGuidAsync(db, key, hits, ct);
        }
        if (long.TryParse(q, NumberStyles.None, CultureInfo.InvariantCulture, out var number) && number > 0)
        {
            await AddRunAsync(db, number, hits, ct);
        }
        foreach (var dead in await db.DeadLetters.AsNoTracking().Where(d => d.MessageId == q || d.Id == id).OrderBy(d => d.Queue).Take(20).ToListAsync(ct))
        {
            hits.Add(new SearchHit(SearchKinds.DeadLetter, dead.Id.ToString(), $"Dead letter {dead.MessageId} in {dead.Queue}",
                $"/dashboard/dead-letters?messageId={Uri.EscapeDataString(dead.MessageId)}"));
        }
        return hits;
    }

    /// <summary>A user has a page in each console area: allowances (when a guardian or a junior), balance sync and connections.</summary>
    private static async Task AddUserAsync(TallyDb db, User user, List<SearchHit> hits, CancellationToken ct)
    {
        var key = user.Id.ToString();
        if (await db.GuardianJuniors.AnyAsync(l => l.GuardianId == user.Id || l.JuniorId == user.Id, ct))
        {
            hits.Add(new SearchHit(SearchKinds.User, key, $"{user.Username}: allowances", $"/dashboard/allowances?user={key}"));
        }
        hits.Add(new SearchHit(SearchKinds.User, key, $"{user.Username}: balance sync", $"/dashboard/balance-sync?user={key}"));
        hits.Add(new SearchHit(SearchKinds.User, key, $"{user.Username}: connections", $"/dashboard/connections?user={key}"));
    }

    private static async Task AddByGuidAsync(TallyDb db, Guid id, List<SearchHit> hits, CancellationToken ct)
    {
        var key = id.ToString();
        if (await db.AllowanceSchedules.AsNoTracking().FirstOrDefaultAsync(s => s.Id == id, ct) is { } schedule)
        {
            var amount = Currencies.FromMinor(schedule.AmountMinor, schedule.Currency).ToString(CultureInfo.InvariantCulture);
            hits.Add(new SearchHit(SearchKinds.Schedule, key, $"Allowance {amount} {schedule.Currency} {schedule.Frequency.Code()} ({schedule.Status})", $"/dashboard/allowances/{key}"));
        }
        if (await db.ProviderConnections.AsNoTracking().FirstOrDefaultAsync(c => c.Id == id, ct) is { } connection)
        {
            hits.Add(new SearchHit(SearchKinds.Connection, key, $"{connection.ProviderSlug} connection {connection.Name} ({connection.Status})".Replace("  ", " ", StringComparison.Ordinal),
                $"/dashboard/connections?user={connection.UserId}&connection={key}"));
        }
        if (await db.LedgerTransfers.AsNoTracking().FirstOrDefaultAsync(t => t.Id == id, ct) is { } transfer)
        {
            var amount = Currencies.FromMinor(transfer.AmountMinor, transfer.Currency).ToString(CultureInfo.InvariantCulture);
            hits.Add(new SearchHit(SearchKinds.Transfer, key, $"{transfer.Kind} transfer of {amount} {transfer.Currency}", $"/api/admin/ledger/transfers/{key}"));
        }
        if (await db.OutboxEvents.AsNoTracking().FirstOrDefaultAsync(e => e.EventId == id, ct) is { } outboxEvent)
        {
            hits.Add(new SearchHit(SearchKinds.Event, key, $"{outboxEvent.EventType} event #{outboxEvent.Sequence}", $"/dashboard/events?eventId={key}"));
        }
        if (await db.CoreAccounts.AsNoTracking().FirstOrDefaultAsync(a => a.Id == id, ct) is { } account)
        {
            hits.Add(new SearchHit(SearchKinds.CoreAccount, key, $"Core account {account.AccountNumber} ({account.Currency})", $"/dashboard/balance-sync?user={account.UserId}"));
        }
    }

    /// <summary>A run's page; a run of the store repair also has the store page, which lists the accounts it repaired.</summary>
    private static async Task AddRunAsync(TallyDb db, long id, List<SearchHit> hits, CancellationToken ct)
    {
        if (await db.CronRuns.AsNoTracking().FirstOrDefaultAsync(r => r.Id == id, ct) is not { } run)
        {
            return;
        }
        var key = id.ToString(CultureInfo.InvariantCulture);
        hits.Add(new SearchHit(SearchKinds.Run, key, $"Run {key} of {run.JobName} ({run.Status})", $"/dashboard/runs?run={key}"));
        if (run.JobName == RepairHasOrders.Name)
        {
            hits.Add(new SearchHit(SearchKinds.Run, key, $"Store repair run {key}", $"/dashboard/store?run={key}"));
        }
    }

    /// <summary><c>GET /api/admin/search?q=</c>: a JSON array of <see cref="SearchHit"/>, empty when nothing matches.</summary>
    internal static async Task<Results<Ok<List<SearchHit>>, ValidationProblem>> SearchAsync(TallyDb db, CancellationToken ct, string? q = null) =>
        Check(q) is { Any: true } errors ? Problems.Invalid(errors.ToDictionary()) : TypedResults.Ok(await FindAsync(db, q!, ct));
}
