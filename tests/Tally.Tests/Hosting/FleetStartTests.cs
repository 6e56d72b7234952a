using System.Net;
using Tally.Tests.Harness;

namespace Tally.Tests.Hosting;

/// <summary>
/// Issue #14, a fleet: instances as real processes on one PostgreSQL, RabbitMQ and Redis, started at
/// the same instant against an empty database (migrations, demo data, key ring, queues all at once).
/// </summary>
[Collection(nameof(FleetProcesses))]
public class FleetStartTests
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    [Fact]
    public async Task TwoThenFive_StartedAtOnce_OnAnEmptyDatabase_AllReady_AndAllRegistered()
    {
        await StartAtOnceAsync(["api", "worker"]);
        await StartAtOnceAsync(["api", "api", "worker", "worker", "scheduler"]);
    }

    [Fact]
    public async Task WorkerRole_RunsOnlyTheWorker()
    {
        var database = await Servers.NewPostgresDatabaseAsync();
        await using var api = Start("only-api", database, "api", out var apiUrl);
        await using var worker = Start("only-worker", database, "worker", out var workerUrl);
        await Task.WhenAll(Fleet.WaitReadyAsync(api, apiUrl), Fleet.WaitReadyAsync(worker, workerUrl));

        // Healthy, but no API on the worker's port: the same admin call answers on the api instance only.
        Assert.Equal(HttpStatusCode.OK, (await Http.GetAsync(new Uri(workerUrl, "/healthz"))).StatusCode);
        using var onWorker = new HttpRequestMessage(HttpMethod.Get, new Uri(workerUrl, "/api/admin/instances"));
        onWorker.Headers.Authorization = new("Bearer", Tally.Hosting.Auth.CreateToken(TallyApp.SigningKey, Guid.Empty, [Tally.Hosting.Roles.Admin], TimeSpan.FromHours(1)));
        Assert.Equal(HttpStatusCode.NotFound, (await Http.SendAsync(onWorker)).StatusCode);
        var instances = await Fleet.InstancesAsync(apiUrl, TallyApp.SigningKey);
        Assert.Equal(["worker"], instances[worker.Name].Roles);
        Assert.Equal(["api"], instances[api.Name].Roles);
    }

    [Fact]
    public async Task MisspeltRole_ExitsNonZero_NamingTheSetting()
    {
        var database = await Servers.NewPostgresDatabaseAsync();
        await using var process = Start("wroker", database, "wroker", out _);
        Assert.True(await process.WaitForExitAsync(Fleet.StartTimeout), $"Tally__Roles=wroker still runs:\n{process.Log()}");
        Assert.NotEqual(0, process.ExitCode);
        Assert.Contains("Tally:Roles", process.Log(), StringComparison.Ordinal);
    }

    private static async Task StartAtOnceAsync(string[] roles)
    {
        var database = await Servers.NewPostgresDatabaseAsync();
        var suffix = Guid.NewGuid().ToString("N")[..6];
        var fleet = new List<(TallyProcess Process, Uri Url, string Role)>();
        try
        {
            // Environments first, so the processes start back to back.
            var environments = roles.Select((role, i) => (Id: $"{role}-{i + 1}-{suffix}", Role: role, Port: Ports.Free())).ToList();
            foreach (var (id, role, port) in environments)
            {
                fleet.Add((TallyProcess.StartExactly(id, Environment(database, id, role, port)), new Uri($"http://127.0.0.1:{port}"), role));
            }
            await Task.WhenAll(fleet.Select(f => Fleet.WaitReadyAsync(f.Process, f.Url)));

            var instances = await Fleet.InstancesAsync(fleet.First(f => f.Role == "api").Url, TallyApp.SigningKey);
            foreach (var (process, _, role) in fleet)
            {
                Assert.True(instances.TryGetValue(process.Name, out var instance), $"{process.Name} is not registered");
                Assert.Equal([role], instance.Roles);
                Assert.True(instance.Alive, $"{process.Name} is not alive");
            }
            Assert.Equal(roles.Length, instances.Count);
        }
        finally
        {
            foreach (var (process, _, _) in fleet)
            {
                await process.DisposeAsync();
            }
        }
    }

    private static TallyProcess Start(string id, string database, string roles, out Uri url)
    {
        var port = Ports.Free();
        url = new Uri($"http://127.0.0.1:{port}");
        return TallyProcess.StartExactly(id, Environment(database, id, roles, port));
    }

    /// <summary>The scale-out settings an operator gives each instance, with the demo data loaded at start.</summary>
    private static Dictionary<string, string> Environment(string database, string id, string roles, int port) => new()
    {
        ["ASPNETCORE_ENVIRONMENT"] = "Testing",
        ["ASPNETCORE_URLS"] = $"http://127.0.0.1:{port}",
        ["ConnectionStrings__Postgres"] = database,
        ["RabbitMq__Url"] = Servers.RequireRabbitMq(),
        ["Redis__Url"] = Servers.RequireRedis(),
        ["Auth__SigningKey"] = TallyApp.SigningKey,
        ["T24__BaseUrl"] = TallyApp.NoCore,
        ["Tally__Roles"] = roles,
        ["Tally__InstanceId"] = id,
        ["Tally__DemoData"] = "true",
        ["Logging__LogLevel__Default"] = "Warning",
    };
}
