namespace Tally.Features.Allowances;

public enum Frequency
{
    Daily,
    Weekly,
    Monthly,
}

/// <summary>
/// An allowance's recurrence with RFC 5545 RRULE semantics: DTSTART is <see cref="StartLocal"/> in
/// <see cref="Zone"/>, FREQ/INTERVAL/BYDAY/BYMONTHDAY as given, week start Monday.
/// </summary>
public sealed record RecurrenceRule(
    Frequency Frequency,
    int Interval,
    IReadOnlyList<DayOfWeek> ByDay,
    int? ByMonthDay,
    DateTime StartLocal,
    TimeZoneInfo Zone)
{
    public DateTime StartUtc => Recurrence.ToUtc(StartLocal, Zone);
}

/// <summary>
/// Pure occurrence arithmetic, no I/O. Occurrences keep the wall-clock time of DTSTART across
/// DST changes. As RFC 5545 says, a local time that does not exist (the spring-forward gap) is read
/// with the UTC offset from before the gap, so 02:30 becomes 03:30; an ambiguous time (fall back)
/// is the first of the two. A day that does not exist in a month (the 31st in April) is skipped;
/// <c>BYMONTHDAY=-1</c> is the last day of every month. DTSTART is an occurrence only if it matches the rule.
/// </summary>
public static class Recurrence
{
    /// <summary>The first occurrence at or after <paramref name="fromUtc"/>, or null if there is none within 100 years.</summary>
    public static DateTime? FirstOnOrAfter(RecurrenceRule rule, DateTime fromUtc)
    {
        foreach (var occurrence in Occurrences(rule, fromUtc))
        {
            return occurrence;
        }
        return null;
    }

    /// <summary>The first occurrence strictly after <paramref name="afterUtc"/>.</summary>
    public static DateTime? NextAfter(RecurrenceRule rule, DateTime afterUtc) => FirstOnOrAfter(rule, afterUtc.AddTicks(1));

    public static bool IsOccurrence(RecurrenceRule rule, DateTime utc) => FirstOnOrAfter(rule, utc) == utc;

    /// <summary>Occurrences at or after <paramref name="fromUtc"/>, in order (UTC, Kind = Utc).</summary>
    public static IEnumerable<DateTime> Occurrences(RecurrenceRule rule, DateTime fromUtc)
    {
        fromUtc = DateTime.SpecifyKind(fromUtc, DateTimeKind.Utc);
        var startUtc = rule.StartUtc;
        if (fromUtc < startUtc)
        {
            fromUtc = startUtc;
        }
        // Start a period early: a local date can map to a UTC instant on the previous day.
        var fromLocal = TimeZoneInfo.ConvertTimeFromUtc(fromUtc, rule.Zone).AddDays(-2);
        var limit = fromLocal.AddYears(100);
        foreach (var local in LocalCandidates(rule, fromLocal))
        {
            if (local > limit)
            {
                yield break;
            }
            if (local < rule.StartLocal)
            {
                continue;
            }
            var utc = ToUtc(local, rule.Zone);
            if (utc >= fromUtc)
            {
                yield return utc;
            }
        }
    }

    /// <summary>Local date-times the rule generates, in order, from the period containing <paramref name="fromLocal"/>.</summary>
    private static IEnumerable<DateTime> LocalCandidates(RecurrenceRule rule, DateTime fromLocal)
    {
        var time = rule.StartLocal.TimeOfDay;
        var interval = Math.Max(1, rule.Interval);
        switch (rule.Frequency)
        {
            case Frequency.Daily:
                {
                    var first = rule.StartLocal.Date;
                    var skip = Math.Max(0, (fromLocal.Date - first).Days / interval);
                    for (var day = first.AddDays((double)skip * interval); ; day = day.AddDays(interval))
                    {
                        yield return day + time;
                    }
                }
            case Frequency.Weekly:
                {
                    var days = (rule.ByDay.Count > 0 ? rule.ByDay : [rule.StartLocal.DayOfWeek])
                        .Select(d => ((int)d + 6) % 7) // Monday = 0
                        .Distinct().Order().ToList();
                    var firstWeek = MondayOf(rule.StartLocal.Date);
                    var skip = Math.Max(0, (MondayOf(fromLocal.Date) - firstWeek).Days / 7 / interval);
                    for (var week = firstWeek.AddDays(7.0 * skip * interval); ; week = week.AddDays(7.0 * interval))
                    {
                        foreach (var offset in days)
                        {
                            yield return week.AddDays(offset) + time;
                        }
                    }
                }
            case Frequency.Monthly:
                {
                    var monthDay = rule.ByMonthDay ?? rule.StartLocal.Day;
                    var first = new DateTime(rule.StartLocal.Year, rule.StartLocal.Month, 1);
                    var monthsApart = ((fromLocal.Year - first.Year) * 12) + fromLocal.Month - first.Month;
                    var skip = Math.Max(0, monthsApart / interval);
                    for (var month = first.AddMonths(skip * interval); ; month = month.AddMonths(interval))
                    {
                        var length = DateTime.DaysInMonth(month.Year, month.Month);
                        var day = monthDay > 0 ? monthDay : length + 1 + monthDay;
                        if (day >= 1 && day <= length)
                        {
                            yield return month.AddDays(day - 1) + time;
                        }
                    }
                }
            default:
                throw new ArgumentOutOfRangeException(nameof(rule), rule.Frequency, "Unknown frequency.");
        }
    }

    private static DateTime MondayOf(DateTime date) => date.AddDays(-(((int)date.DayOfWeek + 6) % 7));

    /// <summary>A wall-clock time in a zone as UTC, resolving gaps and overlaps as RFC 5545 does.</summary>
    public static DateTime ToUtc(DateTime local, TimeZoneInfo zone)
    {
        local = DateTime.SpecifyKind(local, DateTimeKind.Unspecified);
        TimeSpan offset;
        if (zone.IsInvalidTime(local))
        {
            // In the gap: use the offset in force before it (no zone has two transitions within six hours).
            offset = zone.GetUtcOffset(local.AddHours(-6));
            return DateTime.SpecifyKind(local - offset, DateTimeKind.Utc);
        }
        offset = zone.IsAmbiguousTime(local) ? zone.GetAmbiguousTimeOffsets(local).Max() : zone.GetUtcOffset(local);
        return DateTime.SpecifyKind(local - offset, DateTimeKind.Utc);
    }
}
