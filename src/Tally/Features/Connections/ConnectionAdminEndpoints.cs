using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Tally.Data;
using Tally.Features.Users;
using Tally.Hosting;
using Tally.Jobs.Audit;

namespace Tally.Features.Connections;

/// <summary>
/// A connection as an operator sees it: its owner, provider, status and sync times, the last error,
/// and when it was deleted. Never its credentials, in any form: they are not even read.
/// </summary>
public sealed record AdminConnectionView(
    Guid Id, Guid UserId, string? Username, string ProviderSlug, string? Name, string Status, DateTime CreatedAt, DateTime? LastSyncAt,
    DateTime? LastAttemptAt, string? LastError, DateTime? ConsentExpiresAt, DateTime? RetryNotBefore, DateTime? DeletedAt);

/// <summary>
/// The console's connections: <c>/api/admin/connections</c>. A user's connections (deleted ones
/// included) and each one's sync runs with their reasons, read-only.
/// </summary>
public static class ConnectionAdminEndpoints
{
    private const int MaxPage = 500;

    internal static WebApplication MapConnectionAdmin(this WebApplication app)
    {
        var admin = app.MapAdmin("/api/admin/connections", "Admin: connections");
        admin.MapGet("/", FindAsync);
        admin.MapGet("/{id:guid}/sync-runs", SyncRunsAsync).Refuses(404, "CONNECTION_NOT_FOUND", "no connection has this id");
        return app;
    }

    /// <summary>The connections of <paramref name="user"/> (an id or a username), or of everyone, oldest first; paged by <paramref name="cursor"/>.</summary>
    internal static async Task<Results<Ok<Page<AdminConnectionView>>, ValidationProblem>> FindAsync(
        TallyDb db, CancellationToken ct, string? user = null, string? cursor = null, int? limit = null)
    {
        var errors = new FieldErrors()
            .CheckText(user, "user", UsersEndpoints.MaxUsernameLength, required: false)
            .CheckCursor(cursor, out var after)
            .CheckLimit(limit, 50, MaxPage, out var take);
        if (errors.Any)
        {
            return Problems.Invalid(errors.ToDictionary());
        }
        var connections = db.ProviderConnections.AsNoTracking();
        if (!string.IsNullOrEmpty(user))
        {
            var owners = await db.Users.AsNoTracking().Named(user).Select(u => u.Id).ToListAsync(ct);
            connections = connections.Where(c => owners.Contains(c.UserId));
        }
        if (after is { } from)
        {
            connections = connections.Where(c => c.Id.CompareTo(from.Id) > 0);
        }
        // A projection: the ciphertext of the credentials never leaves the database for this answer.
        var rows = await connections.OrderBy(c => c.Id).Take(take + 1)
            .Select(c => new AdminConnectionView(c.Id, c.UserId, null, c.ProviderSlug, c.Name, c.Status, c.CreatedAt, c.LastSyncAt,
                c.LastAttemptAt, c.LastError, c.ConsentExpiresAt, c.RetryNotBefore, c.DeletedAt))
            .ToListAsync(ct);
        var ownerIds = rows.Select(r => r.UserId).Distinct().ToList();
        var usernames = await db.Users.AsNoTracking().Where(u => ownerIds.Contains(u.Id)).ToDictionaryAsync(u => u.Id, u => u.Username, ct);
        return TypedResults.Ok(Paging.Of(rows, take, c => new Cursor(DateTime.MinValue, c.Id), c => c with { Username = usernames.GetValueOrDefault(c.UserId) }));
    }

    /// <summary>A connection's sync runs (deleted connections too), newest first: trigger, forced, status, reason, counts and times.</summary>
    internal static async Task<Results<Ok<Page<SyncRunView>>, ValidationProblem, ProblemHttpResult>> SyncRunsAsync(
        Guid id, TallyDb db, CancellationToken ct, string? cursor = null, int? limit = null)
    {
        var errors = new FieldErrors().CheckCursor(cursor, out var after).CheckLimit(limit, 50, MaxPage, out var take);
        if (errors.Any)
        {
            return Problems.Invalid(errors.ToDictionary());
        }
        if (!await db.ProviderConnections.AsNoTracking().AnyAsync(c => c.Id == id, ct))
        {
            return Problems.NotFound("CONNECTION_NOT_FOUND", "No connection with this id.");
        }
        var runs = db.ConnectionSyncRuns.AsNoTracking().Where(r => r.ConnectionId == id);
        if (after is { } from)
        {
            // Newest first along ix_connection_sync_runs_connection (connection_id, started_at), the id breaking ties.
            runs = runs.Where(r => r.StartedAt < from.At || (r.StartedAt == from.At && r.Id.CompareTo(from.Id) < 0));
        }
        var rows = await runs.OrderByDescending(r => r.StartedAt).ThenByDescending(r => r.Id).Take(take + 1).ToListAsync(ct);
        return TypedResults.Ok(Paging.Of(rows, take, r => new Cursor(r.StartedAt, r.Id), SyncRunView.Of));
    }
}
