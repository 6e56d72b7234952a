using System.Net;
using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using Tally.Hosting;
using Tally.Jobs.Instances;
using Tally.Tests.Harness;

namespace Tally.Tests.Jobs;

/// <summary>The instance registry: every instance registers, heartbeats and says when it stops; the listing marks the ones that went quiet.</summary>
public class InstanceRegistryTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static Dictionary<string, string?> Instance(string id, int heartbeatSeconds = 1, params string[] roles)
    {
        var settings = new Dictionary<string, string?> { ["Tally:InstanceId"] = id, ["Tally:HeartbeatSeconds"] = heartbeatSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture) };
        for (var i = 0; i < roles.Length; i++)
        {
            settings[$"Tally:Roles:{i}"] = roles[i];
        }
        return settings;
    }

    private static async Task<JsonElement?> FindAsync(HttpClient viewer, string id)
    {
        var list = await viewer.GetAsync("/api/admin/instances", Ct).ExpectAsync(HttpStatusCode.OK);
        return list.EnumerateArray().Where(i => i.GetProperty("id").GetString() == id).Select(i => (JsonElement?)i).FirstOrDefault();
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Instances_ListedWithRolesAndHeartbeat_AndAGracefulStopIsMarkedStopped(string storage)
    {
        var suffix = Guid.NewGuid().ToString("N")[..8];
        await using var observer = await Apps.CreateAsync(storage, Instance($"observer-{suffix}", 1, "api"));
        using var viewer = observer.Client(Guid.NewGuid(), Roles.Viewer);
        var shared = new Dictionary<string, string?>(Instance($"worker-{suffix}", 1, "worker", "scheduler"));
        shared[storage == "postgres" ? "ConnectionStrings:Postgres" : "ConnectionStrings:Sqlite"] = observer.ConnectionString;
        var worker = storage == "postgres" ? TallyApp.Postgres(observer.ConnectionString, shared) : TallyApp.Sqlite(shared);
        _ = worker.Services; // start it: it registers before it serves

        var me = await FindAsync(viewer, $"observer-{suffix}");
        Assert.NotNull(me);
        Assert.True(me.Value.GetProperty("alive").GetBoolean());
        Assert.Equal("ALIVE", me.Value.GetProperty("state").GetString());
        Assert.Equal(["api"], me.Value.GetProperty("roles").EnumerateArray().Select(r => r.GetString()));
        Assert.Equal(1, me.Value.GetProperty("heartbeatSeconds").GetInt32());
        Assert.Equal(Environment.MachineName, me.Value.GetProperty("host").GetString());
        Assert.False(string.IsNullOrEmpty(me.Value.GetProperty("version").GetString()));

        var other = await FindAsync(viewer, $"worker-{suffix}");
        Assert.NotNull(other);
        Assert.Equal(["worker", "scheduler"], other.Value.GetProperty("roles").EnumerateArray().Select(r => r.GetString()));
        // Newest first: the worker started after the observer.
        var list = await viewer.GetAsync("/api/admin/instances", Ct).ExpectAsync(HttpStatusCode.OK);
        var order = list.EnumerateArray().Select(i => i.GetProperty("id").GetString()).ToList();
        Assert.True(order.IndexOf($"worker-{suffix}") < order.IndexOf($"observer-{suffix}"), string.Join(", ", order));

        // It heartbeats: its last-seen time moves on past its start.
        await Eventually.TrueAsync(async () =>
        {
            var row = await FindAsync(viewer, $"worker-{suffix}");
            return row!.Value.GetProperty("lastSeenAt").GetDateTime() > row.Value.GetProperty("startedAt").GetDateTime();
        }, "a heartbeat of the worker", TimeSpan.FromSeconds(10));

        await worker.DisposeAsync();
        var stopped = await FindAsync(viewer, $"worker-{suffix}");
        Assert.False(stopped!.Value.GetProperty("alive").GetBoolean());
        Assert.Equal("STOPPED", stopped.Value.GetProperty("state").GetString());
        Assert.Equal(JsonValueKind.String, stopped.Value.GetProperty("stoppedAt").ValueKind);
        Assert.True((await FindAsync(viewer, $"observer-{suffix}"))!.Value.GetProperty("alive").GetBoolean());
    }

    [Fact]
    public async Task Instance_KilledWithoutStopping_IsMarkedLostOnceThreeHeartbeatsPass()
    {
        var database = await Servers.NewPostgresDatabaseAsync();
        var suffix = Guid.NewGuid().ToString("N")[..8];
        await using var observer = TallyApp.Postgres(database, Instance($"observer-{suffix}", 1, "api"));
        using var viewer = observer.Client(Guid.NewGuid(), Roles.Viewer);
        _ = observer.Services;
        await using var process = TallyProcess.Start($"killed-{suffix}", new Dictionary<string, string?>
        {
            ["ConnectionStrings:Postgres"] = database,
            ["Tally:Roles:0"] = "worker",
            ["Tally:HeartbeatSeconds"] = "1",
        });
        try
        {
            await Eventually.TrueAsync(async () => await FindAsync(viewer, $"killed-{suffix}") is { } row && row.GetProperty("alive").GetBoolean()
                && row.GetProperty("lastSeenAt").GetDateTime() > row.GetProperty("startedAt").GetDateTime(),
                "the process to register and heartbeat", TimeSpan.FromSeconds(60));
        }
        catch
        {
            TestContext.Current.TestOutputHelper?.WriteLine(process.Log());
            throw;
        }

        process.Kill();
        var killedAt = DateTime.UtcNow;
        // Still alive within its three heartbeats; lost after them, never stopped: it could not say so.
        await Eventually.TrueAsync(async () => await FindAsync(viewer, $"killed-{suffix}") is { } row && row.GetProperty("state").GetString() == "LOST",
            "the killed instance to be marked lost", TimeSpan.FromSeconds(15));
        Assert.True(DateTime.UtcNow - killedAt >= TimeSpan.FromSeconds(1.5), "marked lost before its heartbeats ran out");
        var lost = (await FindAsync(viewer, $"killed-{suffix}"))!.Value;
        Assert.False(lost.GetProperty("alive").GetBoolean());
        Assert.Equal(JsonValueKind.Null, lost.GetProperty("stoppedAt").ValueKind);

        var overview = await viewer.GetAsync("/api/admin/overview", Ct).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(1, overview.GetProperty("instances").GetProperty("lost").GetInt32());
        Assert.Equal(1, overview.GetProperty("instances").GetProperty("alive").GetInt32());
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task ManyInstancesRegisteringAtOnce_EachIdKeepsOneRow(string storage)
    {
        await using var app = await Apps.CreateAsync(storage, Instance("registry-host", 10, "api"));
        var now = DateTime.UtcNow;
        // Ten registrations at once: five of one id (restarts racing each other), five of their own.
        await Task.WhenAll(Enumerable.Range(0, 10).Select(async i =>
        {
            await using var db = app.Db();
            var me = new Instance
            {
                Id = i < 5 ? "same-id" : $"own-id-{i}",
                Roles = "worker",
                Version = "test",
                Host = "host",
                HeartbeatSeconds = 10,
                StartedAt = now.AddMilliseconds(i),
                LastSeenAt = now.AddMilliseconds(i),
            };
            await InstanceRegistry.UpsertAsync(db, me, starting: true, Ct);
            await InstanceRegistry.UpsertAsync(db, me, starting: false, Ct);
        }));
        await using var check = app.Db();
        var ids = await check.Instances.Select(i => i.Id).ToListAsync(Ct);
        Assert.Equal(["own-id-5", "own-id-6", "own-id-7", "own-id-8", "own-id-9", "registry-host", "same-id"], ids.Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task Listing_RefusesABadLimit_NamingIt()
    {
        await using var app = TallyApp.Sqlite();
        using var admin = app.Admin();
        var problem = await admin.GetAsync("/api/admin/instances?limit=0", Ct).ExpectProblemAsync(HttpStatusCode.BadRequest, "VALIDATION_FAILED");
        Assert.True(problem.GetProperty("errors").TryGetProperty("limit", out _));
    }
}
