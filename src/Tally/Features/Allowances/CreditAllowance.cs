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
public sealed partial class CreditAllowance(TallyDb db, CreditBatcher batcher, TimeProvider clock, ILogger<CreditAllowance> logger) : IQueueHandler
{
    public const string CreditedEvent = "AllowanceCredited";
    public const string FailedEvent = "AllowanceCreditFailed";

    /// <summary>An occurrence that is owed and has both accounts: ready to pay.</summary>
    public sealed record Payable(OccurrenceMessage Occurrence, AllowanceSchedule Schedule, Guid From, Guid To);

    public sealed record PayResult(JobOutcome Outcome, bool Paid);

    public sealed record Facts(AllowanceSchedule Schedule, bool Settled, Guid? From, Guid? To);

    /// <summary>Compiled once: this read runs for every delivery, duplicates included.</summary>
    private static readonly Func<TallyDb, Guid, DateTime, Task<Facts?>> ReadFacts = EF.CompileAsyncQuery(
        (TallyDb ctx, Guid scheduleId, DateTime runAt) => ctx.AllowanceSchedules.AsNoTracking()
            .Where(s => s.Id == scheduleId)
            .Select(s => new Facts(
                s,
                ctx.AllowanceCredits.Any(c => c.ScheduleId == s.Id && c.RunAt == runAt && c.Outcome != CreditOutcome.Failed),
                ctx.LedgerAccounts.Where(a => a.OwnerId == s.GuardianId && a.Currency == s.Currency).Select(a => (Guid?)a.Id).FirstOrDefault(),
                ctx.LedgerAccounts.Where(a => a.OwnerId == s.JuniorId && a.Currency == s.Currency).Select(a => (Guid?)a.Id).FirstOrDefault()))
            .FirstOrDefault());

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

        // One read tells everything the decision needs; for a duplicate delivery it is the only
        // statement: a settled occurrence is acked without a write transaction.
        var facts = await ReadFacts(db, occurrence.ScheduleId, occurrence.RunAt);
        if (facts is { Settled: true })
        {
            return JobOutcome.Done;
        }
        var schedule = facts?.Schedule;
        if (schedule is null || schedule.DeletedAt is not null || schedule.Status != ScheduleStatus.On
            || occurrence.RunAt < schedule.ActiveFrom || !Recurrence.IsOccurrence(schedule.Rule(), occurrence.RunAt))
        {
            // Deleted, paused, or changed since the occurrence was enqueued: nothing is owed for it.
            LogNotOwed(logger, occurrence.ScheduleId, occurrence.RunAt);
            return JobOutcome.Done;
        }
        if (facts!.From is not { } from || facts.To is not { } to)
        {
            return JobOutcome.RetryLater(facts.From is null ? $"guardian has no {schedule.Currency} account" : $"junior has no {schedule.Currency} account");
        }
        var payable = new Payable(occurrence, schedule, from, to);
        if (batcher.Enabled)
        {
            return await batcher.PayAsync(payable, ct);
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
        LogPaid(logger, schedule.Id, occurrence.RunAt, schedule.AmountMinor, schedule.Currency);
        return JobOutcome.Done;
    }

    /// <summary>
    /// The money movement of one occurrence inside the caller's transaction: the ledger transfer, the
    /// credit claim, the schedule's advance and the event. <see cref="PayResult.Paid"/> false means
    /// nothing must be kept: the caller rolls back (or back to its savepoint).
    /// </summary>
    internal static async Task<PayResult> PayInTransactionAsync(TallyDb db, Payable payable, DateTime now, CancellationToken ct)
    {
        var (occurrence, schedule, from, to) = payable;
        // The caller's transaction (or savepoint) already bounds this work; EF's own savepoint around
        // SaveChanges would only add two round trips per credit.
        db.Database.AutoSavepointsEnabled = false;
        var transfer = await Ledger.Ledger.TransferAsync(db,
            new TransferRequest(from, to, schedule.AmountMinor, schedule.Currency, "ALLOWANCE", IdempotencyKey(occurrence)), now, ct);
        if (transfer is not TransferResult.Transferred { TransferId: var transferId })
        {
            return new PayResult(transfer switch
            {
                TransferResult.AlreadyDone => JobOutcome.Done, // paid by an earlier delivery that committed
                TransferResult.InsufficientFunds => JobOutcome.RetryLater("insufficient funds"),
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
        await AdvanceAsync(db, schedule, occurrence.RunAt, now, ct);
        Outbox.Add(db, CreditedEvent, schedule.Id.ToString(), new AllowanceCredited(schedule.Id, schedule.GuardianId, schedule.JuniorId,
            occurrence.RunAt, Currencies.FromMinor(schedule.AmountMinor, schedule.Currency), schedule.Currency, transferId), now);
        await db.SaveChangesAsync(ct);
        return new PayResult(JobOutcome.Done, Paid: true);
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
        await AdvanceAsync(deadLetterDb, schedule, occurrence.RunAt, now, ct);
        Outbox.Add(deadLetterDb, FailedEvent, schedule.Id.ToString(), new AllowanceCreditFailed(schedule.Id, schedule.GuardianId, schedule.JuniorId,
            occurrence.RunAt, Currencies.FromMinor(schedule.AmountMinor, schedule.Currency), schedule.Currency, reason), now);
        LogFailed(logger, schedule.Id, occurrence.RunAt, reason);
    }

    public static string IdempotencyKey(OccurrenceMessage occurrence) => occurrence.MessageId;

    /// <summary>Moves <c>last_run_at</c> and <c>next_run_at</c> forward past <paramref name="runAt"/>, never back.</summary>
    private static async Task AdvanceAsync(TallyDb db, AllowanceSchedule schedule, DateTime runAt, DateTime now, CancellationToken ct)
    {
        var next = Recurrence.NextAfter(schedule.Rule(), runAt);
        await db.Database.ExecuteSqlAsync(
            $"""
            UPDATE allowance_schedules
            SET last_run_at = CASE WHEN last_run_at IS NULL OR last_run_at < {runAt} THEN {runAt} ELSE last_run_at END,
                next_run_at = CASE WHEN next_run_at IS NOT NULL AND next_run_at <= {runAt} THEN {next} ELSE next_run_at END,
                updated_at = {now}
            WHERE id = {schedule.Id}
            """, ct);
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Allowance {ScheduleId} paid for {RunAt:O}: {AmountMinor} minor units {Currency}")]
    private static partial void LogPaid(ILogger logger, Guid scheduleId, DateTime runAt, long amountMinor, string currency);

    [LoggerMessage(Level = LogLevel.Information, Message = "Allowance {ScheduleId} occurrence {RunAt:O} is no longer owed (schedule off, deleted or changed)")]
    private static partial void LogNotOwed(ILogger logger, Guid scheduleId, DateTime runAt);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Allowance {ScheduleId} occurrence {RunAt:O} failed for good: {Reason}")]
    private static partial void LogFailed(ILogger logger, Guid scheduleId, DateTime runAt, string reason);
}
