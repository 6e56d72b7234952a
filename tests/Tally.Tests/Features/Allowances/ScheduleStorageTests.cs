using System.Net;
using Npgsql;
using Tally.Features.Allowances;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.Allowances;

/// <summary>
/// How PostgreSQL stores schedules under the producer. Its mark (<c>enqueued_through</c>,
/// <c>enqueued_at</c>, in no index) must be a HOT update: the new row version on the old one's page,
/// with no new index entries, which needs free space on every page of a freshly loaded table
/// (migration 0018). Without it each of a million marks moves its row to another page and adds an
/// entry to all five indexes.
/// </summary>
public class ScheduleStorageTests
{
    private const int Pairs = 2_000;

    [Fact]
    public async Task ProducerMark_LeavesEveryScheduleOnItsPage()
    {
        var database = await Servers.NewPostgresDatabaseAsync();
        await using var api = TallyApp.Postgres(database, new Dictionary<string, string?>
        {
            ["Tally:Roles:0"] = "api",
            ["Allowances:QueueName"] = $"allowance.storage.{Guid.NewGuid():N}",
        });
        var admin = api.Admin();
        await AllowanceLoad.SeedPostgresAsync(database, Pairs, 1);
        var before = await PagesAsync(database);
        Assert.Equal(Pairs, before.Count);
        Assert.DoesNotContain(before.Values, s => s.Marked);

        var run = await admin.PostAsync($"/api/admin/jobs/{EnqueueDueAllowances.Name}/run", null).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(Pairs, run.GetProperty("run").GetProperty("processedCount").GetInt32());

        var after = await PagesAsync(database);
        Assert.All(after.Values, s => Assert.True(s.Marked));
        var moved = after.Count(s => s.Value.Page != before[s.Key].Page);
        Assert.True(moved == 0, $"{moved} of {Pairs} schedules moved to another page when marked");
    }

    /// <summary>Each schedule's page (the block of its current row version), and whether it is marked enqueued.</summary>
    private static async Task<Dictionary<Guid, (long Page, bool Marked)>> PagesAsync(string database)
    {
        await using var connection = new NpgsqlConnection(database);
        await connection.OpenAsync(TestContext.Current.CancellationToken);
        await using var command = new NpgsqlCommand(
            "SELECT id, (ctid::text::point)[0]::bigint, enqueued_through IS NOT NULL FROM allowance_schedules", connection);
        await using var reader = await command.ExecuteReaderAsync(TestContext.Current.CancellationToken);
        var pages = new Dictionary<Guid, (long, bool)>();
        while (await reader.ReadAsync(TestContext.Current.CancellationToken))
        {
            pages[reader.GetGuid(0)] = (reader.GetInt64(1), reader.GetBoolean(2));
        }
        return pages;
    }
}
