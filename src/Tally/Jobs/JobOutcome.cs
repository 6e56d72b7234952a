namespace Tally.Jobs;

/// <summary>
/// What a queue handler decided about one message. Expected results are values, not exceptions:
/// the runtime turns them into ack, retry or dead letter in one place (<see cref="Queues.DeliveryPolicy"/>).
/// An exception thrown by a handler is treated as <see cref="RetryLater"/> with the exception's type.
/// </summary>
public abstract record JobOutcome
{
    public static readonly JobOutcome Done = new DoneOutcome();

    public static JobOutcome RetryLater(string reason) => new RetryLaterOutcome(reason);

    public static JobOutcome GiveUp(string reason) => new GiveUpOutcome(reason);

    public sealed record DoneOutcome : JobOutcome;

    public sealed record RetryLaterOutcome(string Reason) : JobOutcome;

    public sealed record GiveUpOutcome(string Reason) : JobOutcome;
}
