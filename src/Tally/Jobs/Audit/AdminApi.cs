using System.ComponentModel.DataAnnotations;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Tally.Data;
using Tally.Hosting;

namespace Tally.Jobs.Audit;

/// <summary>
/// How the admin API is mapped, in one place. Every route under <c>/api/admin</c> is read by the
/// viewer role (operator and admin include it); a change names the role it needs on its route:
/// <see cref="ForOperators{TBuilder}"/> to steer the runtime (run, pause, replay, queue, turn on and
/// off), <see cref="ForAdmins{TBuilder}"/> to load or move data. Every change is audited (<see cref="AuditFilter"/>).
/// </summary>
public static class AdminApi
{
    public static WebApplicationBuilder AddAdminApi(this WebApplicationBuilder builder)
    {
        builder.Services.AddSingleton<AuditLog>();
        builder.Services.AddSingleton<IAuthorizationMiddlewareResultHandler, AuditForbiddenChanges>();
        return builder;
    }

    public static RouteGroupBuilder MapAdmin(this IEndpointRouteBuilder app, string prefix, string tag) =>
        app.MapGroup(prefix).WithTags(tag).RequireAuthorization(Roles.Viewer).AddEndpointFilter<AuditFilter>();

    public static TBuilder ForOperators<TBuilder>(this TBuilder builder)
        where TBuilder : IEndpointConventionBuilder => builder.RequireAuthorization(Roles.Operator);

    public static TBuilder ForAdmins<TBuilder>(this TBuilder builder)
        where TBuilder : IEndpointConventionBuilder => builder.RequireAuthorization(Roles.Admin);

    public static WebApplication MapAudit(this WebApplication app)
    {
        app.MapAdmin("/api/admin", "Admin: audit").MapGet("/audit", ListAsync);
        return app;
    }

    public sealed record AuditView(
        long Id, DateTime OccurredAt, DateTime? FinishedAt, string Actor, string ActorRoles, string Action, string? Target,
        string Outcome, int? Status, string? Detail, string? TraceId)
    {
        public static AuditView Of(AuditEntry e) =>
            new(e.Id, e.OccurredAt, e.FinishedAt, e.Actor, e.ActorRoles, e.Action, e.Target, e.Outcome, e.Status, e.Detail, e.TraceId);
    }

    /// <summary>The audit, newest first: <c>before</c> is the last id of the previous page.</summary>
    internal static async Task<Results<Ok<List<AuditView>>, ValidationProblem>> ListAsync(
        TallyDb db, CancellationToken ct, string? actor = null, string? action = null, string? target = null,
        [AllowedValues(AuditOutcomes.Started, AuditOutcomes.Succeeded, AuditOutcomes.Refused, AuditOutcomes.Forbidden, AuditOutcomes.Failed)] string? outcome = null,
        DateTime? from = null, DateTime? to = null, long? before = null, int? limit = null)
    {
        var errors = new FieldErrors()
            .CheckLimit(limit, 100, 1000, out var take)
            .CheckText(actor, "actor", OperatorEndpoints.MaxNameLength, required: false)
            .CheckText(action, "action", OperatorEndpoints.MaxNameLength, required: false)
            .CheckText(target, "target", OperatorEndpoints.MaxNameLength, required: false)
            .Check(outcome is null || AuditOutcomes.All.Contains(outcome), "outcome", $"must be one of {string.Join(", ", AuditOutcomes.All)}")
            .Check(before is null or > 0, "before", "must be a positive id")
            .Check(from is null || to is null || from <= to, "from", "must not be after to");
        if (errors.Any)
        {
            return Problems.Invalid(errors.ToDictionary());
        }
        var query = db.AuditLog.AsNoTracking();
        if (actor is not null)
        {
            query = query.Where(e => e.Actor == actor || e.Actor.StartsWith(actor + " ("));
        }
        if (action is not null)
        {
            query = query.Where(e => e.Action == action);
        }
        if (target is not null)
        {
            query = query.Where(e => e.Target != null && e.Target.Contains(target));
        }
        if (outcome is not null)
        {
            query = query.Where(e => e.Outcome == outcome);
        }
        if (from is { } f)
        {
            var utc = f.ToUniversalTime();
            query = query.Where(e => e.OccurredAt >= utc);
        }
        if (to is { } t)
        {
            var utc = t.ToUniversalTime();
            query = query.Where(e => e.OccurredAt < utc);
        }
        if (before is { } b)
        {
            query = query.Where(e => e.Id < b);
        }
        var rows = await query.OrderByDescending(e => e.Id).Take(take).ToListAsync(ct);
        return TypedResults.Ok(rows.Select(AuditView.Of).ToList());
    }
}
