using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using RabbitMQ.Client;
using Tally.Features.Connections;
using Tally.Features.Connections.Providers;
using Tally.Jobs.Outbox;
using Tally.Tests.Harness;
using static Tally.Tests.Features.Connections.ScriptedProvider;

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
    public async Task Sync_NewFundedAccount_EmitsAccountBalanceUpdatedFromZero_WithTheSeedsFields_AndAnUnfundedOneEmitsNothing(string storage)
    {
        var bank = new ScriptedProvider();
        await using var t = await AppAsync(storage, bank);
        var id = await ConnectAsync(t.User);
        bank.Answer(Account("FUNDED", 125.50m, "EUR"), Account("EMPTY", 0m), Account("OWED", -300.25m, type: AccountTypes.CreditCard));

        Assert.Equal((3, 0, 0, 0), SyncConnectionTests.Counts(await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK)));

        var events = await t.Admin.EventsAsync(id);
        Assert.Equal([SyncConnection.AttemptedEvent, SyncConnection.BalanceUpdatedEvent, SyncConnection.BalanceUpdatedEvent, SyncConnection.SucceededEvent],
            events.Select(e => e.Type).ToList());
        var accounts = await AccountIdsAsync(t, id);
        var funded = events[1].Payload;
        Assert.Equal(Fields[SyncConnection.BalanceUpdatedEvent], funded.EnumerateObject().Select(p => p.Name).ToArray());
        Assert.Equal(accounts["FUNDED"], funded.GetProperty("accountId").GetGuid());
        Assert.Equal((0m, 125.5m, 125.5m, "EUR"), Balance(funded));
        Assert.Equal(accounts["OWED"], events[2].Payload.GetProperty("accountId").GetGuid());
        Assert.Equal((0m, -300.25m, -300.25m, "USD"), Balance(events[2].Payload));
        Assert.Equal(3, events[3].Payload.GetProperty("accountCount").GetInt32());

        // Funded later, the empty account's balance moves from 0 as any balance does.
        t.Clock.Advance(TimeSpan.FromMinutes(16));
        bank.Answer(Account("FUNDED", 125.50m, "EUR"), Account("EMPTY", 10m), Account("OWED", -300.25m, type: AccountTypes.CreditCard));
        Assert.Equal((0, 1, 2, 0), SyncConnectionTests.Counts(await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK)));
        var later = (await t.Admin.EventsAsync(id)).Skip(4).ToList();
        Assert.Equal([SyncConnection.AttemptedEvent, SyncConnection.BalanceUpdatedEvent, SyncConnection.SucceededEvent], later.Select(e => e.Type).ToList());
        Assert.Equal(accounts["EMPTY"], later[1].Payload.GetProperty("accountId").GetGuid());
        Assert.Equal((0m, 10m, 10m, "USD"), Balance(later[1].Payload));
    }

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

    private static (decimal Previous, decimal New, decimal Delta, string Currency) Balance(JsonElement payload) => (
        payload.GetProperty("previousBalance").GetDecimal(), payload.GetProperty("newBalance").GetDecimal(),
        payload.GetProperty("delta").GetDecimal(), payload.GetProperty("currency").GetString()!);

    /// <summary>Tally's account ids by the provider's.</summary>
    private static async Task<Dictionary<string, Guid>> AccountIdsAsync(ConnectionApp t, Guid connectionId)
    {
        await using var db = t.App.Db();
        return await db.ProviderAccounts.AsNoTracking().Where(a => a.ConnectionId == connectionId)
            .ToDictionaryAsync(a => a.ProviderAccountId, a => a.Id, TestContext.Current.CancellationToken);
    }
}
