using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Tally.Data
{
    public sealed partial class TallyDb
    {
        public DbSet<Jobs.Scheduling.CronRun> CronRuns => Set<Jobs.Scheduling.CronRun>();
        public DbSet<Jobs.Scheduling.JobState> JobStates => Set<Jobs.Scheduling.JobState>();
    }
}

namespace Tally.Jobs.Scheduling
{
    public static class CronRunStatus
    {
        public const string Running = "RUNNING";
        public const string Success = "SUCCESS";
        public const string Failed = "FAILED";
        public const string SkippedLocked = "SKIPPED_LOCKED";

        public static readonly string[] All = [Running, Success, Failed, SkippedLocked];
    }

    /// <summary>The audit row of one run of a scheduled job, on whichever instance ran it.</summary>
    public sealed class CronRun
    {
        public long Id { get; set; }
        public required string JobName { get; set; }
        public required string Status { get; set; }
        public required string Trigger { get; set; }
        public DateTime? ScheduledFor { get; set; }
        public int ProcessedCount { get; set; }
        public string? ErrorMessage { get; set; }
        public DateTime StartedAt { get; set; }
        public DateTime? FinishedAt { get; set; }
        public required string InstanceId { get; set; }
    }

    /// <summary>Shared per-job state: paused, and the last scheduled occurrence some instance claimed.</summary>
    public sealed class JobState
    {
        public required string JobName { get; set; }
        public bool Paused { get; set; }
        public DateTime? LastOccurrence { get; set; }
        public DateTime UpdatedAt { get; set; }
    }

    internal sealed class CronRunMap : IEntityTypeConfiguration<CronRun>
    {
        public void Configure(EntityTypeBuilder<CronRun> e) => e.ToTable("cron_runs");
    }

    internal sealed class JobStateMap : IEntityTypeConfiguration<JobState>
    {
        public void Configure(EntityTypeBuilder<JobState> e)
        {
            e.ToTable("job_states");
            e.HasKey(s => s.JobName);
        }
    }
}
