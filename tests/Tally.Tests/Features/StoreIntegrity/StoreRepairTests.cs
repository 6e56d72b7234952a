using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using RabbitMQ.Client;
using Tally.Features.StoreIntegrity;
using Tally.Jobs.Outbox;
using Tally.Jobs.Scheduling;
using Tally.Tests.Harness;
using static Tally.Tests.Features.StoreIntegrity.StoreIntegrityTests;

namespace Tally.Tests.Features.StoreIntegrity;

/// <summary>
/// What a has_orders repair leaves behind outside the store tables: the ids of each run, readable
/// through the admin API, and one <c>StoreAccountsRepaired</c> event per run that repaired anything.
/// Also the two ways orders now arrive: in the seed's shape, and before their accounts.
/// </summary>
public class StoreRepairTests
{
    private const string Managed = "managed_subscription";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Repair_Scheduled_PublishesOneEventWithIds(string storage)
    {
        var url = Servers.RequireRabbitMq();
        await using var broker = await TestBroker.ConnectAsync();
        await using var subscriber = await broker.OpenChannelAsync();
        await subscriber.ExchangeDeclareAsync(RabbitMqEventPublisher.Exchange, ExchangeType.Topic, durable: true, autoDelete: false, cancellationToken: Ct);
        var inbox = (await subscriber.QueueDeclareAsync("", durable: false, exclusive: true, autoDelete: true, cancellationToken: Ct)).QueueName;
        await subscriber.QueueBindAsync(inbox, RabbitMqEventPublisher.Exchange, RepairHasOrders.RepairedEvent, cancellationToken: Ct);

        var allowanceQueue = $"test.{Guid.NewGuid():N}.allowances";
        var app = await Apps.CreateAsync(storage, new Dictionary<string, string?>
        {
            ["RabbitMq:Url"] = url,
            ["Allowances:QueueName"] = allowanceQueue,
            [$"Jobs:{RepairHasOrders.Name}:Cron"] = "* * * * * *",
        });
        try
        {
            Assert.Equal("rabbitmq", app.Get<IEventPublisher>().Name);
            var admin = app.Admin();
            var (seller, buyer, counterpart) = (Guid.NewGuid(), Guid.NewGuid(), Guid.NewGuid());
            await LoadAccountsAsync(admin, (seller, true, false), (buyer, true, false), (counterpart, true, true));
            // One batch, one transaction: the scheduler sees both orders or neither, so one run repairs both accounts.
            await LoadOrdersAsync(admin, (seller, counterpart, "active", Managed), (counterpart, buyer, "active", Managed));
            var expected = Sorted(seller, buyer);

            JsonElement listed = default;
            await Eventually.TrueAsync(async () =>
                (listed = await admin.GetAsync("/api/admin/store/repairs").ExpectAsync(HttpStatusCode.OK)).GetArrayLength() > 0,
                "a scheduled run listed under /api/admin/store/repairs");
            var summary = Assert.Single(listed.EnumerateArray());
            var runId = summary.GetProperty("runId").GetInt64();
            Assert.Equal((JobRunner.ScheduleTrigger, 2), (summary.GetProperty("trigger").GetString(), summary.GetProperty("accountCount").GetInt32()));
            JsonElement repair = default;
            await Eventually.TrueAsync(async () =>
                (repair = await admin.GetAsync($"/api/admin/store/repairs/{runId}").ExpectAsync(HttpStatusCode.OK)).GetProperty("status").GetString() == CronRunStatus.Success,
                "the repairing run recorded as SUCCESS");
            Assert.Equal(expected, Ids(repair.GetProperty("accountIds")));
            Assert.Equal(JobRunner.ScheduleTrigger, repair.GetProperty("trigger").GetString());

            var received = new List<(BasicGetResult Message, JsonElement Payload)>();
            async Task DrainAsync()
            {
                while (await subscriber.BasicGetAsync(inbox, autoAck: true, Ct) is { } message)
                {
                    var payload = JsonDocument.Parse(Encoding.UTF8.GetString(message.Body.Span)).RootElement.Clone();
                    // Another test's app may announce its own repairs on the same exchange: keep only this one's.
                    if (Ids(payload.GetProperty("accountIds")).Intersect(expected).Any())
                    {
                        received.Add((message, payload));
                    }
                }
            }
            await Eventually.TrueAsync(async () =>
            {
                await DrainAsync();
                return received.Count > 0;
            }, "the StoreAccountsRepaired event on a queue bound to tally.events");

            // Later scheduled runs find nothing to repair, and announce nothing: wait for two of them,
            // and for the outbox to have nothing left to publish, then look again.
            await Eventually.TrueAsync(async () =>
            {
                var runs = await admin.GetAsync($"/api/admin/cron-runs?job={RepairHasOrders.Name}&status={CronRunStatus.Success}").ExpectAsync(HttpStatusCode.OK);
                return runs.EnumerateArray().Count(r => r.GetProperty("id").GetInt64() > runId) >= 2;
            }, "two more scheduled runs after the repair");
            await Eventually.TrueAsync(async () =>
            {
                await using var db = app.Db();
                return !await db.OutboxEvents.AnyAsync(e => e.PublishedAt == null, Ct);
            }, "every outbox event published");
            await DrainAsync();

            var (got, body) = Assert.Single(received);
            Assert.Equal(RabbitMqEventPublisher.Exchange, got.Exchange);
            Assert.Equal(RepairHasOrders.RepairedEvent, got.RoutingKey);
            Assert.Equal(runId.ToString(System.Globalization.CultureInfo.InvariantCulture), Encoding.UTF8.GetString((byte[])got.BasicProperties.Headers![RabbitMqEventPublisher.SubjectHeader]!));
            Assert.Equal(runId, body.GetProperty("runId").GetInt64());
            Assert.Equal(expected, Ids(body.GetProperty("accountIds")));
            var events = await admin.GetAsync($"/api/admin/events?type={RepairHasOrders.RepairedEvent}").ExpectAsync(HttpStatusCode.OK);
            Assert.Equal(got.BasicProperties.MessageId, Assert.Single(events.EnumerateArray()).GetProperty("eventId").GetString());
        }
        finally
        {
            await app.DisposeAsync();
            await broker.DeleteTopologyAsync(allowanceQueue);
        }
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Repair_SeedShapedOrdersLoadedBeforeTheirAccounts_AreCountedByTheNextRun(string storage)
    {
        await using var app = await Apps.CreateAsync(storage, ManualOnly);
        var admin = app.Admin();
        var (seller, buyer, lonelySeller, oneOffBuyer, counterpart, neverLoaded) = (Guid.NewGuid(), Guid.NewGuid(), Guid.NewGuid(), Guid.NewGuid(), Guid.NewGuid(), Guid.NewGuid());
        var order = Guid.NewGuid();

        // The seed's shape: the product type only inside metadata, where its pipeline matched it. No account is known yet.
        var placed = await admin.PostJsonAsync("/api/admin/store/orders", new object[]
        {
            new { id = order, sellerAccount = seller, buyerAccount = buyer, status = "active", metadata = new { product_type = Managed, plan = "pro" } },
            new { sellerAccount = lonelySeller, buyerAccount = neverLoaded, status = "active", metadata = new { product_type = "managed_subscription_annual" } },
            new { sellerAccount = counterpart, buyerAccount = oneOffBuyer, status = "active", metadata = new { product_type = "one_off" } },
        }).ExpectAsync(HttpStatusCode.Created);
        Assert.Equal(3, placed.GetProperty("created").GetInt32());
        var stored = await admin.GetAsync($"/api/admin/store/orders/{order}").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(Managed, stored.GetProperty("productType").GetString());
        Assert.Equal("pro", stored.GetProperty("metadata").GetProperty("plan").GetString());

        var before = await admin.PostAsync("/api/admin/store/sync-accounts", null).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(0, before.GetProperty("updatedIds").GetArrayLength());

        await LoadAccountsAsync(admin, (seller, true, false), (buyer, true, false), (lonelySeller, true, false), (oneOffBuyer, true, false), (counterpart, true, true));
        var next = await admin.PostAsync("/api/admin/store/sync-accounts", null).ExpectAsync(HttpStatusCode.OK);

        Assert.Equal(Sorted(seller, buyer, lonelySeller), Ids(next.GetProperty("updatedIds")));
        var oneOff = await admin.GetAsync($"/api/admin/store/accounts/{oneOffBuyer}").ExpectAsync(HttpStatusCode.OK);
        Assert.False(oneOff.GetProperty("hasOrders").GetBoolean());
        var repair = await admin.GetAsync($"/api/admin/store/repairs/{next.GetProperty("runId").GetInt64()}").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(Sorted(seller, buyer, lonelySeller), Ids(repair.GetProperty("accountIds")));
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Repair_Manual_KeepsItsIds_AndARunRepairingNothingEmitsNothing(string storage)
    {
        await using var app = await Apps.CreateAsync(storage, ManualOnly);
        var admin = app.Admin();
        var (first, second, counterpart) = (Guid.NewGuid(), Guid.NewGuid(), Guid.NewGuid());
        await LoadAccountsAsync(admin, (first, true, false), (second, true, false), (counterpart, true, true));
        await LoadOrdersAsync(admin, (first, counterpart, "active", Managed));

        // Both ways an operator runs the job keep the ids: the store's own route and the job runtime's.
        var repairing = await admin.PostAsync("/api/admin/store/sync-accounts", null).ExpectAsync(HttpStatusCode.OK);
        var nothing = await admin.PostAsync("/api/admin/store/sync-accounts", null).ExpectAsync(HttpStatusCode.OK);
        await LoadOrdersAsync(admin, (counterpart, second, "active", Managed));
        var viaJobs = await admin.PostAsync($"/api/admin/jobs/{RepairHasOrders.Name}/run", null).ExpectAsync(HttpStatusCode.OK);
        var (firstRun, emptyRun, lastRun) = (repairing.GetProperty("runId").GetInt64(), nothing.GetProperty("runId").GetInt64(), viaJobs.GetProperty("run").GetProperty("id").GetInt64());

        var kept = await admin.GetAsync($"/api/admin/store/repairs/{firstRun}").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal((JobRunner.ManualTrigger, CronRunStatus.Success), (kept.GetProperty("trigger").GetString(), kept.GetProperty("status").GetString()));
        Assert.Equal([first], Ids(kept.GetProperty("accountIds")));
        var empty = await admin.GetAsync($"/api/admin/store/repairs/{emptyRun}").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(CronRunStatus.Success, empty.GetProperty("status").GetString());
        Assert.Equal(0, empty.GetProperty("accountIds").GetArrayLength());
        var last = await admin.GetAsync($"/api/admin/store/repairs/{lastRun}").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal([second], Ids(last.GetProperty("accountIds")));

        // One event per repairing run, none for the run that found nothing.
        var events = await admin.GetAsync($"/api/admin/events?type={RepairHasOrders.RepairedEvent}").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal([(firstRun, first), (lastRun, second)], events.EnumerateArray().Select(e =>
        {
            var payload = e.GetProperty("payload");
            Assert.Equal(payload.GetProperty("runId").GetInt64().ToString(System.Globalization.CultureInfo.InvariantCulture), e.GetProperty("subjectId").GetString());
            return (payload.GetProperty("runId").GetInt64(), Assert.Single(Ids(payload.GetProperty("accountIds"))));
        }).ToArray());

        // The listing: runs that repaired accounts, newest first, a page at a time.
        var page = await admin.GetAsync("/api/admin/store/repairs?limit=1").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(lastRun, Assert.Single(page.EnumerateArray()).GetProperty("runId").GetInt64());
        page = await admin.GetAsync($"/api/admin/store/repairs?limit=1&before={lastRun}").ExpectAsync(HttpStatusCode.OK);
        var older = Assert.Single(page.EnumerateArray());
        Assert.Equal((firstRun, JobRunner.ManualTrigger, 1), (older.GetProperty("runId").GetInt64(), older.GetProperty("trigger").GetString(), older.GetProperty("accountCount").GetInt32()));
        page = await admin.GetAsync($"/api/admin/store/repairs?before={firstRun}").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(0, page.GetArrayLength());

        // A run of another job is not a repair.
        var heartbeat = await admin.PostAsync($"/api/admin/jobs/{Tally.Jobs.HeartbeatJob.Name}/run", null).ExpectAsync(HttpStatusCode.OK);
        await admin.GetAsync($"/api/admin/store/repairs/{heartbeat.GetProperty("run").GetProperty("id").GetInt64()}")
            .ExpectProblemAsync(HttpStatusCode.NotFound, "STORE.REPAIR_NOT_FOUND");
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Repair_EventCannotBeWritten_LeavesFlagsIdsAndEventsUnwritten(string storage)
    {
        await using var app = await Apps.CreateAsync(storage, ManualOnly);
        var admin = app.Admin();
        var (stale, counterpart) = (Guid.NewGuid(), Guid.NewGuid());
        await LoadAccountsAsync(admin, (stale, true, false), (counterpart, true, true));
        await LoadOrdersAsync(admin, (stale, counterpart, "active", Managed));
        await using (var db = app.Db())
        {
            // The outbox refuses the event, as a crash between the flag update and the commit would lose it.
            await db.Database.ExecuteSqlRawAsync(storage == "postgres"
                ? """
                  CREATE FUNCTION refuse_repair_event() RETURNS trigger LANGUAGE plpgsql AS $$
                  BEGIN IF NEW.event_type = 'StoreAccountsRepaired' THEN RAISE EXCEPTION 'event refused'; END IF; RETURN NEW; END $$;
                  CREATE TRIGGER refuse_repair_event BEFORE INSERT ON outbox_events FOR EACH ROW EXECUTE FUNCTION refuse_repair_event();
                  """
                : """
                  CREATE TRIGGER refuse_repair_event BEFORE INSERT ON outbox_events WHEN NEW.event_type = 'StoreAccountsRepaired'
                  BEGIN SELECT RAISE(ABORT, 'event refused'); END;
                  """, Ct);
        }

        var failed = await admin.PostAsync("/api/admin/store/sync-accounts", null).ExpectProblemAsync(HttpStatusCode.ServiceUnavailable, "STORE.SYNC_FAILED");

        var run = await admin.GetAsync($"/api/admin/store/repairs/{failed.GetProperty("runId").GetInt64()}").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(CronRunStatus.Failed, run.GetProperty("status").GetString());
        Assert.Equal(0, run.GetProperty("accountIds").GetArrayLength());
        var account = await admin.GetAsync($"/api/admin/store/accounts/{stale}").ExpectAsync(HttpStatusCode.OK);
        Assert.False(account.GetProperty("hasOrders").GetBoolean());
        await using (var db = app.Db())
        {
            Assert.False(await db.StoreAccountRepairs.AnyAsync(Ct));
            await db.Database.ExecuteSqlRawAsync(storage == "postgres" ? "DROP TRIGGER refuse_repair_event ON outbox_events" : "DROP TRIGGER refuse_repair_event", Ct);
        }

        // The next run repairs, keeps and announces what the failed one could not.
        var next = await admin.PostAsync("/api/admin/store/sync-accounts", null).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal([stale], Ids(next.GetProperty("updatedIds")));
        var events = await admin.GetAsync($"/api/admin/events?type={RepairHasOrders.RepairedEvent}").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(next.GetProperty("runId").GetInt64(), Assert.Single(events.EnumerateArray()).GetProperty("payload").GetProperty("runId").GetInt64());
    }

    [Fact]
    public async Task Load_ProductType_FromEitherField_BothMustAgree()
    {
        await using var app = TallyApp.Sqlite(ManualOnly);
        var admin = app.Admin();
        var (a, b) = (Guid.NewGuid(), Guid.NewGuid());

        var differ = await admin.PostJsonAsync("/api/admin/store/orders", new object[]
        {
            new { sellerAccount = a, buyerAccount = b, status = "active", productType = Managed, metadata = new { product_type = Managed } },
            new { sellerAccount = a, buyerAccount = b, status = "active", productType = Managed, metadata = new { product_type = "one_off" } },
            new { sellerAccount = a, buyerAccount = b, status = "active", metadata = new { product_type = 7 } },
            new { sellerAccount = a, buyerAccount = b, status = "active", metadata = new { plan = "pro" } },
            new { sellerAccount = a, buyerAccount = b, status = "active", metadata = new { product_type = " " } },
        }).ExpectProblemAsync(HttpStatusCode.BadRequest, "VALIDATION_FAILED");
        var errors = differ.GetProperty("errors");
        Assert.Equal(["[1].productType", "[2].metadata.product_type", "[3].productType", "[4].metadata.product_type"],
            errors.EnumerateObject().Select(e => e.Name).Order(StringComparer.Ordinal).ToArray());
        Assert.Contains("differs from metadata.product_type", errors.GetProperty("[1].productType")[0].GetString(), StringComparison.Ordinal);
        Assert.Contains("metadata.product_type", errors.GetProperty("[3].productType")[0].GetString(), StringComparison.Ordinal);
        await using (var db = app.Db())
        {
            Assert.Equal(0, await db.StoreOrders.CountAsync(Ct));
        }

        // The same type in both, or a null seed field beside Tally's own, is one type.
        var both = Guid.NewGuid();
        await admin.PostRawAsync("/api/admin/store/orders", $$$"""
            [{"id":"{{{both}}}","sellerAccount":"{{{a}}}","buyerAccount":"{{{b}}}","status":"active","productType":"{{{Managed}}}","metadata":{"product_type":" {{{Managed}}}"}},
             {"sellerAccount":"{{{a}}}","buyerAccount":"{{{b}}}","status":"active","productType":"one_off","metadata":{"product_type":null}}]
            """).ExpectAsync(HttpStatusCode.Created);
        var stored = await admin.GetAsync($"/api/admin/store/orders/{both}").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(Managed, stored.GetProperty("productType").GetString());
    }
}
