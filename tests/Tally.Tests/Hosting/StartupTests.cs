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
    [InlineData("StoreIntegrity:ManagedSubscriptionTypes:0", " ", "StoreIntegrity:ManagedSubscriptionTypes")]
    [InlineData("Jobs:store.sync-accounts:Cron", "every five minutes", "Jobs:store.sync-accounts:Cron")]
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
        var client = app.CreateClient();
        Assert.Equal("Healthy", await client.GetStringAsync("/healthz"));
        Assert.Equal("Healthy", await client.GetStringAsync("/readyz"));
        var openApi = await client.GetStringAsync("/openapi/v1.json");
        Assert.Contains("/api/guardians/me/allowances/{juniorId}", openApi);
        await client.GetAsync("/api/admin/jobs"); // one request, so the HTTP metrics have a sample
        Assert.Contains("http_server_request_duration", await client.GetStringAsync("/metrics"));
    }
}
