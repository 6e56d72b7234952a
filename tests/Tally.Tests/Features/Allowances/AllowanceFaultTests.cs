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
/// SIGKILL mid-run, and the broker restarted once, in pages and in the seed's shape. Afterwards every
/// occurrence is paid once.
/// </summary>
[Collection(nameof(ServerFaults))]
public class AllowanceFaultTests
{
    private const int Pairs = 4000;
    private const int DueEach = 2;

    [Theory]
    [InlineData(false, true, "page")]
    [InlineData(true, true, "page")]
    [InlineData(true, true, "occurrence")]
    [InlineData(true, false, "occurrence")]
    public async Task Workers_KilledAndBrokerRestarted_PayEveryOccurrenceExactlyOnce(bool publishEverythingTwice, bool batchCommits, string shape)
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
            ["Allowances:MessageShape"] = shape,
        };
        await using var api = TallyApp.Postgres(database, new Dictionary<string, string?>(settings) { ["Tally:Roles:0"] = "api" });
        var admin = api.Admin();
        var load = await AllowanceLoad.SeedPostgresAsync(database, Pairs, DueEach);

        var run = await admin.PostAsync($"/api/admin/jobs/{EnqueueDueAllowances.Name}/run", null).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(Pairs * DueEach, run.GetProperty("run").GetProperty("processedCount").GetInt32());
        if (publishEverythingTwice)
        {
            // Every occurrence once more, in the shape under test (pages of 500 for the page shape).
            var again = Enumerable.Range(1, Pairs).SelectMany(i => Enumerable.Range(0, DueEach).Select(d =>
                new OccurrenceMessage(MdUuid("s" + i), load.Start.AddDays(d)))).ToList();
            var messages = shape == "page"
                ? OccurrencePage.Paged(again, 500).Select(p => p.ToQueueMessage()).ToList()
                : again.Select(o => o.ToQueueMessage()).ToList();
            await api.Get<IQueueTransport>().PublishAsync(queue, messages, TestContext.Current.CancellationToken);
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

    /// <summary>
    /// Rolling restarts under load: each of three workers in turn is stopped with SIGTERM mid-run and
    /// replaced. Each stops gracefully (exit code 0, within its Tally:ShutdownTimeout, marked STOPPED
    /// in the registry), and every occurrence is paid exactly once, the ledger's total still zero.
    /// </summary>
    [Fact]
    public async Task Workers_StoppedWithSigtermMidRun_StopGracefully_AndPayEveryOccurrenceExactlyOnce()
    {
        var database = await Servers.NewPostgresDatabaseAsync();
        var queue = $"allowance.sigterm.{Guid.NewGuid():N}";
        var settings = new Dictionary<string, string?>
        {
            ["ConnectionStrings:Postgres"] = database,
            ["RabbitMq:Url"] = Servers.RequireRabbitMq(),
            ["Allowances:QueueName"] = queue,
            ["Allowances:RetryDelayMs"] = "1000",
            ["Allowances:BatchSize"] = "500",
            ["Tally:ShutdownTimeout"] = "00:00:10",
            // Slow workers (two deliveries at a time, one transaction each), so the stops fall mid-run.
            ["Allowances:Concurrency"] = "2",
            ["Allowances:Prefetch"] = "2",
            ["Allowances:BatchCommits"] = "false",
        };
        await using var api = TallyApp.Postgres(database, new Dictionary<string, string?>(settings) { ["Tally:Roles:0"] = "api" });
        var admin = api.Admin();
        var load = await AllowanceLoad.SeedPostgresAsync(database, 3 * Pairs, DueEach);
        await admin.PostAsync($"/api/admin/jobs/{EnqueueDueAllowances.Name}/run", null).ExpectAsync(HttpStatusCode.OK);

        var workerSettings = new Dictionary<string, string?>(settings) { ["Tally:Roles"] = "worker" };
        var workers = Enumerable.Range(1, 3).Select(i => TallyProcess.Start($"sigterm-worker-{i}", workerSettings)).ToList();
        var paidAtEachStop = new List<long>();
        try
        {
            for (var stop = 0; stop < 3; stop++)
            {
                // Stopped once it is up and paying (a stop while starting is tested by the fleet's start tests).
                var stopping = workers[stop];
                await Eventually.TrueAsync(async () => await StateAsync(admin, stopping.Name) == "ALIVE", $"{stopping.Name} registered", TimeSpan.FromMinutes(2));
                await Task.Delay(TimeSpan.FromMilliseconds(900));
                paidAtEachStop.Add(await AllowanceLoad.PaidCountAsync(database));
                Assert.True(await stopping.TerminateAsync(TimeSpan.FromSeconds(30)), $"{stopping.Name} still runs 30 s after SIGTERM:\n{stopping.Log()}");
                Assert.True(stopping.ExitCode == 0, $"{stopping.Name} exited {stopping.ExitCode} after SIGTERM:\n{stopping.Log()}");
                workers[stop] = TallyProcess.Start($"sigterm-worker-{stop + 1}-again", workerSettings);
            }

            await Eventually.TrueAsync(async () => await AllowanceLoad.PaidCountAsync(database) >= 3 * Pairs * DueEach,
                "every occurrence paid", TimeSpan.FromMinutes(4));
            await Task.Delay(TimeSpan.FromSeconds(3));
            await AllowanceLoadAssertions.AssertAllPaidExactlyOnceAsync(database, load);
            Assert.True(paidAtEachStop.Count(p => p > 0 && p < 3 * Pairs * DueEach) >= 2, $"paid counts at the stops: {string.Join(", ", paidAtEachStop)}");
            foreach (var name in new[] { "sigterm-worker-1", "sigterm-worker-2", "sigterm-worker-3" })
            {
                Assert.Equal("STOPPED", await StateAsync(admin, name));
            }
        }
        finally
        {
            foreach (var worker in workers)
            {
                await worker.DisposeAsync();
            }
        }
    }

    private static async Task<string?> StateAsync(HttpClient admin, string instance)
    {
        var instances = await admin.GetAsync("/api/admin/instances").ExpectAsync(HttpStatusCode.OK);
        return instances.EnumerateArray().Where(i => i.GetProperty("id").GetString() == instance).Select(i => i.GetProperty("state").GetString()).FirstOrDefault();
    }

    private static Guid MdUuid(string text) =>
        Guid.ParseExact(Convert.ToHexString(System.Security.Cryptography.MD5.HashData(System.Text.Encoding.UTF8.GetBytes(text))), "N");
}
