namespace Tally.Jobs;

/// <summary>
/// What a queue handler decided about one message. Expected results are values, not exceptions:
/// the runtime turns them into ack, retry or dead letter in one place (<see cref="Queues.DeliveryPolicy"/>).
/// An exception thrown by a handler is treated as <see cref="RetryLater(string)"/> with the exception's type.
/// Lane handlers (<see cref="Lanes.ILaneHandler"/>) answer the same outcomes, under the same policy.
/// </summary>
public abstract record JobOutcome
{
    public static readonly JobOutcome Done = new DoneOutcome();

    public static JobOutcome RetryLater(string reason) => new RetryLaterOutcome(reason);

    /// <summary>Worth another try, but not before <paramref name="notBefore"/> (UTC): an upstream said when it will listen again.</summary>
    public static JobOutcome RetryLater(string reason, DateTime notBefore) => new RetryLaterOutcome(reason) { NotBefore = notBefore };

    public static JobOutcome GiveUp(string reason) => new GiveUpOutcome(reason);

    /// <summary>
    /// A message that carries many units of work (a page) was handled as its parts: each part listed
    /// has its own outcome, as if it had been delivered alone, and every part not listed is done. The
    /// queue retries or dead-letters each listed part as a message of its own, then acks the page
    /// (<see cref="Queues.DeliveryPolicy"/>). With no part listed, the page is done.
    /// </summary>
    public static JobOutcome ByPart(IReadOnlyList<PartOutcome> parts) => parts.Count == 0 ? Done : new ByPartOutcome(parts);

    public sealed record DoneOutcome : JobOutcome;

    public sealed record RetryLaterOutcome(string Reason) : JobOutcome
    {
        /// <summary>
        /// The earliest time (UTC) the retry may run, when the handler knows one (a 429's Retry-After);
        /// a floor under the backoff. Lanes honour it (<see cref="Queues.DeliveryPolicy.RetryAt"/>); a
        /// queue retries after its own fixed delay.
        /// </summary>
        public DateTime? NotBefore { get; init; }
    }

    public sealed record GiveUpOutcome(string Reason) : JobOutcome;

    public sealed record ByPartOutcome(IReadOnlyList<PartOutcome> Parts) : JobOutcome;
}

/// <summary>One part of a page that was not simply done: the message it becomes on its own, and its outcome (never <see cref="JobOutcome.ByPart"/>).</summary>
public sealed record PartOutcome(Queues.QueueMessage Part, JobOutcome Outcome);
