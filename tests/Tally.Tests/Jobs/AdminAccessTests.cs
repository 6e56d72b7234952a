using System.Net;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Tally.Hosting;
using Tally.Tests.Harness;

namespace Tally.Tests.Jobs;

/// <summary>The operator roles on the admin API (viewer reads, operator steers, admin loads data) and the audit of every change.</summary>
public class AdminAccessTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task EveryAdminRoute_NeedsAViewer_AndEveryChangeAnOperatorOrAdmin()
    {
        await using var app = TallyApp.Sqlite();
        using var _ = app.Admin();
        var routes = app.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>()
            .Where(e => e.RoutePattern.RawText?.StartsWith("/api/admin", StringComparison.Ordinal) == true).ToList();
        Assert.True(routes.Count >= 20, $"only {routes.Count} admin routes found");
        foreach (var route in routes)
        {
            var policies = route.Metadata.GetOrderedMetadata<IAuthorizeData>().Select(a => a.Policy).ToList();
            var methods = route.Metadata.GetMetadata<Microsoft.AspNetCore.Routing.HttpMethodMetadata>()?.HttpMethods ?? [];
            var name = $"{string.Join(',', methods)} {route.RoutePattern.RawText}";
            Assert.True(policies.Contains(Roles.Viewer), $"{name} is not behind the viewer policy");
            if (methods.Any(m => m is not ("GET" or "HEAD")))
            {
                Assert.True(policies.Contains(Roles.Operator) || policies.Contains(Roles.Admin), $"{name} changes something without the operator or admin policy");
            }
        }
    }

    [Fact]
    public async Task Viewer_ReadsEveryListing_AndEveryChangeIsRefusedAndAudited()
    {
        await using var app = TallyApp.Sqlite();
        var viewerId = Guid.NewGuid();
        using var viewer = app.Client(viewerId, Roles.Viewer);
        foreach (var path in new[]
        {
            "/api/admin/jobs", "/api/admin/cron-runs", "/api/admin/queues", "/api/admin/dead-letters", "/api/admin/dead-letters?state=all", "/api/admin/events",
            "/api/admin/audit", "/api/admin/store/repairs", "/api/admin/ledger/totals",
            "/api/admin/instances", "/api/admin/overview", "/api/admin/jobs/runtime.heartbeat", "/api/admin/balance-sync/lanes",
            "/api/admin/allowances", "/api/admin/connections", "/api/admin/search?q=anyone",
        })
        {
            await viewer.GetAsync(path, Ct).ExpectAsync(HttpStatusCode.OK);
        }

        await viewer.PostAsync("/api/admin/jobs/store.sync-accounts/run", null, Ct).ExpectAsync(HttpStatusCode.Forbidden);
        await viewer.PostAsync("/api/admin/jobs/store.sync-accounts/pause", null, Ct).ExpectAsync(HttpStatusCode.Forbidden);
        await viewer.PostAsync($"/api/admin/dead-letters/{Guid.NewGuid()}/replay", null, Ct).ExpectAsync(HttpStatusCode.Forbidden);
        await viewer.DeleteAsync($"/api/admin/dead-letters/{Guid.NewGuid()}", Ct).ExpectAsync(HttpStatusCode.Forbidden);
        await viewer.PostJsonAsync("/api/admin/dead-letters/replay", new { dryRun = true }).ExpectAsync(HttpStatusCode.Forbidden);
        await viewer.PostJsonAsync("/api/admin/dead-letters/delete", new { dryRun = true }).ExpectAsync(HttpStatusCode.Forbidden);
        await viewer.PostJsonAsync("/api/admin/users", new { username = "nobody", context = "WALLET" }).ExpectAsync(HttpStatusCode.Forbidden);
        // Nothing ran: no run of the job was recorded.
        var runs = await viewer.GetAsync("/api/admin/cron-runs?job=store.sync-accounts", Ct).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(0, runs.GetArrayLength());

        var audit = await viewer.GetAsync($"/api/admin/audit?actor={viewerId}", Ct).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(7, audit.GetArrayLength());
        Assert.All(audit.EnumerateArray(), row =>
        {
            Assert.Equal("forbidden", row.GetProperty("outcome").GetString());
            Assert.Equal(403, row.GetProperty("status").GetInt32());
            Assert.Equal("viewer", row.GetProperty("actorRoles").GetString());
        });
        Assert.Equal("POST /api/admin/users", audit[0].GetProperty("action").GetString());
        Assert.Equal("POST /api/admin/dead-letters/delete", audit[1].GetProperty("action").GetString());
        Assert.Equal("POST /api/admin/jobs/{name}/run", audit[6].GetProperty("action").GetString());
        Assert.Equal("name=store.sync-accounts", audit[6].GetProperty("target").GetString());
    }

    [Fact]
    public async Task Operator_SteersTheRuntime_ButLoadsNoData_AndEachChangeIsAuditedWithItsOutcome()
    {
        await using var app = TallyApp.Sqlite();
        var operatorId = Guid.NewGuid();
        using var op = app.Client(operatorId, Roles.Operator);

        await op.PostAsync("/api/admin/jobs/store.sync-accounts/run", null, Ct).ExpectAsync(HttpStatusCode.OK);
        await op.PostAsync("/api/admin/jobs/store.sync-accounts/pause", null, Ct).ExpectAsync(HttpStatusCode.NoContent);
        await op.PostAsync("/api/admin/jobs/store.sync-accounts/resume", null, Ct).ExpectAsync(HttpStatusCode.NoContent);
        await op.PostAsync($"/api/admin/dead-letters/{Guid.NewGuid()}/replay", null, Ct).ExpectProblemAsync(HttpStatusCode.NotFound, "DEAD_LETTER.NOT_FOUND");
        await op.PostJsonAsync("/api/admin/ledger/deposits", new { accountId = Guid.NewGuid(), amount = 1m, idempotencyKey = "k" }).ExpectAsync(HttpStatusCode.Forbidden);

        var audit = await op.GetAsync($"/api/admin/audit?actor={operatorId}", Ct).ExpectAsync(HttpStatusCode.OK);
        var rows = audit.EnumerateArray().Reverse().Select(r => (
            Action: r.GetProperty("action").GetString(), Outcome: r.GetProperty("outcome").GetString(), Status: r.GetProperty("status").GetInt32())).ToList();
        Assert.Equal(
        [
            ("POST /api/admin/jobs/{name}/run", "succeeded", 200),
            ("POST /api/admin/jobs/{name}/pause", "succeeded", 204),
            ("POST /api/admin/jobs/{name}/resume", "succeeded", 204),
            ("POST /api/admin/dead-letters/{id}/replay", "refused", 404),
            ("POST /api/admin/ledger/deposits", "forbidden", 403),
        ], rows);
        Assert.All(audit.EnumerateArray(), r =>
        {
            Assert.Equal(operatorId.ToString(), r.GetProperty("actor").GetString());
            Assert.NotEqual(System.Text.Json.JsonValueKind.Null, r.GetProperty("finishedAt").ValueKind);
        });

        // Filters: by action and by outcome; paging newest first with `before`.
        var refused = await op.GetAsync("/api/admin/audit?outcome=refused", Ct).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal("POST /api/admin/dead-letters/{id}/replay", Assert.Single(refused.EnumerateArray()).GetProperty("action").GetString());
        var first = await op.GetAsync("/api/admin/audit?limit=2", Ct).ExpectAsync(HttpStatusCode.OK);
        var next = await op.GetAsync($"/api/admin/audit?limit=2&before={first[1].GetProperty("id").GetInt64()}", Ct).ExpectAsync(HttpStatusCode.OK);
        Assert.True(next[0].GetProperty("id").GetInt64() < first[1].GetProperty("id").GetInt64());
        await op.GetAsync("/api/admin/audit?outcome=maybe", Ct).ExpectProblemAsync(HttpStatusCode.BadRequest, "VALIDATION_FAILED");

        // Reads are not audited; an admin's change is.
        using var admin = app.Admin();
        await admin.PostJsonAsync("/api/admin/users", new { username = "audited", context = "WALLET" }).ExpectAsync(HttpStatusCode.Created);
        var all = await admin.GetAsync("/api/admin/audit", Ct).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(6, all.GetArrayLength());
        Assert.Equal("admin", all[0].GetProperty("actorRoles").GetString());
    }
}
