using System.ComponentModel.DataAnnotations;
using System.Text.Json;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Tally.Data;
using Tally.Hosting;
using Tally.Jobs.Audit;

namespace Tally.Jobs.Outbox;

public static class EventStates
{
    public const string All = "all";
    public const string Published = "published";
    public const string Pending = "pending";

    public static readonly string[] Each = [All, Published, Pending];
}

/// <summary>
/// A checked events filter; every field narrows the listing (AND). <see cref="From"/> is inclusive
/// and <see cref="To"/> exclusive, on <c>occurred_at</c>. <see cref="After"/> and <see cref="Before"/>
/// are exclusive sequence bounds (keyset cursors). The order is one rule: newest first
/// (<see cref="Descending"/>) when the client says <c>order=desc</c>, or gives <c>before</c> without
/// an order; oldest first otherwise, as the listing always was (page forward with <c>after</c>).
/// </summary>
public sealed record EventQuery(
    string? Type = null, string? Subject = null, DateTime? From = null, DateTime? To = null, string State = EventStates.All, Guid? EventId = null,
    long? After = null, long? Before = null, bool Descending = false, int Limit = EventQuery.DefaultLimit)
{
    public const int DefaultLimit = 100;
    public const int MaxLimit = 1000;

    /// <summary>The filter as a client sends it, checked: the errors name each refused field; <paramref name="query"/> is meaningful only when there are none.</summary>
    public static FieldErrors Parse(
        string? type, string? subject, string? from, string? to, string? state, Guid? eventId, long? after, long? before, string? order, int? limit,
        out EventQuery query)
    {
        var errors = new FieldErrors()
            .CheckLimit(limit, DefaultLimit, MaxLimit, out var take)
            .CheckText(type, "type", OperatorEndpoints.MaxNameLength, required: false)
            .CheckText(subject, "subject", OperatorEndpoints.MaxNameLength, required: false)
            .Check(state is null || EventStates.Each.Contains(state), "state", $"must be one of {string.Join(", ", EventStates.Each)}")
            .Check(order is null or "asc" or "desc", "order", "must be asc or desc")
            .Check(after is null or >= 0, "after", "must not be negative")
            .Check(before is null or > 0, "before", "must be a positive sequence")
            .Check(eventId != Guid.Empty, "eventId", "must not be the empty uuid")
            .CheckWindow(from, to, out var fromUtc, out var toUtc);
        var descending = order is null ? before is not null : order == "desc";
        query = new EventQuery(type, subject, fromUtc, toUtc, state ?? EventStates.All, eventId, after, before, descending, take);
        return errors;
    }
}

/// <summary>
/// The events listing of the console and the admin API (<c>GET /api/admin/events</c>): the outbox,
/// by sequence. Paged by keyset on the sequence (<c>after</c> going forward, <c>before</c> going back),
/// so a page is an index seek and its own rows however deep it goes (indexes: migration 0016).
/// </summary>
public static class EventListing
{
    public static WebApplication MapEventListing(this WebApplication app)
    {
        app.MapAdmin("/api/admin", "Admin: operations").MapGet("/events", ListEventsAsync)
            .WithSummary("The outbox: filter by type, subject, time, event id and published or pending; oldest first with `after`, newest first with `before` or `order=desc`");
        return app;
    }

    public static IQueryable<OutboxEvent> Matching(this IQueryable<OutboxEvent> events, EventQuery q)
    {
        if (q.EventId is { } id)
        {
            events = events.Where(e => e.EventId == id);
        }
        if (q.Type is not null)
        {
            events = events.Where(e => e.EventType == q.Type);
        }
        if (q.Subject is not null)
        {
            events = events.Where(e => e.SubjectId == q.Subject);
        }
        events = q.State switch
        {
            EventStates.Published => events.Where(e => e.PublishedAt != null),
            EventStates.Pending => events.Where(e => e.PublishedAt == null),
            _ => events,
        };
        if (q.From is { } from)
        {
            events = events.Where(e => e.OccurredAt >= from);
        }
        if (q.To is { } to)
        {
            events = events.Where(e => e.OccurredAt < to);
        }
        if (q.After is { } after)
        {
            events = events.Where(e => e.Sequence > after);
        }
        if (q.Before is { } before)
        {
            events = events.Where(e => e.Sequence < before);
        }
        return events;
    }

    /// <summary>One page of events in the query's order: for a Razor page as for the API.</summary>
    public static async Task<List<EventView>> ListAsync(TallyDb db, EventQuery query, CancellationToken ct)
    {
        var matching = db.OutboxEvents.AsNoTracking().Matching(query);
        // "+ 0" keeps PostgreSQL off the primary key's order for a narrow window: see TimeWindow.NarrowWindow.
        var ordered = (query.Descending, TimeWindow.Narrow(query.From, query.To)) switch
        {
            (true, true) => matching.OrderByDescending(e => e.Sequence + 0),
            (true, false) => matching.OrderByDescending(e => e.Sequence),
            (false, true) => matching.OrderBy(e => e.Sequence + 0),
            (false, false) => matching.OrderBy(e => e.Sequence),
        };
        var rows = await ordered.Take(query.Limit).ToListAsync(ct);
        return rows.ConvertAll(e => new EventView(e.Sequence, e.EventId, e.EventType, e.SubjectId,
            JsonDocument.Parse(e.Payload).RootElement.Clone(), e.OccurredAt, e.PublishedAt));
    }

    /// <summary>
    /// <c>GET /api/admin/events?type=&amp;subject=&amp;from=&amp;to=&amp;state=all|published|pending&amp;eventId=&amp;after=&amp;before=&amp;order=asc|desc&amp;limit=100</c>:
    /// a JSON array of <see cref="EventView"/>. See <see cref="EventQuery"/> for the filters and the order.
    /// </summary>
    internal static async Task<Results<Ok<List<EventView>>, ValidationProblem>> ListEventsAsync(
        TallyDb db, CancellationToken ct, string? type = null, string? subject = null, string? from = null, string? to = null,
        [AllowedValues(EventStates.All, EventStates.Published, EventStates.Pending)] string? state = null, Guid? eventId = null, long? after = null, long? before = null,
        [AllowedValues("asc", "desc")] string? order = null, int? limit = null)
    {
        var errors = EventQuery.Parse(type, subject, from, to, state, eventId, after, before, order, limit, out var query);
        return errors.Any ? Problems.Invalid(errors.ToDictionary()) : TypedResults.Ok(await ListAsync(db, query, ct));
    }
}
