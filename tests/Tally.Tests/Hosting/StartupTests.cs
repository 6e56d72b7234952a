using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Tally.Features.BalanceSync;
using Tally.Sandbox;
using Tally.Tests.Harness;

namespace Tally.Tests.Hosting;

public class StartupTests
{
    [Theory]
    [InlineData("Auth:SigningKey", "short", "Auth:SigningKey")]
    [InlineData("Tally:Roles:0", "cook", "Tally:Roles")]
    [InlineData("Tally:DefaultCurrency", "dollars", "Tally:DefaultCurrency")]
    [InlineData("Allowances:MaxRetries", "-1", "Allowances:MaxRetries")]
    [InlineData("Jobs:allowances.enqueue-due:Cron", "every tuesday", "Jobs:allowances.enqueue-due:Cron")]
    [InlineData("Jobs:Lock", "zookeeper", "Jobs:Lock")]
    [InlineData("RabbitMq:QueueType", "stream", "RabbitMq:QueueType")]
    [InlineData("StoreIntegrity:ManagedSubscriptionTypes:0", " ", "StoreIntegrity:ManagedSubscriptionTypes")]
    [InlineData("Jobs:store.sync-accounts:Cron", "every five minutes", "Jobs:store.sync-accounts:Cron")]
    [InlineData("Tally:MaxRequestBodyBytes", "12", "Tally:MaxRequestBodyBytes")]
    [InlineData("Tally:MaxBulkRequestBodyBytes", "-1", "Tally:MaxBulkRequestBodyBytes")]
    [InlineData("Tally:ManagementPort", "70000", "Tally:ManagementPort")]
    public async Task BadSetting_StopsStartUpNamingTheSetting(string key, string value, string named)
    {
        var messages = "";
        // WebApplicationFactory may lose a failed start's error to a race of its own: it reads the
        // services of a host that Program already disposed, and throws ObjectDisposedException
        // instead (seen under load). That says nothing about Tally, so the start is tried again.
        for (var attempt = 0; attempt < 3; attempt++)
        {
            await using var app = TallyApp.Sqlite(new Dictionary<string, string?> { [key] = value });
            var error = Assert.ThrowsAny<Exception>(() => app.Server);
            if (LostToTheFactory(error))
            {
                continue;
            }
            messages = Errors.AllMessages(error);
            break;
        }
        Assert.Contains(named, messages);
    }

    private static bool LostToTheFactory(Exception? error)
    {
        for (; error is not null; error = error.InnerException)
        {
            if (error is ObjectDisposedException { ObjectName: nameof(IServiceProvider) })
            {
                return true;
            }
        }
        return false;
    }

    [Fact]
    public async Task Health_And_OpenApi_AreServed()
    {
        await using var app = TallyApp.Sqlite();
        var anonymous = app.CreateClient();
        Assert.Equal("Healthy", await anonymous.GetStringAsync("/healthz"));
        Assert.Equal("Healthy", await anonymous.GetStringAsync("/readyz"));
        var admin = app.Admin();
        var openApi = await admin.GetStringAsync("/openapi/v1.json");
        Assert.Contains("/api/guardians/me/allowances/{juniorId}", openApi);
        await admin.GetAsync("/api/admin/jobs"); // one request, so the HTTP metrics have a sample
        Assert.Contains("http_server_request_duration", await admin.GetStringAsync("/metrics"));
    }

    [Fact]
    public async Task Production_WithoutCoreUrl_RefusesToStartNamingIt()
    {
        var messages = await StartFailureAsync(Production(new() { ["T24:BaseUrl"] = null }));
        Assert.Contains("T24:BaseUrl", messages);
    }

    [Theory]
    [InlineData("api")]
    [InlineData("scheduler")]
    public async Task Production_RolesThatDoNotCallTheCore_StartWithoutCoreUrl(string role)
    {
        await using var app = TallyApp.Sqlite(Production(new() { ["T24:BaseUrl"] = null, ["Tally:Roles:0"] = role }));
        Assert.Equal("Healthy", await app.CreateClient().GetStringAsync("/healthz"));
    }

    [Fact]
    public async Task Production_OnSqliteWithCoreUrl_ServesNoSandbox()
    {
        var logs = new CapturedLogs();
        await using var app = TallyApp.Sqlite(Production(new() { ["T24:BaseUrl"] = "http://core.example:8080/t24" }), logs.Register);
        var anonymous = app.CreateClient();
        Assert.Equal("Healthy", await anonymous.GetStringAsync("/healthz"));
        await anonymous.GetAsync("/sandbox/t24/holdings/accounts/0012345678/balances").ExpectProblemAsync(HttpStatusCode.NotFound, "NOT_FOUND");
        await anonymous.GetAsync("/sandbox/t24/_stats").ExpectProblemAsync(HttpStatusCode.NotFound, "NOT_FOUND");
        await anonymous.PostAsync("/sandbox/t24/_reset", null).ExpectProblemAsync(HttpStatusCode.NotFound, "NOT_FOUND");
        await anonymous.GetAsync("/sandbox/simplefin/info").ExpectProblemAsync(HttpStatusCode.NotFound, "NOT_FOUND");
        await anonymous.PostAsync("/sandbox/simplefin/setup-token", null).ExpectProblemAsync(HttpStatusCode.NotFound, "NOT_FOUND");
        Assert.Null(app.Services.GetService<SandboxT24>());
        Assert.Equal(new Uri("http://core.example:8080/t24/"), app.Get<T24Endpoint>().Resolve()?.BaseUrl);
        Assert.DoesNotContain(logs.Entries, e => e.Category == "Tally.Sandbox");
    }

    [Fact]
    public async Task Production_SandboxEnabled_ServesItAndWarns()
    {
        var logs = new CapturedLogs();
        await using var app = TallyApp.Sqlite(Production(new() { ["T24:BaseUrl"] = null, ["Sandbox:Enabled"] = "true" }), logs.Register);
        var anonymous = app.CreateClient();
        await anonymous.GetAsync("/sandbox/t24/_stats").ExpectAsync(HttpStatusCode.OK);
        await anonymous.GetAsync("/sandbox/simplefin/info").ExpectAsync(HttpStatusCode.OK);
        var warning = Assert.Single(logs.Entries, e => e.Category == "Tally.Sandbox");
        Assert.Equal(LogLevel.Warning, warning.Level);
        Assert.Contains("Sandbox:Enabled", warning.Message);
        Assert.Contains("Production", warning.Message);
    }

    [Fact]
    public async Task Development_ServesTheSandboxWithoutWarning()
    {
        var logs = new CapturedLogs();
        await using var app = TallyApp.Sqlite(new Dictionary<string, string?> { ["environment"] = "Development", ["T24:BaseUrl"] = null }, logs.Register);
        await app.CreateClient().GetAsync("/sandbox/t24/_stats").ExpectAsync(HttpStatusCode.OK);
        Assert.NotNull(app.Services.GetService<SandboxT24>());
        Assert.DoesNotContain(logs.Entries, e => e.Category == "Tally.Sandbox");
    }

    /// <summary>Settings for a Production instance, as an operator sets ASPNETCORE_ENVIRONMENT.</summary>
    private static Dictionary<string, string?> Production(Dictionary<string, string?> settings)
    {
        settings["environment"] = "Production";
        return settings;
    }

    private static async Task<string> StartFailureAsync(Dictionary<string, string?> settings)
    {
        // See BadSetting_StopsStartUpNamingTheSetting: a start may lose its error to the factory.
        for (var attempt = 0; attempt < 3; attempt++)
        {
            await using var app = TallyApp.Sqlite(settings);
            var error = Assert.ThrowsAny<Exception>(() => app.Server);
            if (!LostToTheFactory(error))
            {
                return Errors.AllMessages(error);
            }
        }
        return "";
    }
}
