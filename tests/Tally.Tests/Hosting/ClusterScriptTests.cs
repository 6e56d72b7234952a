using Tally.Tests.Harness;

namespace Tally.Tests.Hosting;

/// <summary>
/// scripts/cluster.sh on the test servers (TALLY_CLUSTER_SERVERS) with the test's own build of Tally
/// (TALLY_CLUSTER_APP): a small fleet starts, reports itself up, lists its instances, and stops
/// leaving no process behind.
/// </summary>
[Collection(nameof(FleetProcesses))]
public class ClusterScriptTests
{
    [Fact]
    public async Task StartStatusStop_OneOfEachRole()
    {
        Servers.RequirePostgres();
        var servers = Servers.ServersDir ?? throw new InvalidOperationException("TALLY_TEST_SERVERS_DIR is not set.");
        var dir = Directory.CreateTempSubdirectory("tally-cluster-").FullName;
        try
        {
            var (code, output) = await ClusterAsync(servers, "start", dir, "--instances", "api,worker,scheduler");
            Assert.True(code == 0, $"cluster.sh start exited {code}:\n{output}");

            var table = File.ReadAllLines(Path.Combine(dir, "instances.tsv")).Select(l => l.Split('\t')).ToList();
            Assert.Equal(["api-1", "worker-1", "scheduler-1"], table.Select(r => r[0]));
            (code, output) = await ClusterAsync(servers, "status", dir);
            Assert.True(code == 0, $"cluster.sh status exited {code}:\n{output}");

            var env = Fleet.ClusterEnvironment(dir);
            var instances = await Fleet.InstancesAsync(new Uri(env["TALLY_CLUSTER_URL"]), env["TALLY_CLUSTER_SIGNING_KEY"]);
            foreach (var row in table)
            {
                Assert.Equal([row[1]], instances[row[0]].Roles);
                Assert.True(instances[row[0]].Alive);
            }

            (code, output) = await ClusterAsync(servers, "stop", dir);
            Assert.True(code == 0, $"cluster.sh stop exited {code}:\n{output}");
            Assert.All(table, row => Assert.False(Runs(row[3]), $"{row[0]} (pid {row[3]}) still runs"));
            (code, _) = await ClusterAsync(servers, "status", dir);
            Assert.Equal(1, code);
            // The reused servers are left running.
            Assert.Equal(0, (await DeployFiles.RunAsync("bash", [Servers.ServersScript!, "status", servers], TimeSpan.FromSeconds(30))).Code);
        }
        finally
        {
            await ClusterAsync(servers, "stop", dir);
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// Whether a process runs: an exited one not yet reaped (a zombie: the instances' parent, the
    /// script, has ended, and PID 1 here may reap late) does not.
    /// </summary>
    private static bool Runs(string pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[(stat.LastIndexOf(')') + 2)..][0] != 'Z';
        }
        catch (IOException)
        {
            return false;
        }
    }

    private static Task<(int Code, string Output)> ClusterAsync(string servers, params string[] arguments) => Fleet.ClusterAsync(servers, [], arguments);
}
