using System.Collections.Concurrent;
using System.Threading.Channels;

namespace Tally.Jobs.Queues;

/// <summary>
/// The embedded transport: a channel per queue, retries on a timer, dead letters handed to the
/// durable store. Same semantics as RabbitMQ within one process; messages waiting in memory are lost
/// with the process, which is why producers re-derive their work from the database (an allowance
/// stays due until it is paid) rather than trusting the queue to remember it.
/// </summary>
public sealed partial class InProcessTransport(TimeProvider clock, ILogger<InProcessTransport> logger) : IQueueTransport
{
    private readonly ConcurrentDictionary<string, Lane> _lanes = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _disposed = new();

    public string Name => "in-process";

    public Task DeclareAsync(QueueDefinition queue, CancellationToken ct)
    {
        LaneOf(queue.Name);
        return Task.CompletedTask;
    }

    public async Task PublishAsync(string queue, IReadOnlyList<QueueMessage> messages, CancellationToken ct)
    {
        var lane = LaneOf(queue);
        using var activity = QueueTracing.StartPublish(Name, queue, messages.Count);
        // The message itself is the envelope: its trace context travels with it, through retries too.
        foreach (var message in QueueTracing.WithTraceContext(messages))
        {
            await lane.Ready.Writer.WriteAsync(message, ct);
        }
    }

    public async Task ConsumeAsync(
        QueueDefinition queue,
        Func<QueueMessage, CancellationToken, Task<DeliveryAction>> handle,
        Func<QueueDefinition, QueueMessage, string, CancellationToken, Task> recordDeadLetter,
        CancellationToken ct)
    {
        var lane = LaneOf(queue.Name);
        var workers = Enumerable.Range(0, Math.Max(1, queue.Concurrency)).Select(async _ =>
        {
            await foreach (var message in lane.Ready.Reader.ReadAllAsync(ct))
            {
                Interlocked.Increment(ref lane.InFlight);
                try
                {
                    var action = await handle(message, ct);
                    await SettleAsync(queue, lane, message, action, recordDeadLetter, ct);
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested)
                {
                    // Shutting down mid-message: hand it back so the next consumer gets it.
                    lane.Ready.Writer.TryWrite(message);
                    throw;
                }
                finally
                {
                    Interlocked.Decrement(ref lane.InFlight);
                }
            }
        });
        await Task.WhenAll(workers);
    }

    private async Task SettleAsync(
        QueueDefinition queue, Lane lane, QueueMessage message, DeliveryAction action,
        Func<QueueDefinition, QueueMessage, string, CancellationToken, Task> recordDeadLetter, CancellationToken ct)
    {
        switch (action)
        {
            case DeliveryAction.RetryAction retry:
                ScheduleRetry(lane, message with { Attempt = retry.NextAttempt }, queue.RetryDelay);
                break;
            case DeliveryAction.DeadLetterAction dead:
                try
                {
                    await recordDeadLetter(queue, message, dead.Reason, ct);
                }
                catch (Exception e) when (!ct.IsCancellationRequested)
                {
                    // The store is down: keep the message alive and try the dead-lettering again later.
                    LogDeadLetterStoreFailed(logger, e, queue.Name, message.Id);
                    ScheduleRetry(lane, message, queue.RetryDelay);
                }
                break;
            case DeliveryAction.SplitAction split:
                foreach (var part in split.Parts)
                {
                    await SettleAsync(queue, lane, part.Part, part.Action, recordDeadLetter, ct);
                }
                break;
        }
    }

    private void ScheduleRetry(Lane lane, QueueMessage message, TimeSpan delay)
    {
        Interlocked.Increment(ref lane.Retrying);
        _ = Task.Delay(delay, clock, _disposed.Token).ContinueWith(
            t =>
            {
                Interlocked.Decrement(ref lane.Retrying);
                if (!t.IsCanceled)
                {
                    lane.Ready.Writer.TryWrite(message);
                }
            },
            CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    public Task<QueueDepth> GetDepthAsync(QueueDefinition queue, CancellationToken ct)
    {
        var lane = LaneOf(queue.Name);
        return Task.FromResult(new QueueDepth(queue.Name, lane.Ready.Reader.Count, Volatile.Read(ref lane.Retrying), Volatile.Read(ref lane.InFlight), 0));
    }

    public ValueTask DisposeAsync()
    {
        _disposed.Cancel();
        _disposed.Dispose();
        return ValueTask.CompletedTask;
    }

    private Lane LaneOf(string queue) => _lanes.GetOrAdd(queue, _ => new Lane());

    private sealed class Lane
    {
        public readonly Channel<QueueMessage> Ready = Channel.CreateUnbounded<QueueMessage>();
        public long Retrying;
        public long InFlight;
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Could not store dead letter {MessageId} of {Queue}; will try again")]
    private static partial void LogDeadLetterStoreFailed(ILogger logger, Exception e, string queue, string messageId);
}
