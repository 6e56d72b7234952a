using System.Net;
using Tally.Tests.Harness;

namespace Tally.Tests.Hosting;

/// <summary>The API reference at <c>/docs</c>: readers can authorize with a bearer token, and nothing reaches outside services.</summary>
public class DocsReferenceTests
{
    [Fact]
    public async Task Docs_OffersTheBearerScheme_AndNoButtonThatReachesOutside()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var app = TallyApp.Sqlite(new Dictionary<string, string?> { ["environment"] = "Development" });
        var anonymous = app.CreateClient();
        var document = await anonymous.GetAsync("/openapi/v1.json", ct).ExpectAsync(HttpStatusCode.OK);
        var bearer = document.GetProperty("components").GetProperty("securitySchemes").GetProperty("Bearer");
        Assert.Equal("http", bearer.GetProperty("type").GetString());
        Assert.Equal("bearer", bearer.GetProperty("scheme").GetString());
        Assert.True(document.GetProperty("security")[0].TryGetProperty("Bearer", out _));

        // The viewer's configuration as served: no AI chat, no MCP, no telemetry, no developer tools
        // (deploy, share), no link out to the hosted API client.
        var page = await anonymous.GetStringAsync("/docs/", ct);
        Assert.Contains("\"agent\":{\"disabled\":true}", page);
        Assert.Contains("\"mcp\":{\"disabled\":true}", page);
        Assert.Contains("\"telemetry\":false", page);
        Assert.Contains("\"showDeveloperTools\":\"never\"", page);
        Assert.Contains("\"hideClientButton\":true", page);
    }

    [Fact]
    public async Task EveryOperation_HasASummary_AndADescriptionWithItsRolesAndProblems()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var app = TallyApp.Sqlite(new Dictionary<string, string?> { ["environment"] = "Development" });
        var document = await app.CreateClient().GetAsync("/openapi/v1.json", ct).ExpectAsync(HttpStatusCode.OK);
        var missing = new List<string>();
        var operations = 0;
        foreach (var path in document.GetProperty("paths").EnumerateObject())
        {
            foreach (var operation in path.Value.EnumerateObject())
            {
                operations++;
                var summary = operation.Value.TryGetProperty("summary", out var s) ? s.GetString() : null;
                var description = operation.Value.TryGetProperty("description", out var d) ? d.GetString() : null;
                if (string.IsNullOrWhiteSpace(summary) || description is null || !description.Contains("**Roles:**", StringComparison.Ordinal)
                    || !description.Contains("**Problems**", StringComparison.Ordinal))
                {
                    missing.Add($"{operation.Name.ToUpperInvariant()} {path.Name}");
                }
            }
        }
        Assert.True(operations > 60, $"only {operations} operations");
        Assert.True(missing.Count == 0, "Without a summary or a described role and problems: " + string.Join(", ", missing));

        // The roles come from the endpoint's authorization, the codes from what it declares.
        var run = Operation(document, "/api/admin/jobs/{name}/run", "post").GetProperty("description").GetString()!;
        Assert.Contains("`operator` or `admin`", run);
        Assert.Contains("404 `JOB.NOT_FOUND`", run);
        var deposit = Operation(document, "/api/admin/ledger/deposits", "post").GetProperty("description").GetString()!;
        Assert.Contains("**Roles:** `admin`", deposit);
        Assert.Contains("409 `LEDGER.IDEMPOTENCY_KEY_REUSED`", deposit);
        Assert.Contains("anyone", Operation(document, "/api/sync/status", "get").GetProperty("description").GetString()!);

        // Enumerations list their values.
        var outcome = Operation(document, "/api/admin/audit", "get").GetProperty("parameters").EnumerateArray().Single(p => p.GetProperty("name").GetString() == "outcome");
        Assert.Equal(Tally.Jobs.Audit.AuditOutcomes.All, outcome.GetProperty("schema").GetProperty("enum").EnumerateArray().Select(v => v.GetString()!).ToArray());
        var runStatus = Operation(document, "/api/admin/cron-runs", "get").GetProperty("parameters").EnumerateArray().Single(p => p.GetProperty("name").GetString() == "status");
        Assert.Contains("SKIPPED_LOCKED", runStatus.GetProperty("schema").GetProperty("enum").EnumerateArray().Select(v => v.GetString()));
        var frequency = document.GetProperty("components").GetProperty("schemas").GetProperty("AllowanceRequest").GetProperty("properties").GetProperty("frequency");
        Assert.Equal(["DAILY", "WEEKLY", "MONTHLY"], frequency.GetProperty("enum").EnumerateArray().Select(v => v.GetString()!).ToArray());
    }

    private static System.Text.Json.JsonElement Operation(System.Text.Json.JsonElement document, string path, string method) =>
        document.GetProperty("paths").GetProperty(path).GetProperty(method);
}
