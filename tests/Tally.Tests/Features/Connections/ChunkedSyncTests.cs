using System.Data.Common;
using System.Net;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Tally.Data;
using Tally.Features.Connections;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.Connections;

/// <summary>A sync writes its accounts in chunks, a transaction each: no writer waits for a whole sync, and a crash loses nothing.</summary>
public class ChunkedSyncTests
{
    [Fact]
    public async Task Sync_OfManyAccountsOnSqlite_LetsAnotherWriterCommitBeforeItFinishes()
    {
        const int accounts = 4_000;
        await using var t = await ConnectionApp.CreateAsync("sqlite", new Dictionary<string, string?>
        {
            ["Connections:MaxAccountsPerConnection"] = $"{accounts}",
            ["Connections:AccountsPerTransaction"] = "250",
        });
        var id = await t.User.CreateSandboxConnectionAsync(new { login = "big", accounts });
        var wallet = await t.Admin.CreateAccountAsync(t.UserId);

        var sync = t.User.SyncAsync(id);
        await Eventually.TrueAsync(async () => (await ProgressAsync(t, id)).Stored > 0, "the sync committed its first chunk");
        await t.Admin.DepositAsync(wallet, 25m);

        // The deposit went in between two chunks: the sync had not finished when it committed.
        var (status, stored) = await ProgressAsync(t, id);
        Assert.Equal(SyncRunStatus.Running, status);
        Assert.InRange(stored, 1, accounts - 1);

        Assert.Equal((accounts, 0, 0, 0), SyncConnectionTests.Counts(await sync.ExpectAsync(HttpStatusCode.OK)));
        Assert.Equal((SyncRunStatus.Succeeded, accounts), await ProgressAsync(t, id));
        Assert.Equal(25m, await t.Admin.BalanceAsync(wallet));
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Sync_InterruptedBetweenChunks_TheNextAppliesTheRest_AndEveryMovedBalanceHasOneEvent(string storage)
    {
        const int accounts = 1_000;
        var faults = new FailingUpsert();
        await using var t = await ConnectionApp.CreateAsync(storage, new Dictionary<string, string?>
        {
            ["Connections:MaxAccountsPerConnection"] = $"{accounts}",
            ["Connections:AccountsPerTransaction"] = "100",
        },
            services: s => s.ConfigureDbContext<TallyDb>(o => o.AddInterceptors(faults), ServiceLifetime.Singleton));
        var id = await t.User.CreateSandboxConnectionAsync(new { login = "interrupted", accounts });
        await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK);
        var before = await BalancesAsync(t, id);
        var found = (await BalanceEventsAsync(t, id)).Count; // the new accounts' balances, from 0

        // A new drift period: nearly every balance moved. The fourth chunk's write fails (a crash, as far as the sync can tell).
        t.Clock.Advance(TimeSpan.FromMinutes(25));
        faults.FailThe(4);
        using (var broken = await t.User.SyncAsync(id))
        {
            Assert.Equal(HttpStatusCode.InternalServerError, broken.StatusCode);
        }
        var interrupted = await LatestRunAsync(t, id);
        Assert.Equal(SyncRunStatus.Running, interrupted.Status);
        Assert.Equal(300, interrupted.CreatedCount + interrupted.UpdatedCount + interrupted.UnchangedCount);
        // Every balance the committed chunks moved has its event already: they committed together.
        var midway = await BalancesAsync(t, id);
        Assert.Equal(midway.Count(a => a.Value != before[a.Key]), (await BalanceEventsAsync(t, id)).Count - found);

        // Once the dead sync's lease runs out (same drift period still), the next one applies the rest.
        // Every account's as-of date moved with the period: the 300 committed are unchanged now, the rest updated.
        t.Clock.Advance(TimeSpan.FromMinutes(3));
        var resumed = await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal((0, accounts - 300, 300, 0), SyncConnectionTests.Counts(resumed));
        var after = await BalancesAsync(t, id);
        var moved = after.Where(a => a.Value != before[a.Key]).Select(a => a.Key).ToHashSet();
        Assert.True(moved.Count > 900, $"{moved.Count} moved");

        var events = (await BalanceEventsAsync(t, id)).Skip(found).ToList();
        Assert.Equal(moved.Count, events.Count);
        Assert.True(moved.SetEquals(events), "one event for each balance that moved, none twice");
        await using var db = t.App.Db();
        var abandoned = await db.ConnectionSyncRuns.AsNoTracking().SingleAsync(r => r.Id == interrupted.Id, TestContext.Current.CancellationToken);
        Assert.Equal((SyncRunStatus.Failed, "abandoned", 300), (abandoned.Status, abandoned.Reason, abandoned.CreatedCount + abandoned.UpdatedCount + abandoned.UnchangedCount));
    }

    /// <summary>The provider account of each balance event about the connection, oldest first (read from the outbox: more than the events API pages).</summary>
    private static async Task<List<string>> BalanceEventsAsync(ConnectionApp t, Guid connectionId)
    {
        await using var db = t.App.Db();
        var payloads = await db.OutboxEvents.AsNoTracking()
            .Where(e => e.SubjectId == connectionId.ToString() && e.EventType == SyncConnection.BalanceUpdatedEvent)
            .OrderBy(e => e.Sequence).Select(e => e.Payload).ToListAsync(TestContext.Current.CancellationToken);
        return payloads.Select(p => System.Text.Json.JsonDocument.Parse(p).RootElement.GetProperty("providerAccountId").GetString()!).ToList();
    }

    private static async Task<(string Status, int Stored)> ProgressAsync(ConnectionApp t, Guid connectionId)
    {
        await using var db = t.App.Db();
        var ct = TestContext.Current.CancellationToken;
        var status = await db.ConnectionSyncRuns.AsNoTracking().Where(r => r.ConnectionId == connectionId)
            .OrderByDescending(r => r.StartedAt).Select(r => r.Status).FirstOrDefaultAsync(ct);
        return (status ?? "", await db.ProviderAccounts.CountAsync(a => a.ConnectionId == connectionId, ct));
    }

    private static async Task<ConnectionSyncRun> LatestRunAsync(ConnectionApp t, Guid connectionId)
    {
        await using var db = t.App.Db();
        return await db.ConnectionSyncRuns.AsNoTracking().Where(r => r.ConnectionId == connectionId)
            .OrderByDescending(r => r.StartedAt).FirstAsync(TestContext.Current.CancellationToken);
    }

    /// <summary>Balances by provider account id.</summary>
    private static async Task<Dictionary<string, decimal>> BalancesAsync(ConnectionApp t, Guid connectionId)
    {
        await using var db = t.App.Db();
        return await db.ProviderAccounts.AsNoTracking().Where(a => a.ConnectionId == connectionId)
            .ToDictionaryAsync(a => a.ProviderAccountId, a => a.Balance, TestContext.Current.CancellationToken);
    }

    /// <summary>Makes the n-th account upsert statement from now on fail, once.</summary>
    private sealed class FailingUpsert : DbCommandInterceptor
    {
        private int _countdown;

        public void FailThe(int nth) => Volatile.Write(ref _countdown, nth);

        public override ValueTask<InterceptionResult<int>> NonQueryExecutingAsync(DbCommand command, CommandEventData eventData, InterceptionResult<int> result, CancellationToken cancellationToken = default)
        {
            if (command.CommandText.StartsWith("INSERT INTO provider_accounts", StringComparison.Ordinal) && Interlocked.Decrement(ref _countdown) == 0)
            {
                throw new InvalidOperationException("Injected fault: the process died here.");
            }
            return base.NonQueryExecutingAsync(command, eventData, result, cancellationToken);
        }
    }
}
