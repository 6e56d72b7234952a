using System.ComponentModel.DataAnnotations;

namespace Tally.Features.Allowances;

/// <summary>
/// The <c>Allowances</c> section. The seed's variables are aliases: <c>ALLOWANCE_QUEUE_NAME</c>,
/// <c>ALLOWANCE_MAX_RETRIES</c>, <c>ALLOWANCE_RETRY_DELAY_MS</c>.
/// </summary>
public sealed class AllowanceOptions
{
    public const string Section = "Allowances";

    [Required(ErrorMessage = "Allowances:QueueName is required.")]
    public string QueueName { get; set; } = "allowance.schedule";

    [Range(0, 100, ErrorMessage = "Allowances:MaxRetries must be between 0 and 100.")]
    public int MaxRetries { get; set; } = 5;

    [Range(1, 86_400_000, ErrorMessage = "Allowances:RetryDelayMs must be between 1 and 86400000.")]
    public int RetryDelayMs { get; set; } = 600_000;

    /// <summary>Schedules read per page by the producer's keyset scan.</summary>
    [Range(1, 100_000, ErrorMessage = "Allowances:BatchSize must be between 1 and 100000.")]
    public int BatchSize { get; set; } = 100;

    /// <summary>
    /// At most this many past occurrences of one schedule are ever paid, however far back it starts or
    /// however long the service was down; the older ones are recorded as skipped, in one row.
    /// </summary>
    [Range(1, 10_000, ErrorMessage = "Allowances:MaxCatchUp must be between 1 and 10000.")]
    public int MaxCatchUp { get; set; } = 31;

    /// <summary>Active (not deleted) schedules one guardian may have; creating one more answers 409 <c>ALLOWANCE.SCHEDULE_LIMIT</c>.</summary>
    [Range(1, 100_000, ErrorMessage = "Allowances:MaxSchedulesPerGuardian must be between 1 and 100000.")]
    public int MaxSchedulesPerGuardian { get; set; } = 100;

    /// <summary>An occurrence enqueued this long ago and still unsettled is enqueued again (the queue may have lost it).</summary>
    public TimeSpan RequeueAfter { get; set; } = TimeSpan.FromHours(2);

    [Range(1, 10_000, ErrorMessage = "Allowances:Prefetch must be between 1 and 10000.")]
    public int Prefetch { get; set; } = 1024;

    /// <summary>Deliveries handled at once per worker instance; with batching, the most one batch can hold.</summary>
    [Range(1, 1024, ErrorMessage = "Allowances:Concurrency must be between 1 and 1024.")]
    public int Concurrency { get; set; } = 512;

    /// <summary>
    /// Batching: settle the deliveries in hand together, one read and one transaction per batch (see
    /// <see cref="CreditBatcher"/>). Off: one read and one transaction per delivery.
    /// </summary>
    public bool BatchCommits { get; set; } = true;

    /// <summary>
    /// What the producer publishes: <c>page</c> (the default), one message per page of up to
    /// <see cref="PageSize"/> occurrences, settled together, a refused occurrence leaving it as a message
    /// of its own; or <c>occurrence</c>, the seed's shape, one message per occurrence. Workers take both.
    /// </summary>
    [RegularExpression("^(page|occurrence)$", ErrorMessage = "Allowances:MessageShape must be page or occurrence.")]
    public string MessageShape { get; set; } = PageShape;

    public const string PageShape = "page";
    public const string OccurrenceShape = "occurrence";

    /// <summary>Occurrences in one page message at most.</summary>
    [Range(1, 10_000, ErrorMessage = "Allowances:PageSize must be between 1 and 10000.")]
    public int PageSize { get; set; } = 500;

    [Range(1, 10_000, ErrorMessage = "Allowances:CommitBatchSize must be between 1 and 10000.")]
    public int CommitBatchSize { get; set; } = 500;

    /// <summary>Batches committing at once, each on its own connection.</summary>
    [Range(1, 64, ErrorMessage = "Allowances:CommitBatchers must be between 1 and 64.")]
    public int CommitBatchers { get; set; } = 2;

    public TimeSpan RetryDelay => TimeSpan.FromMilliseconds(RetryDelayMs);
}
