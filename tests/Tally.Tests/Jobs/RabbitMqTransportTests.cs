using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using RabbitMQ.Client;
using Tally.Hosting;
using Tally.Jobs.Queues;
using Tally.Tests.Harness;

namespace Tally.Tests.Jobs;

/// <summary>The RabbitMQ topology of seed 003 and the transport's publishing, checked from outside through a plain client.</summary>
public class RabbitMqTransportTests
{
    private const int PreconditionFailed = 406;

    [Fact]
    public async Task Declare_CreatesTheSeedTopology_Idempotently()
    {
        await using var broker = await TestBroker.ConnectAsync();
        var queue = new QueueDefinition($"test.{Guid.NewGuid():N}", MaxRetries: 3, RetryDelay: TimeSpan.FromMilliseconds(300));
        await using (var connection = NewConnection())
        {
            await using var transport = NewTransport(connection);
            await transport.DeclareAsync(queue, Ct);
            await transport.DeclareAsync(queue, Ct); // a restarted consumer declares again
        }
        try
        {
            // Equivalent declarations succeed; a declaration differing in durability, TTL or type is refused.
            // Together they pin the arguments exactly, which a passive declare alone cannot show.
            var retryArgs = new Dictionary<string, object?>
            {
                ["x-message-ttl"] = 300,
                ["x-dead-letter-exchange"] = "",
                ["x-dead-letter-routing-key"] = queue.Name,
            };
            var mainArgs = new Dictionary<string, object?>
            {
                ["x-dead-letter-exchange"] = queue.RetryExchange,
                ["x-dead-letter-routing-key"] = queue.Name,
            };
            foreach (var (name, args) in new[] { (queue.Name, mainArgs), (queue.DeadLetterQueue, null) })
            {
                Assert.Null(await broker.ReplyCodeOfAsync(c => c.QueueDeclareAsync(name, durable: true, exclusive: false, autoDelete: false, arguments: args, cancellationToken: Ct)));
                Assert.Equal(PreconditionFailed, await broker.ReplyCodeOfAsync(c => c.QueueDeclareAsync(name, durable: false, exclusive: false, autoDelete: false, arguments: args, cancellationToken: Ct)));
            }
            Assert.Equal(PreconditionFailed, await broker.ReplyCodeOfAsync(c => c.QueueDeclareAsync(queue.Name, durable: true, exclusive: false, autoDelete: false, arguments: null, cancellationToken: Ct)));
            Assert.Null(await broker.ReplyCodeOfAsync(c => c.QueueDeclareAsync(queue.RetryQueue, durable: true, exclusive: false, autoDelete: false, arguments: retryArgs, cancellationToken: Ct)));
            Assert.Equal(PreconditionFailed, await broker.ReplyCodeOfAsync(c => c.QueueDeclareAsync(
                queue.RetryQueue, durable: true, exclusive: false, autoDelete: false, arguments: new Dictionary<string, object?>(retryArgs) { ["x-message-ttl"] = 301 }, cancellationToken: Ct)));
            Assert.Equal(PreconditionFailed, await broker.ReplyCodeOfAsync(c => c.QueueDeclareAsync(
                queue.RetryQueue, durable: true, exclusive: false, autoDelete: false, arguments: new Dictionary<string, object?>(retryArgs) { ["x-dead-letter-routing-key"] = "elsewhere" }, cancellationToken: Ct)));
            foreach (var exchange in new[] { queue.RetryExchange, queue.DeadLetterExchange })
            {
                Assert.Null(await broker.ReplyCodeOfAsync(c => c.ExchangeDeclareAsync(exchange, ExchangeType.Direct, durable: true, autoDelete: false, cancellationToken: Ct)));
                Assert.Equal(PreconditionFailed, await broker.ReplyCodeOfAsync(c => c.ExchangeDeclareAsync(exchange, ExchangeType.Topic, durable: true, autoDelete: false, cancellationToken: Ct)));
            }

            // The bindings: the retry exchange feeds Q.retry, which hands the message back to Q after the TTL;
            // the dead-letter exchange feeds Q.dlq. A message the broker dead-letters from Q goes to Q.retry too.
            await broker.OnChannelAsync(async c =>
            {
                await c.BasicPublishAsync(queue.RetryExchange, queue.Name, Encoding.UTF8.GetBytes("retry me"), Ct);
                await c.BasicPublishAsync(queue.DeadLetterExchange, queue.Name, Encoding.UTF8.GetBytes("dead"), Ct);
            });
            await Eventually.TrueAsync(async () => await broker.CountAsync(queue.Name) == 1, "the retried message to come back to Q after the TTL");
            Assert.Equal(0u, await broker.CountAsync(queue.RetryQueue));
            Assert.Equal(1u, await broker.CountAsync(queue.DeadLetterQueue));
            var back = await broker.OnChannelAsync(c => c.BasicGetAsync(queue.Name, autoAck: false, Ct));
            Assert.Equal("retry me", Encoding.UTF8.GetString(back!.Body.Span));
            await using (var rejecting = await broker.OpenChannelAsync())
            {
                var delivery = await rejecting.BasicGetAsync(queue.Name, autoAck: false, Ct);
                Assert.NotNull(delivery);
                await rejecting.BasicRejectAsync(delivery.DeliveryTag, requeue: false, Ct);
            }
            await Eventually.TrueAsync(async () => await broker.CountAsync(queue.Name) == 1, "the rejected message to come back to Q through Q.retry");
        }
        finally
        {
            await broker.DeleteTopologyAsync(queue.Name);
        }
    }

    /// <summary>The main queue as the seed's service (with or without the dead-letter key) or an earlier Tally declared it.</summary>
    public static TheoryData<string> ExistingMainQueueForms => new() { "seed", "seed-without-key", "earlier-tally" };

    [Theory]
    [MemberData(nameof(ExistingMainQueueForms))]
    public async Task Declare_TopologyTheSeedsServiceCreated_IsTakenOverAsItStands(string form)
    {
        await using var broker = await TestBroker.ConnectAsync();
        var queue = new QueueDefinition($"test.{Guid.NewGuid():N}", MaxRetries: 3, RetryDelay: TimeSpan.FromMilliseconds(300));
        Dictionary<string, object?>? mainArgs = form switch
        {
            "seed" => new() { ["x-dead-letter-exchange"] = queue.RetryExchange, ["x-dead-letter-routing-key"] = queue.Name },
            "seed-without-key" => new() { ["x-dead-letter-exchange"] = queue.RetryExchange },
            _ => null,
        };
        try
        {
            await DeclareAsTheSeedDoesAsync(broker, queue, mainArgs);
            await using var connection = NewConnection();
            await using var transport = NewTransport(connection);
            await transport.DeclareAsync(queue, Ct);

            // Still exactly as it was: the same declaration is accepted, any other refused.
            Assert.Null(await broker.ReplyCodeOfAsync(c => c.QueueDeclareAsync(queue.Name, durable: true, exclusive: false, autoDelete: false, arguments: mainArgs, cancellationToken: Ct)));
            await transport.PublishAsync(queue.Name, [new QueueMessage("m-1", "{}")], Ct);
            Assert.Equal(1u, await broker.CountAsync(queue.Name));
        }
        finally
        {
            await broker.DeleteTopologyAsync(queue.Name);
        }
    }

    [Fact]
    public async Task Declare_ExistingMainQueueDeadLetteringElsewhere_FailsNamingQueueAndSetting()
    {
        await using var broker = await TestBroker.ConnectAsync();
        var queue = new QueueDefinition($"test.{Guid.NewGuid():N}", MaxRetries: 3, RetryDelay: TimeSpan.FromMilliseconds(300));
        try
        {
            await DeclareAsTheSeedDoesAsync(broker, queue, new() { ["x-dead-letter-exchange"] = "elsewhere" });
            await using var connection = NewConnection();
            await using var transport = NewTransport(connection);
            var error = await Assert.ThrowsAsync<InvalidOperationException>(() => transport.DeclareAsync(queue, Ct));
            Assert.Contains($"'{queue.Name}'", error.Message, StringComparison.Ordinal);
            Assert.Contains("x-dead-letter-exchange", error.Message, StringComparison.Ordinal);
        }
        finally
        {
            await broker.DeleteTopologyAsync(queue.Name);
        }
    }

    [Fact]
    public async Task Declare_Quorum_DeclaresEveryQueueAsAQuorumQueue_AndRetriesThroughTheTtl()
    {
        await using var broker = await TestBroker.ConnectAsync();
        var queue = new QueueDefinition($"test.{Guid.NewGuid():N}", MaxRetries: 3, RetryDelay: TimeSpan.FromMilliseconds(300));
        try
        {
            await using (var connection = NewConnection())
            {
                await using var transport = NewTransport(connection, RabbitMqOptions.QuorumQueues);
                await transport.DeclareAsync(queue, Ct);
                await transport.DeclareAsync(queue, Ct); // a restarted consumer declares again
            }
            // A classic declaration of any of them is refused on the type: each is a quorum queue.
            foreach (var name in new[] { queue.Name, queue.RetryQueue, queue.DeadLetterQueue })
            {
                Assert.Equal(PreconditionFailed, await broker.ReplyCodeOfAsync(c => c.QueueDeclareAsync(
                    name, durable: true, exclusive: false, autoDelete: false, arguments: new Dictionary<string, object?> { ["x-queue-type"] = "classic" }, cancellationToken: Ct)));
            }
            // Message TTL and dead-lettering on a quorum Q.retry: the copy comes back to Q after the delay.
            await broker.OnChannelAsync(c => c.BasicPublishAsync(queue.RetryExchange, queue.Name, Encoding.UTF8.GetBytes("retry me"), Ct).AsTask());
            await Eventually.TrueAsync(async () => await broker.CountAsync(queue.Name) == 1, "the retried message to come back to Q after the TTL");
            Assert.Equal(0u, await broker.CountAsync(queue.RetryQueue));
        }
        finally
        {
            await broker.DeleteTopologyAsync(queue.Name);
        }
    }

    /// <summary>Queues that exist as one type, and Tally configured for the other.</summary>
    [Theory]
    [InlineData(RabbitMqOptions.ClassicQueues, RabbitMqOptions.QuorumQueues)]
    [InlineData(RabbitMqOptions.QuorumQueues, RabbitMqOptions.ClassicQueues)]
    public async Task Declare_ExistingQueuesOfTheOtherType_FailsNamingQueueTypeSettingAndQueue(string existing, string configured)
    {
        await using var broker = await TestBroker.ConnectAsync();
        var queue = new QueueDefinition($"test.{Guid.NewGuid():N}", MaxRetries: 3, RetryDelay: TimeSpan.FromMilliseconds(300));
        try
        {
            await using var connection = NewConnection();
            await using (var before = NewTransport(connection, existing))
            {
                await before.DeclareAsync(queue, Ct);
            }
            await using var transport = NewTransport(connection, configured);
            var error = await Assert.ThrowsAsync<InvalidOperationException>(() => transport.DeclareAsync(queue, Ct));
            Assert.Contains("RabbitMq:QueueType", error.Message, StringComparison.Ordinal);
            Assert.Contains($"'{queue.RetryQueue}'", error.Message, StringComparison.Ordinal); // the first queue declared
            Assert.Contains($"RabbitMq:QueueType is {configured}", error.Message, StringComparison.Ordinal);
        }
        finally
        {
            await broker.DeleteTopologyAsync(queue.Name);
        }
    }

    /// <summary>Seed 003's topology as its service declares it, through a plain client.</summary>
    internal static Task DeclareAsTheSeedDoesAsync(TestBroker broker, QueueDefinition queue, Dictionary<string, object?>? mainArgs) =>
        broker.OnChannelAsync(async c =>
        {
            await c.ExchangeDeclareAsync(queue.RetryExchange, ExchangeType.Direct, durable: true, autoDelete: false, cancellationToken: Ct);
            await c.ExchangeDeclareAsync(queue.DeadLetterExchange, ExchangeType.Direct, durable: true, autoDelete: false, cancellationToken: Ct);
            await c.QueueDeclareAsync(queue.Name, durable: true, exclusive: false, autoDelete: false, arguments: mainArgs, cancellationToken: Ct);
            await c.QueueDeclareAsync(queue.RetryQueue, durable: true, exclusive: false, autoDelete: false, arguments: new Dictionary<string, object?>
            {
                ["x-message-ttl"] = (int)queue.RetryDelay.TotalMilliseconds,
                ["x-dead-letter-exchange"] = "",
                ["x-dead-letter-routing-key"] = queue.Name,
            }, cancellationToken: Ct);
            await c.QueueBindAsync(queue.RetryQueue, queue.RetryExchange, queue.Name, cancellationToken: Ct);
            await c.QueueDeclareAsync(queue.DeadLetterQueue, durable: true, exclusive: false, autoDelete: false, arguments: null, cancellationToken: Ct);
            await c.QueueBindAsync(queue.DeadLetterQueue, queue.DeadLetterExchange, queue.Name, cancellationToken: Ct);
        });

    [Fact]
    public async Task Declare_ExistingQueueWithOtherRetryDelay_FailsNamingQueueAndSetting()
    {
        await using var broker = await TestBroker.ConnectAsync();
        var queue = new QueueDefinition($"test.{Guid.NewGuid():N}", MaxRetries: 3, RetryDelay: TimeSpan.FromMilliseconds(300));
        try
        {
            await using var connection = NewConnection();
            await using var transport = NewTransport(connection);
            await transport.DeclareAsync(queue, Ct);

            var error = await Assert.ThrowsAsync<InvalidOperationException>(() => transport.DeclareAsync(queue with { RetryDelay = TimeSpan.FromSeconds(5) }, Ct));
            Assert.Contains($"'{queue.RetryQueue}'", error.Message, StringComparison.Ordinal);
            Assert.Contains("x-message-ttl", error.Message, StringComparison.Ordinal);

            // The transport (and its connection) carry on after the refused declaration.
            await transport.DeclareAsync(queue, Ct);
        }
        finally
        {
            await broker.DeleteTopologyAsync(queue.Name);
        }
    }

    [Fact]
    public async Task Publish_ManyMessages_AllConfirmedPersistentWithIdAndAttempt()
    {
        await using var broker = await TestBroker.ConnectAsync();
        var queue = new QueueDefinition($"test.{Guid.NewGuid():N}", MaxRetries: 3, RetryDelay: TimeSpan.FromSeconds(1));
        try
        {
            await using var connection = NewConnection();
            await using var transport = NewTransport(connection);
            await transport.DeclareAsync(queue, Ct);
            // More than one confirm window (256), in one call.
            var messages = Enumerable.Range(0, 1000).Select(i => new QueueMessage($"id-{i}", $"{{\"n\":{i}}}", Attempt: i % 3)).ToList();
            await transport.PublishAsync(queue.Name, messages, Ct);

            // Confirmed means on the queue now, not eventually.
            Assert.Equal(1000u, await broker.CountAsync(queue.Name));
            Assert.Equal(1000, (await transport.GetDepthAsync(queue, Ct)).Ready);
            var first = await broker.OnChannelAsync(c => c.BasicGetAsync(queue.Name, autoAck: false, Ct));
            Assert.NotNull(first);
            Assert.Equal(DeliveryModes.Persistent, first.BasicProperties.DeliveryMode);
            var sent = messages.Single(m => m.Id == first.BasicProperties.MessageId);
            Assert.Equal(sent.Body, Encoding.UTF8.GetString(first.Body.Span));
            Assert.Equal(sent.Attempt, first.BasicProperties.Headers![RabbitMqTransport.AttemptHeader]);
        }
        finally
        {
            await broker.DeleteTopologyAsync(queue.Name);
        }
    }

    [Fact]
    public async Task Publish_ToAQueueThatDoesNotExist_Throws()
    {
        await using var connection = NewConnection();
        await using var transport = NewTransport(connection);
        var error = await Assert.ThrowsAsync<InvalidOperationException>(
            () => transport.PublishAsync($"test.missing.{Guid.NewGuid():N}", [new QueueMessage("x", "{}")], Ct));
        Assert.Contains("does not exist", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Consumer_ConnectionDroppedMidMessage_RedeliversItAndKeepsConsuming()
    {
        Servers.RequireRabbitMq();
        using var firstDeliveryHeld = new ManualResetEventSlim();
        var held = 0;
        await using var queue = new ScriptedQueue(m =>
        {
            // The first delivery of m1 is still being handled when the connection drops: its ack cannot happen.
            if (m.Id == "m1" && Interlocked.Exchange(ref held, 1) == 0)
            {
                firstDeliveryHeld.Wait(TimeSpan.FromSeconds(30));
            }
            return Tally.Jobs.JobOutcome.Done;
        });
        var instance = $"drop-{Guid.NewGuid():N}";
        var app = await queue.StartAppAsync("rabbitmq", new Dictionary<string, string?> { ["Tally:InstanceId"] = instance });
        try
        {
            var transport = app.Get<IQueueTransport>();
            await transport.PublishAsync(queue.Name, [new QueueMessage("m1", "{}")], Ct);
            await Eventually.TrueAsync(() => Task.FromResult(queue.Deliveries.Any(d => d.Message.Id == "m1")), "m1 to be delivered");

            Assert.Equal(1, await TestBroker.CloseConnectionsAsync($"tally {instance}"));
            firstDeliveryHeld.Set();

            // Publishing reconnects; the consumer's host restarts it on a new connection.
            await transport.PublishAsync(queue.Name, [new QueueMessage("m2", "{}")], Ct);
            await Eventually.TrueAsync(
                () => Task.FromResult(queue.Deliveries.Count(d => d.Message.Id == "m1") == 2 && queue.Deliveries.Any(d => d.Message.Id == "m2")),
                "m1 to be redelivered and m2 delivered after the reconnect");
            await Eventually.TrueAsync(
                async () => await transport.GetDepthAsync(queue.Definition, Ct) is { Ready: 0, Retrying: 0, InFlight: 0, DeadLetters: 0 },
                "both messages to be settled");
        }
        finally
        {
            await app.DisposeAsync();
        }
        await using var broker = await TestBroker.ConnectAsync();
        Assert.Equal(0u, await broker.CountAsync(queue.Name));
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static RabbitMqConnection NewConnection() => new(
        Options.Create(new RabbitMqOptions { Url = Servers.RequireRabbitMq() }),
        Options.Create(new TallyOptions { InstanceId = "tests" }),
        NullLogger<RabbitMqConnection>.Instance);

    private static RabbitMqTransport NewTransport(RabbitMqConnection connection, string queueType = RabbitMqOptions.ClassicQueues) =>
        new(connection, new QueueRegistry([]), Options.Create(new RabbitMqOptions { Url = Servers.RequireRabbitMq(), QueueType = queueType }), NullLogger<RabbitMqTransport>.Instance);
}
