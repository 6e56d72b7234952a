using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Tally.Data
{
    public sealed partial class TallyDb
    {
        public DbSet<Features.Allowances.AllowanceSchedule> AllowanceSchedules => Set<Features.Allowances.AllowanceSchedule>();
        public DbSet<Features.Allowances.AllowanceCredit> AllowanceCredits => Set<Features.Allowances.AllowanceCredit>();
    }
}

namespace Tally.Features.Allowances
{
    public static class ScheduleStatus
    {
        public const string On = "ON";
        public const string Off = "OFF";
    }

    public static class CreditOutcome
    {
        public const string Paid = "PAID";
        public const string Failed = "FAILED";
        public const string Skipped = "SKIPPED";
    }

    public sealed class AllowanceSchedule
    {
        public Guid Id { get; set; }
        public Guid GuardianId { get; set; }
        public Guid JuniorId { get; set; }
        public long AmountMinor { get; set; }
        public required string Currency { get; set; }
        public required Frequency Frequency { get; set; }
        public int Interval { get; set; } = 1;
        public string? ByDay { get; set; }
        public int? ByMonthDay { get; set; }
        public required string TimeZone { get; set; }
        public DateTime StartAt { get; set; }
        public required string Status { get; set; }
        public DateTime? NextRunAt { get; set; }
        public DateTime? LastRunAt { get; set; }
        public DateTime? EnqueuedThrough { get; set; }
        public DateTime? EnqueuedAt { get; set; }
        public DateTime ActiveFrom { get; set; }
        public DateTime CreatedAt { get; set; }
        public DateTime UpdatedAt { get; set; }
        public DateTime? DeletedAt { get; set; }

        public RecurrenceRule Rule()
        {
            var zone = TimeZoneInfo.FindSystemTimeZoneById(TimeZone);
            return new RecurrenceRule(
                Frequency,
                Interval,
                Weekdays.Parse(ByDay),
                ByMonthDay,
                TimeZoneInfo.ConvertTimeFromUtc(DateTime.SpecifyKind(StartAt, DateTimeKind.Utc), zone),
                zone);
        }

        /// <summary>The first occurrence this schedule may still pay at or after <paramref name="fromUtc"/>.</summary>
        public DateTime? FirstPayableOnOrAfter(DateTime fromUtc) =>
            Recurrence.FirstOnOrAfter(Rule(), fromUtc > ActiveFrom ? fromUtc : ActiveFrom);
    }

    public sealed class AllowanceCredit
    {
        public Guid Id { get; set; }
        public Guid ScheduleId { get; set; }
        public DateTime RunAt { get; set; }
        public long AmountMinor { get; set; }
        public required string Currency { get; set; }
        public required string Outcome { get; set; }
        public Guid? TransactionId { get; set; }
        public string? Reason { get; set; }
        public DateTime CreditedAt { get; set; }
    }

    internal sealed class AllowanceScheduleMap : IEntityTypeConfiguration<AllowanceSchedule>
    {
        public void Configure(EntityTypeBuilder<AllowanceSchedule> e)
        {
            e.ToTable("allowance_schedules");
            // Stored as its code (DAILY, WEEKLY, MONTHLY), as the API writes it.
            e.Property(s => s.Frequency).HasConversion(f => f.Code(), code => Frequencies.Parse(code) ?? Enum.Parse<Frequency>(code, true));
            e.HasOne<Users.User>().WithMany().HasForeignKey(s => s.GuardianId).OnDelete(DeleteBehavior.Restrict);
            e.HasOne<Users.User>().WithMany().HasForeignKey(s => s.JuniorId).OnDelete(DeleteBehavior.Restrict);
        }
    }

    internal sealed class AllowanceCreditMap : IEntityTypeConfiguration<AllowanceCredit>
    {
        public void Configure(EntityTypeBuilder<AllowanceCredit> e)
        {
            e.ToTable("allowance_credits");
            e.HasOne<AllowanceSchedule>().WithMany().HasForeignKey(c => c.ScheduleId);
        }
    }

    /// <summary>RFC 5545 weekday codes (MO..SU) to and from <see cref="DayOfWeek"/>.</summary>
    public static class Weekdays
    {
        private static readonly string[] Codes = ["SU", "MO", "TU", "WE", "TH", "FR", "SA"];

        public static bool TryParse(string code, out DayOfWeek day)
        {
            var index = Array.IndexOf(Codes, code);
            day = (DayOfWeek)Math.Max(index, 0);
            return index >= 0;
        }

        public static IReadOnlyList<DayOfWeek> Parse(string? stored) =>
            string.IsNullOrEmpty(stored) ? [] : stored.Split(',').Select(c => (DayOfWeek)Array.IndexOf(Codes, c)).ToList();

        public static string Format(IEnumerable<DayOfWeek> days) => string.Join(',', days.Select(d => Codes[(int)d]));

        public static string[] ToCodes(IReadOnlyList<DayOfWeek> days) => days.Select(d => Codes[(int)d]).ToArray();
    }

    public static class AllowanceQueries
    {
        public static IQueryable<AllowanceSchedule> OfGuardian(this IQueryable<AllowanceSchedule> schedules, Guid guardianId) =>
            schedules.Where(s => s.GuardianId == guardianId && s.DeletedAt == null);
    }
}
