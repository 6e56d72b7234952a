using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Text;
using System.Threading.Channels;
using Microsoft.Extensions.Options;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;
using RabbitMQ.Client.Exceptions;

namespace Tally.Jobs.Queues;

/// <summary>
/// The scaled-out transport. For a queue <c>Q</c>, seed 003's topology: durable <c>Q</c>, dead-lettering
/// to the direct exchange <c>Q.retry.exchange</c>, which is bound to <c>Q.retry</c>, whose messages
/// expire after the retry delay and are dead-lettered back to <c>Q</c>; direct exchange
/// <c>Q.dlq.exchange</c> bound to <c>Q.dlq</c>. Queues the seed's service declared are taken over.
/// Messages are persistent and published with confirms; deliveries are acked by hand.
/// At least once: a delivery is acked only after its retry or dead-letter copy is confirmed, and a
/// dead letter only after <see cref="DeadLetterStore"/> committed it, so a crash at any point leaves
/// a copy in the broker (possibly two: the handlers' unique keys make a repeat harmless).
/// With <c>RabbitMq:QueueType</c> = <c>quorum</c> the three queues are quorum queues (replicated;
/// message TTL and dead-lettering since RabbitMQ 3.10), in the same topology; <c>Q.retry</c> then
/// dead-letters at least once, so an expiring retry cannot be lost between the queues. Attempts are
/// still counted in <see cref="AttemptHeader"/>, never from the broker's <c>x-delivery-count</c>.
/// </summary>
public sealed partial class RabbitMqTransport(
    RabbitMqConnection broker, QueueRegistry registry, IOptions<RabbitMqOptions> options, ILogger<RabbitMqTransport> logger)
    : IQueueTransport
{
    private const string QueueTypeArgument = "x-queue-type";

    public const string AttemptHeader = "x-tally-attempt";
    public const string ReasonHeader = "x-tally-reason";

    private static readonly TimeSpan DeadLetterStoreBackoff = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan SettleFailureBackoff = TimeSpan.FromSeconds(1);
    private const ushort DrainPrefetch = 16;

    private readonly ConcurrentDictionary<string, QueueDefinition> _declared = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, StrongBox<long>> _inFlight = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _disposed = new();

    public string Name => "rabbitmq";

    public async Task DeclareAsync(QueueDefinition queue, CancellationToken ct)
    {
        await broker.WithChannelAsync(
            async channel =>
            {
                // The exchanges first: Q names Q.retry.exchange as its dead-letter exchange.
                await DeclareExchangeAsync(channel, queue.RetryExchange, ExchangeType.Direct, ct);
                await DeclareExchangeAsync(channel, queue.DeadLetterExchange, ExchangeType.Direct, ct);
                return true;
            },
            ct);
        await DeclareQueueAsync(queue.RetryQueue, quorum => [RetryQueueArguments(queue, quorum)], ct);
        await DeclareQueueAsync(queue.DeadLetterQueue, quorum => [OfType(null, quorum)], ct);
        await DeclareQueueAsync(queue.Name, quorum => MainQueueForms(queue, quorum), ct);
        await broker.WithChannelAsync(
            async channel =>
            {
                await channel.QueueBindAsync(queue.RetryQueue, queue.RetryExchange, queue.Name, cancellationToken: ct);
                await channel.QueueBindAsync(queue.DeadLetterQueue, queue.DeadLetterExchange, queue.Name, cancellationToken: ct);
                return true;
            },
            ct);
        _declared[queue.Name] = queue;
    }

    /// <summary>
    /// The arguments <c>Q</c> is declared with, newest first; a queue that already exists in any of these
    /// forms is taken over as it stands. The first is seed 003's topology: <c>Q</c> dead-letters to
    /// <c>Q.retry.exchange</c> under the key <c>Q</c>. The second is the same written without the key
    /// (the broker then keeps the message's own key, which is <c>Q</c> too), the third Tally's own
    /// declaration before it followed the seed. Tally never lets the broker dead-letter from <c>Q</c>
    /// itself (it publishes a counted copy and acks), so the three behave the same. Quorum queues are
    /// the same forms with their type.
    /// </summary>
    public static IReadOnlyList<Dictionary<string, object?>?> MainQueueForms(QueueDefinition queue, bool quorum = false) =>
    [
        OfType(new() { ["x-dead-letter-exchange"] = queue.RetryExchange, ["x-dead-letter-routing-key"] = queue.Name }, quorum),
        OfType(new() { ["x-dead-letter-exchange"] = queue.RetryExchange }, quorum),
        OfType(null, quorum),
    ];

    /// <summary><c>Q.retry</c> holds a message for the retry delay, then dead-letters it through the default exchange back to <c>Q</c>.</summary>
    public static Dictionary<string, object?> RetryQueueArguments(QueueDefinition queue, bool quorum = false)
    {
        var arguments = new Dictionary<string, object?>
        {
            ["x-message-ttl"] = checked((int)Math.Max(0, queue.RetryDelay.TotalMilliseconds)),
            ["x-dead-letter-exchange"] = "",
            ["x-dead-letter-routing-key"] = queue.Name,
        };
        if (quorum)
        {
            // A quorum queue dead-letters at most once unless told otherwise; at least once needs reject-publish overflow.
            arguments["x-dead-letter-strategy"] = "at-least-once";
            arguments["x-overflow"] = "reject-publish";
        }
        return OfType(arguments, quorum)!;
    }

    /// <summary>The arguments as declared for the configured queue type: a classic queue names no type (as the seed declared it).</summary>
    private static Dictionary<string, object?>? OfType(Dictionary<string, object?>? arguments, bool quorum) =>
        quorum ? new Dictionary<string, object?>(arguments ?? []) { [QueueTypeArgument] = RabbitMqOptions.QuorumQueues } : arguments;

    /// <summary>
    /// A durable queue of the configured type in the first of its forms the broker accepts. A queue
    /// that exists in none of them stops start-up naming the queue and the first argument that differs;
    /// one that exists as the other type (it accepts that type's form) names <c>RabbitMq:QueueType</c>.
    /// </summary>
    private async Task DeclareQueueAsync(string name, Func<bool, IReadOnlyList<Dictionary<string, object?>?>> formsOfType, CancellationToken ct)
    {
        var quorum = options.Value.IsQuorum;
        var refusal = await TryDeclareQueueAsync(name, formsOfType(quorum), ct);
        if (refusal is null)
        {
            return;
        }
        // The first argument the broker names is not always x-queue-type: ask whether the other type's declaration fits.
        if (await TryDeclareQueueAsync(name, formsOfType(!quorum), ct) is null)
        {
            var (configured, existing) = quorum
                ? (RabbitMqOptions.QuorumQueues, RabbitMqOptions.ClassicQueues)
                : (RabbitMqOptions.ClassicQueues, RabbitMqOptions.QuorumQueues);
            throw new InvalidOperationException(
                $"RabbitMQ queue '{name}' is a {existing} queue, but RabbitMq:QueueType is {configured}, and a queue's type cannot change. " +
                $"Set RabbitMq:QueueType to {existing}, or move the messages of the queue (and of its main, .retry and .dlq queues), " +
                "delete them and start again.");
        }
        throw new InvalidOperationException(
            $"RabbitMQ queue '{name}' already exists with a different {RabbitMqConnection.InequivalentSetting(refusal)} than Tally declares " +
            $"(broker said: {refusal}). Delete the queue (after moving its messages) or change the setting back.");
    }

    /// <summary>Declares the queue in the first form the broker accepts (each try on its own channel: a refused declaration closes it); the first refusal, or null.</summary>
    private async Task<string?> TryDeclareQueueAsync(string name, IReadOnlyList<Dictionary<string, object?>?> forms, CancellationToken ct)
    {
        string? refusal = null;
        foreach (var arguments in forms)
        {
            var refused = await broker.WithChannelAsync(
                async channel =>
                {
                    try
                    {
                        await channel.QueueDeclareAsync(name, durable: true, exclusive: false, autoDelete: false, arguments: arguments, cancellationToken: ct);
                        return null;
                    }
                    catch (OperationInterruptedException e) when (e.ShutdownReason?.ReplyCode == Constants.PreconditionFailed)
                    {
                        return e.ShutdownReason.ReplyText ?? "PRECONDITION_FAILED";
                    }
                },
                ct);
            if (refused is null)
            {
                if (refusal is not null)
                {
                    LogTakenOverAsItStands(logger, name);
                }
                return null;
            }
            refusal ??= refused;
        }
        return refusal;
    }

    internal static async Task DeclareExchangeAsync(IChannel channel, string name, string type, CancellationToken ct)
    {
        try
        {
            await channel.ExchangeDeclareAsync(name, type, durable: true, autoDelete: false, cancellationToken: ct);
        }
        catch (OperationInterruptedException e) when (e.ShutdownReason?.ReplyCode == Constants.PreconditionFailed)
        {
            throw new InvalidOperationException(
                $"RabbitMQ exchange '{name}' already exists with a different type or durability than Tally declares ({type}, durable) " +
                $"(broker said: {e.ShutdownReason.ReplyText}). Delete the exchange or change it back.", e);
        }
    }

    public async Task PublishAsync(string queue, IReadOnlyList<QueueMessage> messages, CancellationToken ct)
    {
        if (messages.Count == 0)
        {
            return;
        }
        // A producer may run on an instance that consumes nothing: declare a known queue before its first message.
        if (!_declared.ContainsKey(queue) && registry.Find(queue) is { } registration)
        {
            await DeclareAsync(registration.Definition, ct);
        }
        using var activity = QueueTracing.StartPublish(Name, queue, messages.Count);
        messages = QueueTracing.WithTraceContext(messages);
        try
        {
            // Mandatory: a queue that does not exist returns the message instead of the broker dropping it.
            await broker.PublishConfirmedAsync(
                messages,
                (channel, m) => channel.BasicPublishAsync("", queue, mandatory: true, Properties(m, m.Attempt, reason: null), Encoding.UTF8.GetBytes(m.Body), ct),
                ct);
        }
        catch (PublishException e) when (e.IsReturn)
        {
            _declared.TryRemove(queue, out _);
            throw new InvalidOperationException($"RabbitMQ queue '{queue}' does not exist: the message was returned unrouted.", e);
        }
    }

    private static BasicProperties Properties(QueueMessage message, int attempt, string? reason)
    {
        var headers = new Dictionary<string, object?> { [AttemptHeader] = attempt };
        if (reason is not null)
        {
            headers[ReasonHeader] = reason.Length > DeadLetterStore.MaxReasonLength ? reason[..DeadLetterStore.MaxReasonLength] : reason;
        }
        if (message.TraceParent is not null)
        {
            headers[QueueTracing.TraceParentHeader] = message.TraceParent;
            if (!string.IsNullOrEmpty(message.TraceState))
            {
                headers[QueueTracing.TraceStateHeader] = message.TraceState;
            }
        }
        return new BasicProperties
        {
            Persistent = true,
            MessageId = message.Id,
            ContentEncoding = "utf-8",
            Headers = headers,
        };
    }

    public async Task ConsumeAsync(
        QueueDefinition queue,
        Func<QueueMessage, CancellationToken, Task<DeliveryAction>> handle,
        Func<QueueDefinition, QueueMessage, string, CancellationToken, Task> recordDeadLetter,
        CancellationToken ct)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct, _disposed.Token);
        var lost = new TaskCompletionSource<Exception>(TaskCreationOptions.RunContinuationsAsynchronously);
        var inFlight = _inFlight.GetOrAdd(queue.Name, _ => new StrongBox<long>());
        var connection = await broker.GetConnectionAsync(ct);

        await using var work = await OpenConsumerChannelAsync(connection, queue.Name, inFlight, lost, stop, ct);
        await using var drain = await OpenConsumerChannelAsync(connection, queue.DeadLetterQueue, null, lost, stop, ct);
        await work.Channel.BasicQosAsync(0, (ushort)Math.Clamp(queue.Prefetch, 1, ushort.MaxValue), global: false, ct);
        await drain.Channel.BasicQosAsync(0, DrainPrefetch, global: false, ct);

        var workers = new List<Task>();
        for (var i = 0; i < Math.Max(1, queue.Concurrency); i++)
        {
            workers.Add(WorkAsync(queue, work, handle, stop.Token));
        }
        workers.Add(DrainAsync(queue, drain, recordDeadLetter, stop.Token));
        await work.StartAsync(queue.Name, ct);
        await drain.StartAsync(queue.DeadLetterQueue, ct);
        LogConsuming(logger, queue.Name, queue.Prefetch, queue.Concurrency);

        // Workers run until shutdown or until a channel is lost; then both consumers stop together.
        await Task.WhenAll(workers);

        // Unacked deliveries (in the buffers, or handed back mid-handler) return to the queue when the channels close.
        await work.StopAsync();
        await drain.StopAsync();
        ct.ThrowIfCancellationRequested();
        if (lost.Task.IsCompleted)
        {
            throw new InvalidOperationException($"Lost the RabbitMQ consumer of {queue.Name}: {lost.Task.Result.Message}", lost.Task.Result);
        }
        throw new ObjectDisposedException(nameof(RabbitMqTransport));
    }

    private static async Task<ConsumerChannel> OpenConsumerChannelAsync(
        IConnection connection, string queue, StrongBox<long>? inFlight, TaskCompletionSource<Exception> lost, CancellationTokenSource stop, CancellationToken ct)
    {
        var channel = await connection.CreateChannelAsync(cancellationToken: ct);
        var consumer = new ConsumerChannel(channel, inFlight, lost, stop);
        channel.ChannelShutdownAsync += (_, e) =>
        {
            consumer.OnLost(new OperationInterruptedException(e, $"channel of {queue} closed"));
            return Task.CompletedTask;
        };
        return consumer;
    }

    /// <summary>One worker: takes buffered deliveries and settles each by the handler's answer.</summary>
    private async Task WorkAsync(
        QueueDefinition queue, ConsumerChannel work, Func<QueueMessage, CancellationToken, Task<DeliveryAction>> handle, CancellationToken stop)
    {
        try
        {
            await foreach (var delivery in work.Buffer.Reader.ReadAllAsync(stop))
            {
                try
                {
                    var action = await handle(delivery.Message, stop);
                    await SettleAsync(queue, work.Channel, delivery, action, stop);
                }
                catch (Exception e) when (stop.IsCancellationRequested)
                {
                    // Shutting down or channel lost mid-message: hand it back (closing the channel would too).
                    LogHandedBack(logger, queue.Name, delivery.Message.Id, e.GetType().Name);
                    await TryNackAsync(work.Channel, delivery.Tag);
                }
                catch (Exception e)
                {
                    // Could not publish the retry or dead-letter copy: requeue the original unchanged, after a pause.
                    LogSettleFailed(logger, e, queue.Name, delivery.Message.Id);
                    await Task.Delay(SettleFailureBackoff, stop).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                    await TryNackAsync(work.Channel, delivery.Tag);
                }
                finally
                {
                    work.Settled();
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
    }

    private async Task SettleAsync(QueueDefinition queue, IChannel channel, Delivery delivery, DeliveryAction action, CancellationToken ct)
    {
        // Confirmed copies first, then the ack: never a moment with no copy in the broker.
        await PublishCopiesAsync(queue, delivery.Message, action, ct);
        // Not cancellable: once the copy is confirmed, acking the original is what avoids a duplicate.
        await channel.BasicAckAsync(delivery.Tag, multiple: false, CancellationToken.None);
    }

    /// <summary>
    /// The copies an action needs before the delivery is acked, all confirmed: a retry, a dead letter,
    /// or one of those per part of a page (published together, one confirm window for the page).
    /// </summary>
    private Task PublishCopiesAsync(QueueDefinition queue, QueueMessage message, DeliveryAction action, CancellationToken ct)
    {
        if (action is DeliveryAction.AckAction)
        {
            return Task.CompletedTask;
        }
        var copies = new List<Copy>();
        AddCopies(queue, message, action, copies);
        return broker.PublishConfirmedAsync(copies,
            (channel, c) => channel.BasicPublishAsync(c.Exchange, queue.Name, mandatory: true, Properties(c.Message, c.Attempt, c.Reason), Encoding.UTF8.GetBytes(c.Message.Body), ct),
            ct);
    }

    private static void AddCopies(QueueDefinition queue, QueueMessage message, DeliveryAction action, List<Copy> copies)
    {
        switch (action)
        {
            case DeliveryAction.RetryAction retry:
                copies.Add(new Copy(queue.RetryExchange, message, retry.NextAttempt, retry.Reason));
                break;
            case DeliveryAction.DeadLetterAction dead:
                copies.Add(new Copy(queue.DeadLetterExchange, message, message.Attempt, dead.Reason));
                break;
            case DeliveryAction.SplitAction split:
                foreach (var part in split.Parts)
                {
                    AddCopies(queue, part.Part, part.Action, copies);
                }
                break;
        }
    }

    /// <summary>A counted copy of a message for the retry or dead-letter exchange, under the queue's name as routing key.</summary>
    private sealed record Copy(string Exchange, QueueMessage Message, int Attempt, string Reason);

    /// <summary>
    /// The drain: moves <c>Q.dlq</c> into the <c>dead_letters</c> table, acking each only after the
    /// row committed. While the store is down, a dead letter goes back to <c>Q.dlq</c> after a pause.
    /// </summary>
    private async Task DrainAsync(
        QueueDefinition queue, ConsumerChannel drain, Func<QueueDefinition, QueueMessage, string, CancellationToken, Task> recordDeadLetter,
        CancellationToken stop)
    {
        try
        {
            await foreach (var delivery in drain.Buffer.Reader.ReadAllAsync(stop))
            {
                try
                {
                    await recordDeadLetter(queue, delivery.Message, delivery.Reason ?? "dead-lettered", stop);
                    // The row is committed: ack even while stopping (a repeat would only rewrite the same row).
                    await drain.Channel.BasicAckAsync(delivery.Tag, multiple: false, CancellationToken.None);
                }
                catch (Exception e) when (!stop.IsCancellationRequested)
                {
                    LogDeadLetterStoreFailed(logger, e, queue.Name, delivery.Message.Id);
                    await Task.Delay(DeadLetterStoreBackoff, stop).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                    await TryNackAsync(drain.Channel, delivery.Tag);
                }
                catch (Exception) when (stop.IsCancellationRequested)
                {
                    await TryNackAsync(drain.Channel, delivery.Tag);
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
    }

    private static async Task TryNackAsync(IChannel channel, ulong tag)
    {
        if (!channel.IsOpen)
        {
            return; // The broker requeues every unacked delivery of a closed channel.
        }
        try
        {
            await channel.BasicNackAsync(tag, multiple: false, requeue: true, CancellationToken.None);
        }
        catch (Exception e) when (e is AlreadyClosedException or OperationInterruptedException or IOException)
        {
        }
    }

    public async Task<QueueDepth> GetDepthAsync(QueueDefinition queue, CancellationToken ct)
    {
        var ready = await CountAsync(queue.Name, ct);
        var retrying = await CountAsync(queue.RetryQueue, ct);
        var dead = await CountAsync(queue.DeadLetterQueue, ct);
        var inFlight = _inFlight.TryGetValue(queue.Name, out var box) ? Volatile.Read(ref box.Value) : 0;
        return new QueueDepth(queue.Name, ready, retrying, inFlight, dead);
    }

    /// <summary>Messages ready in one queue (a passive declare); 0 for a queue not declared yet.</summary>
    private Task<long> CountAsync(string queue, CancellationToken ct) =>
        broker.WithChannelAsync(
            async channel =>
            {
                try
                {
                    return (long)(await channel.QueueDeclarePassiveAsync(queue, ct)).MessageCount;
                }
                catch (OperationInterruptedException e) when (e.ShutdownReason?.ReplyCode == Constants.NotFound)
                {
                    return 0L;
                }
            },
            ct);

    public async ValueTask DisposeAsync()
    {
        // Ends running consumers (their channels close and unacked messages return to the broker);
        // the shared connection belongs to RabbitMqConnection and closes with it.
        await _disposed.CancelAsync();
        _disposed.Dispose();
    }

    internal static QueueMessage ReadMessage(BasicDeliverEventArgs e, out string? reason)
    {
        var headers = e.BasicProperties.Headers;
        reason = headers is not null && headers.TryGetValue(ReasonHeader, out var r) ? HeaderString(r) : null;
        var attempt = headers is not null && headers.TryGetValue(AttemptHeader, out var a) ? HeaderInt(a) : 0;
        // A message published without an id (not by Tally) gets one, so it can still be dead-lettered and replayed.
        var id = e.BasicProperties.MessageId is { Length: > 0 } messageId ? messageId : $"no-id-{Guid.NewGuid():N}";
        var traceParent = headers is not null && headers.TryGetValue(QueueTracing.TraceParentHeader, out var p) ? HeaderString(p) : null;
        var traceState = headers is not null && headers.TryGetValue(QueueTracing.TraceStateHeader, out var t) ? HeaderString(t) : null;
        return new QueueMessage(id, Encoding.UTF8.GetString(e.Body.Span), attempt, traceParent, traceState);
    }

    private static int HeaderInt(object? value) => value switch
    {
        int i => i,
        long l => (int)Math.Clamp(l, 0, int.MaxValue),
        short s => s,
        byte b => b,
        sbyte sb => sb,
        byte[] bytes when int.TryParse(Encoding.UTF8.GetString(bytes), out var parsed) => parsed,
        string text when int.TryParse(text, out var parsed) => parsed,
        _ => 0,
    };

    private static string? HeaderString(object? value) => value switch
    {
        byte[] bytes => Encoding.UTF8.GetString(bytes),
        string text => text,
        null => null,
        _ => value.ToString(),
    };

    /// <summary>A delivery copied out of the client's buffers: the body memory is only valid during the callback.</summary>
    private sealed record Delivery(ulong Tag, QueueMessage Message, string? Reason);

    /// <summary>One consumer channel: its deliveries buffered for the workers, and how it ends.</summary>
    private sealed class ConsumerChannel(IChannel channel, StrongBox<long>? inFlight, TaskCompletionSource<Exception> lost, CancellationTokenSource stop)
        : IAsyncDisposable
    {
        private volatile bool _stopping;
        private string? _consumerTag;

        public IChannel Channel => channel;

        /// <summary>Unbounded, but never holds more than the channel's prefetch.</summary>
        public Channel<Delivery> Buffer { get; } = System.Threading.Channels.Channel.CreateUnbounded<Delivery>(new UnboundedChannelOptions { SingleWriter = true });

        public async Task StartAsync(string queue, CancellationToken ct)
        {
            var consumer = new AsyncEventingBasicConsumer(channel);
            consumer.ReceivedAsync += (_, e) =>
            {
                var message = ReadMessage(e, out var reason);
                if (inFlight is not null)
                {
                    Interlocked.Increment(ref inFlight.Value);
                }
                Buffer.Writer.TryWrite(new Delivery(e.DeliveryTag, message, reason));
                return Task.CompletedTask;
            };
            consumer.UnregisteredAsync += (_, _) =>
            {
                // The broker cancels a consumer whose queue was deleted: treat it like a lost channel.
                OnLost(new InvalidOperationException($"RabbitMQ cancelled the consumer of {queue}"));
                return Task.CompletedTask;
            };
            _consumerTag = await channel.BasicConsumeAsync(queue, autoAck: false, consumer, ct);
        }

        /// <summary>A delivery left this process: acked, nacked, or abandoned with its channel.</summary>
        public void Settled()
        {
            if (inFlight is not null)
            {
                Interlocked.Decrement(ref inFlight.Value);
            }
        }

        public void OnLost(Exception reason)
        {
            if (_stopping)
            {
                return;
            }
            lost.TrySetResult(reason);
            try
            {
                stop.Cancel();
            }
            catch (ObjectDisposedException)
            {
            }
        }

        public async Task StopAsync()
        {
            _stopping = true;
            if (_consumerTag is not null && channel.IsOpen)
            {
                try
                {
                    using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                    await channel.BasicCancelAsync(_consumerTag, noWait: false, timeout.Token);
                }
                catch (Exception e) when (e is AlreadyClosedException or OperationInterruptedException or IOException or OperationCanceledException or TimeoutException)
                {
                }
            }
            Buffer.Writer.TryComplete();
        }

        public async ValueTask DisposeAsync()
        {
            _stopping = true;
            Buffer.Writer.TryComplete();
            while (Buffer.Reader.TryRead(out _))
            {
                Settled(); // Never handled: returns to the queue as the channel closes.
            }
            await RabbitMqConnection.DisposeQuietlyAsync(channel);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Consuming {Queue} from RabbitMQ (prefetch {Prefetch}, concurrency {Concurrency})")]
    private static partial void LogConsuming(ILogger logger, string queue, int prefetch, int concurrency);

    [LoggerMessage(Level = LogLevel.Information, Message = "RabbitMQ queue {Queue} exists in an earlier form of its arguments; taken over as it stands")]
    private static partial void LogTakenOverAsItStands(ILogger logger, string queue);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Message {MessageId} of {Queue} handed back to the broker ({Cause})")]
    private static partial void LogHandedBack(ILogger logger, string queue, string messageId, string cause);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not settle message {MessageId} of {Queue}; requeued")]
    private static partial void LogSettleFailed(ILogger logger, Exception e, string queue, string messageId);

    [LoggerMessage(Level = LogLevel.Error, Message = "Could not store dead letter {MessageId} of {Queue}; will try again")]
    private static partial void LogDeadLetterStoreFailed(ILogger logger, Exception e, string queue, string messageId);
}
