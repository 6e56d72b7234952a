using System.Globalization;
using System.Net;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Tally.Features.Allowances;
using Tally.Jobs.Queues;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.Allowances;

/// <summary>
/// The catch-up cap holds whatever the start: producer, queue and workers together on a clock the
/// test moves, embedded (SQLite) and on PostgreSQL.
/// </summary>
public class AllowanceCatchUpTests
{
    private sealed record Family(TallyApp App, ManualClock Clock, HttpClient Admin, HttpClient Guardian, Guid JuniorId, Guid GuardianAccount, Guid JuniorAccount) : IAsyncDisposable
    {
        public ValueTask DisposeAsync() => App.DisposeAsync();

        public string Url => $"/api/guardians/me/allowances/{JuniorId}";

        public DateTime Now => Clock.GetUtcNow().UtcDateTime;

        public async Task<int> RunProducerAsync()
        {
            var body = await Admin.PostAsync($"/api/admin/jobs/{EnqueueDueAllowances.Name}/run", null).ExpectAsync(HttpStatusCode.OK);
            Assert.Equal("SUCCESS", body.GetProperty("run").GetProperty("status").GetString());
            return body.GetProperty("run").GetProperty("processedCount").GetInt32();
        }

        public async Task<List<AllowanceCredit>> CreditsAsync()
        {
            await using var db = App.Db();
            return await db.AllowanceCredits.AsNoTracking().OrderBy(c => c.RunAt).ToListAsync(TestContext.Current.CancellationToken);
        }

        public async Task<AllowanceSchedule> ScheduleAsync()
        {
            await using var db = App.Db();
            return await db.AllowanceSchedules.AsNoTracking().Where(s => s.JuniorId == JuniorId && s.DeletedAt == null).SingleAsync(TestContext.Current.CancellationToken);
        }

        public async Task PaidAsync(int count)
        {
            await Eventually.TrueAsync(async () => (await CreditsAsync()).Count(c => c.Outcome == CreditOutcome.Paid) >= count, $"{count} credits paid");
            var transport = App.Get<IQueueTransport>();
            var queue = new QueueDefinition("allowance.schedule", 0, TimeSpan.Zero);
            await Eventually.TrueAsync(async () =>
                await transport.GetDepthAsync(queue, TestContext.Current.CancellationToken) is { Ready: 0, InFlight: 0, Retrying: 0 }, "the allowance queue to drain");
            Assert.Equal(count, (await CreditsAsync()).Count(c => c.Outcome == CreditOutcome.Paid));
        }

        public async Task AssertMoneyAsync(decimal funded, decimal paid)
        {
            Assert.Equal(paid, await Admin.BalanceAsync(JuniorAccount));
            Assert.Equal(funded - paid, await Admin.BalanceAsync(GuardianAccount));
            var totals = await Admin.GetAsync("/api/admin/ledger/totals").ExpectAsync(HttpStatusCode.OK);
            Assert.All(totals.EnumerateArray(), t => Assert.Equal(0m, t.GetProperty("total").GetDecimal()));
        }
    }

    private static async Task<Family> ArrangeAsync(string storage, decimal funds, IDictionary<string, string?>? settings = null)
    {
        var clock = new ManualClock();
        var all = new Dictionary<string, string?>
        {
            ["Tally:Roles:0"] = "api",
            ["Tally:Roles:1"] = "worker",
            ["Allowances:RequeueAfter"] = "00:10:00",
        };
        foreach (var (k, v) in settings ?? new Dictionary<string, string?>())
        {
            all[k] = v;
        }
        var app = await Apps.CreateAsync(storage, all, s => s.AddSingleton<TimeProvider>(clock));
        var admin = app.Admin();
        var guardian = await admin.CreateUserAsync();
        var junior = await admin.CreateUserAsync(context: "WALLET");
        await admin.LinkAsync(guardian, junior);
        var guardianAccount = await admin.CreateAccountAsync(guardian);
        var juniorAccount = await admin.CreateAccountAsync(junior);
        await admin.DepositAsync(guardianAccount, funds);
        return new Family(app, clock, admin, app.AsGuardian(guardian), junior, guardianAccount, juniorAccount);
    }

    private static string Iso(DateTime utc) => utc.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);

    /// <summary>A daily time of day a few minutes after the clock's now, on a date long ago: the next run is that far away.</summary>
    private static (DateTime Start, DateTime NextRun) DailyStart(DateTime now, int year, TimeSpan ahead)
    {
        var next = now.Add(ahead);
        next = new DateTime(next.Year, next.Month, next.Day, next.Hour, next.Minute, next.Second, DateTimeKind.Utc);
        return (new DateTime(year, 1, 2, next.Hour, next.Minute, next.Second, DateTimeKind.Utc), next);
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task CatchUp_DailySinceMoreThanACenturyAgo_PaysTheCapOnceAndRecordsOneSkip(string storage)
    {
        const int Cap = 31;
        await using var family = await ArrangeAsync(storage, 1000m);
        var (start, next) = DailyStart(family.Now, 1900, TimeSpan.FromMinutes(5));
        await family.Guardian.PostJsonAsync(family.Url, new { amount = 1m, frequency = "DAILY", status = "ON", startAt = Iso(start) }).ExpectAsync(HttpStatusCode.Created);

        Assert.Equal(Cap, await family.RunProducerAsync());
        await family.PaidAsync(Cap);

        // The newest 31 days paid, everything before them one SKIPPED row: 32 rows, not 45,000.
        var credits = await family.CreditsAsync();
        Assert.Equal(Cap + 1, credits.Count);
        var paid = credits.Where(c => c.Outcome == CreditOutcome.Paid).Select(c => c.RunAt).ToList();
        Assert.Equal(Enumerable.Range(1, Cap).Select(d => next.AddDays(-d)).Order(), paid);
        var skipped = Assert.Single(credits, c => c.Outcome == CreditOutcome.Skipped);
        Assert.Equal(next.AddDays(-Cap - 1), skipped.RunAt);
        Assert.Equal($"beyond the catch-up cap: missed occurrences from {Iso(start)} through {Iso(next.AddDays(-Cap - 1))}", skipped.Reason);
        var schedule = await family.ScheduleAsync();
        Assert.Equal(next.AddDays(-Cap), schedule.ActiveFrom);
        Assert.Equal(next, schedule.NextRunAt);
        await family.AssertMoneyAsync(1000m, Cap);

        // A second run at the same moment: nothing is due.
        Assert.Equal(0, await family.RunProducerAsync());

        // Past the requeue time and past the next run: the stale path plans again, and only the new day is paid.
        family.Clock.Advance(TimeSpan.FromMinutes(15));
        Assert.Equal(1, await family.RunProducerAsync());
        await family.PaidAsync(Cap + 1);
        Assert.Equal(0, await family.RunProducerAsync());
        family.Clock.Advance(TimeSpan.FromMinutes(15));
        Assert.Equal(0, await family.RunProducerAsync());

        // Nothing before the paid ones can be paid any more, whatever is delivered: the skipped days, the very first one.
        var old = new[] { start, start.AddDays(1), skipped.RunAt, next.AddDays(-Cap - 5) }
            .Select(t => new OccurrenceMessage(schedule.Id, t).ToQueueMessage()).ToList();
        await family.App.Get<IQueueTransport>().PublishAsync("allowance.schedule", old, TestContext.Current.CancellationToken);
        await family.PaidAsync(Cap + 1);
        Assert.Equal(Cap + 2, (await family.CreditsAsync()).Count);
        await family.AssertMoneyAsync(1000m, Cap + 1);
        Assert.Equal(Cap + 1, (await family.Admin.GetAsync("/api/admin/events?type=AllowanceCredited&limit=500").ExpectAsync(HttpStatusCode.OK)).GetArrayLength());
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task CatchUp_WeeklySince1920_StaleReplanAfterDowntimeKeepsTheCap(string storage)
    {
        await using var family = await ArrangeAsync(storage, 1000m, new Dictionary<string, string?> { ["Allowances:MaxCatchUp"] = "4" });
        // Every day of the week, so that a week of downtime brings 7 new occurrences, more than the cap of 4.
        var (start, next) = DailyStart(family.Now, 1920, TimeSpan.FromMinutes(5));
        await family.Guardian.PostJsonAsync(family.Url, new
        {
            amount = 2m,
            frequency = "WEEKLY",
            byDay = new[] { "MO", "TU", "WE", "TH", "FR", "SA", "SU" },
            status = "ON",
            startAt = Iso(start),
        }).ExpectAsync(HttpStatusCode.Created);
        Assert.Equal(4, await family.RunProducerAsync());
        await family.PaidAsync(4);

        // A week down: the next run sees 7 due, pays the newest 4, and records the 3 before as one more skip.
        family.Clock.Advance(TimeSpan.FromDays(7));
        Assert.Equal(4, await family.RunProducerAsync());
        await family.PaidAsync(8);
        var credits = await family.CreditsAsync();
        Assert.Equal(10, credits.Count);
        Assert.Equal(2, credits.Count(c => c.Outcome == CreditOutcome.Skipped));
        Assert.Equal(Enumerable.Range(0, 4).Select(d => next.AddDays(3 + d)), credits.Where(c => c.Outcome == CreditOutcome.Paid).Select(c => c.RunAt).TakeLast(4));
        Assert.Equal(next.AddDays(3), (await family.ScheduleAsync()).ActiveFrom);

        // Within the requeue time nothing is enqueued again; past it, and past the next run, only the new day is.
        Assert.Equal(0, await family.RunProducerAsync());
        family.Clock.Advance(TimeSpan.FromMinutes(20));
        Assert.Equal(1, await family.RunProducerAsync());
        await family.PaidAsync(9);
        Assert.Equal(11, (await family.CreditsAsync()).Count);
        await family.AssertMoneyAsync(1000m, 18m);
    }

    /// <summary>
    /// Deleting a schedule and creating one again makes a new agreement: it is owed its own catch-up
    /// (up to the cap), whatever the deleted one was paid.
    /// </summary>
    [Fact]
    public async Task DeleteAndCreateAgain_TheNewScheduleIsOwedItsOwnCatchUp()
    {
        await using var family = await ArrangeAsync("sqlite", 100m, new Dictionary<string, string?> { ["Allowances:MaxCatchUp"] = "3" });
        var (start, _) = DailyStart(family.Now, 1990, TimeSpan.FromMinutes(5));
        var body = new { amount = 1m, frequency = "DAILY", status = "ON", startAt = Iso(start) };
        await family.Guardian.PostJsonAsync(family.Url, body).ExpectAsync(HttpStatusCode.Created);
        Assert.Equal(3, await family.RunProducerAsync());
        await family.PaidAsync(3);

        await family.Guardian.DeleteAsync(family.Url).ExpectAsync(HttpStatusCode.NoContent);
        Assert.Equal(0, await family.RunProducerAsync());
        await family.Guardian.PostJsonAsync(family.Url, body).ExpectAsync(HttpStatusCode.Created);
        Assert.Equal(3, await family.RunProducerAsync());
        await family.PaidAsync(6);
        await family.AssertMoneyAsync(100m, 6m);
    }
}
