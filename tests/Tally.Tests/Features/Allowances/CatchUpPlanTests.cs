using Tally.Features.Allowances;

namespace Tally.Tests.Features.Allowances;

/// <summary>
/// The producer's plan for one schedule (<see cref="EnqueueDueAllowances.PlanOccurrences"/>), checked
/// against every due occurrence enumerated one by one: the newest <c>cap</c> are paid, the older ones
/// are one skip, however far back the schedule starts.
/// </summary>
public class CatchUpPlanTests
{
    private const int Cap = 31;
    private static readonly DateTime Now = new(2026, 5, 1, 12, 0, 0, DateTimeKind.Utc);
    private static readonly DateTime NeverStale = DateTime.MinValue;

    private static AllowanceSchedule Schedule(string frequency, DateTime startUtc, int interval = 1, string? byDay = null, int? byMonthDay = null, string zone = "UTC")
    {
        var schedule = new AllowanceSchedule
        {
            Id = Guid.NewGuid(),
            Currency = "USD",
            Frequency = Frequencies.Parse(frequency)!.Value,
            Status = "ON",
            TimeZone = zone,
            AmountMinor = 100,
            Interval = interval,
            ByDay = byDay,
            ByMonthDay = byMonthDay,
            StartAt = startUtc,
            ActiveFrom = startUtc,
        };
        schedule.NextRunAt = schedule.FirstPayableOnOrAfter(startUtc);
        return schedule;
    }

    /// <summary>Every due occurrence, one by one: the reference the plan must agree with.</summary>
    private static List<DateTime> AllDue(AllowanceSchedule schedule, DateTime now)
    {
        var from = schedule.NextRunAt!.Value > schedule.ActiveFrom ? schedule.NextRunAt.Value : schedule.ActiveFrom;
        return Recurrence.Occurrences(schedule.Rule(), from, now).ToList();
    }

    private static void AssertAgreesWithEveryDueOccurrence(AllowanceSchedule schedule, int cap, DateTime now, int expectedDue)
    {
        var due = AllDue(schedule, now);
        Assert.Equal(expectedDue, due.Count);
        var plan = EnqueueDueAllowances.PlanOccurrences(schedule, now, NeverStale, cap);
        if (due.Count <= cap)
        {
            Assert.Null(plan.Skip);
            Assert.Equal(due, plan.Pay);
            return;
        }
        Assert.Equal(due[^cap..], plan.Pay);
        Assert.Equal(new EnqueueDueAllowances.CatchUpSkip(due[0], due[^(cap + 1)], due[^cap]), plan.Skip);
    }

    [Fact]
    public void Daily_Started130YearsAgo_PaysTheNewestCapAndSkipsTheRestInOne()
    {
        var schedule = Schedule("DAILY", new DateTime(1896, 5, 1, 9, 0, 0, DateTimeKind.Utc));
        AssertAgreesWithEveryDueOccurrence(schedule, Cap, Now, 47_482);

        var plan = EnqueueDueAllowances.PlanOccurrences(schedule, Now, NeverStale, Cap);
        Assert.Equal(new DateTime(2026, 4, 1, 9, 0, 0, DateTimeKind.Utc), plan.Pay[0]);
        Assert.Equal(new DateTime(2026, 5, 1, 9, 0, 0, DateTimeKind.Utc), plan.Pay[^1]);
        Assert.Equal(new DateTime(1896, 5, 1, 9, 0, 0, DateTimeKind.Utc), plan.Skip!.First);
        Assert.Equal(new DateTime(2026, 3, 31, 9, 0, 0, DateTimeKind.Utc), plan.Skip.Last);
        Assert.Equal(plan.Pay[0], plan.Skip.ResumeAt);
        Assert.Equal("beyond the catch-up cap: missed occurrences from 1896-05-01T09:00:00Z through 2026-03-31T09:00:00Z", plan.Skip.Reason);
    }

    [Fact]
    public void Weekly_ByDayEveryThirdWeekInAZoneWithDst_AgreesSinceAStartInTheTwenties()
    {
        var schedule = Schedule("WEEKLY", new DateTime(1920, 3, 3, 14, 30, 0, DateTimeKind.Utc), interval: 3, byDay: "MO,WE,FR", zone: "America/New_York");
        AssertAgreesWithEveryDueOccurrence(schedule, Cap, Now, 5_540);
    }

    [Theory]
    [InlineData(1, 884)] // the 31st of every month that has one, since 1900
    [InlineData(7, 127)]
    [InlineData(25, 36)]
    [InlineData(120, 13)] // every ten years, in January: fewer than the cap
    public void Monthly_On31stWithLargeIntervals_AgreesSince1900(int interval, int expectedDue)
    {
        var schedule = Schedule("MONTHLY", new DateTime(1900, 1, 31, 8, 0, 0, DateTimeKind.Utc), interval: interval, byMonthDay: 31);
        AssertAgreesWithEveryDueOccurrence(schedule, Cap, Now, expectedDue);
    }

    [Fact]
    public void Monthly_Interval366_FewOccurrencesInACentury_ArePaidWithoutASkip()
    {
        // Every 30.5 years, June then December: the 31st exists only in December.
        var schedule = Schedule("MONTHLY", new DateTime(1900, 6, 1, 8, 0, 0, DateTimeKind.Utc), interval: 366, byMonthDay: 31);
        var plan = EnqueueDueAllowances.PlanOccurrences(schedule, Now, NeverStale, Cap);
        Assert.Null(plan.Skip);
        Assert.Equal([new DateTime(1930, 12, 31, 8, 0, 0, DateTimeKind.Utc), new DateTime(1991, 12, 31, 8, 0, 0, DateTimeKind.Utc)], plan.Pay);
    }

    [Fact]
    public void Monthly_DayThatNeverComes_PlansNothingAndEnds()
    {
        // The 31st of every 12th month starting in April: never. The search must still end.
        var schedule = Schedule("MONTHLY", new DateTime(1900, 4, 1, 8, 0, 0, DateTimeKind.Utc), interval: 12, byMonthDay: 31);
        Assert.Null(schedule.NextRunAt);
        schedule.NextRunAt = schedule.StartAt; // even if a next run were set
        var plan = EnqueueDueAllowances.PlanOccurrences(schedule, Now, NeverStale, Cap);
        Assert.Empty(plan.Pay);
        Assert.Null(plan.Skip);
    }

    [Fact]
    public void Daily_Interval366_Since1900_AgreesWithEveryDueOccurrence()
    {
        var schedule = Schedule("DAILY", new DateTime(1900, 1, 1, 0, 0, 0, DateTimeKind.Utc), interval: 366);
        AssertAgreesWithEveryDueOccurrence(schedule, Cap, Now, 127);
    }

    [Fact]
    public void Monthly_FirstOccurrenceMoreThanACenturyAfterTheStart_IsFound()
    {
        // Every 365 months from June, on the 31st: November, April, September, February, then July 2052.
        var schedule = Schedule("MONTHLY", new DateTime(1900, 6, 1, 8, 0, 0, DateTimeKind.Utc), interval: 365, byMonthDay: 31);
        Assert.Equal(new DateTime(2052, 7, 31, 8, 0, 0, DateTimeKind.Utc), schedule.NextRunAt);
    }

    [Theory]
    [InlineData(30, false)]
    [InlineData(31, false)]
    [InlineData(32, true)]
    public void ExactlyAtTheCap_PaysAllAndSkipsNothing_OneMoreSkipsOne(int due, bool skips)
    {
        var schedule = Schedule("DAILY", Now.Date.AddHours(9).AddDays(1 - due));
        var plan = EnqueueDueAllowances.PlanOccurrences(schedule, Now, NeverStale, Cap);
        Assert.Equal(Math.Min(due, Cap), plan.Pay.Count);
        Assert.Equal(Now.Date.AddHours(9), plan.Pay[^1]);
        Assert.Equal(skips, plan.Skip is not null);
        if (skips)
        {
            Assert.Equal(schedule.StartAt, plan.Skip!.First);
            Assert.Equal(schedule.StartAt, plan.Skip.Last);
            Assert.Equal(schedule.StartAt.AddDays(1), plan.Skip.ResumeAt);
        }
    }

    [Fact]
    public void EnqueuedThroughInTheMiddle_EnqueuesOnlyLaterOnes_UnlessStale()
    {
        var schedule = Schedule("DAILY", new DateTime(1950, 1, 1, 9, 0, 0, DateTimeKind.Utc));
        var first = EnqueueDueAllowances.PlanOccurrences(schedule, Now, NeverStale, Cap);
        // The skip moved the schedule (as the producer records it), and the first half was enqueued an hour ago.
        schedule.NextRunAt = schedule.ActiveFrom = first.Skip!.ResumeAt;
        schedule.EnqueuedThrough = first.Pay[15];
        schedule.EnqueuedAt = Now.AddHours(-1);

        var fresh = EnqueueDueAllowances.PlanOccurrences(schedule, Now, staleBefore: Now.AddHours(-2), Cap);
        Assert.Null(fresh.Skip);
        Assert.Equal(first.Pay.Skip(16), fresh.Pay);

        var stale = EnqueueDueAllowances.PlanOccurrences(schedule, Now, staleBefore: Now, Cap);
        Assert.Null(stale.Skip);
        Assert.Equal(first.Pay, stale.Pay);
    }

    [Fact]
    public void EnqueuedThroughInTheMiddle_OfABacklogBeyondTheCap_StillSkipsAndResumesAtTheOldestPaid()
    {
        // Half of the newest occurrences were enqueued by an earlier run that skipped nothing (a smaller backlog then).
        var schedule = Schedule("DAILY", new DateTime(1950, 1, 1, 9, 0, 0, DateTimeKind.Utc));
        var due = AllDue(schedule, Now);
        schedule.EnqueuedThrough = due[^10];
        schedule.EnqueuedAt = Now.AddMinutes(-5);
        var plan = EnqueueDueAllowances.PlanOccurrences(schedule, Now, Now.AddHours(-2), Cap);
        Assert.Equal(due[^9..], plan.Pay);
        Assert.Equal(new EnqueueDueAllowances.CatchUpSkip(due[0], due[^(Cap + 1)], due[^Cap]), plan.Skip);
    }

    [Fact]
    public void ActiveFromAfterNextRun_CountsOnlyFromActiveFrom()
    {
        var schedule = Schedule("DAILY", new DateTime(1950, 1, 1, 9, 0, 0, DateTimeKind.Utc));
        schedule.ActiveFrom = Now.AddDays(-3);
        var plan = EnqueueDueAllowances.PlanOccurrences(schedule, Now, NeverStale, Cap);
        Assert.Null(plan.Skip);
        Assert.Equal(3, plan.Pay.Count);
    }

    [Fact]
    public void NothingDueYet_PlansNothing()
    {
        var schedule = Schedule("DAILY", Now.AddDays(2));
        var plan = EnqueueDueAllowances.PlanOccurrences(schedule, Now, NeverStale, Cap);
        Assert.Empty(plan.Pay);
        Assert.Null(plan.Skip);
    }

    [Fact]
    public void LargestCap_OverACentury_AgreesWithEveryDueOccurrence()
    {
        var schedule = Schedule("WEEKLY", new DateTime(1900, 1, 1, 9, 0, 0, DateTimeKind.Utc), byDay: "MO,TU,WE,TH,FR,SA,SU", zone: "Europe/London");
        AssertAgreesWithEveryDueOccurrence(schedule, 10_000, Now, 46_142);
    }

    /// <summary>Generated rules and backlogs, in zones with and without DST, each checked against every due occurrence.</summary>
    [Fact]
    public void GeneratedSchedules_AgreeWithEveryDueOccurrence()
    {
        string[] zones = ["UTC", "America/New_York", "Europe/London", "Australia/Sydney", "Pacific/Kiritimati", "America/Santiago"];
        string[] weekdays = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"];
        var random = new Random(20260501);
        for (var i = 0; i < 300; i++)
        {
            var frequency = new[] { "DAILY", "WEEKLY", "MONTHLY" }[random.Next(3)];
            var interval = random.Next(4) == 0 ? random.Next(1, 367) : random.Next(1, 4);
            var periodDays = interval * frequency switch { "DAILY" => 1, "WEEKLY" => 7, _ => 30 };
            var cap = random.Next(1, 40);
            // Backlogs around the cap mostly, some far longer; never more than a few thousand occurrences to check one by one.
            var backlogDays = Math.Min(random.Next(0, 3 * (cap + 2)) * (double)periodDays, 45_000);
            var start = Now.AddDays(-backlogDays).AddMinutes(random.Next(-2000, 2000));
            var byDay = frequency == "WEEKLY" && random.Next(2) == 0
                ? string.Join(',', weekdays.Where(_ => random.Next(3) == 0).DefaultIfEmpty("MO"))
                : null;
            int? byMonthDay = frequency == "MONTHLY" && random.Next(2) == 0 ? (random.Next(5) == 0 ? -1 : random.Next(28, 32)) : null;
            var schedule = Schedule(frequency, DateTime.SpecifyKind(start, DateTimeKind.Utc), interval, byDay, byMonthDay, zones[random.Next(zones.Length)]);
            if (schedule.NextRunAt is null)
            {
                continue;
            }
            var due = AllDue(schedule, Now);
            AssertAgreesWithEveryDueOccurrence(schedule, cap, Now, due.Count);
        }
    }
}
