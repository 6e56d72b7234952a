using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Tally.Jobs;
using Tally.Jobs.Queues;
using Tally.Tests.Harness;

namespace Tally.Tests.Jobs;

/// <summary>
/// The delivery contract both transports keep: outcomes become ack / retry after the delay / dead
/// letter, dead letters reach the admin API and can be replayed. The same scenarios run in-process
/// (SQLite) and on RabbitMQ (PostgreSQL), with classic and with quorum queues.
/// </summary>
public class QueueSemanticsTests
{
    private static readonly TimeSpan RetryDelay = TimeSpan.FromMilliseconds(300);

    // .NET timers run on the coarse monotonic clock (a few ms per tick on Linux), so a 300 ms
    // Task.Delay may end a tick early measured by the Stopwatch; a missing delay would show ~0 ms.
    private static readonly TimeSpan TimerResolution = TimeSpan.FromMilliseconds(10);

    [Theory]
    [InlineData("inprocess")]
    [InlineData("rabbitmq")]
    [InlineData("rabbitmq-quorum")]
    public async Task RetryLater_Always_RetriesAfterTheDelayThenDeadLettersAndReplays(string transport)
    {
        await using var queue = new ScriptedQueue(_ => JobOutcome.RetryLater("boom"));
        await using var app = await queue.StartAppAsync(transport);
        var admin = app.Admin();
        var id = $"m-{Guid.NewGuid():N}";
        await PublishAsync(app, transport, queue, id);

        var dead = await SingleDeadLetterAsync(admin, queue);
        Assert.Equal([0, 1, 2, 3], queue.Deliveries.Select(d => d.Message.Attempt));
        Assert.All(queue.Deliveries, d => Assert.Equal((id, Body(id)), (d.Message.Id, d.Message.Body)));
        AssertGapsAtLeastRetryDelay(queue.Deliveries.ToList());
        Assert.Equal(id, dead.GetProperty("messageId").GetString());
        Assert.Equal(Body(id), dead.GetProperty("body").GetString());
        Assert.Equal(4, dead.GetProperty("attempts").GetInt32());
        Assert.Equal("max retries (3) reached: boom", dead.GetProperty("reason").GetString());

        await admin.PostAsync($"/api/admin/dead-letters/{dead.GetProperty("id").GetGuid()}/replay", null).ExpectAsync(HttpStatusCode.Accepted);

        // The replay starts again at attempt 0 with fresh retries, and dead-letters again.
        await Eventually.TrueAsync(() => Task.FromResult(queue.Deliveries.Count >= 8), "the replayed message to use up its retries");
        var again = await SingleDeadLetterAsync(admin, queue);
        Assert.Equal([0, 1, 2, 3, 0, 1, 2, 3], queue.Deliveries.Select(d => d.Message.Attempt));
        AssertGapsAtLeastRetryDelay(queue.Deliveries.Skip(4).ToList());
        Assert.Equal(4, again.GetProperty("attempts").GetInt32());
        Assert.Equal(id, again.GetProperty("messageId").GetString());
    }

    [Theory]
    [InlineData("inprocess")]
    [InlineData("rabbitmq")]
    [InlineData("rabbitmq-quorum")]
    public async Task Done_IsAckedOnce_AndNeverRedelivered(string transport)
    {
        await using var queue = new ScriptedQueue(_ => JobOutcome.Done);
        var app = await queue.StartAppAsync(transport);
        try
        {
            var admin = app.Admin();
            var transportUnderTest = app.Get<IQueueTransport>();
            await PublishAsync(app, transport, queue, "done-1");

            await Eventually.TrueAsync(() => Task.FromResult(queue.Deliveries.Count == 1), "the message to be delivered");
            await Eventually.TrueAsync(
                async () => await transportUnderTest.GetDepthAsync(queue.Definition, TestContext.Current.CancellationToken) is { Ready: 0, Retrying: 0, InFlight: 0 },
                "the message to be settled");
            // Longer than a retry would take to come back: nothing does.
            await Task.Delay(RetryDelay * 4, TestContext.Current.CancellationToken);
            Assert.Single(queue.Deliveries);
            Assert.Equal(0, queue.Deliveries.Single().Message.Attempt);
            Assert.Empty(await DeadLettersAsync(admin, queue));
        }
        finally
        {
            await app.DisposeAsync();
        }

        if (transport.StartsWith("rabbitmq", StringComparison.Ordinal))
        {
            // Closing the app's channels would have returned an unacked message to the queue.
            await using var broker = await TestBroker.ConnectAsync();
            Assert.Equal(0u, await broker.CountAsync(queue.Name));
            Assert.Equal(0u, await broker.CountAsync(queue.Definition.RetryQueue));
            Assert.Equal(0u, await broker.CountAsync(queue.Definition.DeadLetterQueue));
        }
    }

    [Theory]
    [InlineData("inprocess")]
    [InlineData("rabbitmq")]
    [InlineData("rabbitmq-quorum")]
    public async Task Throwing_Handler_IsRetriedLikeRetryLater(string transport)
    {
        await using var queue = new ScriptedQueue(_ => throw new InvalidOperationException("kaboom"));
        await using var app = await queue.StartAppAsync(transport);
        var admin = app.Admin();
        await PublishAsync(app, transport, queue, "throws-1");

        var dead = await SingleDeadLetterAsync(admin, queue);
        Assert.Equal([0, 1, 2, 3], queue.Deliveries.Select(d => d.Message.Attempt));
        AssertGapsAtLeastRetryDelay(queue.Deliveries.ToList());
        Assert.Equal(4, dead.GetProperty("attempts").GetInt32());
        Assert.Equal("max retries (3) reached: InvalidOperationException: kaboom", dead.GetProperty("reason").GetString());
    }

    [Theory]
    [InlineData("inprocess")]
    [InlineData("rabbitmq")]
    [InlineData("rabbitmq-quorum")]
    public async Task GiveUp_GoesStraightToDeadLetters(string transport)
    {
        await using var queue = new ScriptedQueue(_ => JobOutcome.GiveUp("not worth retrying"));
        await using var app = await queue.StartAppAsync(transport);
        var admin = app.Admin();
        await PublishAsync(app, transport, queue, "give-up-1");

        var dead = await SingleDeadLetterAsync(admin, queue);
        var delivery = Assert.Single(queue.Deliveries);
        Assert.Equal(0, delivery.Message.Attempt);
        Assert.Equal(1, dead.GetProperty("attempts").GetInt32());
        Assert.Equal("not worth retrying", dead.GetProperty("reason").GetString());
        Assert.Equal("give-up-1", dead.GetProperty("messageId").GetString());

        // Replayed, it gives up again at once: the new dead letter must survive the replay's own clean-up.
        await admin.PostAsync($"/api/admin/dead-letters/{dead.GetProperty("id").GetGuid()}/replay", null).ExpectAsync(HttpStatusCode.Accepted);
        await Eventually.TrueAsync(() => Task.FromResult(queue.Deliveries.Count == 2), "the replayed message to be delivered");
        var again = await SingleDeadLetterAsync(admin, queue);
        Assert.Equal(1, again.GetProperty("attempts").GetInt32());
        Assert.Equal([0, 0], queue.Deliveries.Select(d => d.Message.Attempt));
    }

    /// <summary>
    /// A page handled by its parts: the page is acked once; of its three parts one is done, one is
    /// retried alone (after the delay, with its own id, until it is done), and one gives up and is
    /// dead-lettered alone, under its own id, replayable on its own.
    /// </summary>
    [Theory]
    [InlineData("inprocess")]
    [InlineData("rabbitmq")]
    [InlineData("rabbitmq-quorum")]
    public async Task ByPart_EachPartRetriedOrDeadLetteredAlone_ThePageAckedOnce(string transport)
    {
        await using var queue = new ScriptedQueue(m => m.Id switch
        {
            "page-1" => JobOutcome.ByPart([
                new PartOutcome(new QueueMessage("part-retried", Body("part-retried")), JobOutcome.RetryLater("not yet")),
                new PartOutcome(new QueueMessage("part-dead", Body("part-dead")), JobOutcome.GiveUp("no good")),
            ]),
            "part-retried" when m.Attempt < 2 => JobOutcome.RetryLater("not yet"),
            _ => JobOutcome.Done,
        });
        await using var app = await queue.StartAppAsync(transport);
        var admin = app.Admin();
        await PublishAsync(app, transport, queue, "page-1");

        var dead = await SingleDeadLetterAsync(admin, queue);
        Assert.Equal("part-dead", dead.GetProperty("messageId").GetString());
        Assert.Equal(Body("part-dead"), dead.GetProperty("body").GetString());
        Assert.Equal("no good", dead.GetProperty("reason").GetString());
        await Eventually.TrueAsync(() => Task.FromResult(queue.Deliveries.Count(d => d.Message.Id == "part-retried") == 2), "the retried part to be delivered twice");
        await Eventually.TrueAsync(
            async () => await app.Get<IQueueTransport>().GetDepthAsync(queue.Definition, TestContext.Current.CancellationToken) is { Ready: 0, Retrying: 0, InFlight: 0 },
            "everything to be settled");
        await Task.Delay(RetryDelay * 3, TestContext.Current.CancellationToken);
        // The page once; the retried part at attempts 1 and 2 (it was refused at attempt 0 inside the page), after the delay each time.
        Assert.Single(queue.Deliveries, d => d.Message.Id == "page-1");
        Assert.Equal([1, 2], queue.Deliveries.Where(d => d.Message.Id == "part-retried").Select(d => d.Message.Attempt));
        Assert.Equal(Body("part-retried"), queue.Deliveries.First(d => d.Message.Id == "part-retried").Message.Body);
        AssertGapsAtLeastRetryDelay([.. queue.Deliveries.Where(d => d.Message.Id is "page-1" or "part-retried")]);
        Assert.DoesNotContain(queue.Deliveries, d => d.Message.Id == "part-dead");

        // The dead part replays on its own, and is done.
        await admin.PostAsync($"/api/admin/dead-letters/{dead.GetProperty("id").GetGuid()}/replay", null).ExpectAsync(HttpStatusCode.Accepted);
        await Eventually.TrueAsync(() => Task.FromResult(queue.Deliveries.Any(d => d.Message.Id == "part-dead")), "the replayed part to be delivered");
        await Eventually.TrueAsync(async () => (await DeadLettersAsync(admin, queue)).Count == 0, "the replayed dead letter to be gone");
        Assert.Single(queue.Deliveries, d => d.Message.Id == "page-1");
    }

    private static string Body(string id) => $$"""{"id":"{{id}}","note":"ünïcode €"}""";

    private static async Task PublishAsync(TallyApp app, string transport, ScriptedQueue queue, string id)
    {
        var queues = app.Get<IQueueTransport>();
        Assert.Equal(transport.StartsWith("rabbitmq", StringComparison.Ordinal) ? "rabbitmq" : "in-process", queues.Name);
        await queues.PublishAsync(queue.Name, [new QueueMessage(id, Body(id))], TestContext.Current.CancellationToken);
    }

    private static async Task<List<JsonElement>> DeadLettersAsync(HttpClient admin, ScriptedQueue queue)
    {
        var body = await admin.GetAsync($"/api/admin/dead-letters?queue={queue.Name}").ExpectAsync(HttpStatusCode.OK);
        return body.EnumerateArray().ToList();
    }

    private static async Task<JsonElement> SingleDeadLetterAsync(HttpClient admin, ScriptedQueue queue)
    {
        List<JsonElement> rows = [];
        await Eventually.TrueAsync(async () => (rows = await DeadLettersAsync(admin, queue)).Count > 0, $"a dead letter on {queue.Name}");
        return Assert.Single(rows);
    }

    private static void AssertGapsAtLeastRetryDelay(List<ScriptedQueue.Seen> deliveries)
    {
        for (var i = 1; i < deliveries.Count; i++)
        {
            var gap = Stopwatch.GetElapsedTime(deliveries[i - 1].Timestamp, deliveries[i].Timestamp);
            Assert.True(gap >= RetryDelay - TimerResolution, $"Delivery {i} came {gap.TotalMilliseconds:0} ms after the previous one, before the retry delay of {RetryDelay.TotalMilliseconds} ms.");
        }
    }
}
