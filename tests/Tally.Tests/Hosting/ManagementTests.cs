using System.Net;
using Tally.Hosting;
using Tally.Tests.Harness;

namespace Tally.Tests.Hosting;

/// <summary>
/// <c>/metrics</c>, <c>/openapi</c> and <c>/docs</c>: anonymous in Development; elsewhere admin only, or
/// anonymous on the management port alone. <c>/healthz</c> and <c>/readyz</c> stay anonymous everywhere.
/// </summary>
public class ManagementTests
{
    // "/docs" redirects to "/docs/" (and a redirect drops the bearer token), so the page itself is asked for.
    private static readonly string[] Described = ["/metrics", "/openapi/v1.json", "/docs/"];

    [Fact]
    public async Task Development_DescribesTheServiceToAnyone()
    {
        await using var app = TallyApp.Sqlite(new Dictionary<string, string?> { ["environment"] = "Development" });
        var anonymous = app.CreateClient();
        foreach (var path in Described)
        {
            await anonymous.GetAsync(path).ExpectStatusAsync(HttpStatusCode.OK);
        }
    }

    [Theory]
    [InlineData("Production")]
    [InlineData("Staging")]
    public async Task OutsideDevelopment_DescribesTheServiceToAdminsOnly(string environment)
    {
        await using var app = TallyApp.Sqlite(new Dictionary<string, string?> { ["environment"] = environment });
        var anonymous = app.CreateClient();
        var user = app.AsUser(Guid.NewGuid());
        var admin = app.Admin();
        foreach (var path in Described)
        {
            await anonymous.GetAsync(path).ExpectProblemAsync(HttpStatusCode.Unauthorized, "UNAUTHORIZED");
            await user.GetAsync(path).ExpectProblemAsync(HttpStatusCode.Forbidden, "FORBIDDEN");
            await admin.GetAsync(path).ExpectStatusAsync(HttpStatusCode.OK);
        }
        await anonymous.GetAsync("/docs").ExpectProblemAsync(HttpStatusCode.Unauthorized, "UNAUTHORIZED");
        Assert.Equal("Healthy", await anonymous.GetStringAsync("/healthz"));
        Assert.Equal("Healthy", await anonymous.GetStringAsync("/readyz"));
    }

    [Fact]
    public async Task ManagementPort_DescribesTheServiceThereAnonymously_AndNowhereElse()
    {
        var (apiPort, managementPort) = (Ports.Free(), Ports.Free());
        await using var app = TallyApp.Sqlite(new Dictionary<string, string?>
        {
            ["environment"] = "Production",
            ["urls"] = $"http://127.0.0.1:{apiPort}",
            ["Tally:ManagementPort"] = managementPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
        });
        app.UseKestrel();
        app.StartServer();
        using var api = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{apiPort}") };
        using var management = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{managementPort}") };
        using var admin = new HttpClient { BaseAddress = api.BaseAddress };
        admin.DefaultRequestHeaders.Authorization = new("Bearer", Auth.CreateToken(TallyApp.SigningKey, Guid.Empty, [Roles.Admin], TimeSpan.FromHours(1)));

        foreach (var path in Described)
        {
            await management.GetAsync(path).ExpectStatusAsync(HttpStatusCode.OK);
            await api.GetAsync(path).ExpectProblemAsync(HttpStatusCode.NotFound, "NOT_FOUND");
            await admin.GetAsync(path).ExpectProblemAsync(HttpStatusCode.NotFound, "NOT_FOUND");
            // The Host header is the client's to choose; the port the connection arrived on is not.
            using var forged = new HttpRequestMessage(HttpMethod.Get, path);
            forged.Headers.Host = $"127.0.0.1:{managementPort}";
            await api.SendAsync(forged).ExpectProblemAsync(HttpStatusCode.NotFound, "NOT_FOUND");
        }
        await api.GetAsync("/docs").ExpectProblemAsync(HttpStatusCode.NotFound, "NOT_FOUND");
        Assert.Equal("Healthy", await api.GetStringAsync("/healthz"));
        Assert.Equal("Healthy", await management.GetStringAsync("/healthz"));
        await admin.GetAsync("/api/admin/jobs").ExpectStatusAsync(HttpStatusCode.OK);
    }
}

internal static class StatusExpectations
{
    /// <summary>Asserts the status of an answer that need not be JSON (Prometheus text, HTML).</summary>
    public static async Task ExpectStatusAsync(this Task<HttpResponseMessage> call, HttpStatusCode status)
    {
        using var response = await call;
        Assert.True(response.StatusCode == status, $"Expected {(int)status}, got {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
    }
}
