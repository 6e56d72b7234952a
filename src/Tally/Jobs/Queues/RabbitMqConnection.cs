using System.Text.RegularExpressions;
using Microsoft.Extensions.Options;
using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;
using Tally.Hosting;

namespace Tally.Jobs.Queues;

/// <summary>The <c>RabbitMq</c> section. Setting <c>RabbitMq:Url</c> (alias <c>RABBITMQ_URL</c>) switches the queues and events to RabbitMQ.</summary>
public sealed class RabbitMqOptions
{
    public const string Section = "RabbitMq";

    /// <summary><c>amqp://user:password@host:port/vhost</c> (or <c>amqps://</c>).</summary>
    public string? Url { get; set; }

    /// <summary>
    /// <c>classic</c> (default) or <c>quorum</c>: the type of every queue Tally declares (<c>Q</c>,
    /// <c>Q.retry</c>, <c>Q.dlq</c>). Quorum queues are replicated across a cluster's nodes. A queue's
    /// type is fixed when it is first declared: an existing queue of the other type stops start-up.
    /// </summary>
    public string QueueType { get; set; } = ClassicQueues;

    public const string ClassicQueues = "classic";
    public const string QuorumQueues = "quorum";

    public bool IsConfigured => !string.IsNullOrWhiteSpace(Url);

    public bool IsQuorum => string.Equals(QueueType, QuorumQueues, StringComparison.OrdinalIgnoreCase);

    internal static bool IsValidQueueType(string? type) =>
        string.Equals(type, ClassicQueues, StringComparison.OrdinalIgnoreCase) || string.Equals(type, QuorumQueues, StringComparison.OrdinalIgnoreCase);

    internal static bool IsValidUrl(string? url) =>
        string.IsNullOrWhiteSpace(url)
        || (Uri.TryCreate(url, UriKind.Absolute, out var uri) && uri.Scheme is "amqp" or "amqps");
}

/// <summary>
/// The one long-lived broker connection of this process, shared by the queue transport and the event
/// publisher, plus one publishing channel with publisher confirms. Opened lazily and opened again
/// after the broker or the network dropped it; the client's own automatic recovery is off, so a
/// consumer sees the loss, ends, and is started again by its host on a fresh connection.
/// </summary>
public sealed partial class RabbitMqConnection(IOptions<RabbitMqOptions> options, IOptions<TallyOptions> tally, ILogger<RabbitMqConnection> logger)
    : IAsyncDisposable
{
    /// <summary>Publishes awaiting their confirm at once, per publishing call: enough to keep the broker busy, bounded in memory.</summary>
    public const int PublishWindow = 256;

    private readonly SemaphoreSlim _gate = new(1, 1);
    private IConnection? _connection;
    private IChannel? _publisher;
    private bool _disposed;

    /// <summary>The open connection, connecting first when there is none or the last one closed.</summary>
    public async Task<IConnection> GetConnectionAsync(CancellationToken ct)
    {
        if (_connection is { IsOpen: true } open)
        {
            return open;
        }
        await _gate.WaitAsync(ct);
        try
        {
            return await ConnectLockedAsync(ct);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// The shared publishing channel (confirms on, tracked by the client). RabbitMQ.Client 7
    /// serialises concurrent <c>BasicPublishAsync</c> calls on a channel and waits for each confirm
    /// outside that lock, so callers may publish on it at once and their confirms overlap.
    /// </summary>
    public async Task<IChannel> GetPublisherAsync(CancellationToken ct)
    {
        if (_publisher is { IsOpen: true } open && _connection is { IsOpen: true })
        {
            return open;
        }
        await _gate.WaitAsync(ct);
        try
        {
            if (_publisher is { IsOpen: true } again && _connection is { IsOpen: true })
            {
                return again;
            }
            var connection = await ConnectLockedAsync(ct);
            await DisposeQuietlyAsync(_publisher);
            _publisher = await connection.CreateChannelAsync(ConfirmingChannel(), ct);
            return _publisher;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Options for a channel whose publishes wait for the broker's confirm. No client-side throttle: callers bound their own window.</summary>
    public static CreateChannelOptions ConfirmingChannel(ushort? consumerDispatchConcurrency = null) =>
        new(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true,
            outstandingPublisherConfirmationsRateLimiter: null, consumerDispatchConcurrency: consumerDispatchConcurrency);

    /// <summary>Runs <paramref name="work"/> on a short-lived channel: declarations and passive checks may close a channel on error.</summary>
    public async Task<T> WithChannelAsync<T>(Func<IChannel, Task<T>> work, CancellationToken ct)
    {
        var connection = await GetConnectionAsync(ct);
        var channel = await connection.CreateChannelAsync(cancellationToken: ct);
        try
        {
            return await work(channel);
        }
        finally
        {
            await DisposeQuietlyAsync(channel);
        }
    }

    /// <summary>
    /// Publishes a batch keeping up to <see cref="PublishWindow"/> confirms outstanding (a sliding
    /// window: the next publish goes out as soon as the oldest is confirmed); returns once every
    /// message is confirmed, or throws the first failure after every started publish has finished.
    /// </summary>
    public async Task PublishConfirmedAsync<T>(
        IReadOnlyList<T> items, Func<IChannel, T, ValueTask> publish, CancellationToken ct)
    {
        if (items.Count == 0)
        {
            return;
        }
        var channel = await GetPublisherAsync(ct);
        var pending = new Queue<ValueTask>(Math.Min(items.Count, PublishWindow));
        Exception? failure = null;
        foreach (var item in items)
        {
            try
            {
                pending.Enqueue(publish(channel, item));
            }
            catch (Exception e)
            {
                failure = e;
                break;
            }
            if (pending.Count >= PublishWindow && (failure = await ObserveAsync(pending.Dequeue())) is not null)
            {
                break;
            }
        }
        while (pending.Count > 0)
        {
            // Every ValueTask is awaited exactly once, also after a failure.
            var error = await ObserveAsync(pending.Dequeue());
            failure ??= error;
        }
        if (failure is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
        }
    }

    private static async Task<Exception?> ObserveAsync(ValueTask publish)
    {
        try
        {
            await publish;
            return null;
        }
        catch (Exception e)
        {
            return e;
        }
    }

    private async Task<IConnection> ConnectLockedAsync(CancellationToken ct)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_connection is { IsOpen: true } open)
        {
            return open;
        }
        if (_connection is not null)
        {
            LogReconnecting(logger, _connection.CloseReason?.ReplyText ?? "closed");
            await DisposeQuietlyAsync(_publisher);
            _publisher = null;
            await DisposeQuietlyAsync(_connection);
        }
        var url = options.Value.Url ?? throw new InvalidOperationException("RabbitMq:Url is not set.");
        var factory = new ConnectionFactory
        {
            Uri = new Uri(url),
            // Recovery is ours: a lost connection ends the consumers, whose host restarts them.
            AutomaticRecoveryEnabled = false,
            TopologyRecoveryEnabled = false,
            ClientProvidedName = $"tally {tally.Value.ResolvedInstanceId}",
        };
        _connection = await factory.CreateConnectionAsync(ct);
        LogConnected(logger, factory.HostName, factory.Port);
        return _connection;
    }

    /// <summary>Closes a channel or connection, ignoring that it may be closed already.</summary>
    internal static async Task DisposeQuietlyAsync(IAsyncDisposable? resource)
    {
        if (resource is null)
        {
            return;
        }
        try
        {
            switch (resource)
            {
                case IChannel { IsOpen: true } channel:
                    await channel.CloseAsync();
                    break;
                case IConnection { IsOpen: true } connection:
                    await connection.CloseAsync();
                    break;
            }
        }
        catch (Exception e) when (e is AlreadyClosedException or OperationInterruptedException or IOException or OperationCanceledException or TimeoutException)
        {
            // Already going away: nothing left to close.
        }
        try
        {
            await resource.DisposeAsync();
        }
        catch (Exception e) when (e is AlreadyClosedException or OperationInterruptedException or IOException or OperationCanceledException or TimeoutException)
        {
        }
    }

    /// <summary>The setting named in a PRECONDITION_FAILED reply ("inequivalent arg 'x-message-ttl' ..."), or a general description.</summary>
    internal static string InequivalentSetting(string? replyText) =>
        replyText is not null && InequivalentArg().Match(replyText) is { Success: true } m ? m.Groups[1].Value : "declaration (durability, type or arguments)";

    public async ValueTask DisposeAsync()
    {
        await _gate.WaitAsync();
        try
        {
            _disposed = true;
            await DisposeQuietlyAsync(_publisher);
            await DisposeQuietlyAsync(_connection);
            _publisher = null;
            _connection = null;
        }
        finally
        {
            _gate.Release();
        }
    }

    [GeneratedRegex("inequivalent arg '([^']+)'")]
    private static partial Regex InequivalentArg();

    [LoggerMessage(Level = LogLevel.Information, Message = "Connected to RabbitMQ at {Host}:{Port}")]
    private static partial void LogConnected(ILogger logger, string host, int port);

    [LoggerMessage(Level = LogLevel.Warning, Message = "RabbitMQ connection lost ({Reason}); reconnecting")]
    private static partial void LogReconnecting(ILogger logger, string reason);
}
