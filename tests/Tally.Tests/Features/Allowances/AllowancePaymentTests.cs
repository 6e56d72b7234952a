using System.Net;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Tally.Features.Allowances;
using Tally.Jobs.Queues;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.Allowances;

/// <summary>
/// The producer, queue and worker together on the in-process queue: embedded (SQLite), and on
/// PostgreSQL where batches are paid with set-based statements; in pages of occurrences (the
/// default) and in the seed's shape, one message per occurrence.
/// </summary>
public class AllowancePaymentTests
{
    private sealed record Family(TallyApp App, HttpClient Admin, HttpClient Guardian, Guid GuardianId, Guid JuniorId, Guid GuardianAccount, Guid JuniorAccount) : IAsyncDisposable
    {
        public ValueTask DisposeAsync() => App.DisposeAsync();

        public async Task<int> RunProducerAsync()
        {
            var body = await Admin.PostAsync($"/api/admin/jobs/{EnqueueDueAllowances.Name}/run", null).ExpectAsync(HttpStatusCode.OK);
            Assert.Equal("SUCCESS", body.GetProperty("run").GetProperty("status").GetString());
            return body.GetProperty("run").GetProperty("processedCount").GetInt32();
        }

        public async Task<List<(DateTime RunAt, string Outcome, decimal Amount)>> CreditsAsync()
        {
            var body = await Guardian.GetAsync($"/api/guardians/me/allowances/{JuniorId}/credits").ExpectAsync(HttpStatusCode.OK);
            return body.EnumerateArray()
                .Select(c => (c.GetProperty("runAt").GetDateTime().ToUniversalTime(), c.GetProperty("outcome").GetString()!, c.GetProperty("amount").GetDecimal()))
                .OrderBy(c => c.Item1).ToList();
        }

        public Task CreateAsync(object body) =>
            Guardian.PostJsonAsync($"/api/guardians/me/allowances/{JuniorId}", body).ExpectAsync(HttpStatusCode.Created);

        public async Task QueueDrainedAsync()
        {
            var transport = App.Get<IQueueTransport>();
            var queue = new QueueDefinition("allowance.schedule", 0, TimeSpan.Zero);
            await Eventually.TrueAsync(async () =>
            {
                var depth = await transport.GetDepthAsync(queue, TestContext.Current.CancellationToken);
                return depth.Ready == 0 && depth.InFlight == 0 && depth.Retrying == 0;
            }, "the allowance queue to drain");
        }
    }

    private static async Task<Family> ArrangeAsync(decimal guardianFunds, IDictionary<string, string?>? settings = null, string storage = "sqlite")
    {
        var all = new Dictionary<string, string?> { ["Tally:Roles:0"] = "api", ["Tally:Roles:1"] = "worker" };
        foreach (var (k, v) in settings ?? new Dictionary<string, string?>())
        {
            all[k] = v;
        }
        var app = await Apps.CreateAsync(storage, all);
        var admin = app.Admin();
        var (guardian, junior, guardianAccount, juniorAccount) = await AddFamilyAsync(admin, guardianFunds);
        return new Family(app, admin, app.AsGuardian(guardian), guardian, junior, guardianAccount, juniorAccount);
    }

    private static async Task<(Guid Guardian, Guid Junior, Guid GuardianAccount, Guid JuniorAccount)> AddFamilyAsync(HttpClient admin, decimal guardianFunds)
    {
        var guardian = await admin.CreateUserAsync();
        var junior = await admin.CreateUserAsync(context: "WALLET");
        await admin.LinkAsync(guardian, junior);
        var guardianAccount = await admin.CreateAccountAsync(guardian);
        var juniorAccount = await admin.CreateAccountAsync(junior);
        if (guardianFunds > 0)
        {
            await admin.DepositAsync(guardianAccount, guardianFunds);
        }
        return (guardian, junior, guardianAccount, juniorAccount);
    }

    private static string Iso(DateTime utc) => utc.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture);

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task CatchUp_StartThreeDaysAgo_PaysEachMissedOccurrenceOnceOldestFirst(string storage)
    {
        await using var family = await ArrangeAsync(100m, storage: storage);
        var start = DateTime.UtcNow.AddDays(-3).AddMinutes(1);
        await family.CreateAsync(new { amount = 5m, frequency = "DAILY", status = "ON", startAt = Iso(start) });

        Assert.Equal(3, await family.RunProducerAsync());
        await Eventually.TrueAsync(async () => (await family.CreditsAsync()).Count == 3, "three credits");
        await family.QueueDrainedAsync();

        var credits = await family.CreditsAsync();
        Assert.All(credits, c => Assert.Equal(("PAID", 5m), (c.Outcome, c.Amount)));
        Assert.Equal(3, credits.Select(c => c.RunAt).Distinct().Count());
        Assert.Equal(15m, await family.Admin.BalanceAsync(family.JuniorAccount));
        Assert.Equal(85m, await family.Admin.BalanceAsync(family.GuardianAccount));

        // Nothing more is due: a second producer run enqueues nothing.
        Assert.Equal(0, await family.RunProducerAsync());
        var schedule = await family.Guardian.GetAsync($"/api/guardians/me/allowances/{family.JuniorId}").ExpectAsync(HttpStatusCode.OK);
        Assert.True(schedule.GetProperty("nextRunAt").GetDateTime().ToUniversalTime() > DateTime.UtcNow);
        Assert.Equal(credits[^1].RunAt, schedule.GetProperty("lastRunAt").GetDateTime().ToUniversalTime());

        var events = await family.Admin.GetAsync("/api/admin/events?type=AllowanceCredited").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(3, events.GetArrayLength());
    }

    [Theory]
    [InlineData("sqlite", "page")]
    [InlineData("postgres", "page")]
    [InlineData("sqlite", "occurrence")]
    [InlineData("postgres", "occurrence")]
    public async Task Credit_EveryMessageDeliveredTwice_PaysOnce(string storage, string shape)
    {
        await using var family = await ArrangeAsync(100m, new Dictionary<string, string?> { ["Allowances:MessageShape"] = shape }, storage);
        var start = DateTime.UtcNow.AddDays(-4).AddMinutes(1);
        await family.CreateAsync(new { amount = 2.5m, frequency = "DAILY", status = "ON", startAt = Iso(start) });
        await using var db = family.App.Db();
        var schedule = await db.AllowanceSchedules.AsNoTracking().SingleAsync(TestContext.Current.CancellationToken);
        var due = Recurrence.Occurrences(schedule.Rule(), schedule.StartAt).TakeWhile(t => t <= DateTime.UtcNow).ToList();
        Assert.Equal(4, due.Count);

        // Every occurrence published twice, back to back, before any is handled, and the producer on top.
        var messages = due.SelectMany(t => new[] { new OccurrenceMessage(schedule.Id, t).ToQueueMessage(), new OccurrenceMessage(schedule.Id, t).ToQueueMessage() }).ToList();
        await family.App.Get<IQueueTransport>().PublishAsync("allowance.schedule", messages, TestContext.Current.CancellationToken);
        await family.RunProducerAsync();
        await Eventually.TrueAsync(async () => (await family.CreditsAsync()).Count == 4, "four credits");
        await family.QueueDrainedAsync();

        Assert.Equal(10m, await family.Admin.BalanceAsync(family.JuniorAccount));
        Assert.Equal(90m, await family.Admin.BalanceAsync(family.GuardianAccount));
        Assert.Equal(4, await db.LedgerTransfers.CountAsync(t => t.Kind == "ALLOWANCE", TestContext.Current.CancellationToken));
    }

    [Theory]
    [InlineData("sqlite", "page")]
    [InlineData("postgres", "page")]
    [InlineData("sqlite", "occurrence")]
    [InlineData("postgres", "occurrence")]
    public async Task InsufficientFunds_RetriedThenDeadLettered_NextOccurrencePaidAndReplayPaysOnce(string storage, string shape)
    {
        await using var family = await ArrangeAsync(0m, new Dictionary<string, string?>
        {
            ["Allowances:RetryDelayMs"] = "300",
            ["Allowances:MaxRetries"] = "2",
            ["Allowances:MessageShape"] = shape,
        }, storage);
        // Two occurrences due now (two days and one day ago), the next one in a few seconds.
        var start = DateTime.UtcNow.AddDays(-2).AddSeconds(6);
        await family.CreateAsync(new { amount = 4m, frequency = "DAILY", status = "ON", startAt = Iso(start) });
        Assert.Equal(2, await family.RunProducerAsync());

        await Eventually.TrueAsync(async () => (await family.CreditsAsync()).Count(c => c.Outcome == "FAILED") == 2, "two failed occurrences");
        var dead = await family.Admin.GetAsync("/api/admin/dead-letters?queue=allowance.schedule").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(2, dead.GetArrayLength());
        Assert.All(dead.EnumerateArray(), d =>
        {
            Assert.Equal(3, d.GetProperty("attempts").GetInt32()); // the first delivery and two retries
            Assert.Contains("insufficient funds", d.GetProperty("reason").GetString());
        });
        var failedEvents = await family.Admin.GetAsync("/api/admin/events?type=AllowanceCreditFailed").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(2, failedEvents.GetArrayLength());

        // Funds arrive; the next occurrence comes due and is paid.
        await family.Admin.DepositAsync(family.GuardianAccount, 20m);
        await Eventually.TrueAsync(async () => await family.RunProducerAsync() == 1, "the next occurrence to come due", TimeSpan.FromSeconds(20));
        await Eventually.TrueAsync(async () => (await family.CreditsAsync()).Count(c => c.Outcome == "PAID") == 1, "the next occurrence paid");
        Assert.Equal(4m, await family.Admin.BalanceAsync(family.JuniorAccount));

        // Replaying the dead letters pays each missed occurrence once; replaying the same message again pays nothing more.
        foreach (var letter in dead.EnumerateArray())
        {
            await family.Admin.PostAsync($"/api/admin/dead-letters/{letter.GetProperty("id").GetGuid()}/replay", null).ExpectAsync(HttpStatusCode.Accepted);
        }
        await Eventually.TrueAsync(async () => (await family.CreditsAsync()).All(c => c.Outcome == "PAID"), "replayed occurrences paid");
        await family.App.Get<IQueueTransport>().PublishAsync("allowance.schedule",
            dead.EnumerateArray().Select(d => new QueueMessage(d.GetProperty("messageId").GetString()!, d.GetProperty("body").GetString()!)).ToList(),
            TestContext.Current.CancellationToken);
        await family.QueueDrainedAsync();

        Assert.Equal(12m, await family.Admin.BalanceAsync(family.JuniorAccount));
        Assert.Equal(8m, await family.Admin.BalanceAsync(family.GuardianAccount));
        Assert.Equal(0, (await family.Admin.GetAsync("/api/admin/dead-letters").ExpectAsync(HttpStatusCode.OK)).GetArrayLength());
        var totals = await family.Admin.GetAsync("/api/admin/ledger/totals").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(0m, totals[0].GetProperty("total").GetDecimal());
    }

    [Theory]
    [InlineData("sqlite", "page")]
    [InlineData("postgres", "page")]
    [InlineData("sqlite", "occurrence")]
    [InlineData("postgres", "occurrence")]
    public async Task ManyFamiliesAtOnce_OneGuardianShort_EveryOtherOccurrencePaidOnceAndTheShortOneRetried(string storage, string shape)
    {
        // 30 families with three missed days each arrive at the worker together, so batches mix
        // payable occurrences with one family's unpayable ones (its guardian has 5.00 for 3 x 2.00).
        await using var family = await ArrangeAsync(100m, new Dictionary<string, string?> { ["Allowances:RetryDelayMs"] = "600000", ["Allowances:MessageShape"] = shape }, storage);
        var start = Iso(DateTime.UtcNow.AddDays(-3).AddMinutes(1));
        var juniors = new List<Guid> { family.JuniorAccount };
        var guardians = new List<Guid> { family.GuardianAccount };
        await family.CreateAsync(new { amount = 2m, frequency = "DAILY", status = "ON", startAt = start });
        for (var i = 1; i < 30; i++)
        {
            var (guardian, junior, guardianAccount, juniorAccount) = await AddFamilyAsync(family.Admin, i == 17 ? 5m : 100m);
            await family.App.AsGuardian(guardian).PostJsonAsync($"/api/guardians/me/allowances/{junior}",
                new { amount = 2m, frequency = "DAILY", status = "ON", startAt = start }).ExpectAsync(HttpStatusCode.Created);
            juniors.Add(juniorAccount);
            guardians.Add(guardianAccount);
        }

        Assert.Equal(90, await family.RunProducerAsync());
        await using var db = family.App.Db();
        var ct = TestContext.Current.CancellationToken;
        // Two of the short guardian's three days are paid (which two depends on how the batches fall); the third waits for funds.
        await Eventually.TrueAsync(async () => await db.AllowanceCredits.CountAsync(c => c.Outcome == "PAID", ct) == 89, "89 occurrences paid");
        await Eventually.TrueAsync(async () =>
            (await family.App.Get<IQueueTransport>().GetDepthAsync(new QueueDefinition("allowance.schedule", 0, TimeSpan.Zero), ct)) is { Ready: 0, InFlight: 0, Retrying: 1 },
            "one occurrence waiting to retry");

        for (var i = 0; i < 30; i++)
        {
            Assert.Equal(i == 17 ? 4m : 6m, await family.Admin.BalanceAsync(juniors[i]));
            Assert.Equal(i == 17 ? 1m : 94m, await family.Admin.BalanceAsync(guardians[i]));
        }
        Assert.Equal(89, await db.LedgerTransfers.CountAsync(t => t.Kind == "ALLOWANCE", ct));
        Assert.Equal(89, (await family.Admin.GetAsync("/api/admin/events?type=AllowanceCredited&limit=500").ExpectAsync(HttpStatusCode.OK)).GetArrayLength());
        // Every other schedule moved on past its three days; the short one past what it was paid, not beyond.
        var now = DateTime.UtcNow;
        var schedules = await db.AllowanceSchedules.AsNoTracking().ToListAsync(ct);
        Assert.Equal(29, schedules.Count(s => s.NextRunAt > now && s.LastRunAt > now.AddDays(-1)));
        var shortPaid = await db.AllowanceCredits.Where(c => c.AmountMinor == 200 && c.TransactionId != null)
            .Join(db.LedgerTransfers.Where(t => t.DebitAccountId == guardians[17]), c => c.TransactionId, t => t.Id, (c, t) => c.RunAt).ToListAsync(ct);
        Assert.Equal(2, shortPaid.Count);
        Assert.Equal(shortPaid.Max(), schedules.Single(s => s.NextRunAt <= now || s.LastRunAt <= now.AddDays(-1)).LastRunAt);
        var totals = await family.Admin.GetAsync("/api/admin/ledger/totals").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(0m, totals[0].GetProperty("total").GetDecimal());
    }

    [Fact]
    public async Task OffThenOn_DoesNotPayThePausedPeriod()
    {
        await using var family = await ArrangeAsync(100m);
        var start = DateTime.UtcNow.AddDays(-3).AddMinutes(1);
        await family.CreateAsync(new { amount = 1m, frequency = "DAILY", status = "OFF", startAt = Iso(start) });
        Assert.Equal(0, await family.RunProducerAsync());

        await family.Guardian.PatchAsync($"/api/guardians/me/allowances/{family.JuniorId}",
            new StringContent("""{"status":"ON"}""", System.Text.Encoding.UTF8, "application/json")).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(0, await family.RunProducerAsync());
        Assert.Empty(await family.CreditsAsync());
        Assert.Equal(0m, await family.Admin.BalanceAsync(family.JuniorAccount));
    }

    [Fact]
    public async Task InFlightOccurrence_OfAScheduleTurnedOff_IsNotPaid()
    {
        await using var family = await ArrangeAsync(100m, new Dictionary<string, string?> { ["Tally:Roles:1"] = "api" });
        var start = DateTime.UtcNow.AddDays(-1).AddMinutes(1);
        await family.CreateAsync(new { amount = 1m, frequency = "DAILY", status = "ON", startAt = Iso(start) });
        await using var db = family.App.Db();
        var schedule = await db.AllowanceSchedules.AsNoTracking().SingleAsync(TestContext.Current.CancellationToken);
        await family.Guardian.PatchAsync($"/api/guardians/me/allowances/{family.JuniorId}",
            new StringContent("""{"status":"OFF"}""", System.Text.Encoding.UTF8, "application/json")).ExpectAsync(HttpStatusCode.OK);

        // The worker role is off in this app, so hand the message to the handler directly.
        await using var scope = family.App.Services.CreateAsyncScope();
        var handler = scope.ServiceProvider.GetRequiredService<CreditAllowance>();
        var outcome = await handler.HandleAsync(new OccurrenceMessage(schedule.Id, start).ToQueueMessage(), TestContext.Current.CancellationToken);
        Assert.Equal(Tally.Jobs.JobOutcome.Done, outcome);
        Assert.Empty(await family.CreditsAsync());
    }

    [Fact]
    public async Task CatchUp_BeyondTheCap_RecordsOldestAsSkippedAndPaysTheRest()
    {
        await using var family = await ArrangeAsync(100m, new Dictionary<string, string?> { ["Allowances:MaxCatchUp"] = "2" });
        var start = DateTime.UtcNow.AddDays(-5).AddMinutes(1);
        await family.CreateAsync(new { amount = 3m, frequency = "DAILY", status = "ON", startAt = Iso(start) });

        Assert.Equal(2, await family.RunProducerAsync());
        await Eventually.TrueAsync(async () => (await family.CreditsAsync()).Count(c => c.Outcome == "PAID") == 2, "two paid");
        var credits = await family.CreditsAsync();
        Assert.Equal(["SKIPPED", "PAID", "PAID"], credits.Select(c => c.Outcome).ToArray());
        Assert.Equal(6m, await family.Admin.BalanceAsync(family.JuniorAccount));
        Assert.Equal(0, await family.RunProducerAsync());
    }
}
