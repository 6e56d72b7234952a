using System.Diagnostics;
using System.Security.Claims;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Authorization.Policy;
using Microsoft.AspNetCore.Routing.Patterns;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using Tally.Data;

namespace Tally.Data
{
    public sealed partial class TallyDb
    {
        public DbSet<Jobs.Audit.AuditEntry> AuditLog => Set<Jobs.Audit.AuditEntry>();
    }
}

namespace Tally.Jobs.Audit
{
    /// <summary>One change asked of the admin API: who, what, on what, when, and how it ended.</summary>
    public sealed class AuditEntry
    {
        public long Id { get; set; }
        public DateTime OccurredAt { get; set; }
        public DateTime? FinishedAt { get; set; }

        /// <summary>The caller's <c>sub</c> (and name, when the token carries one): <c>sub (name)</c>.</summary>
        public required string Actor { get; set; }

        public required string ActorRoles { get; set; }

        /// <summary>The route asked for: <c>POST /api/admin/dead-letters/{id}/replay</c>.</summary>
        public required string Action { get; set; }

        /// <summary>The route's values: <c>id=0193...</c>; null when the route has none.</summary>
        public string? Target { get; set; }

        public required string Outcome { get; set; }

        public int? Status { get; set; }

        /// <summary>What the change did, in a few words, when the endpoint says (<see cref="AuditLog.Detail"/>): never a payload.</summary>
        public string? Detail { get; set; }

        public string? TraceId { get; set; }
    }

    public static class AuditOutcomes
    {
        public const string Started = "started";
        public const string Succeeded = "succeeded";
        public const string Refused = "refused";
        public const string Forbidden = "forbidden";
        public const string Failed = "failed";

        public static readonly string[] All = [Started, Succeeded, Refused, Forbidden, Failed];

        public static string Of(int status) => status switch
        {
            < 400 => Succeeded,
            403 => Forbidden,
            < 500 => Refused,
            _ => Failed,
        };
    }

    internal sealed class AuditEntryMap : IEntityTypeConfiguration<AuditEntry>
    {
        public void Configure(EntityTypeBuilder<AuditEntry> e) => e.ToTable("audit_log");
    }

    /// <summary>
    /// Writes the audit. A change's row is inserted BEFORE the change runs and completed after it, each
    /// in a context of its own (never the endpoint's, whose pending changes are the endpoint's to save):
    /// a change whose row cannot be written does not run, and one that ran always has its row.
    /// </summary>
    public sealed class AuditLog(IDbContextFactory<TallyDb> dbs, TimeProvider clock)
    {
        public const int MaxDetailLength = 500;
        private const string DetailKey = "tally.audit.detail";
        private const string TargetKey = "tally.audit.target";

        /// <summary>Lets an endpoint say what its change did (for example how many dead letters it replayed).</summary>
        public static void Detail(HttpContext http, string detail) =>
            http.Items[DetailKey] = detail.Length > MaxDetailLength ? detail[..MaxDetailLength] : detail;

        /// <summary>
        /// Lets an endpoint whose route names no target say what it acted on (a bulk action's filter),
        /// recorded when the change finishes; the route's values are the target otherwise.
        /// </summary>
        public static void Target(HttpContext http, string target) =>
            http.Items[TargetKey] = target.Length > MaxDetailLength ? target[..MaxDetailLength] : target;

        public async Task<long> StartAsync(HttpContext http, CancellationToken ct)
        {
            var entry = Describe(http, AuditOutcomes.Started, status: null);
            await using var db = await dbs.CreateDbContextAsync(ct);
            db.AuditLog.Add(entry);
            await db.SaveChangesAsync(ct);
            return entry.Id;
        }

        public async Task FinishAsync(long id, HttpContext http, int status)
        {
            var detail = http.Items.TryGetValue(DetailKey, out var d) ? d as string : null;
            var target = http.Items.TryGetValue(TargetKey, out var t) ? t as string : null;
            var now = clock.GetUtcNow().UtcDateTime;
            var outcome = AuditOutcomes.Of(status);
            // Not cancellable: the change has run, whatever the caller does now.
            await using var db = await dbs.CreateDbContextAsync(CancellationToken.None);
            await db.AuditLog.Where(e => e.Id == id).ExecuteUpdateAsync(
                s => s.SetProperty(e => e.Outcome, outcome).SetProperty(e => e.Status, status)
                    .SetProperty(e => e.FinishedAt, now).SetProperty(e => e.Detail, detail)
                    .SetProperty(e => e.Target, e => target ?? e.Target),
                CancellationToken.None);
        }

        /// <summary>A change refused to the caller's role: recorded whole at once.</summary>
        public async Task ForbiddenAsync(HttpContext http, CancellationToken ct)
        {
            var entry = Describe(http, AuditOutcomes.Forbidden, StatusCodes.Status403Forbidden);
            entry.FinishedAt = entry.OccurredAt;
            await using var db = await dbs.CreateDbContextAsync(ct);
            db.AuditLog.Add(entry);
            await db.SaveChangesAsync(ct);
        }

        private AuditEntry Describe(HttpContext http, string outcome, int? status)
        {
            var endpoint = http.GetEndpoint() as RouteEndpoint;
            var pattern = endpoint?.RoutePattern;
            var target = pattern is null ? null : string.Join(' ', pattern.Parameters
                .Select(p => http.Request.RouteValues.TryGetValue(p.Name, out var v) && v is not null ? $"{p.Name}={v}" : null)
                .OfType<string>());
            return new AuditEntry
            {
                OccurredAt = clock.GetUtcNow().UtcDateTime,
                Actor = ActorOf(http.User),
                ActorRoles = string.Join(',', http.User.FindAll("role").Select(c => c.Value).Order(StringComparer.Ordinal)),
                Action = $"{http.Request.Method} {RouteText(pattern) ?? http.Request.Path.Value}",
                Target = string.IsNullOrEmpty(target) ? null : target,
                Outcome = outcome,
                Status = status,
                TraceId = Activity.Current?.TraceId.ToString(),
            };
        }

        private static string? RouteText(RoutePattern? pattern) =>
            pattern?.RawText is { } raw ? "/" + string.Join('/', pattern.PathSegments.Select(s => string.Concat(s.Parts.Select(PartText)))) : null;

        /// <summary>A parameter without its constraint (<c>{id}</c>, not <c>{id:guid}</c>), so an action reads the same whatever the route's constraints.</summary>
        private static string PartText(RoutePatternPart part) => part switch
        {
            RoutePatternLiteralPart literal => literal.Content,
            RoutePatternParameterPart parameter => $"{{{parameter.Name}}}",
            RoutePatternSeparatorPart separator => separator.Content,
            _ => string.Empty,
        };

        /// <summary>The caller as the audit names it: <c>sub</c>, or <c>sub (name)</c> when the token carries a name.</summary>
        public static string ActorOf(ClaimsPrincipal user)
        {
            var sub = user.FindFirst("sub")?.Value ?? "anonymous";
            var name = user.FindFirst("name")?.Value ?? user.FindFirst("preferred_username")?.Value;
            var actor = name is null || name == sub ? sub : $"{sub} ({name})";
            return actor.Length > 300 ? actor[..300] : actor;
        }
    }

    /// <summary>
    /// On every admin route group: each change (any method but GET and HEAD) is audited around its
    /// handler. Reads are not audited.
    /// </summary>
    public sealed class AuditFilter(AuditLog audit) : IEndpointFilter
    {
        public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
        {
            var http = context.HttpContext;
            if (HttpMethods.IsGet(http.Request.Method) || HttpMethods.IsHead(http.Request.Method))
            {
                return await next(context);
            }
            var id = await audit.StartAsync(http, http.RequestAborted);
            object? result;
            try
            {
                result = await next(context);
            }
            catch (Exception)
            {
                await audit.FinishAsync(id, http, StatusCodes.Status500InternalServerError);
                throw;
            }
            await audit.FinishAsync(id, http, StatusOf(result) ?? http.Response.StatusCode);
            return result;
        }

        private static int? StatusOf(object? result) => result switch
        {
            INestedHttpResult nested => StatusOf(nested.Result),
            IStatusCodeHttpResult { StatusCode: { } status } => status,
            _ => null,
        };
    }

    /// <summary>A change under <c>/api/admin</c> refused to the caller's role is audited as <c>forbidden</c>, then answered as usual.</summary>
    public sealed class AuditForbiddenChanges(AuditLog audit) : IAuthorizationMiddlewareResultHandler
    {
        private readonly AuthorizationMiddlewareResultHandler _default = new();

        public async Task HandleAsync(RequestDelegate next, HttpContext context, AuthorizationPolicy policy, PolicyAuthorizationResult authorizeResult)
        {
            if (authorizeResult.Forbidden && !HttpMethods.IsGet(context.Request.Method) && !HttpMethods.IsHead(context.Request.Method)
                && context.Request.Path.StartsWithSegments("/api/admin", StringComparison.Ordinal))
            {
                await audit.ForbiddenAsync(context, context.RequestAborted);
            }
            await _default.HandleAsync(next, context, policy, authorizeResult);
        }
    }
}
