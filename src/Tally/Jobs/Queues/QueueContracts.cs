using Tally.Data;

namespace Tally.Jobs.Queues;

/// <summary>
/// One message. <see cref="Id"/> is stable across retries and replays; <see cref="Attempt"/> is 0 on first delivery.
/// <see cref="TraceParent"/> and <see cref="TraceState"/> are the W3C trace context it was published in (kept by its retries).
/// </summary>
public sealed record QueueMessage(string Id, string Body, int Attempt = 0, string? TraceParent = null, string? TraceState = null);

/// <summary>A durable work queue and its retry policy.</summary>
public sealed record QueueDefinition(string Name, int MaxRetries, TimeSpan RetryDelay, int Prefetch = 32, int Concurrency = 4)
{
    public string RetryExchange => $"{Name}.retry.exchange";
    public string RetryQueue => $"{Name}.retry";
    public string DeadLetterExchange => $"{Name}.dlq.exchange";
    public string DeadLetterQueue => $"{Name}.dlq";
}

/// <summary>Message counts of one queue: ready in the main queue, waiting to retry, dead.</summary>
public sealed record QueueDepth(string Queue, long Ready, long Retrying, long InFlight, long DeadLetters);

/// <summary>What the transport does with a delivery once the handler has spoken.</summary>
public abstract record DeliveryAction
{
    public static readonly DeliveryAction Ack = new AckAction();

    public sealed record AckAction : DeliveryAction;

    /// <summary>Back to the queue after the retry delay, with the attempt counted.</summary>
    public sealed record RetryAction(int NextAttempt, string Reason) : DeliveryAction;

    public sealed record DeadLetterAction(string Reason) : DeliveryAction;

    /// <summary>
    /// A page handled as its parts: each part here is retried or dead-lettered as a message of its own
    /// (its copy confirmed first), then the page is acked. Parts that are done are not listed.
    /// </summary>
    public sealed record SplitAction(IReadOnlyList<PartAction> Parts) : DeliveryAction;

    /// <summary>What becomes of one part of a page: <see cref="RetryAction"/> or <see cref="DeadLetterAction"/>.</summary>
    public sealed record PartAction(QueueMessage Part, DeliveryAction Action);
}

/// <summary>
/// The queue transport: the real seam between the embedded and the scaled-out runtime.
/// Delivery is at least once; exactly-once effects come from each handler's unique keys.
/// </summary>
public interface IQueueTransport : IAsyncDisposable
{
    string Name { get; }

    Task DeclareAsync(QueueDefinition queue, CancellationToken ct);

    /// <summary>Returns once the broker has the messages (publisher confirms on RabbitMQ).</summary>
    Task PublishAsync(string queue, IReadOnlyList<QueueMessage> messages, CancellationToken ct);

    /// <summary>
    /// Delivers messages to <paramref name="handle"/> until <paramref name="ct"/> is cancelled, acking, retrying or
    /// dead-lettering by its answer. Dead letters reach <paramref name="recordDeadLetter"/> before they are acked.
    /// </summary>
    Task ConsumeAsync(
        QueueDefinition queue,
        Func<QueueMessage, CancellationToken, Task<DeliveryAction>> handle,
        Func<QueueDefinition, QueueMessage, string, CancellationToken, Task> recordDeadLetter,
        CancellationToken ct);

    Task<QueueDepth> GetDepthAsync(QueueDefinition queue, CancellationToken ct);
}

/// <summary>A handler for one queue. Register with <c>AddQueueHandler&lt;T&gt;()</c>; resolved in a fresh scope per message.</summary>
public interface IQueueHandler
{
    Task<JobOutcome> HandleAsync(QueueMessage message, CancellationToken ct);

    /// <summary>
    /// Called once when a message is dead-lettered, in the same transaction as its
    /// <c>dead_letters</c> row, so a feature can record the failure (and move on) atomically.
    /// </summary>
    Task OnDeadLetteredAsync(TallyDb db, QueueMessage message, string reason, CancellationToken ct) => Task.CompletedTask;
}

/// <summary>
/// The one place that turns a handler's outcome into a delivery action, for queue messages and for
/// lane entries (<see cref="Lanes.LaneWorkers"/>) alike: done is acked (a lane entry settles), a retry
/// is granted while the attempt is below the retries allowed, and what is left is dead-lettered (a
/// lane entry is given up until it is queued again).
/// </summary>
public static class DeliveryPolicy
{
    public static DeliveryAction Decide(JobOutcome outcome, QueueMessage message, QueueDefinition queue) => outcome switch
    {
        // Each part counts its own attempts, and keeps the page's trace context unless it carries its own.
        JobOutcome.ByPartOutcome byPart => new DeliveryAction.SplitAction([.. byPart.Parts
            .Select(p => new DeliveryAction.PartAction(
                p.Part.TraceParent is null ? p.Part with { TraceParent = message.TraceParent, TraceState = message.TraceState } : p.Part,
                Decide(p.Outcome, p.Part.Attempt, queue.MaxRetries)))
            .Where(p => p.Action is not DeliveryAction.AckAction)]),
        _ => Decide(outcome, message.Attempt, queue.MaxRetries),
    };

    /// <summary>The same rule for work that counts its own attempts: <paramref name="attempt"/> is 0 on the first try. A page's parts are decided by the overload above.</summary>
    public static DeliveryAction Decide(JobOutcome outcome, int attempt, int maxRetries) => outcome switch
    {
        JobOutcome.DoneOutcome => DeliveryAction.Ack,
        JobOutcome.GiveUpOutcome g => new DeliveryAction.DeadLetterAction(g.Reason),
        JobOutcome.RetryLaterOutcome r when attempt < maxRetries => new DeliveryAction.RetryAction(attempt + 1, r.Reason),
        JobOutcome.RetryLaterOutcome r => new DeliveryAction.DeadLetterAction($"max retries ({maxRetries}) reached: {r.Reason}"),
        _ => throw new ArgumentOutOfRangeException(nameof(outcome), outcome, "Unknown outcome."),
    };

    /// <summary>
    /// Exponential backoff with "equal jitter": attempt n waits between half and all of
    /// <paramref name="baseDelay"/> * 2^n, capped at <paramref name="maxDelay"/>, so the retries of many
    /// entries spread out instead of arriving together. <paramref name="jitter"/> is in [0, 1].
    /// </summary>
    public static TimeSpan Backoff(int attempt, TimeSpan baseDelay, TimeSpan maxDelay, double jitter)
    {
        var exponential = baseDelay.TotalMilliseconds * Math.Pow(2, Math.Clamp(attempt, 0, 30));
        var capped = Math.Min(exponential, maxDelay.TotalMilliseconds);
        return TimeSpan.FromMilliseconds((capped / 2) + (capped / 2 * Math.Clamp(jitter, 0, 1)));
    }

    /// <summary>When the retry of <paramref name="attempt"/> is due: after its backoff, and never before the outcome's <see cref="JobOutcome.RetryLaterOutcome.NotBefore"/>.</summary>
    public static DateTime RetryAt(JobOutcome.RetryLaterOutcome retry, int attempt, TimeSpan baseDelay, TimeSpan maxDelay, double jitter, DateTime now)
    {
        var due = now + Backoff(attempt, baseDelay, maxDelay, jitter);
        return retry.NotBefore is { } floor && floor > due ? floor : due;
    }
}
