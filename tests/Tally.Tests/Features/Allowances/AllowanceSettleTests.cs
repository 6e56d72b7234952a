using System.Net;
using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Tally.Features.Allowances;
using Tally.Jobs;
using Tally.Jobs.Queues;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.Allowances;

/// <summary>
/// One payment path: occurrences settled one delivery at a time (each a batch of one) and the same
/// occurrences settled as one batch (set-based, then one by one behind savepoints for the refused)
/// come to the same outcomes and the same rows.
/// </summary>
public class AllowanceSettleTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>A family with a daily 2.00 allowance started three days ago: three occurrences due.</summary>
    private sealed record Family(Guid ScheduleId, Guid GuardianAccount, Guid JuniorAccount, IReadOnlyList<DateTime> Due);

    private static async Task<Family> AddFamilyAsync(TallyApp app, decimal funds, string startAt)
    {
        var admin = app.Admin();
        var guardian = await admin.CreateUserAsync();
        var junior = await admin.CreateUserAsync(context: "WALLET");
        await admin.LinkAsync(guardian, junior);
        var guardianAccount = await admin.CreateAccountAsync(guardian);
        var juniorAccount = await admin.CreateAccountAsync(junior);
        await admin.DepositAsync(guardianAccount, funds);
        var created = await app.AsGuardian(guardian).PostJsonAsync($"/api/guardians/me/allowances/{junior}",
            new { amount = 2m, frequency = "DAILY", status = "ON", startAt }).ExpectAsync(HttpStatusCode.Created);
        await using var db = app.Db();
        var schedule = await db.AllowanceSchedules.AsNoTracking().SingleAsync(s => s.Id == created.GetProperty("id").GetGuid(), Ct);
        var due = Recurrence.Occurrences(schedule.Rule(), schedule.StartAt).TakeWhile(t => t <= DateTime.UtcNow).ToList();
        Assert.Equal(3, due.Count);
        return new Family(schedule.Id, guardianAccount, juniorAccount, due);
    }

    /// <summary>The three shapes: paid in full; funded for two of three; its oldest occurrence dead-lettered (FAILED) before.</summary>
    private static async Task<Family[]> ArrangeAsync(TallyApp app, string startAt)
    {
        Family[] families = [await AddFamilyAsync(app, 100m, startAt), await AddFamilyAsync(app, 5m, startAt), await AddFamilyAsync(app, 100m, startAt)];
        await using var scope = app.Services.CreateAsyncScope();
        var handler = scope.ServiceProvider.GetRequiredService<CreditAllowance>();
        await using var db = app.Db();
        await using var tx = await db.Database.BeginTransactionAsync(Ct);
        await handler.OnDeadLetteredAsync(db, new OccurrenceMessage(families[2].ScheduleId, families[2].Due[0]).ToQueueMessage(), "insufficient funds", Ct);
        await db.SaveChangesAsync(Ct);
        await tx.CommitAsync(Ct);
        return families;
    }

    /// <summary>Each family's deliveries: every occurrence, the first family's twice.</summary>
    private static List<OccurrenceMessage> Deliveries(Family[] families) =>
    [
        .. families.SelectMany((f, i) => f.Due.SelectMany(t => Enumerable.Repeat(new OccurrenceMessage(f.ScheduleId, t), i == 0 ? 2 : 1))),
    ];

    /// <summary>What a family's rows say, without the ids that differ between two families of one shape.</summary>
    private static async Task<string> RowsAsync(TallyApp app, Family family)
    {
        await using var db = app.Db();
        var credits = await db.AllowanceCredits.AsNoTracking().Where(c => c.ScheduleId == family.ScheduleId).OrderBy(c => c.RunAt).ToListAsync(Ct);
        var transfers = await db.LedgerTransfers.AsNoTracking().Where(t => t.DebitAccountId == family.GuardianAccount && t.Kind == "ALLOWANCE").ToListAsync(Ct);
        var schedule = await db.AllowanceSchedules.AsNoTracking().SingleAsync(s => s.Id == family.ScheduleId, Ct);
        var balances = await db.LedgerAccounts.AsNoTracking().Where(a => a.Id == family.GuardianAccount || a.Id == family.JuniorAccount)
            .OrderBy(a => a.Id == family.JuniorAccount).Select(a => a.BalanceMinor).ToListAsync(Ct);
        var events = await db.OutboxEvents.AsNoTracking().Where(e => e.SubjectId == family.ScheduleId.ToString()).OrderBy(e => e.Sequence).ToListAsync(Ct);
        var lines = new List<string>
        {
            $"schedule last {schedule.LastRunAt:O} next {schedule.NextRunAt:O}",
            $"balances {string.Join(" ", balances)}",
        };
        foreach (var c in credits)
        {
            var transfer = transfers.SingleOrDefault(t => t.Id == c.TransactionId);
            lines.Add($"credit {c.RunAt:O} {c.Outcome} {c.AmountMinor} {c.Currency} {c.Reason} transfer {transfer?.AmountMinor} {transfer?.CreditAccountId == family.JuniorAccount}");
        }
        Assert.Equal(credits.Count(c => c.TransactionId is not null), transfers.Count);
        foreach (var e in events)
        {
            var payload = JsonDocument.Parse(e.Payload).RootElement;
            var transferId = payload.TryGetProperty("transferId", out var id) ? id.GetGuid() : (Guid?)null;
            lines.Add($"event {e.EventType} {payload.GetProperty("runAt").GetDateTime().ToUniversalTime():O} {payload.GetProperty("amount").GetDecimal()} "
                + $"{(transferId is null ? payload.GetProperty("reason").GetString() : credits.Any(c => c.TransactionId == transferId) ? "transfer of its credit" : "unknown transfer")}");
        }
        return string.Join("\n", lines);
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Settle_OneDeliveryAtATimeOrAsOneBatch_ComesToTheSameOutcomesAndRows(string storage)
    {
        // API role only: no worker or producer settles anything behind the test's back.
        await using var app = await Apps.CreateAsync(storage, new Dictionary<string, string?> { ["Tally:Roles:0"] = "api" });
        var startAt = DateTime.UtcNow.AddDays(-3).AddMinutes(1).ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture);
        var alone = await ArrangeAsync(app, startAt);
        var batched = await ArrangeAsync(app, startAt);
        var now = DateTime.UtcNow;

        var aloneOutcomes = new List<JobOutcome>();
        foreach (var delivery in Deliveries(alone))
        {
            await using var db = app.Db();
            aloneOutcomes.AddRange(await CreditAllowance.SettleAsync(db, [delivery], now, NullLogger.Instance, Ct));
        }
        JobOutcome[] batchOutcomes;
        await using (var db = app.Db())
        {
            batchOutcomes = await CreditAllowance.SettleAsync(db, Deliveries(batched), now, NullLogger.Instance, Ct);
        }

        // The first family's six deliveries, the second's two paid and one short, the third's three.
        JobOutcome[] expected = [.. Enumerable.Repeat(JobOutcome.Done, 6 + 2), JobOutcome.RetryLater("insufficient funds"), .. Enumerable.Repeat(JobOutcome.Done, 3)];
        Assert.Equal(expected, aloneOutcomes);
        Assert.Equal(expected, batchOutcomes);
        for (var shape = 0; shape < 3; shape++)
        {
            Assert.Equal(await RowsAsync(app, alone[shape]), await RowsAsync(app, batched[shape]));
        }
        var paid = await RowsAsync(app, alone[1]);
        Assert.Equal(2, paid.Split('\n').Count(l => l.Contains(" PAID ", StringComparison.Ordinal)));
        Assert.Contains("balances 100 400", paid, StringComparison.Ordinal);
        var replayed = await RowsAsync(app, alone[2]);
        Assert.Equal(3, replayed.Split('\n').Count(l => l.Contains(" PAID ", StringComparison.Ordinal)));
        Assert.Contains("event AllowanceCreditFailed", replayed, StringComparison.Ordinal);
    }
}
