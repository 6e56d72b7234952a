using System.Text;
using RabbitMQ.Client;
using Tally.Jobs.Queues;

namespace Tally.Jobs.Outbox;

/// <summary>
/// Scale-out mode: publishes outbox events to the durable topic exchange <c>tally.events</c> with the
/// event type as routing key, persistent, with the event id as message id. Returns only after the
/// broker confirmed every event of the batch, so the dispatcher marks rows published only then.
/// Consumers bind their own queues and dedupe by message id (a crash may publish a batch twice).
/// </summary>
public sealed class RabbitMqEventPublisher(RabbitMqConnection broker) : IEventPublisher
{
    public const string Exchange = "tally.events";
    public const string SequenceHeader = "x-tally-sequence";
    public const string SubjectHeader = "x-tally-subject";

    private volatile bool _declared;

    public string Name => "rabbitmq";

    public async Task PublishAsync(IReadOnlyList<OutboxEvent> events, CancellationToken ct)
    {
        if (events.Count == 0)
        {
            return;
        }
        if (!_declared)
        {
            await broker.WithChannelAsync(
                async channel =>
                {
                    await RabbitMqTransport.DeclareExchangeAsync(channel, Exchange, ExchangeType.Topic, ct);
                    return true;
                },
                ct);
            _declared = true;
        }
        try
        {
            // Not mandatory: an event type nobody subscribes to is dropped by the exchange, by design.
            await broker.PublishConfirmedAsync(
                events,
                (channel, e) => channel.BasicPublishAsync(Exchange, e.EventType, mandatory: false, Properties(e), Encoding.UTF8.GetBytes(e.Payload), ct),
                ct);
        }
        catch
        {
            _declared = false; // Declare again next time, in case the exchange was deleted.
            throw;
        }
    }

    private static BasicProperties Properties(OutboxEvent e)
    {
        var headers = new Dictionary<string, object?> { [SequenceHeader] = e.Sequence };
        if (e.SubjectId is not null)
        {
            headers[SubjectHeader] = e.SubjectId;
        }
        return new BasicProperties
        {
            Persistent = true,
            MessageId = e.EventId.ToString(),
            Type = e.EventType,
            ContentType = "application/json",
            ContentEncoding = "utf-8",
            Timestamp = new AmqpTimestamp(new DateTimeOffset(DateTime.SpecifyKind(e.OccurredAt, DateTimeKind.Utc)).ToUnixTimeSeconds()),
            Headers = headers,
        };
    }
}
