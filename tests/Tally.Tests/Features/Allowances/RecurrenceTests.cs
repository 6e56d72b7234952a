using Ical.Net.CalendarComponents;
using Ical.Net.DataTypes;
using Tally.Features.Allowances;
using IcalRule = Ical.Net.DataTypes.RecurrenceRule;
using RecurrenceRule = Tally.Features.Allowances.RecurrenceRule;

namespace Tally.Tests.Features.Allowances;

public class RecurrenceTests
{
    private static readonly TimeZoneInfo NewYork = TimeZoneInfo.FindSystemTimeZoneById("America/New_York");
    private static readonly TimeZoneInfo London = TimeZoneInfo.FindSystemTimeZoneById("Europe/London");

    private static RecurrenceRule Rule(Frequency frequency, DateTime startLocal, TimeZoneInfo? zone = null, int interval = 1, DayOfWeek[]? byDay = null, int? byMonthDay = null) =>
        new(frequency, interval, byDay ?? [], byMonthDay, startLocal, zone ?? TimeZoneInfo.Utc);

    private static DateTime Utc(int y, int m, int d, int h = 0, int min = 0) => new(y, m, d, h, min, 0, DateTimeKind.Utc);

    [Fact]
    public void Daily_KeepsWallClockTimeAcrossSpringForward()
    {
        var rule = Rule(Frequency.Daily, new DateTime(2026, 3, 7, 9, 0, 0), NewYork);
        var occurrences = Recurrence.Occurrences(rule, rule.StartUtc).Take(3).ToList();
        // 09:00 EST is 14:00 UTC; after the change on 8 March, 09:00 EDT is 13:00 UTC.
        Assert.Equal([Utc(2026, 3, 7, 14), Utc(2026, 3, 8, 13), Utc(2026, 3, 9, 13)], occurrences);
    }

    [Fact]
    public void Daily_KeepsWallClockTimeAcrossFallBack()
    {
        var rule = Rule(Frequency.Daily, new DateTime(2026, 10, 24, 18, 30, 0), London);
        var occurrences = Recurrence.Occurrences(rule, rule.StartUtc).Take(3).ToList();
        Assert.Equal([Utc(2026, 10, 24, 17, 30), Utc(2026, 10, 25, 18, 30), Utc(2026, 10, 26, 18, 30)], occurrences);
    }

    [Fact]
    public void Daily_TimeInTheSpringGap_MovesForwardByTheGap()
    {
        // 02:30 does not exist in New York on 8 March 2026: RFC 5545 reads it with the offset before the gap (EST), i.e. 03:30 EDT.
        var rule = Rule(Frequency.Daily, new DateTime(2026, 3, 7, 2, 30, 0), NewYork);
        var occurrences = Recurrence.Occurrences(rule, rule.StartUtc).Take(3).ToList();
        Assert.Equal([Utc(2026, 3, 7, 7, 30), Utc(2026, 3, 8, 7, 30), Utc(2026, 3, 9, 6, 30)], occurrences);
    }

    [Fact]
    public void Daily_AmbiguousFallBackTime_IsTheFirstOfTheTwo()
    {
        var rule = Rule(Frequency.Daily, new DateTime(2026, 10, 31, 1, 30, 0), NewYork);
        var occurrences = Recurrence.Occurrences(rule, rule.StartUtc).Take(2).ToList();
        // 1 November 01:30 happens twice; the first is EDT (05:30 UTC).
        Assert.Equal([Utc(2026, 10, 31, 5, 30), Utc(2026, 11, 1, 5, 30)], occurrences);
    }

    [Fact]
    public void Monthly_On31st_SkipsShorterMonths()
    {
        var rule = Rule(Frequency.Monthly, new DateTime(2026, 1, 31, 8, 0, 0));
        var occurrences = Recurrence.Occurrences(rule, rule.StartUtc).Take(4).ToList();
        Assert.Equal([Utc(2026, 1, 31, 8), Utc(2026, 3, 31, 8), Utc(2026, 5, 31, 8), Utc(2026, 7, 31, 8)], occurrences);
    }

    [Fact]
    public void Monthly_LastDay_FollowsEveryMonthEnd()
    {
        var rule = Rule(Frequency.Monthly, new DateTime(2028, 1, 31, 8, 0, 0), byMonthDay: -1);
        var occurrences = Recurrence.Occurrences(rule, rule.StartUtc).Take(4).ToList();
        Assert.Equal([Utc(2028, 1, 31, 8), Utc(2028, 2, 29, 8), Utc(2028, 3, 31, 8), Utc(2028, 4, 30, 8)], occurrences);
    }

    [Fact]
    public void Monthly_OnFeb29_OnlyLeapYearsHaveIt()
    {
        var rule = Rule(Frequency.Monthly, new DateTime(2028, 2, 29, 12, 0, 0), interval: 12);
        var occurrences = Recurrence.Occurrences(rule, rule.StartUtc).Take(3).ToList();
        Assert.Equal([Utc(2028, 2, 29, 12), Utc(2032, 2, 29, 12), Utc(2036, 2, 29, 12)], occurrences);
    }

    [Fact]
    public void Weekly_ByDay_GivesEachNamedDayInOrder()
    {
        // Starts on a Wednesday; Monday of that week is before DTSTART and so not an occurrence.
        var rule = Rule(Frequency.Weekly, new DateTime(2026, 11, 18, 7, 0, 0), byDay: [DayOfWeek.Monday, DayOfWeek.Friday], interval: 2);
        var occurrences = Recurrence.Occurrences(rule, rule.StartUtc).Take(4).ToList();
        Assert.Equal([Utc(2026, 11, 20, 7), Utc(2026, 11, 30, 7), Utc(2026, 12, 4, 7), Utc(2026, 12, 14, 7)], occurrences);
    }

    [Fact]
    public void NextAfter_And_IsOccurrence_AgreeWithTheSequence()
    {
        var rule = Rule(Frequency.Weekly, new DateTime(2026, 1, 5, 9, 0, 0), London, byDay: [DayOfWeek.Tuesday, DayOfWeek.Thursday]);
        var sequence = Recurrence.Occurrences(rule, rule.StartUtc).Take(50).ToList();
        for (var i = 0; i + 1 < sequence.Count; i++)
        {
            Assert.Equal(sequence[i + 1], Recurrence.NextAfter(rule, sequence[i]));
            Assert.True(Recurrence.IsOccurrence(rule, sequence[i]));
            Assert.False(Recurrence.IsOccurrence(rule, sequence[i].AddMinutes(1)));
        }
    }

    [Fact]
    public void Occurrences_BetweenTwoInstants_IncludeBothEndsAndNothingOutside()
    {
        var rule = Rule(Frequency.Daily, new DateTime(1900, 1, 1, 9, 0, 0), London);
        Assert.Equal([Utc(2026, 1, 5, 9), Utc(2026, 1, 6, 9), Utc(2026, 1, 7, 9)], Recurrence.Occurrences(rule, Utc(2026, 1, 5, 9), Utc(2026, 1, 7, 9)).ToList());
        Assert.Empty(Recurrence.Occurrences(rule, Utc(2026, 1, 7, 9, 1), Utc(2026, 1, 8, 8, 59)));
        Assert.Empty(Recurrence.Occurrences(rule, Utc(2026, 1, 8), Utc(2026, 1, 7)));
    }

    [Fact]
    public void FirstOnOrAfter_FindsAnOccurrenceMoreThanACenturyAway()
    {
        // Every 365 months from June, on the 31st: the months are November, April, September, February, then July.
        var rule = Rule(Frequency.Monthly, new DateTime(1900, 6, 1, 8, 0, 0), interval: 365, byMonthDay: 31);
        Assert.Equal(Utc(2052, 7, 31, 8), Recurrence.FirstOnOrAfter(rule, rule.StartUtc));
        // A day that never comes within the horizon: none, found in a bounded number of steps.
        Assert.Null(Recurrence.FirstOnOrAfter(Rule(Frequency.Monthly, new DateTime(1900, 4, 1, 8, 0, 0), interval: 12, byMonthDay: 31), Utc(1900, 1, 1)));
    }

    public static TheoryData<string, int, int> CalendarEdges()
    {
        var data = new TheoryData<string, int, int>();
        foreach (var zone in new[] { "UTC", "Pacific/Kiritimati", "Etc/GMT+12", "America/New_York" })
        {
            foreach (var frequency in new[] { 0, 1, 2 })
            {
                foreach (var interval in new[] { 1, 366 })
                {
                    data.Add(zone, frequency, interval);
                }
            }
        }
        return data;
    }

    /// <summary>Every function is total: at the ends of the calendar a sequence stops, nothing throws.</summary>
    [Theory]
    [MemberData(nameof(CalendarEdges))]
    public void AtTheEndsOfTheCalendar_NothingThrows(string zoneId, int frequency, int interval)
    {
        var zone = TimeZoneInfo.FindSystemTimeZoneById(zoneId);
        var min = DateTime.SpecifyKind(DateTime.MinValue, DateTimeKind.Utc);
        var max = DateTime.SpecifyKind(DateTime.MaxValue, DateTimeKind.Utc);
        DateTime[] starts = [DateTime.MinValue, new DateTime(1, 1, 2, 23, 59, 59), new DateTime(9999, 12, 30, 12, 0, 0), DateTime.MaxValue.AddSeconds(-1)];
        foreach (var start in starts)
        {
            var rule = Rule((Frequency)frequency, start, zone, interval, byDay: frequency == 1 ? new[] { DayOfWeek.Monday, DayOfWeek.Sunday } : null, byMonthDay: frequency == 2 ? -1 : null);
            _ = rule.StartUtc;
            foreach (var from in new[] { min, min.AddDays(1), rule.StartUtc, max.AddDays(-1), max })
            {
                var occurrences = Recurrence.Occurrences(rule, from).Take(3).ToList();
                Assert.All(occurrences, t => Assert.True(t >= from));
                _ = Recurrence.Occurrences(rule, from, max).Take(3).ToList();
                _ = Recurrence.NextAfter(rule, from);
                _ = Recurrence.IsOccurrence(rule, from);
            }
        }
        // Wall-clock times whose instant would fall off the calendar are clamped to its ends.
        var low = Recurrence.ToUtc(DateTime.MinValue, zone);
        var high = Recurrence.ToUtc(DateTime.MaxValue, zone);
        Assert.InRange(low, min, min.AddHours(13));
        Assert.InRange(high, max.AddHours(-15), max);
    }

    /// <summary>
    /// Thousands of generated rules in zones with and without DST, checked against Ical.Net's
    /// independent RRULE evaluator. DTSTART is left out of the comparison: RFC 5545 leaves an
    /// unsynchronised DTSTART undefined, and the two libraries are free to differ there.
    /// </summary>
    [Fact]
    public void GeneratedRules_MatchAnIndependentRruleImplementation()
    {
        string[] zones = ["UTC", "America/New_York", "Europe/London", "Australia/Sydney", "Asia/Tokyo", "America/Santiago"];
        var random = new Random(20261122);
        var checkedRules = 0;
        for (var i = 0; i < 2000; i++)
        {
            var zoneId = zones[random.Next(zones.Length)];
            var zone = TimeZoneInfo.FindSystemTimeZoneById(zoneId);
            var frequency = (Frequency)random.Next(3);
            var interval = random.Next(1, 4);
            var start = new DateTime(2025, 1, 1).AddDays(random.Next(0, 900)).AddMinutes(random.Next(0, 24 * 4) * 15);
            DayOfWeek[]? byDay = frequency == Frequency.Weekly && random.Next(2) == 0
                ? Enumerable.Range(0, 7).Where(_ => random.Next(3) == 0).Select(d => (DayOfWeek)d).DefaultIfEmpty(DayOfWeek.Monday).ToArray()
                : null;
            int? byMonthDay = frequency == Frequency.Monthly && random.Next(2) == 0 ? (random.Next(5) == 0 ? -1 : random.Next(1, 32)) : null;
            var rule = Rule(frequency, start, zone, interval, byDay, byMonthDay);

            var ours = Recurrence.Occurrences(rule, rule.StartUtc).Where(t => t > rule.StartUtc).Take(12).ToList();
            var theirs = IcalOccurrences(rule, zoneId).Where(t => t > rule.StartUtc).Take(12).ToList();
            Assert.True(theirs.SequenceEqual(ours),
                $"Rule {frequency} interval {interval} byDay [{string.Join(",", byDay ?? [])}] byMonthDay {byMonthDay} start {start:O} {zoneId}:\n" +
                $" ours   {string.Join(" ", ours.Select(t => t.ToString("O")))}\n theirs {string.Join(" ", theirs.Select(t => t.ToString("O")))}");
            checkedRules++;
        }
        Assert.Equal(2000, checkedRules);
    }

    private static IEnumerable<DateTime> IcalOccurrences(RecurrenceRule rule, string zoneId)
    {
        var pattern = new IcalRule(rule.Frequency switch
        {
            Frequency.Daily => Ical.Net.FrequencyType.Daily,
            Frequency.Weekly => Ical.Net.FrequencyType.Weekly,
            _ => Ical.Net.FrequencyType.Monthly,
        }, rule.Interval);
        foreach (var day in rule.ByDay)
        {
            pattern.ByDay.Add(new WeekDay(day));
        }
        if (rule.ByMonthDay is { } monthDay)
        {
            pattern.ByMonthDay.Add(monthDay);
        }
        var calendarEvent = new CalendarEvent { DtStart = new CalDateTime(rule.StartLocal, zoneId) };
        calendarEvent.RecurrenceRule = pattern;
        return calendarEvent.GetOccurrences().Take(14).Select(o => DateTime.SpecifyKind(o.Period.StartTime.AsUtc, DateTimeKind.Utc));
    }
}
