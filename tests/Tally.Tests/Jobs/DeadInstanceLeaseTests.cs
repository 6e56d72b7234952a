using System.Net;
using Microsoft.EntityFrameworkCore;
using Npgsql;
using Tally.Jobs.Instances;
using Tally.Tests.Features.BalanceSync;
using Tally.Tests.Features.Connections;
using Tally.Tests.Harness;

namespace Tally.Tests.Jobs;

/// <summary>
/// What a dead instance held is free again once it has missed three heartbeats, long before the
/// holds' own time-outs (five minutes for a balance-sync claim, two for a connection's sync lease).
/// The dead instance is a registry row that went quiet 20 s ago with a 5 s heartbeat, holding claims
/// taken 19 s ago, as a killed process leaves them.
/// </summary>
public class DeadInstanceLeaseTests
{
    private const string Dead = "killed-worker";

    [Fact]
    public async Task ABalanceSyncClaimOfAnInstanceThatWentQuiet_IsSyncedByAnotherInstance()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var banking = await CoreBanking.StartAsync("postgres", new Dictionary<string, string?> { ["Tally:InstanceId"] = "alive-worker" });
        var user = await banking.UserAsync("ACC-DEAD-CLAIM-1");
        var now = DateTime.UtcNow;
        await RegisterAsync(banking.App, Dead, lastSeen: now.AddSeconds(-20));
        await using (var connection = new NpgsqlConnection(banking.App.ConnectionString))
        {
            await connection.OpenAsync(ct);
            await using var claim = new NpgsqlCommand("""
                INSERT INTO balance_sync_queue (user_id, lane, ticket, attempt, enqueued_at, not_before, claimed_by, claimed_at, claim)
                VALUES ($1, 'BACKGROUND', gen_random_uuid(), 0, $2, $2, $3, $2, gen_random_uuid())
                """, connection);
            claim.Parameters.Add(new NpgsqlParameter { Value = user });
            claim.Parameters.Add(new NpgsqlParameter { Value = now.AddSeconds(-19), NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.TimestampTz });
            claim.Parameters.Add(new NpgsqlParameter { Value = Dead });
            await claim.ExecuteNonQueryAsync(ct);
        }

        await banking.DrainedAsync(TimeSpan.FromSeconds(30));

        Assert.True(CoreBanking.Synced(await banking.AccountAsync(user)));
        Assert.Equal(1, banking.Sandbox.T24.CallsTo("ACC-DEAD-CLAIM-1"));
    }

    /// <summary>
    /// A real worker process claims a user, calls the core, and is killed with SIGKILL mid-call. The
    /// claim would otherwise hold for <c>BalanceSync:ClaimTimeoutSeconds</c> (300 s); a worker that
    /// starts after the kill syncs the user once the dead one has missed three 5 s heartbeats.
    /// </summary>
    [Fact]
    public async Task AWorkerKilledMidSync_LeavesItsClaimToTheNextWorkerWithinThirtySeconds()
    {
        await using var banking = await CoreBanking.StartAsync("postgres", new Dictionary<string, string?>
        {
            ["Tally:InstanceId"] = "api-only",
            ["Tally:Roles"] = "api",
        });
        var user = await banking.UserAsync("ACC-KILLED-1");
        banking.Sandbox.T24.Hold();
        var settings = CoreBanking.Defaults();
        foreach (var (key, value) in banking.Sandbox.TallySettings)
        {
            settings[key] = value;
        }
        settings["ConnectionStrings:Postgres"] = banking.App.ConnectionString;
        settings["Tally:Roles"] = "worker";
        await using (var doomed = TallyProcess.Start("doomed-worker", settings))
        {
            Assert.Equal("QUEUED", await banking.QueueAsync(user));
            await Eventually.TrueAsync(() => Task.FromResult(banking.Sandbox.T24.Stats().Concurrent == 1), "the doomed worker calling the core", TimeSpan.FromSeconds(60));
            doomed.Kill();
        }
        banking.Sandbox.T24.Release();

        var survivor = await banking.AddInstanceAsync("postgres", new Dictionary<string, string?>
        {
            ["Tally:InstanceId"] = "survivor",
            ["Tally:Roles"] = "worker",
        });
        _ = survivor.Server;

        // Three missed heartbeats (15 s) and a look every 5 s: within 30 s of the kill, with a margin for a slow machine.
        await banking.DrainedAsync(TimeSpan.FromSeconds(45));
        Assert.True(CoreBanking.Synced(await banking.AccountAsync(user)));
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task AConnectionSyncLeaseOfAnInstanceThatWentQuiet_IsTakenOverAtOnce_ButALiveHoldersIsNot(string storage)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var t = await ConnectionApp.CreateAsync(storage);
        var id = await t.User.CreateSandboxConnectionAsync();
        var now = t.Clock.GetUtcNow().UtcDateTime;
        await RegisterAsync(t.App, "busy-worker", lastSeen: now.AddSeconds(-2));
        await HoldAsync(t, id, "busy-worker", now);

        // Its holder heartbeats: the lease holds.
        await t.User.SyncAsync(id).ExpectProblemAsync(HttpStatusCode.Conflict, "SYNC_IN_PROGRESS");

        // Its holder went quiet three heartbeats ago: free at once, not in two minutes.
        await RegisterAsync(t.App, Dead, lastSeen: now.AddSeconds(-20));
        await HoldAsync(t, id, Dead, now);
        await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK);
        await using var db = t.App.Db();
        Assert.NotEqual(Dead, (await db.ProviderConnections.AsNoTracking().SingleAsync(c => c.Id == id, ct)).SyncClaimedBy);
    }

    private static async Task HoldAsync(ConnectionApp t, Guid id, string holder, DateTime now)
    {
        await using var db = t.App.Db();
        await db.ProviderConnections.Where(c => c.Id == id).ExecuteUpdateAsync(s => s
            .SetProperty(c => c.SyncClaimedUntil, now.AddMinutes(2))
            .SetProperty(c => c.SyncClaimedBy, holder)
            .SetProperty(c => c.LastAttemptAt, now.AddSeconds(-1)), TestContext.Current.CancellationToken);
    }

    private static async Task RegisterAsync(TallyApp app, string id, DateTime lastSeen)
    {
        await using var db = app.Db();
        await InstanceRegistry.UpsertAsync(db, new Instance
        {
            Id = id,
            Roles = "worker",
            Version = "test",
            Host = "test",
            HeartbeatSeconds = 5,
            StartedAt = lastSeen.AddMinutes(-10),
            LastSeenAt = lastSeen,
        }, starting: true, TestContext.Current.CancellationToken);
    }
}
