using System.Net;
using Tally.Features.Allowances;
using Tally.Jobs.Queues;
using Tally.Tests.Harness;
using Tally.Tests.Jobs;

namespace Tally.Tests.Features.Allowances;

/// <summary>
/// A team moving from seed 003's service: its RabbitMQ topology already exists and its environment
/// variables are set. Tally takes the queues over as they stand and pays, retries and dead-letters through them.
/// </summary>
public class SeedTopologyTests
{
    [Fact]
    public async Task SeedsTopologyAndSettings_TallyStartsAgainstThem_PaysRetriesAndDeadLetters()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var broker = await TestBroker.ConnectAsync();
        var queue = new QueueDefinition($"allowance.seed.{Guid.NewGuid():N}", MaxRetries: 2, RetryDelay: TimeSpan.FromMilliseconds(300));
        await RabbitMqTransportTests.DeclareAsTheSeedDoesAsync(broker, queue, new()
        {
            ["x-dead-letter-exchange"] = queue.RetryExchange,
            ["x-dead-letter-routing-key"] = queue.Name,
        });
        try
        {
            // Only the seed's names: Tally's own settings for these stay unset.
            await using var app = await Apps.CreateAsync("postgres", new Dictionary<string, string?>
            {
                ["Tally:Roles:0"] = "api",
                ["Tally:Roles:1"] = "worker",
                ["RABBITMQ_URL"] = Servers.RequireRabbitMq(),
                ["ALLOWANCE_QUEUE_NAME"] = queue.Name,
                ["ALLOWANCE_MAX_RETRIES"] = "2",
                ["ALLOWANCE_RETRY_DELAY_MS"] = "300",
            });
            Assert.Equal("rabbitmq", app.Get<IQueueTransport>().Name);
            var admin = app.Admin();
            var guardian = await admin.CreateUserAsync();
            var junior = await admin.CreateUserAsync(context: "WALLET");
            await admin.LinkAsync(guardian, junior);
            var guardianAccount = await admin.CreateAccountAsync(guardian);
            var juniorAccount = await admin.CreateAccountAsync(junior);
            await admin.DepositAsync(guardianAccount, 4m);

            // Two occurrences due, funds for one: one is paid, the other retried twice through the
            // seed's retry queue, then dead-lettered through its DLQ.
            var start = DateTime.UtcNow.AddDays(-1).AddMinutes(-5);
            await app.AsGuardian(guardian).PostJsonAsync($"/api/guardians/me/allowances/{junior}",
                new { amount = 4m, frequency = "DAILY", status = "ON", startAt = start.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture) })
                .ExpectAsync(HttpStatusCode.Created);
            var run = await admin.PostAsync($"/api/admin/jobs/{EnqueueDueAllowances.Name}/run", null).ExpectAsync(HttpStatusCode.OK);
            Assert.Equal(2, run.GetProperty("run").GetProperty("processedCount").GetInt32());

            System.Text.Json.JsonElement dead = default;
            await Eventually.TrueAsync(async () =>
            {
                dead = await admin.GetAsync($"/api/admin/dead-letters?queue={queue.Name}").ExpectAsync(HttpStatusCode.OK);
                return dead.GetArrayLength() == 1;
            }, "one dead letter in the seed's queue");
            Assert.Equal(3, dead[0].GetProperty("attempts").GetInt32()); // the first delivery and ALLOWANCE_MAX_RETRIES retries
            Assert.Contains("insufficient funds", dead[0].GetProperty("reason").GetString());
            Assert.Equal(4m, await admin.BalanceAsync(juniorAccount));
            Assert.Equal(0m, await admin.BalanceAsync(guardianAccount));
            await Eventually.TrueAsync(async () => await broker.CountAsync(queue.DeadLetterQueue) == 0 && await broker.CountAsync(queue.RetryQueue) == 0,
                "the seed's retry queue and DLQ drained");

            // The replay goes through the seed's main queue and pays once funds arrived.
            await admin.DepositAsync(guardianAccount, 4m);
            await admin.PostAsync($"/api/admin/dead-letters/{dead[0].GetProperty("id").GetGuid()}/replay", null).ExpectAsync(HttpStatusCode.Accepted);
            await Eventually.TrueAsync(async () => await admin.BalanceAsync(juniorAccount) == 8m, "the replayed occurrence paid");
        }
        finally
        {
            await broker.DeleteTopologyAsync(queue.Name);
        }
    }
}
