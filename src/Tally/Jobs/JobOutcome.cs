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
}
