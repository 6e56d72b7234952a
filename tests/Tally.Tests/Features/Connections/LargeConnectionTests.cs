using System.Net;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Tally.Data;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.Connections;

public class LargeConnectionTests
{
    private const int Accounts = 10_000;
    private const int AccountsPerTransaction = 1_000;

    /// <summary>
    /// Round trips of one sync, whatever the number of accounts: a few fixed ones plus at most five
    /// per chunk (the run's counts, the lease, the upserted rows, the unchanged rows, the events).
    /// </summary>
    private const int MaxRoundTrips = 20 + (5 * Accounts / AccountsPerTransaction);

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Sync_TenThousandAccounts_TakesABoundedNumberOfRoundTrips(string storage)
    {
        var commands = new CommandCounter();
        await using var t = await ConnectionApp.CreateAsync(storage, new Dictionary<string, string?>
        {
            ["Connections:MaxAccountsPerConnection"] = $"{Accounts}",
            ["Connections:AccountsPerTransaction"] = $"{AccountsPerTransaction}",
        },
            services: s => s.ConfigureDbContext<TallyDb>(o => o.AddInterceptors(commands), ServiceLifetime.Singleton));
        var id = await t.User.CreateSandboxConnectionAsync(new { login = "whale", accounts = 10_000 });

        commands.Reset();
        var created = await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal((10_000, 0, 0, 0), SyncConnectionTests.Counts(created));
        Assert.InRange(commands.Count, 1, MaxRoundTrips);

        var before = await BalancesAsync(t, id);
        t.Clock.Advance(TimeSpan.FromMinutes(25));
        commands.Reset();
        var updated = await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK);
        var (_, changed, same, _) = SyncConnectionTests.Counts(updated);
        Assert.Equal(10_000, changed + same);
        Assert.True(changed > 9_900, $"{changed} updated");
        Assert.InRange(commands.Count, 1, MaxRoundTrips);

        commands.Reset();
        var unchanged = await t.User.SyncAsync(id, force: true).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal((0, 0, 10_000, 0), SyncConnectionTests.Counts(unchanged));
        Assert.InRange(commands.Count, 1, MaxRoundTrips);

        // One event per balance that really moved (an account can change only its as-of date), and one per funded account found.
        var after = await BalancesAsync(t, id);
        Assert.Equal(10_000, after.Count);
        var moved = after.Count(a => a.Value != before[a.Key]) + before.Count(a => a.Value != 0);
        await using var db = t.App.Db();
        Assert.Equal(moved, await db.OutboxEvents.CountAsync(e => e.EventType == "AccountBalanceUpdated" && e.SubjectId == id.ToString(), TestContext.Current.CancellationToken));
    }

    private static async Task<Dictionary<Guid, decimal>> BalancesAsync(ConnectionApp t, Guid connectionId)
    {
        await using var db = t.App.Db();
        return await db.ProviderAccounts.AsNoTracking().Where(a => a.ConnectionId == connectionId)
            .ToDictionaryAsync(a => a.Id, a => a.Balance, TestContext.Current.CancellationToken);
    }
}
