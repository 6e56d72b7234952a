using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using RabbitMQ.Client;
using Tally.Features.Connections;
using Tally.Jobs.Outbox;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.Connections;

/// <summary>The events of a connection sync keep the seed's contract: its events, its field names, their meanings.</summary>
public class ConnectionEventTests
{
    private static readonly string[] Common = ["eventId", "occurredAt", "connectionId", "userId"];

    /// <summary>Each event's fields in order: the seed's first, then Tally's own.</summary>
    private static readonly Dictionary<string, string[]> Fields = new()
    {
        [SyncConnection.AttemptedEvent] = [.. Common, "trigger", "forced"],
        [SyncConnection.FailedEvent] = [.. Common, "reason", "retryAfterSeconds"],
        [SyncConnection.SucceededEvent] = [.. Common, "accountCount", "created", "updated", "unchanged", "errors"],
        [SyncConnection.BalanceUpdatedEvent] = [.. Common, "accountId", "providerAccountId", "previousBalance", "newBalance", "delta", "currency"],
    };

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task EveryConnectionEvent_CarriesItsOutboxIdAndTime_ItsConnectionAndUser_AndTheSeedsFieldsInOrder(string storage)
    {
        await using var t = await ConnectionApp.CreateAsync(storage);
        var id = await t.User.CreateSandboxConnectionAsync(new { login = "frank", accounts = 2 });
        await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK);
        t.Clock.Advance(TimeSpan.FromMinutes(25));
        await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK);
        await t.User.SyncAsync(id).ExpectProblemAsync(HttpStatusCode.TooManyRequests, "RECENTLY_SYNCED");

        var rows = await t.Admin.GetAsync($"/api/admin/events?subject={id}&limit=1000").ExpectAsync(HttpStatusCode.OK);
        var seen = new HashSet<string>();
        foreach (var row in rows.EnumerateArray())
        {
            var type = row.GetProperty("eventType").GetString()!;
            var payload = row.GetProperty("payload");
            seen.Add(type);
            Assert.Equal(Fields[type], payload.EnumerateObject().Select(p => p.Name).ToArray());
            Assert.Equal(row.GetProperty("eventId").GetGuid(), payload.GetProperty("eventId").GetGuid());
            Assert.Equal(row.GetProperty("occurredAt").GetDateTime().Ticks, payload.GetProperty("occurredAt").GetDateTime().Ticks);
            Assert.EndsWith("Z", payload.GetProperty("occurredAt").GetString()!, StringComparison.Ordinal);
            Assert.Equal(id, payload.GetProperty("connectionId").GetGuid());
            Assert.Equal(t.UserId, payload.GetProperty("userId").GetGuid());
        }
        Assert.Equal(Fields.Keys.Order(), seen.Order());
        Assert.Equal(rows.GetArrayLength(), rows.EnumerateArray().Select(r => r.GetProperty("eventId").GetGuid()).Distinct().Count());
    }

    [Fact]
    public async Task ConnectionEvents_ArePublishedWithTheirPayloadsEventIdAsMessageId()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var broker = await TestBroker.ConnectAsync();
        await using var subscriber = await broker.OpenChannelAsync();
        await subscriber.ExchangeDeclareAsync(RabbitMqEventPublisher.Exchange, ExchangeType.Topic, durable: true, autoDelete: false, cancellationToken: ct);
        var inbox = (await subscriber.QueueDeclareAsync("", durable: false, exclusive: true, autoDelete: true, cancellationToken: ct)).QueueName;
        foreach (var type in Fields.Keys)
        {
            await subscriber.QueueBindAsync(inbox, RabbitMqEventPublisher.Exchange, type, cancellationToken: ct);
        }
        await using var t = await ConnectionApp.CreateAsync("postgres", new Dictionary<string, string?> { ["RabbitMq:Url"] = Servers.RequireRabbitMq() });
        var id = await t.User.CreateSandboxConnectionAsync(new { login = "grace", accounts = 2 });
        await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK);
        t.Clock.Advance(TimeSpan.FromMinutes(25));
        await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK);
        await t.User.SyncAsync(id).ExpectProblemAsync(HttpStatusCode.TooManyRequests, "RECENTLY_SYNCED");

        // API role only: the test dispatches, so it knows when everything went out.
        var dispatcher = t.App.Get<OutboxDispatcher>();
        while (await dispatcher.DispatchBatchAsync(ct) > 0)
        {
        }
        await using var db = t.App.Db();
        var outbox = await db.OutboxEvents.AsNoTracking().Where(e => e.SubjectId == id.ToString()).OrderBy(e => e.Sequence).ToListAsync(ct);
        Assert.Equal(Fields.Keys.Order(), outbox.Select(e => e.EventType).Distinct().Order());

        // Other tests publish to the same exchange: only this connection's messages count.
        var published = new List<(string MessageId, string Type, JsonElement Payload)>();
        await Eventually.TrueAsync(
            async () =>
            {
                while (await subscriber.BasicGetAsync(inbox, autoAck: true, ct) is { } message)
                {
                    var subject = message.BasicProperties.Headers?[RabbitMqEventPublisher.SubjectHeader] is byte[] raw ? Encoding.UTF8.GetString(raw) : null;
                    if (subject == id.ToString())
                    {
                        published.Add((message.BasicProperties.MessageId!, message.RoutingKey, JsonDocument.Parse(Encoding.UTF8.GetString(message.Body.Span)).RootElement.Clone()));
                    }
                }
                return published.Count >= outbox.Count;
            },
            "every event of the connection on the subscriber's queue");
        Assert.Equal(outbox.Select(e => (e.EventId.ToString(), e.EventType)), published.Select(p => (p.MessageId, p.Type)));
        Assert.All(published, p => Assert.Equal(p.MessageId, p.Payload.GetProperty("eventId").GetString()));
    }
}
