using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using Npgsql;
using Tally.Hosting;
using Tally.Tests.Harness;

namespace Tally.Tests.Hosting;

/// <summary>
/// A fleet of real processes (scripts/cluster.sh on the test servers): one api instance, whose
/// sandbox is the core, and three worker instances. The core is limited (it answers 429 above its
/// rate) and counts what arrives; the workers sync 10,000 users queued at once, while a login on the
/// api instance, which has no workers, is answered by one of them.
/// </summary>
[Collection(nameof(FleetProcesses))]
public class FleetLimitProcessTests
{
    private const int Rate = 40;
    private const int Calls = 4;
    private const int Users = 10_000;

    [Fact]
    public async Task ThreeWorkers_AgainstALimitedCore_NeverExceedItsRateNorItsCallsInFlight_AndALoginOnTheApiStillGoesFirst()
    {
        var ct = TestContext.Current.CancellationToken;
        Servers.RequirePostgres();
        var servers = Servers.ServersDir ?? throw new InvalidOperationException("TALLY_TEST_SERVERS_DIR is not set.");
        var dir = Directory.CreateTempSubdirectory("tally-fleet-limits-").FullName;
        try
        {
            var (code, output) = await ClusterAsync(servers, "start", dir, "--instances", "api,worker,worker,worker");
            Assert.True(code == 0, $"cluster.sh start exited {code}:\n{output}");
            var env = Fleet.ClusterEnvironment(dir);
            var api = new Uri(env["TALLY_CLUSTER_URL"]);
            var signingKey = env["TALLY_CLUSTER_SIGNING_KEY"];
            await InsertUsersAsync(env["TALLY_CLUSTER_POSTGRES"], ct);
            using var http = new HttpClient { BaseAddress = api, Timeout = TimeSpan.FromSeconds(60) };
            (await http.PostAsync("/sandbox/t24/_reset", null, ct)).EnsureSuccessStatusCode();

            using (var run = Request(HttpMethod.Post, "/api/admin/jobs/balance-sync.enqueue-all/run", signingKey, Guid.Empty, Roles.Admin))
            {
                var body = await http.SendAsync(run, ct).ExpectAsync(HttpStatusCode.OK);
                // Ours, and the Development demo data's mobile-banking users.
                Assert.InRange(body.GetProperty("detail").GetProperty("queued").GetInt32(), Users, Users + 10);
            }
            // The three workers are at the core's limit, 10,000 users behind them.
            await Eventually.TrueAsync(async () => (await StatsAsync(http, ct)).GetProperty("calls").GetInt64() >= 3 * Rate, "the workers calling the core", TimeSpan.FromSeconds(60));

            // A login on the api instance (no workers of its own) for a user still waiting: answered with fresh balances.
            var login = UserId(Users - 1);
            using (var sync = Request(HttpMethod.Post, "/api/me/balances/sync", signingKey, login, Roles.User))
            {
                var body = await http.SendAsync(sync, ct).ExpectAsync(HttpStatusCode.OK);
                Assert.True(body.GetProperty("ok").GetBoolean(), body.ToString());
                Assert.False(body.GetProperty("queued").GetBoolean());
            }

            await Task.Delay(TimeSpan.FromSeconds(10), ct);
            var stats = await StatsAsync(http, ct);
            Assert.True(stats.GetProperty("maxCallsInAnySecond").GetInt32() <= Rate, $"the core saw more than {Rate} calls in a second: {stats}");
            Assert.True(stats.GetProperty("maxConcurrent").GetInt32() <= Calls, $"the core saw more than {Calls} calls at once: {stats}");
            Assert.True(stats.GetProperty("calls").GetInt64() >= 5 * Rate, $"the fleet hardly called the core: {stats}");
            (code, output) = await ClusterAsync(servers, "stop", dir);
            Assert.True(code == 0, $"cluster.sh stop exited {code}:\n{output}");
        }
        finally
        {
            await ClusterAsync(servers, "stop", dir);
            Directory.Delete(dir, recursive: true);
        }
    }

    private static Guid UserId(int n) => Guid.Parse($"00000000-0000-4000-8000-{n:D12}");

    private static async Task InsertUsersAsync(string database, CancellationToken ct)
    {
        await using var connection = new NpgsqlConnection(database);
        await connection.OpenAsync(ct);
        foreach (var sql in new[]
        {
            """
            INSERT INTO users (id, username, context, customer_number, is_active, created_at)
            SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid, 'fleet-' || n, 'MOBILE_BANKING', '1', true, now()
            FROM generate_series(0, $1 - 1) n
            """,
            """
            INSERT INTO core_accounts (id, user_id, account_number, account_type, is_primary, is_active, currency, created_at, updated_at)
            SELECT gen_random_uuid(), ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid, 'FLEET-' || n, 'SAVINGS', true, true, 'USD', now(), now()
            FROM generate_series(0, $1 - 1) n
            """,
        })
        {
            await using var insert = new NpgsqlCommand(sql, connection);
            insert.Parameters.Add(new NpgsqlParameter { Value = Users });
            await insert.ExecuteNonQueryAsync(ct);
        }
    }

    private static async Task<JsonElement> StatsAsync(HttpClient http, CancellationToken ct) =>
        JsonDocument.Parse(await http.GetStringAsync("/sandbox/t24/_stats", ct)).RootElement.Clone();

    private static HttpRequestMessage Request(HttpMethod method, string path, string signingKey, Guid user, string role)
    {
        var request = new HttpRequestMessage(method, path);
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Auth.CreateToken(signingKey, user, [role], TimeSpan.FromHours(1)));
        return request;
    }

    private static Task<(int Code, string Output)> ClusterAsync(string servers, params string[] arguments) =>
        Fleet.ClusterAsync(servers, [
            // The fleet's limits toward the core, and a core that enforces them (429 above its rate).
            $"RateLimits__t24__PermitsPerSecond={Rate}",
            $"BalanceSync__MaxConcurrentCalls={Calls}",
            "BalanceSync__PriorityReserve=1",
            // Four processes on two cores: a call may leave its process a little after its permit.
            "BalanceSync__RateWindowGuardMs=100",
            $"Sandbox__T24__RateLimitPerSecond={Rate}",
            "Sandbox__T24__LatencyMs=20",
            "Sandbox__T24__JitterMs=0",
            "Jobs__balance-sync.enqueue-all__Enabled=false",
        ], arguments);
}
