using Microsoft.EntityFrameworkCore;
using Tally.Data;
using Tally.Features.Ledger;
using Tally.Jobs;
using Tally.Jobs.Outbox;
using Tally.Jobs.Queues;

namespace Tally.Features.Allowances;

/// <summary>
/// The worker on the allowance queue: pays occurrences. In ONE transaction it moves the money
/// guardian -> junior through the ledger, records the credit, advances the schedule and stages the
/// event. Exactly once: the credit's unique (schedule_id, run_at) and the transfer's idempotency key
/// make a repeated delivery a no-op, so the queue may deliver as often as it likes. One payment path:
/// a delivery settled on its own is a batch of one (<see cref="SettleAsync"/>), and a batch's refused
/// credit is found by paying its occurrences one by one with the same statements.
/// </summary>
public sealed partial class CreditAllowance(IDbContextFactory<TallyDb> dbs, CreditBatcher batcher, TimeProvider clock, ILogger<CreditAllowance> logger) : IQueueHandler
{
    public const string CreditedEvent = "AllowanceCredited";
    public const string FailedEvent = "AllowanceCreditFailed";

    /// <summary>An occurrence that is owed and has both accounts: ready to pay.</summary>
    public sealed record Payable(OccurrenceMessage Occurrence, AllowanceSchedule Schedule, RecurrenceRule Rule, Guid From, Guid To);

    public sealed record Facts(AllowanceSchedule Schedule, bool Settled, Guid? From, Guid? To);

    public async Task<JobOutcome> HandleAsync(QueueMessage message, CancellationToken ct)
    {
        if (message.Id.StartsWith(OccurrencePage.IdPrefix, StringComparison.Ordinal))
        {
            return OccurrencePage.TryParse(message) is { } page
                ? await HandlePageAsync(page, message.Attempt, ct)
                : JobOutcome.GiveUp("malformed allowance page");
        }
        if (OccurrenceMessage.TryParse(message) is not { } occurrence)
        {
            return JobOutcome.GiveUp("malformed allowance message");
        }
        return (await SettleDueAsync([occurrence], ct))[0];
    }

    /// <summary>
    /// A page's occurrences are settled together; each one not simply done leaves the page as a
    /// message of its own (its own id, the page's attempt), to be retried or dead-lettered alone.
    /// </summary>
    private async Task<JobOutcome> HandlePageAsync(OccurrencePage page, int attempt, CancellationToken ct)
    {
        var outcomes = await SettleDueAsync(page.Occurrences, ct);
        var parts = new List<PartOutcome>();
        for (var i = 0; i < outcomes.Length; i++)
        {
            if (outcomes[i] is not JobOutcome.DoneOutcome)
            {
                parts.Add(new PartOutcome(page.Occurrences[i].ToQueueMessage() with { Attempt = attempt }, outcomes[i]));
            }
        }
        return JobOutcome.ByPart(parts);
    }

    /// <summary>Each occurrence's outcome, in order: not due yet, or settled in a batch (<see cref="CreditBatcher"/>) or on its own.</summary>
    private async Task<JobOutcome[]> SettleDueAsync(IReadOnlyList<OccurrenceMessage> occurrences, CancellationToken ct)
    {
        var now = clock.GetUtcNow().UtcDateTime;
        var outcomes = new JobOutcome[occurrences.Count];
        var due = new List<OccurrenceMessage>(occurrences.Count);
        for (var i = 0; i < occurrences.Count; i++)
        {
            if (occurrences[i].RunAt > now)
            {
                outcomes[i] = JobOutcome.RetryLater("occurrence not due yet");
            }
            else
            {
                due.Add(occurrences[i]);
            }
        }
        if (due.Count == 0)
        {
            return outcomes;
        }
        JobOutcome[] settled;
        if (batcher.Enabled)
        {
            settled = await batcher.SettleAsync(due, ct);
        }
        else
        {
            await using var db = await dbs.CreateDbContextAsync(ct);
            settled = await SettleAsync(db, due, now, logger, ct);
        }
        for (int i = 0, d = 0; i < outcomes.Length; i++)
        {
            if (outcomes[i] is null)
            {
                outcomes[i] = settled[d++];
            }
        }
        return outcomes;
    }

    /// <summary>
    /// Settles occurrences, a batch's or one delivery's, and answers each one's outcome in order. Two
    /// reads give the facts of all of them, whatever their number; for duplicates they are the only
    /// statements (a settled occurrence is acked without a write transaction). Each occurrence is
    /// decided once (a second delivery of it shares the first's outcome), and the payable ones are
    /// paid together (<see cref="PayAsync"/>).
    /// </summary>
    internal static async Task<JobOutcome[]> SettleAsync(TallyDb db, IReadOnlyList<OccurrenceMessage> occurrences, DateTime now, ILogger logger, CancellationToken ct)
    {
        var facts = await ReadFactsAsync(db, occurrences.ToHashSet(), ct);
        var outcomes = new JobOutcome[occurrences.Count];
        var payables = new List<Payable>();
        var first = new Dictionary<OccurrenceMessage, int>();
        for (var i = 0; i < occurrences.Count; i++)
        {
            if (!first.TryAdd(occurrences[i], i))
            {
                continue;
            }
            var decision = Decide(occurrences[i], facts.GetValueOrDefault(occurrences[i]), logger);
            outcomes[i] = decision.Outcome;
            if (decision.Payable is { } payable)
            {
                payables.Add(payable);
            }
        }
        if (payables.Count > 0)
        {
            // Schedules in id order, as the producer locks them, and each schedule's occurrences oldest first.
            payables.Sort((a, b) => a.Schedule.Id != b.Schedule.Id ? a.Schedule.Id.CompareTo(b.Schedule.Id) : a.Occurrence.RunAt.CompareTo(b.Occurrence.RunAt));
            var paid = await PayAsync(db, payables, now, logger, ct);
            for (var p = 0; p < payables.Count; p++)
            {
                outcomes[first[payables[p].Occurrence]] = paid[p];
            }
        }
        for (var i = 0; i < occurrences.Count; i++)
        {
            outcomes[i] = outcomes[first[occurrences[i]]];
        }
        return outcomes;
    }

    /// <summary>What a delivery comes to before any money moves: an outcome already, or a credit to pay.</summary>
    public sealed record Decision(JobOutcome Outcome, Payable? Payable);

    /// <summary>The one decision for every delivery: settled, no longer owed, not payable yet, or payable.</summary>
    internal static Decision Decide(OccurrenceMessage occurrence, Facts? facts, ILogger logger)
    {
        if (facts is { Settled: true })
        {
            return new Decision(JobOutcome.Done, null);
        }
        var schedule = facts?.Schedule;
        var rule = schedule?.Rule();
        if (schedule is null || rule is null || schedule.DeletedAt is not null || schedule.Status != ScheduleStatus.On
            || occurrence.RunAt < schedule.ActiveFrom || !Recurrence.IsOccurrence(rule, occurrence.RunAt))
        {
            // Deleted, paused, or changed since the occurrence was enqueued: nothing is owed for it.
            LogNotOwed(logger, occurrence.ScheduleId, occurrence.RunAt);
            return new Decision(JobOutcome.Done, null);
        }
        if (facts!.From is not { } from || facts.To is not { } to)
        {
            return new Decision(JobOutcome.RetryLater(facts.From is null ? $"guardian has no {schedule.Currency} account" : $"junior has no {schedule.Currency} account"), null);
        }
        return new Decision(JobOutcome.Done, new Payable(occurrence, schedule, rule, from, to));
    }

    /// <summary>
    /// The facts of occurrences in two reads, whatever their number: their schedules with both
    /// accounts, and which of them are settled already. Occurrences of unknown schedules are absent.
    /// </summary>
    internal static async Task<Dictionary<OccurrenceMessage, Facts>> ReadFactsAsync(TallyDb db, IReadOnlyCollection<OccurrenceMessage> occurrences, CancellationToken ct)
    {
        var scheduleIds = occurrences.Select(o => o.ScheduleId).Distinct().ToList();
        var runAts = occurrences.Select(o => o.RunAt).Distinct().ToList();
        var schedules = await db.AllowanceSchedules.AsNoTracking()
            .Where(s => scheduleIds.Contains(s.Id))
            .Select(s => new
            {
                Schedule = s,
                From = db.LedgerAccounts.Where(a => a.OwnerId == s.GuardianId && a.Currency == s.Currency).Select(a => (Guid?)a.Id).FirstOrDefault(),
                To = db.LedgerAccounts.Where(a => a.OwnerId == s.JuniorId && a.Currency == s.Currency).Select(a => (Guid?)a.Id).FirstOrDefault(),
            })
            .ToDictionaryAsync(s => s.Schedule.Id, ct);
        var settled = (await db.AllowanceCredits.AsNoTracking()
            .Where(c => scheduleIds.Contains(c.ScheduleId) && runAts.Contains(c.RunAt) && c.Outcome != CreditOutcome.Failed)
            .Select(c => new { c.ScheduleId, c.RunAt })
            .ToListAsync(ct))
            .Select(c => new OccurrenceMessage(c.ScheduleId, c.RunAt))
            .ToHashSet();
        var facts = new Dictionary<OccurrenceMessage, Facts>();
        foreach (var occurrence in occurrences)
        {
            if (schedules.TryGetValue(occurrence.ScheduleId, out var s))
            {
                facts[occurrence] = new Facts(s.Schedule, settled.Contains(occurrence), s.From, s.To);
            }
        }
        return facts;
    }

    /// <summary>
    /// Pays distinct occurrences (sorted as <see cref="SettleAsync"/> sorts them) in ONE transaction
    /// with a fixed number of set-based statements (<see cref="PayInTransactionAsync"/>). Should one of
    /// them be refused, or settled meanwhile, that transaction is rolled back and they are paid one at
    /// a time, each behind a savepoint with the same statements, so a refused credit gets its own
    /// outcome and leaves the others be. Nothing is acked before its transaction commits.
    /// </summary>
    internal static async Task<JobOutcome[]> PayAsync(TallyDb db, IReadOnlyList<Payable> payables, DateTime now, ILogger logger, CancellationToken ct)
    {
        await using (var tx = await db.Database.BeginTransactionAsync(ct))
        {
            if (await PayInTransactionAsync(db, payables, now, ct) is not { } refusal)
            {
                await tx.CommitAsync(ct);
                LogPaid(logger, payables);
                return [.. payables.Select(_ => JobOutcome.Done)];
            }
            if (payables.Count == 1)
            {
                return [refusal]; // its own outcome already; disposing the transaction rolls it back
            }
        }
        LogBatchSplit(logger, payables.Count);
        var outcomes = new JobOutcome[payables.Count];
        var paid = new List<Payable>();
        await using (var tx = await db.Database.BeginTransactionAsync(ct))
        {
            for (var i = 0; i < payables.Count; i++)
            {
                await tx.CreateSavepointAsync("credit", ct);
                if (await PayInTransactionAsync(db, [payables[i]], now, ct) is { } refused)
                {
                    await tx.RollbackToSavepointAsync("credit", ct);
                    outcomes[i] = refused;
                }
                else
                {
                    await tx.ReleaseSavepointAsync("credit", ct);
                    outcomes[i] = JobOutcome.Done;
                    paid.Add(payables[i]);
                }
            }
            await tx.CommitAsync(ct);
        }
        LogPaid(logger, paid);
        return outcomes;
    }

    /// <summary>
    /// The money movement of occurrences inside the caller's transaction, in one statement each
    /// whatever their number: the ledger's transfers (<see cref="Ledger.Ledger.TransferAllAsync"/>), the
    /// credit claims, the schedules' advance and the events. Null when all are paid; otherwise
    /// nothing must be kept (the caller rolls back, or back to its savepoint) and the answer is what
    /// the refusal comes to: for one occurrence, its delivery's outcome.
    /// </summary>
    private static async Task<JobOutcome?> PayInTransactionAsync(TallyDb db, IReadOnlyList<Payable> payables, DateTime now, CancellationToken ct)
    {
        var transfers = await Ledger.Ledger.TransferAllAsync(db, [.. payables.Select(TransferFor)], now, ct);
        if (transfers.TransferIds is not { } transferIds)
        {
            return transfers.Refusal switch
            {
                TransferResult.AlreadyDone => JobOutcome.Done, // paid by an earlier delivery that committed
                TransferResult.InsufficientFunds => JobOutcome.RetryLater("insufficient funds"),
                TransferResult.BalanceLimitExceeded => JobOutcome.RetryLater("the junior's balance is at the ledger's ceiling"),
                var refused => JobOutcome.RetryLater($"ledger refused the transfer: {refused?.GetType().Name}"),
            };
        }
        var claimed = await db.Database.ExecuteAsync(AllowanceSql.For(db.Database).ClaimCredits, [now],
            [payables.Select(_ => Guid.CreateVersion7()).ToArray(), payables.Select(p => p.Schedule.Id).ToArray(), payables.Select(p => p.Occurrence.RunAt).ToArray(),
             payables.Select(p => p.Schedule.AmountMinor).ToArray(), payables.Select(p => p.Schedule.Currency).ToArray(), transferIds.ToArray()], ct);
        if (claimed != payables.Count)
        {
            return JobOutcome.Done; // settled as PAID or SKIPPED already; the rollback undoes these transfers
        }
        await AdvanceAsync(db, [.. payables.Select(p => (p.Schedule.Id, p.Rule, p.Occurrence.RunAt))], now, ct);
        await Outbox.AddManyAsync(db, CreditedEvent, [.. payables.Select((p, i) => (p.Schedule.Id.ToString(), (object)Credited(p, transferIds[i])))], now, ct);
        return null;
    }

    private static TransferRequest TransferFor(Payable payable) =>
        new(payable.From, payable.To, payable.Schedule.AmountMinor, payable.Schedule.Currency, "ALLOWANCE", IdempotencyKey(payable.Occurrence));

    private static AllowanceCredited Credited(Payable payable, Guid transferId)
    {
        var (occurrence, schedule, _, _, _) = payable;
        return new AllowanceCredited(schedule.Id, schedule.GuardianId, schedule.JuniorId,
            occurrence.RunAt, Currencies.FromMinor(schedule.AmountMinor, schedule.Currency), schedule.Currency, transferId);
    }

    /// <summary>
    /// The occurrence used up its retries: record it FAILED with the reason, and let the schedule
    /// move on to its next occurrence. Runs in the dead-letter row's transaction.
    /// </summary>
    public async Task OnDeadLetteredAsync(TallyDb deadLetterDb, QueueMessage message, string reason, CancellationToken ct)
    {
        // A page is dead-lettered whole only when it failed as a whole (the database gone through every retry).
        var occurrences = OccurrencePage.TryParse(message)?.Occurrences ?? (OccurrenceMessage.TryParse(message) is { } one ? [one] : []);
        foreach (var occurrence in occurrences)
        {
            await RecordFailedAsync(deadLetterDb, occurrence, reason, ct);
        }
    }

    private async Task RecordFailedAsync(TallyDb deadLetterDb, OccurrenceMessage occurrence, string reason, CancellationToken ct)
    {
        var schedule = await deadLetterDb.AllowanceSchedules.AsNoTracking().FirstOrDefaultAsync(s => s.Id == occurrence.ScheduleId, ct);
        if (schedule is null)
        {
            return;
        }
        var now = clock.GetUtcNow().UtcDateTime;
        var recorded = await deadLetterDb.Database.ExecuteSqlRawAsync(AllowanceSql.For(deadLetterDb.Database).RecordFailedCredit,
            [Guid.CreateVersion7(), schedule.Id, occurrence.RunAt, schedule.AmountMinor, schedule.Currency, reason, now], ct);
        if (recorded == 0)
        {
            return; // paid after all
        }
        await AdvanceAsync(deadLetterDb, [(schedule.Id, schedule.Rule(), occurrence.RunAt)], now, ct);
        Outbox.Add(deadLetterDb, FailedEvent, schedule.Id.ToString(), new AllowanceCreditFailed(schedule.Id, schedule.GuardianId, schedule.JuniorId,
            occurrence.RunAt, Currencies.FromMinor(schedule.AmountMinor, schedule.Currency), schedule.Currency, reason), now);
        LogFailed(logger, schedule.Id, occurrence.RunAt, reason);
    }

    public static string IdempotencyKey(OccurrenceMessage occurrence) => occurrence.MessageId;

    /// <summary>
    /// Moves each schedule's <c>last_run_at</c> and <c>next_run_at</c> forward past its latest
    /// occurrence here, never back, in one statement: the same end state as advancing once per occurrence.
    /// </summary>
    private static async Task AdvanceAsync(TallyDb db, IReadOnlyList<(Guid ScheduleId, RecurrenceRule Rule, DateTime RunAt)> occurrences, DateTime now, CancellationToken ct)
    {
        var advances = occurrences.GroupBy(o => o.ScheduleId).Select(g => g.MaxBy(o => o.RunAt)).ToList();
        await db.Database.ExecuteAsync(AllowanceSql.For(db.Database).AdvanceSchedules, [now],
            [advances.Select(a => a.ScheduleId).ToArray(), advances.Select(a => a.RunAt).ToArray(),
             advances.Select(a => Recurrence.NextAfter(a.Rule, a.RunAt)).ToArray()], ct);
    }

    private static void LogPaid(ILogger logger, IReadOnlyList<Payable> paid)
    {
        foreach (var (occurrence, schedule, _, _, _) in paid)
        {
            LogPaid(logger, schedule.Id, occurrence.RunAt, schedule.AmountMinor, schedule.Currency);
        }
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Allowance {ScheduleId} paid for {RunAt:O}: {AmountMinor} minor units {Currency}")]
    private static partial void LogPaid(ILogger logger, Guid scheduleId, DateTime runAt, long amountMinor, string currency);

    [LoggerMessage(Level = LogLevel.Information, Message = "A batch of {Count} allowance credits had a refusal; paying them one by one")]
    private static partial void LogBatchSplit(ILogger logger, int count);

    [LoggerMessage(Level = LogLevel.Information, Message = "Allowance {ScheduleId} occurrence {RunAt:O} is no longer owed (schedule off, deleted or changed)")]
    private static partial void LogNotOwed(ILogger logger, Guid scheduleId, DateTime runAt);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Allowance {ScheduleId} occurrence {RunAt:O} failed for good: {Reason}")]
    private static partial void LogFailed(ILogger logger, Guid scheduleId, DateTime runAt, string reason);
}
