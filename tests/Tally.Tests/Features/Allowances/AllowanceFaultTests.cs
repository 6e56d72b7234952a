using System.Net;
using Tally.Features.Allowances;
using Tally.Jobs.Queues;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.Allowances;

/// <summary>Tests that restart shared servers run alone, after every parallel test, so they break nobody else's run.</summary>
[CollectionDefinition(nameof(ServerFaults), DisableParallelization = true)]
public sealed class ServerFaults;

/// <summary>
/// Exactly once under faults, scaled out: PostgreSQL, RabbitMQ, three worker processes killed with
/// SIGKILL mid-run, and the broker restarted once. Afterwards every occurrence is paid once.
/// </summary>
[Collection(nameof(ServerFaults))]
public class AllowanceFaultTests
{
    private const int Pairs = 4000;
    private const int DueEach = 2;

    [Theory]
    [InlineData(false, true)]
    [InlineData(true, true)]
    [InlineData(true, false)]
    public async Task Workers_KilledAndBrokerRestarted_PayEveryOccurrenceExactlyOnce(bool publishEverythingTwice, bool batchCommits)
    {
        var database = await Servers.NewPostgresDatabaseAsync();
        var rabbit = Servers.RequireRabbitMq();
        var queue = $"allowance.fault.{Guid.NewGuid():N}";
        var settings = new Dictionary<string, string?>
        {
            ["ConnectionStrings:Postgres"] = database,
            ["RabbitMq:Url"] = rabbit,
            ["Allowances:QueueName"] = queue,
            ["Allowances:RetryDelayMs"] = "1000",
            ["Allowances:BatchSize"] = "500",
            ["Allowances:BatchCommits"] = batchCommits ? "true" : "false",
        };
        await using var api = TallyApp.Postgres(database, new Dictionary<string, string?>(settings) { ["Tally:Roles:0"] = "api" });
        var admin = api.Admin();
        var load = await AllowanceLoad.SeedPostgresAsync(database, Pairs, DueEach);

        var run = await admin.PostAsync($"/api/admin/jobs/{EnqueueDueAllowances.Name}/run", null).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(Pairs * DueEach, run.GetProperty("run").GetProperty("processedCount").GetInt32());
        if (publishEverythingTwice)
        {
            var again = Enumerable.Range(1, Pairs).SelectMany(i => Enumerable.Range(0, DueEach).Select(d =>
                new OccurrenceMessage(MdUuid("s" + i), load.Start.AddDays(d)).ToQueueMessage())).ToList();
            await api.Get<IQueueTransport>().PublishAsync(queue, again, TestContext.Current.CancellationToken);
        }

        var workerSettings = new Dictionary<string, string?>(settings) { ["Tally:Roles:0"] = "worker" };
        var workers = Enumerable.Range(1, 3).Select(i => TallyProcess.Start($"worker-{i}", workerSettings)).ToList();
        var random = new Random(7);
        var paidAtEachFault = new List<long>();
        try
        {
            // The chaos: five SIGKILLs of a random worker (each replaced at once), then one broker restart.
            for (var kill = 0; kill < 5; kill++)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(900));
                paidAtEachFault.Add(await AllowanceLoad.PaidCountAsync(database));
                var victim = random.Next(workers.Count);
                await workers[victim].DisposeAsync();
                workers[victim] = TallyProcess.Start($"worker-{victim + 1}-{kill}", workerSettings);
            }
            paidAtEachFault.Add(await AllowanceLoad.PaidCountAsync(database));
            await Servers.RunServersScriptAsync("restart-rabbitmq");

            await Eventually.TrueAsync(async () => await AllowanceLoad.PaidCountAsync(database) >= Pairs * DueEach,
                "every occurrence paid", TimeSpan.FromMinutes(4));
            // Let redeliveries and duplicates still queued run out before checking that nothing was paid twice.
            await Task.Delay(TimeSpan.FromSeconds(3));
            await AllowanceLoadAssertions.AssertAllPaidExactlyOnceAsync(database, load);
            // The faults really struck mid-run: most of them while work was still outstanding.
            Assert.True(paidAtEachFault.Count(p => p < Pairs * DueEach) >= 3, $"paid counts at the faults: {string.Join(", ", paidAtEachFault)}");
        }
        finally
        {
            foreach (var worker in workers)
            {
                await worker.DisposeAsync();
            }
        }
    }

    private static Guid MdUuid(string text) =>
        Guid.ParseExact(Convert.ToHexString(System.Security.Cryptography.MD5.HashData(System.Text.Encoding.UTF8.GetBytes(text))), "N");
}
