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
}
