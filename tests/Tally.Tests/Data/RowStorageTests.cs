using System.Net;
using Npgsql;
using Tally.Features.Allowances;
using Tally.Tests.Harness;

namespace Tally.Tests.Data;

/// <summary>
/// How PostgreSQL stores the rows that are updated over and over: a schedule under the producer's
/// mark (<c>enqueued_through</c>, <c>enqueued_at</c>, in no index) and a balance under a transfer
/// must be HOT updates, the new row version on the old one's page with no new index entries. That
/// needs room on every page of a freshly loaded table (migration 0018); without it each of a
/// million updates moves its row to another page and adds an entry to every index.
/// </summary>
public class RowStorageTests
{
    private const int Pairs = 2_000;
    private const string Marked = "enqueued_through IS NOT NULL";

    [Fact]
    public async Task ProducerMark_LeavesEveryScheduleOnItsPage()
    {
        var (database, api) = await LoadedAsync();
        await using var _ = api;
        var before = await PagesAsync(database, "allowance_schedules", Marked);
        Assert.Equal(Pairs, before.Count);
        Assert.DoesNotContain(before.Values, s => s.Holds);

        var run = await api.Admin().PostAsync($"/api/admin/jobs/{EnqueueDueAllowances.Name}/run", null).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(Pairs, run.GetProperty("run").GetProperty("processedCount").GetInt32());

        var after = await PagesAsync(database, "allowance_schedules", Marked);
        Assert.All(after.Values, s => Assert.True(s.Holds));
        var moved = after.Count(s => s.Value.Page != before[s.Key].Page);
        Assert.True(moved == 0, $"{moved} of {Pairs} schedules moved to another page when marked");
    }

    [Fact]
    public async Task Deposit_LeavesEveryAccountOnItsPage()
    {
        const int Deposits = 300;
        var (database, api) = await LoadedAsync();
        await using var _ = api;
        var admin = api.Admin();
        // The juniors' accounts of the load start empty; each of these gets one deposit.
        var before = await PagesAsync(database, "ledger_accounts", "kind = 'USER' AND balance_minor = 0");
        var juniors = before.Where(a => a.Value.Holds).Select(a => a.Key).Take(Deposits).ToList();
        Assert.Equal(Deposits, juniors.Count);

        foreach (var account in juniors)
        {
            await admin.DepositAsync(account, 1.00m);
        }

        var after = await PagesAsync(database, "ledger_accounts", "balance_minor = 100");
        Assert.All(juniors, a => Assert.True(after[a].Holds));
        var moved = juniors.Count(a => after[a].Page != before[a].Page);
        Assert.True(moved == 0, $"{moved} of {Deposits} accounts moved to another page when credited");
    }

    /// <summary>An api instance (no workers) on a new database loaded with <see cref="Pairs"/> funded pairs, one occurrence due each.</summary>
    private static async Task<(string Database, TallyApp Api)> LoadedAsync()
    {
        var database = await Servers.NewPostgresDatabaseAsync();
        var api = TallyApp.Postgres(database, new Dictionary<string, string?> { ["Tally:Roles:0"] = "api" });
        try
        {
            api.Admin(); // starts the instance, which applies the migrations the load needs
            await AllowanceLoad.SeedPostgresAsync(database, Pairs, 1);
            return (database, api);
        }
        catch
        {
            await api.DisposeAsync();
            throw;
        }
    }

    /// <summary>Each row's page (the block of its current version), and whether <paramref name="condition"/> holds for it.</summary>
    private static async Task<Dictionary<Guid, (long Page, bool Holds)>> PagesAsync(string database, string table, string condition)
    {
        await using var connection = new NpgsqlConnection(database);
        await connection.OpenAsync(TestContext.Current.CancellationToken);
        await using var command = new NpgsqlCommand(
            $"SELECT id, (ctid::text::point)[0]::bigint, {condition} FROM {table}", connection);
        await using var reader = await command.ExecuteReaderAsync(TestContext.Current.CancellationToken);
        var pages = new Dictionary<Guid, (long, bool)>();
        while (await reader.ReadAsync(TestContext.Current.CancellationToken))
        {
            pages[reader.GetGuid(0)] = (reader.GetInt64(1), reader.GetBoolean(2));
        }
        return pages;
    }
}
