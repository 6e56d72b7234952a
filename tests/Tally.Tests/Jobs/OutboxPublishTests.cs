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

public class OutboxDispatchTests
{
    /// <summary>A broker that refuses until told otherwise, and remembers what it was given.</summary>
    private sealed class FlakyPublisher : IEventPublisher
    {
        public bool Refuse { get; set; } = true;
        public List<Guid> Published { get; } = [];

        public string Name => "flaky";

        public Task PublishAsync(IReadOnlyList<OutboxEvent> events, CancellationToken ct)
        {
            if (Refuse)
            {
                throw new InvalidOperationException("broker unreachable");
            }
            Published.AddRange(events.Select(e => e.EventId));
            return Task.CompletedTask;
        }
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Dispatch_PublishFails_EventsStayPendingWithTheError_ThenArePublishedOnceInOrder(string storage)
    {
        var ct = TestContext.Current.CancellationToken;
        // API role only: no background dispatcher races the one under test.
        await using var app = await Apps.CreateAsync(storage, new Dictionary<string, string?> { ["Tally:Roles:0"] = "api" });
        await using (var db = app.Db())
        {
            await using var tx = await db.Database.BeginTransactionAsync(ct);
            Outbox.Add(db, "TestHappened", "one", new { n = 1 }, DateTime.UtcNow);
            await db.SaveChangesAsync(ct);
            await Outbox.AddManyAsync(db, "TestHappened", [("two", new { n = 2 }), ("three", new { n = 3 })], DateTime.UtcNow, ct);
            await db.SaveChangesAsync(ct);
            await tx.CommitAsync(ct);
        }
        var publisher = new FlakyPublisher();
        var dispatcher = new OutboxDispatcher(app.Get<IDbContextFactory<Tally.Data.TallyDb>>(), publisher, TimeProvider.System,
            Microsoft.Extensions.Logging.Abstractions.NullLogger<OutboxDispatcher>.Instance);

        Assert.Equal(3, await dispatcher.DispatchBatchAsync(ct));
        await using (var db = app.Db())
        {
            var rows = await db.OutboxEvents.AsNoTracking().OrderBy(e => e.Sequence).ToListAsync(ct);
            Assert.Equal(["one", "two", "three"], rows.Select(e => e.SubjectId ?? "").ToArray());
            Assert.Equal("""{"n":2}""", rows[1].Payload);
            Assert.All(rows, e => Assert.Equal((null, 1, "broker unreachable"), (e.PublishedAt, e.Attempts, e.LastError)));
        }

        publisher.Refuse = false;
        Assert.Equal(3, await dispatcher.DispatchBatchAsync(ct));
        Assert.Equal(0, await dispatcher.DispatchBatchAsync(ct));
        await using (var db = app.Db())
        {
            var rows = await db.OutboxEvents.AsNoTracking().OrderBy(e => e.Sequence).ToListAsync(ct);
            Assert.Equal(rows.Select(e => e.EventId), publisher.Published);
            Assert.All(rows, e => Assert.True(e.PublishedAt is not null && e.Attempts == 2 && e.LastError is null, $"{e.SubjectId}: {e.PublishedAt} {e.Attempts} {e.LastError}"));
        }
    }

    /// <summary>Remembers, for each publish, how far PostgreSQL had flushed its WAL at that moment.</summary>
    private sealed class FlushWatchingPublisher(string connectionString) : IEventPublisher
    {
        public List<string> FlushedAtPublish { get; } = [];

        public string Name => "flush-watching";

        public async Task PublishAsync(IReadOnlyList<OutboxEvent> events, CancellationToken ct)
        {
            await using var connection = new Npgsql.NpgsqlConnection(connectionString);
            await connection.OpenAsync(ct);
            await using var command = new Npgsql.NpgsqlCommand("SELECT pg_current_wal_flush_lsn()::text", connection);
            FlushedAtPublish.Add((string)(await command.ExecuteScalarAsync(ct))!);
        }
    }

    [Fact]
    public async Task Dispatch_EventCommittedAsynchronously_IsPublishedOnlyOnceItsWalIsFlushed()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var app = await Apps.CreateAsync("postgres", new Dictionary<string, string?> { ["Tally:Roles:0"] = "api" });
        string committedAt, connectionString;
        await using (var db = app.Db())
        {
            connectionString = db.Database.GetConnectionString()!;
            // As balance sync writes: visible at once, durable only when the WAL writer gets to it.
            await db.Database.OpenConnectionAsync(ct);
            await db.Database.ExecuteSqlRawAsync("SET synchronous_commit = off", ct);
            Outbox.Add(db, "TestHappened", "async", new { n = 1 }, DateTime.UtcNow);
            await db.SaveChangesAsync(ct);
            committedAt = await db.Database.SqlQuery<string>($"SELECT pg_current_wal_insert_lsn()::text AS \"Value\"").SingleAsync(ct);
        }
        var publisher = new FlushWatchingPublisher(connectionString);
        var dispatcher = new OutboxDispatcher(app.Get<IDbContextFactory<Tally.Data.TallyDb>>(), publisher, TimeProvider.System,
            Microsoft.Extensions.Logging.Abstractions.NullLogger<OutboxDispatcher>.Instance);

        Assert.Equal(1, await dispatcher.DispatchBatchAsync(ct));

        var flushed = Assert.Single(publisher.FlushedAtPublish);
        await using var check = new Npgsql.NpgsqlConnection(connectionString);
        await check.OpenAsync(ct);
        await using var compare = new Npgsql.NpgsqlCommand("SELECT $1::pg_lsn >= $2::pg_lsn", check);
        compare.Parameters.Add(new Npgsql.NpgsqlParameter { Value = flushed });
        compare.Parameters.Add(new Npgsql.NpgsqlParameter { Value = committedAt });
        Assert.True(await compare.ExecuteScalarAsync(ct) is true, $"published with the WAL flushed to {flushed}, the event committed before {committedAt}");
    }
}
