using System.Data.Common;
using System.Net;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Tally.Data;
using Tally.Features.Connections;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.Connections;

/// <summary>
/// A sync whose database fails under it, with real faults (a trigger that refuses the account rows, a
/// session the server ends): a 503 problem, the failure recorded, and the connection free at once.
/// </summary>
public class SyncDatabaseFailureTests
{
    private const string Attempted = "AccountSyncAttempted";
    private const string Failed = "AccountSyncFailed";

    /// <summary>How each database refuses: SQLite aborts from a trigger; PostgreSQL raises with the SQLSTATE given.</summary>
    public static TheoryData<string, string?> Refusals => new()
    {
        { "sqlite", null },
        { "postgres", "23514" }, // check_violation: a constraint the rows break
        { "postgres", "40001" }, // serialization_failure: a conflict with a concurrent transaction
    };

    [Theory]
    [MemberData(nameof(Refusals))]
    public async Task ForcedSync_DatabaseRefusesTheAccounts_Answers503_RecordsAccountSyncFailed_AndTheNextSyncRunsAtOnce(string storage, string? sqlState)
    {
        await using var t = await ConnectionApp.CreateAsync(storage);
        var id = await t.User.CreateSandboxConnectionAsync(new { login = "heidi", accounts = 3 });
        await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK);
        var before = await t.User.GetStringAsync($"/api/connections/{id}/accounts", TestContext.Current.CancellationToken);
        var eventsBefore = (await t.Admin.EventsAsync(id)).Count;

        // A new drift period (every balance moved), and a database that refuses every account row.
        t.Clock.Advance(TimeSpan.FromMinutes(25));
        await RefuseAccountWritesAsync(t, storage, sqlState);
        var problem = await t.User.SyncAsync(id, force: true).ExpectProblemAsync(HttpStatusCode.ServiceUnavailable, "DATABASE_ERROR");
        Assert.Contains("sync again", problem.GetProperty("detail").GetString()!, StringComparison.Ordinal);

        var events = (await t.Admin.EventsAsync(id)).Skip(eventsBefore).ToList();
        Assert.Equal([Attempted, Failed], events.Select(e => e.Type).ToList());
        Assert.Equal("database_error", events[1].Payload.GetProperty("reason").GetString());
        var run = (await t.User.GetAsync($"/api/connections/{id}/sync-runs").ExpectAsync(HttpStatusCode.OK))[0];
        Assert.Equal(("FAILED", "database_error", true), (run.GetProperty("status").GetString(), run.GetProperty("reason").GetString(), run.GetProperty("forced").GetBoolean()));
        var connection = await t.User.GetAsync($"/api/connections/{id}").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(("ACTIVE", "database_error"), (connection.GetProperty("status").GetString(), connection.GetProperty("lastError").GetString()));
        Assert.Equal(before, await t.User.GetStringAsync($"/api/connections/{id}/accounts", TestContext.Current.CancellationToken));
        await using (var db = t.App.Db())
        {
            Assert.Null((await db.ProviderConnections.AsNoTracking().SingleAsync(c => c.Id == id, TestContext.Current.CancellationToken)).SyncClaimedUntil);
        }

        // The database is well again: the next forced sync runs at once (not 409 SYNC_IN_PROGRESS until a lease runs out), and applies everything.
        await AllowAccountWritesAsync(t, storage);
        var again = await t.User.SyncAsync(id, force: true).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal((0, 3, 0, 0), SyncConnectionTests.Counts(again));
    }

    [Fact]
    public async Task ForcedSync_ServerEndsTheSessionBetweenChunks_Answers503_KeepsWhatCommitted_AndTheNextSyncAppliesTheRestAtOnce()
    {
        var drop = new SessionDrop();
        await using var t = await ConnectionApp.CreateAsync("postgres", new Dictionary<string, string?> { ["Connections:AccountsPerTransaction"] = "2" },
            services: s => s.ConfigureDbContext<TallyDb>(o => o.AddInterceptors(drop), ServiceLifetime.Singleton));
        drop.ConnectionString = t.App.ConnectionString;
        var id = await t.User.CreateSandboxConnectionAsync(new { login = "ivan", accounts = 6 });
        await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK);
        var eventsBefore = (await t.Admin.EventsAsync(id)).Count;
        var before = await BalancesAsync(t, id);

        // Every account changes (its as-of date, and nearly always its balance); the session ends as the second chunk writes.
        t.Clock.Advance(TimeSpan.FromMinutes(25));
        drop.AtThe(2);
        await t.User.SyncAsync(id, force: true).ExpectProblemAsync(HttpStatusCode.ServiceUnavailable, "DATABASE_ERROR");
        Assert.True(drop.Dropped, "the server ended the sync's session");

        // The first chunk committed with its balance events; the failure was recorded on another connection.
        var failed = (await t.Admin.EventsAsync(id)).Skip(eventsBefore).Select(e => e.Type).ToList();
        Assert.Equal(Attempted, failed[0]);
        Assert.Equal(Failed, failed[^1]);
        Assert.All(failed[1..^1], type => Assert.Equal(SyncConnection.BalanceUpdatedEvent, type));
        Assert.InRange(failed.Count - 2, 0, 2);
        var run = (await t.User.GetAsync($"/api/connections/{id}/sync-runs").ExpectAsync(HttpStatusCode.OK))[0];
        Assert.Equal(("FAILED", "database_error", 2), (run.GetProperty("status").GetString(), run.GetProperty("reason").GetString(), run.GetProperty("updated").GetInt32()));

        // At once, the rest: the committed two are unchanged now, and each balance that moved has one event.
        var again = await t.User.SyncAsync(id, force: true).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal((0, 4, 2, 0), SyncConnectionTests.Counts(again));
        var after = await BalancesAsync(t, id);
        var events = (await t.Admin.EventsAsync(id)).Skip(eventsBefore).Where(e => e.Type == SyncConnection.BalanceUpdatedEvent)
            .Select(e => e.Payload.GetProperty("accountId").GetGuid()).ToList();
        Assert.Equal(after.Where(a => a.Value != before[a.Key]).Select(a => a.Key).Order(), events.Order());
    }

    private static async Task<Dictionary<Guid, decimal>> BalancesAsync(ConnectionApp t, Guid connectionId)
    {
        await using var db = t.App.Db();
        return await db.ProviderAccounts.AsNoTracking().Where(a => a.ConnectionId == connectionId)
            .ToDictionaryAsync(a => a.Id, a => a.Balance, TestContext.Current.CancellationToken);
    }

    /// <summary>Installs a trigger that refuses every insert and update of an account row, as the database's own constraints would.</summary>
    private static async Task RefuseAccountWritesAsync(ConnectionApp t, string storage, string? sqlState)
    {
        await using var db = t.App.Db();
        var sql = storage == "postgres"
            ? $"""
                CREATE FUNCTION test_refuse_account_write() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION 'test: account writes refused' USING ERRCODE = '{sqlState}'; END $$;
                CREATE TRIGGER test_refuse_account_write BEFORE INSERT OR UPDATE ON provider_accounts
                    FOR EACH ROW EXECUTE FUNCTION test_refuse_account_write();
                """
            : """
                CREATE TRIGGER test_refuse_account_insert BEFORE INSERT ON provider_accounts BEGIN SELECT RAISE(ABORT, 'test: account writes refused'); END;
                CREATE TRIGGER test_refuse_account_update BEFORE UPDATE ON provider_accounts BEGIN SELECT RAISE(ABORT, 'test: account writes refused'); END;
                """;
        await db.Database.ExecuteSqlRawAsync(sql, TestContext.Current.CancellationToken);
    }

    private static async Task AllowAccountWritesAsync(ConnectionApp t, string storage)
    {
        await using var db = t.App.Db();
        var sql = storage == "postgres"
            ? "DROP TRIGGER test_refuse_account_write ON provider_accounts; DROP FUNCTION test_refuse_account_write();"
            : "DROP TRIGGER test_refuse_account_insert; DROP TRIGGER test_refuse_account_update;";
        await db.Database.ExecuteSqlRawAsync(sql, TestContext.Current.CancellationToken);
    }

    /// <summary>
    /// Has PostgreSQL end the session of the n-th account write from now on, as a failover or a cut
    /// network would, and waits until it is gone: the write then meets a dead connection.
    /// </summary>
    private sealed class SessionDrop : DbCommandInterceptor
    {
        private int _countdown;

        public string ConnectionString { get; set; } = "";

        public bool Dropped { get; private set; }

        public void AtThe(int nth) => Volatile.Write(ref _countdown, nth);

        public override async ValueTask<InterceptionResult<int>> NonQueryExecutingAsync(
            DbCommand command, CommandEventData eventData, InterceptionResult<int> result, CancellationToken cancellationToken = default)
        {
            if (command.CommandText.StartsWith("INSERT INTO provider_accounts", StringComparison.Ordinal) && Interlocked.Decrement(ref _countdown) == 0)
            {
                var pid = ((NpgsqlConnection)command.Connection!).ProcessID;
                await using var admin = new NpgsqlConnection(ConnectionString);
                await admin.OpenAsync(cancellationToken);
                await using (var end = new NpgsqlCommand("SELECT pg_terminate_backend($1)", admin))
                {
                    end.Parameters.Add(new NpgsqlParameter { Value = pid });
                    await end.ExecuteScalarAsync(cancellationToken);
                }
                await Eventually.TrueAsync(
                    async () =>
                    {
                        await using var gone = new NpgsqlCommand("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $1", admin);
                        gone.Parameters.Add(new NpgsqlParameter { Value = pid });
                        return await gone.ExecuteScalarAsync(cancellationToken) is true;
                    },
                    "the session to end");
                Dropped = true;
            }
            return await base.NonQueryExecutingAsync(command, eventData, result, cancellationToken);
        }
    }
}
