using System.Net;
using Tally.Demo;
using Tally.Hosting;
using Tally.Tests.Harness;

namespace Tally.Tests.Hosting;

/// <summary>Instances started at the same instant against one PostgreSQL all come up, and the start-up work is done once.</summary>
public class ConcurrentStartTests
{
    [Fact]
    public async Task ThreeInstancesStartedAtOnce_WithDemoData_AllHealthy_AndTheDemoLoadedOnce()
    {
        var ct = TestContext.Current.CancellationToken;
        var database = await Servers.NewPostgresDatabaseAsync();
        var apps = Enumerable.Range(0, 3).Select(i => TallyApp.Postgres(database, new Dictionary<string, string?>
        {
            ["Tally:DemoData"] = "true",
            ["Tally:InstanceId"] = $"start-{i}",
        })).ToList();
        try
        {
            // Each host starts on its own thread: migrations, demo data, key ring and queues all at once.
            var health = await Task.WhenAll(apps.Select(app => Task.Run(async () =>
                (await app.CreateClient().GetAsync("/healthz", ct)).StatusCode, ct)));
            Assert.All(health, status => Assert.Equal(HttpStatusCode.OK, status));

            var admin = apps[0].Admin();
            await admin.GetAsync($"/api/admin/users/{DemoData.GuardianId}", ct).ExpectAsync(HttpStatusCode.OK);
            await admin.GetAsync($"/api/admin/users/{DemoData.MobileUserId}", ct).ExpectAsync(HttpStatusCode.OK);
            Assert.Equal(500m, await admin.BalanceAsync(DemoData.GuardianAccountId));
            var instances = await admin.GetAsync("/api/admin/instances", ct).ExpectAsync(HttpStatusCode.OK);
            Assert.Equal(3, instances.EnumerateArray().Count(i => i.GetProperty("id").GetString()!.StartsWith("start-", StringComparison.Ordinal)));
        }
        finally
        {
            foreach (var app in apps)
            {
                await app.DisposeAsync();
            }
        }
    }
}
