namespace Tally.Features.Allowances;

/// <summary>How often a schedule recurs. Written <c>DAILY</c>, <c>WEEKLY</c>, <c>MONTHLY</c> in the API and the database (<see cref="Frequencies"/>).</summary>
public enum Frequency
{
    Daily,
    Weekly,
    Monthly,
}

/// <summary>The one spelling of a <see cref="Frequency"/> outside the code: RFC 5545's FREQ value.</summary>
public static class Frequencies
{
    /// <summary>The codes the API accepts, in order.</summary>
    public const string Daily = "DAILY", Weekly = "WEEKLY", Monthly = "MONTHLY";

    /// <summary>For messages: "DAILY, WEEKLY or MONTHLY".</summary>
    public const string Listed = "DAILY, WEEKLY or MONTHLY";

    public static string Code(this Frequency frequency) => frequency switch
    {
        Frequency.Daily => Daily,
        Frequency.Weekly => Weekly,
        Frequency.Monthly => Monthly,
        _ => throw new ArgumentOutOfRangeException(nameof(frequency), frequency, "Unknown frequency."),
    };

    /// <summary>The frequency a code names (exactly, upper case), or null.</summary>
    public static Frequency? Parse(string? code) => code switch
    {
        Daily => Frequency.Daily,
        Weekly => Frequency.Weekly,
        Monthly => Frequency.Monthly,
        _ => null,
    };
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
/// Total over the whole <see cref="DateTime"/> range: near its ends a sequence simply stops, it never throws.
/// </summary>
public static class Recurrence
{
    /// <summary>
    /// How far an open-ended search looks. Only a monthly rule can have long gaps (a day that exists
    /// in few of the months it lands on), and its months repeat after at most 12 intervals: with
    /// intervals up to 366 months every gap is shorter than 366 years. A rule with no occurrence
    /// within this horizon has none at all (the 31st of every 12th month, starting in April).
    /// </summary>
    public const int HorizonYears = 400;

    /// <summary>The first occurrence at or after <paramref name="fromUtc"/>, or null if there is none within <see cref="HorizonYears"/>.</summary>
    public static DateTime? FirstOnOrAfter(RecurrenceRule rule, DateTime fromUtc)
    {
        foreach (var occurrence in Occurrences(rule, fromUtc))
        {
            return occurrence;
        }
        return null;
    }

    /// <summary>The first occurrence strictly after <paramref name="afterUtc"/>.</summary>
    public static DateTime? NextAfter(RecurrenceRule rule, DateTime afterUtc) =>
        afterUtc.Ticks < DateTime.MaxValue.Ticks ? FirstOnOrAfter(rule, afterUtc.AddTicks(1)) : null;

    public static bool IsOccurrence(RecurrenceRule rule, DateTime utc) => FirstOnOrAfter(rule, utc) == utc;

    /// <summary>Occurrences at or after <paramref name="fromUtc"/>, in order (UTC, Kind = Utc), up to <see cref="HorizonYears"/> on.</summary>
    public static IEnumerable<DateTime> Occurrences(RecurrenceRule rule, DateTime fromUtc) =>
        Occurrences(rule, fromUtc, fromUtc.Year <= DateTime.MaxValue.Year - HorizonYears ? fromUtc.AddYears(HorizonYears) : DateTime.MaxValue);

    /// <summary>
    /// Occurrences from <paramref name="fromUtc"/> through <paramref name="untilUtc"/> (both inclusive), in
    /// order (UTC, Kind = Utc). The work is proportional to the periods of the rule within the window, not before it.
    /// </summary>
    public static IEnumerable<DateTime> Occurrences(RecurrenceRule rule, DateTime fromUtc, DateTime untilUtc)
    {
        fromUtc = DateTime.SpecifyKind(fromUtc, DateTimeKind.Utc);
        untilUtc = DateTime.SpecifyKind(untilUtc, DateTimeKind.Utc);
        var startUtc = rule.StartUtc;
        if (fromUtc < startUtc)
        {
            fromUtc = startUtc;
        }
        if (fromUtc > untilUtc)
        {
            yield break;
        }
        // Start a period early and stop a little late: a local date can map to a UTC instant on the
        // day before or after (offsets span -12:00 to +14:00).
        var fromLocal = AddDaysClamped(TimeZoneInfo.ConvertTimeFromUtc(fromUtc, rule.Zone), -2);
        var untilLocal = AddDaysClamped(TimeZoneInfo.ConvertTimeFromUtc(untilUtc, rule.Zone), 2);
        foreach (var local in LocalCandidates(rule, fromLocal))
        {
            if (local > untilLocal)
            {
                yield break;
            }
            if (local < rule.StartLocal)
            {
                continue;
            }
            var utc = ToUtc(local, rule.Zone);
            if (utc >= fromUtc && utc <= untilUtc)
            {
                yield return utc;
            }
        }
    }

    /// <summary>Local date-times the rule generates, in order, from the period containing <paramref name="fromLocal"/>; they end where the calendar does.</summary>
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
                        if (!Fits(day, time))
                        {
                            yield break;
                        }
                        yield return day + time;
                        if (!CanAddDays(day, interval))
                        {
                            yield break;
                        }
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
                            if (!CanAddDays(week, offset) || !Fits(week.AddDays(offset), time))
                            {
                                yield break;
                            }
                            yield return week.AddDays(offset) + time;
                        }
                        if (!CanAddDays(week, 7L * interval))
                        {
                            yield break;
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
                            if (!Fits(month.AddDays(day - 1), time))
                            {
                                yield break;
                            }
                            yield return month.AddDays(day - 1) + time;
                        }
                        if ((DateTime.MaxValue.Year - month.Year) * 12L + (12 - month.Month) < interval)
                        {
                            yield break;
                        }
                    }
                }
            default:
                throw new ArgumentOutOfRangeException(nameof(rule), rule.Frequency, "Unknown frequency.");
        }
    }

    private static DateTime MondayOf(DateTime date) => date.AddDays(-(((int)date.DayOfWeek + 6) % 7));

    private static bool CanAddDays(DateTime date, long days) => days <= (DateTime.MaxValue - date).TotalDays - 1;

    private static bool Fits(DateTime date, TimeSpan time) => time <= DateTime.MaxValue - date;

    private static DateTime AddDaysClamped(DateTime date, int days) =>
        new(Math.Clamp(date.Ticks + (days * TimeSpan.TicksPerDay), DateTime.MinValue.Ticks, DateTime.MaxValue.Ticks), date.Kind);

    /// <summary>A wall-clock time in a zone as UTC, resolving gaps and overlaps as RFC 5545 does (clamped to the calendar's ends).</summary>
    public static DateTime ToUtc(DateTime local, TimeZoneInfo zone)
    {
        local = DateTime.SpecifyKind(local, DateTimeKind.Unspecified);
        TimeSpan offset;
        if (zone.IsInvalidTime(local))
        {
            // In the gap: use the offset in force before it (no zone has two transitions within six hours).
            offset = zone.GetUtcOffset(new DateTime(Math.Max(local.Ticks - TimeSpan.TicksPerHour * 6, 0)));
        }
        else
        {
            offset = zone.IsAmbiguousTime(local) ? zone.GetAmbiguousTimeOffsets(local).Max() : zone.GetUtcOffset(local);
        }
        return new DateTime(Math.Clamp(local.Ticks - offset.Ticks, DateTime.MinValue.Ticks, DateTime.MaxValue.Ticks), DateTimeKind.Utc);
    }
}
