using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Tally.Data;
using Tally.Features.Ledger;
using Tally.Jobs.Queues;

namespace Tally.Features.Allowances;

/// <summary>
/// A dead allowance message, decoded: the occurrence it carried (read by the worker's own parser,
/// <see cref="OccurrenceMessage.TryParse"/>) and its schedule's junior and amount as they are now
/// (null when the schedule is gone). <see cref="Schedule"/> is the schedule's admin page.
/// </summary>
public sealed record DeadAllowanceView(Guid ScheduleId, Guid? GuardianId, Guid? JuniorId, DateTime Occurrence, decimal? Amount, string? Currency, string Schedule);

/// <summary>
/// Allowance letters decoded for the dead-letter API and console, under <c>allowance</c>.
/// </summary>
public sealed class AllowanceDeadLetters(IOptions<AllowanceOptions> options) : IDeadLetterReader
{
    public const string PropertyName = "allowance";

    public string Property => PropertyName;

    /// <summary>The decoded occurrence of a dead letter listed by the dead-letter API, or null for any other letter.</summary>
    public static DeadAllowanceView? Of(DeadLetterView letter) => letter.Decoded.GetValueOrDefault(PropertyName) as DeadAllowanceView;

    public async Task<IReadOnlyDictionary<Guid, object>> DecodeAsync(TallyDb db, IReadOnlyList<DeadLetter> letters, CancellationToken ct) =>
        (await DecodeAsync(db, options.Value.QueueName, letters, ct)).ToDictionary(d => d.Key, d => (object)d.Value);

    /// <summary>
    /// The allowance letters among <paramref name="letters"/> decoded, by letter id, with one read of
    /// their schedules. A letter whose body the worker cannot parse has no entry (it was dead-lettered
    /// as malformed; its body says the rest).
    /// </summary>
    public static async Task<Dictionary<Guid, DeadAllowanceView>> DecodeAsync(
        TallyDb db, string allowanceQueue, IEnumerable<DeadLetter> letters, CancellationToken ct)
    {
        var occurrences = letters.Where(d => d.Queue == allowanceQueue)
            .Select(d => (d.Id, Occurrence: OccurrenceMessage.TryParse(new QueueMessage(d.MessageId, d.Body))))
            .Where(d => d.Occurrence is not null).ToList();
        if (occurrences.Count == 0)
        {
            return [];
        }
        var scheduleIds = occurrences.Select(o => o.Occurrence!.ScheduleId).Distinct().ToList();
        var schedules = await db.AllowanceSchedules.AsNoTracking().Where(s => scheduleIds.Contains(s.Id))
            .Select(s => new { s.Id, s.GuardianId, s.JuniorId, s.AmountMinor, s.Currency }).ToDictionaryAsync(s => s.Id, ct);
        return occurrences.ToDictionary(o => o.Id, o =>
        {
            var occurrence = o.Occurrence!;
            var schedule = schedules.GetValueOrDefault(occurrence.ScheduleId);
            return new DeadAllowanceView(
                occurrence.ScheduleId, schedule?.GuardianId, schedule?.JuniorId, occurrence.RunAt,
                schedule is null ? null : Currencies.FromMinor(schedule.AmountMinor, schedule.Currency), schedule?.Currency,
                $"/api/admin/allowances/{occurrence.ScheduleId}");
        });
    }
}
