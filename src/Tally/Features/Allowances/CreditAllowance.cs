using Microsoft.EntityFrameworkCore;
using Tally.Data;
using Tally.Features.Ledger;
using Tally.Jobs;
using Tally.Jobs.Outbox;
using Tally.Jobs.Queues;

namespace Tally.Features.Allowances;

/// <summary>
/// The worker on the allowance queue: pays one occurrence. In ONE transaction it moves the money
/// guardian -> junior through the ledger, records the credit, advances the schedule and stages the
/// event. Exactly once: the credit's unique (schedule_id, run_at) and the transfer's idempotency key
/// make a repeated delivery a no-op, so the queue may deliver as often as it likes.
/// </summary>
public sealed partial class CreditAllowance(IDbContextFactory<TallyDb> dbs, CreditBatcher batcher, TimeProvider clock, ILogger<CreditAllowance> logger) : IQueueHandler
{
    public const string CreditedEvent = "AllowanceCredited";
    public const string FailedEvent = "AllowanceCreditFailed";

    /// <summary>An occurrence that is owed and has both accounts: ready to pay.</summary>
    public sealed record Payable(OccurrenceMessage Occurrence, AllowanceSchedule Schedule, RecurrenceRule Rule, Guid From, Guid To);

    public sealed record PayResult(JobOutcome Outcome, bool Paid);

    public sealed record Facts(AllowanceSchedule Schedule, bool Settled, Guid? From, Guid? To);

    public async Task<JobOutcome> HandleAsync(QueueMessage message, CancellationToken ct)
    {
        if (OccurrenceMessage.TryParse(message) is not { } occurrence)
        {
            return JobOutcome.GiveUp("malformed allowance message");
        }
        var now = clock.GetUtcNow().UtcDateTime;
        if (occurrence.RunAt > now)
        {
            return JobOutcome.RetryLater("occurrence not due yet");
        }
        if (batcher.Enabled)
        {
            return await batcher.SettleAsync(occurrence, ct);
        }

        // The reads tell everything the decision needs; for a duplicate delivery they are the only
        // statements: a settled occurrence is acked without a write transaction.
        await using var db = await dbs.CreateDbContextAsync(ct);
        var facts = await ReadFactsAsync(db, [occurrence], ct);
        var decision = Decide(occurrence, facts.GetValueOrDefault(occurrence), logger);
        if (decision.Payable is not { } payable)
        {
            return decision.Outcome;
        }

        await using var tx = await db.Database.BeginTransactionAsync(ct);
        var result = await PayInTransactionAsync(db, payable, now, ct);
        if (!result.Paid)
        {
            return result.Outcome; // disposing the transaction rolls it back
        }
        try
        {
            await tx.CommitAsync(ct);
        }
        catch (Exception e) when (DbErrors.IsUniqueViolation(e))
        {
            return JobOutcome.Done; // a concurrent delivery committed the same occurrence first
        }
        LogPaid(logger, payable.Schedule.Id, occurrence.RunAt, payable.Schedule.AmountMinor, payable.Schedule.Currency);
        return JobOutcome.Done;
    }

    /// <summary>What a delivery comes to before any money moves: an outcome already, or a credit to pay.</summary>
    public sealed record Decision(JobOutcome Outcome, Payable? Payable);

    /// <summary>The one decision for both paths: settled, no longer owed, not payable yet, or payable.</summary>
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
    /// The facts of occurrences (one delivery's, or a batch's) in two reads, whatever their number: their schedules with both
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
    /// The money movement of one occurrence inside the caller's transaction: the ledger transfer, the
    /// credit claim, the schedule's advance and the event. <see cref="PayResult.Paid"/> false means
    /// nothing must be kept: the caller rolls back (or back to its savepoint).
    /// </summary>
    internal static async Task<PayResult> PayInTransactionAsync(TallyDb db, Payable payable, DateTime now, CancellationToken ct)
    {
        var (occurrence, schedule, _, _, _) = payable;
        // The caller's transaction (or savepoint) already bounds this work; EF's own savepoint around
        // SaveChanges would only add two round trips per credit.
        db.Database.AutoSavepointsEnabled = false;
        var transfer = await Ledger.Ledger.TransferAsync(db, TransferFor(payable), now, ct);
        if (transfer is not TransferResult.Transferred { TransferId: var transferId })
        {
            return new PayResult(transfer switch
            {
                TransferResult.AlreadyDone => JobOutcome.Done, // paid by an earlier delivery that committed
                TransferResult.InsufficientFunds => JobOutcome.RetryLater("insufficient funds"),
                TransferResult.BalanceLimitExceeded => JobOutcome.RetryLater("the junior's balance is at the ledger's ceiling"),
                _ => JobOutcome.RetryLater($"ledger refused the transfer: {transfer.GetType().Name}"),
            }, Paid: false);
        }

        // The claim: insert the credit, or turn an earlier FAILED record into PAID (a replayed dead letter).
        var claimed = await db.Database.ExecuteSqlAsync(
            $"""
            INSERT INTO allowance_credits (id, schedule_id, run_at, amount_minor, currency, outcome, transaction_id, reason, credited_at)
            VALUES ({Guid.CreateVersion7()}, {schedule.Id}, {occurrence.RunAt}, {schedule.AmountMinor}, {schedule.Currency}, {CreditOutcome.Paid}, {transferId}, {null as string}, {now})
            ON CONFLICT (schedule_id, run_at) DO UPDATE
                SET outcome = excluded.outcome, transaction_id = excluded.transaction_id, amount_minor = excluded.amount_minor,
                    reason = NULL, credited_at = excluded.credited_at
                WHERE allowance_credits.outcome = 'FAILED'
            """, ct);
        if (claimed == 0)
        {
            return new PayResult(JobOutcome.Done, Paid: false); // settled as PAID or SKIPPED already; the rollback undoes this transfer
        }
        await AdvanceAsync(db, schedule.Id, payable.Rule, occurrence.RunAt, now, ct);
        Outbox.Add(db, CreditedEvent, schedule.Id.ToString(), Credited(payable, transferId), now);
        await db.SaveChangesAsync(ct);
        return new PayResult(JobOutcome.Done, Paid: true);
    }

    /// <summary>
    /// Pays many occurrences inside the caller's transaction with a fixed number of set-based
    /// statements on PostgreSQL: the ledger's <see cref="Ledger.Ledger.TransferAllAsync"/>, one insert
    /// of all credit claims, one advance of all schedules, the events. The same writes, with the same
    /// conditions, as <see cref="PayInTransactionAsync"/> once per occurrence. All or nothing: false
    /// means one of them would be refused (or is settled already), and the caller rolls back and pays
    /// them one at a time to learn which. The occurrences must be distinct.
    /// </summary>
    internal static async Task<bool> PayAllInTransactionAsync(TallyDb db, IReadOnlyList<Payable> payables, DateTime now, CancellationToken ct)
    {
        if (!db.Database.IsNpgsql())
        {
            throw new NotSupportedException("Set-based credits need PostgreSQL; pay one at a time elsewhere.");
        }
        var transferIds = (await Ledger.Ledger.TransferAllAsync(db, payables.Select(TransferFor).ToList(), now, ct)).TransferIds;
        if (transferIds is null)
        {
            return false;
        }
        var claimed = await db.Database.ExecuteSqlAsync(
            $"""
            INSERT INTO allowance_credits (id, schedule_id, run_at, amount_minor, currency, outcome, transaction_id, reason, credited_at)
            SELECT v.id, v.schedule_id, v.run_at, v.amount, v.currency, {CreditOutcome.Paid}, v.transfer_id, NULL, {now}
            FROM unnest({payables.Select(_ => Guid.CreateVersion7()).ToArray()}, {payables.Select(p => p.Schedule.Id).ToArray()},
                        {payables.Select(p => p.Occurrence.RunAt).ToArray()}, {payables.Select(p => p.Schedule.AmountMinor).ToArray()},
                        {payables.Select(p => p.Schedule.Currency).ToArray()}, {transferIds.ToArray()})
                 AS v(id, schedule_id, run_at, amount, currency, transfer_id)
            ON CONFLICT (schedule_id, run_at) DO UPDATE
                SET outcome = excluded.outcome, transaction_id = excluded.transaction_id, amount_minor = excluded.amount_minor,
                    reason = NULL, credited_at = excluded.credited_at
                WHERE allowance_credits.outcome = 'FAILED'
            """, ct);
        if (claimed != payables.Count)
        {
            return false;
        }

        // One advance per schedule, to its latest occurrence paid here: the same end state as advancing once per occurrence.
        var advances = payables.GroupBy(p => p.Schedule.Id)
            .Select(g => g.MaxBy(p => p.Occurrence.RunAt)!)
            .Select(p => (p.Schedule.Id, p.Occurrence.RunAt, Next: Recurrence.NextAfter(p.Rule, p.Occurrence.RunAt)))
            .OrderBy(a => a.Id)
            .ToList();
        await db.Database.ExecuteSqlAsync(
            $"""
            WITH locked AS (
                SELECT id FROM allowance_schedules WHERE id = ANY({advances.Select(a => a.Id).ToArray()}) ORDER BY id FOR UPDATE)
            UPDATE allowance_schedules s
            SET last_run_at = CASE WHEN s.last_run_at IS NULL OR s.last_run_at < v.run_at THEN v.run_at ELSE s.last_run_at END,
                next_run_at = CASE WHEN s.next_run_at IS NOT NULL AND s.next_run_at <= v.run_at THEN v.next ELSE s.next_run_at END,
                updated_at = {now}
            FROM unnest({advances.Select(a => a.Id).ToArray()}, {advances.Select(a => a.RunAt).ToArray()}, {advances.Select(a => a.Next).ToArray()})
                 AS v(id, run_at, next), locked
            WHERE s.id = v.id AND locked.id = v.id
            """, ct);

        await Outbox.AddManyAsync(db, CreditedEvent, [.. payables.Select((p, i) => (p.Schedule.Id.ToString(), (object)Credited(p, transferIds[i])))], now, ct);
        return true;
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
        if (OccurrenceMessage.TryParse(message) is not { } occurrence)
        {
            return;
        }
        var schedule = await deadLetterDb.AllowanceSchedules.AsNoTracking().FirstOrDefaultAsync(s => s.Id == occurrence.ScheduleId, ct);
        if (schedule is null)
        {
            return;
        }
        var now = clock.GetUtcNow().UtcDateTime;
        var recorded = await deadLetterDb.Database.ExecuteSqlAsync(
            $"""
            INSERT INTO allowance_credits (id, schedule_id, run_at, amount_minor, currency, outcome, transaction_id, reason, credited_at)
            VALUES ({Guid.CreateVersion7()}, {schedule.Id}, {occurrence.RunAt}, {schedule.AmountMinor}, {schedule.Currency}, {CreditOutcome.Failed}, {null as Guid?}, {reason}, {now})
            ON CONFLICT (schedule_id, run_at) DO UPDATE SET reason = excluded.reason, credited_at = excluded.credited_at
                WHERE allowance_credits.outcome = 'FAILED'
            """, ct);
        if (recorded == 0)
        {
            return; // paid after all
        }
        await AdvanceAsync(deadLetterDb, schedule.Id, schedule.Rule(), occurrence.RunAt, now, ct);
        Outbox.Add(deadLetterDb, FailedEvent, schedule.Id.ToString(), new AllowanceCreditFailed(schedule.Id, schedule.GuardianId, schedule.JuniorId,
            occurrence.RunAt, Currencies.FromMinor(schedule.AmountMinor, schedule.Currency), schedule.Currency, reason), now);
        LogFailed(logger, schedule.Id, occurrence.RunAt, reason);
    }

    public static string IdempotencyKey(OccurrenceMessage occurrence) => occurrence.MessageId;

    /// <summary>Moves <c>last_run_at</c> and <c>next_run_at</c> forward past <paramref name="runAt"/>, never back.</summary>
    private static async Task AdvanceAsync(TallyDb db, Guid scheduleId, RecurrenceRule rule, DateTime runAt, DateTime now, CancellationToken ct)
    {
        var next = Recurrence.NextAfter(rule, runAt);
        await db.Database.ExecuteSqlAsync(
            $"""
            UPDATE allowance_schedules
            SET last_run_at = CASE WHEN last_run_at IS NULL OR last_run_at < {runAt} THEN {runAt} ELSE last_run_at END,
                next_run_at = CASE WHEN next_run_at IS NOT NULL AND next_run_at <= {runAt} THEN {next} ELSE next_run_at END,
                updated_at = {now}
            WHERE id = {scheduleId}
            """, ct);
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Allowance {ScheduleId} paid for {RunAt:O}: {AmountMinor} minor units {Currency}")]
    private static partial void LogPaid(ILogger logger, Guid scheduleId, DateTime runAt, long amountMinor, string currency);

    [LoggerMessage(Level = LogLevel.Information, Message = "Allowance {ScheduleId} occurrence {RunAt:O} is no longer owed (schedule off, deleted or changed)")]
    private static partial void LogNotOwed(ILogger logger, Guid scheduleId, DateTime runAt);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Allowance {ScheduleId} occurrence {RunAt:O} failed for good: {Reason}")]
    private static partial void LogFailed(ILogger logger, Guid scheduleId, DateTime runAt, string reason);
}
