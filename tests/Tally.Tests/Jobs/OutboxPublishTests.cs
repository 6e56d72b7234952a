using System.Text;
using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using RabbitMQ.Client;
using Tally.Jobs.Outbox;
using Tally.Tests.Harness;

namespace Tally.Tests.Jobs;

public class OutboxPublishTests
{
    [Fact]
    public async Task OutboxEvent_IsPublishedToTallyEvents_ByType_ThenMarkedPublished()
    {
        var ct = TestContext.Current.CancellationToken;
        var url = Servers.RequireRabbitMq();
        await using var broker = await TestBroker.ConnectAsync();
        var eventType = $"TestHappened.{Guid.NewGuid():N}";

        // A subscriber's queue, bound before the event exists (the app declares the same exchange).
        await using var subscriber = await broker.OpenChannelAsync();
        await subscriber.ExchangeDeclareAsync(RabbitMqEventPublisher.Exchange, ExchangeType.Topic, durable: true, autoDelete: false, cancellationToken: ct);
        var inbox = (await subscriber.QueueDeclareAsync("", durable: false, exclusive: true, autoDelete: true, cancellationToken: ct)).QueueName;
        await subscriber.QueueBindAsync(inbox, RabbitMqEventPublisher.Exchange, eventType, cancellationToken: ct);

        var allowanceQueue = $"test.{Guid.NewGuid():N}.allowances";
        var app = TallyApp.Postgres(
            await Servers.NewPostgresDatabaseAsync(),
            new Dictionary<string, string?> { ["RabbitMq:Url"] = url, ["Allowances:QueueName"] = allowanceQueue });
        try
        {
            Assert.Equal("rabbitmq", app.Get<IEventPublisher>().Name);
            OutboxEvent row;
            await using (var db = app.Db())
            {
                row = Outbox.Add(db, eventType, "subject-1", new { amount = 12.34m, currency = "USD" }, DateTime.UtcNow);
                await db.SaveChangesAsync(ct);
            }

            BasicGetResult? got = null;
            await Eventually.TrueAsync(async () => (got = await subscriber.BasicGetAsync(inbox, autoAck: true, ct)) is not null, "the event on the subscriber's queue");
            Assert.Equal(RabbitMqEventPublisher.Exchange, got!.Exchange);
            Assert.Equal(eventType, got.RoutingKey);
            Assert.Equal(row.EventId.ToString(), got.BasicProperties.MessageId);
            Assert.Equal("application/json", got.BasicProperties.ContentType);
            Assert.Equal(DeliveryModes.Persistent, got.BasicProperties.DeliveryMode);
            Assert.Equal(row.Sequence, got.BasicProperties.Headers![RabbitMqEventPublisher.SequenceHeader]);
            var payload = JsonDocument.Parse(Encoding.UTF8.GetString(got.Body.Span)).RootElement;
            Assert.Equal(12.34m, payload.GetProperty("amount").GetDecimal());
            Assert.Equal("USD", payload.GetProperty("currency").GetString());

            await Eventually.TrueAsync(
                async () =>
                {
                    await using var db = app.Db();
                    return await db.OutboxEvents.AsNoTracking().AnyAsync(e => e.EventId == row.EventId && e.PublishedAt != null, ct);
                },
                "published_at to be set");
            Assert.Null(await subscriber.BasicGetAsync(inbox, autoAck: true, ct)); // published once
        }
        finally
        {
            await app.DisposeAsync();
            await broker.DeleteTopologyAsync(allowanceQueue);
        }
    }
}
