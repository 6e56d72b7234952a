using System.Diagnostics.Metrics;
using Microsoft.Extensions.Options;
using Tally.Jobs;
using Tally.Jobs.Lanes;

namespace Tally.Features.BalanceSync;

/// <summary>
/// Balance sync on the runtime's lanes (<see cref="LaneWorkers"/>): one entry per user, a login's on
/// the priority lane, and every core call of both lanes through the one <see cref="CoreCallGate"/>,
/// which serves priority first. So a login never queues behind background work: its entry is claimed
/// at once by an idle priority worker and its calls jump every background call waiting at the gate.
/// By default there are twice as many background workers as background call slots, plus one
/// (<see cref="BalanceSyncOptions.BackgroundWorkers"/>): while some read and write the database,
/// others wait at the gate, so a free slot does not wait for the database. A user's sync is retried
/// with backoff and, after <see cref="BalanceSyncOptions.MaxRetries"/>, given up until the next period.
/// This class is what balance sync says about its entries: the seed's start line, a line per retry
/// and give-up, and the metrics <c>tally_balance_sync_users</c> and <c>tally_balance_sync_lane_depth</c>.
/// </summary>
public sealed partial class BalanceSyncLanes : ILaneReport
{
    /// <summary>The shared lanes' table on PostgreSQL (migration 0004), keyed by user.</summary>
    public const string Table = "balance_sync_queue";

    public const string KeyColumn = "user_id";

    private const string Channel = "tally_balance_sync";

    private readonly IOptions<BalanceSyncOptions> _options;
    private readonly ILogger<BalanceSyncLanes> _logger;
    private readonly Meter _meter;
    private Counter<long>? _outcomes;
    private LaneCounts _counts = new(0, 0, 0, 0);

    public BalanceSyncLanes(IMeterFactory meters, IOptions<BalanceSyncOptions> options, ILogger<BalanceSyncLanes> logger)
    {
        _options = options;
        _logger = logger;
        _meter = meters.Create("Tally.BalanceSync.Lanes");
    }

    /// <summary>The shared lanes on PostgreSQL. Their rows commit asynchronously: a crash of PostgreSQL may forget the last moments of queue changes, which costs at most a repeated sync (the periodic job queues every user again).</summary>
    public static PostgresLaneOptions PostgresOptions(BalanceSyncOptions o) =>
        new("balance-sync", Table, KeyColumn, Channel, o.PollInterval, o.ClaimTimeout, AsynchronousCommit: true);

    /// <summary>Priority workers: one more than the call slots, so a login finds one idle. Background workers: see <see cref="BalanceSyncOptions.BackgroundWorkers"/>.</summary>
    public static LaneWorkerSettings WorkerSettings(BalanceSyncOptions o) => new(
        PriorityWorkers: o.MaxConcurrentCalls + 1,
        BackgroundWorkers: o.BackgroundWorkers > 0 ? o.BackgroundWorkers : (2 * (o.MaxConcurrentCalls - o.PriorityReserve)) + 1,
        o.MaxRetries, o.RetryBaseDelay, o.RetryMaxDelay);

    /// <summary>The instruments exist only where the workers run: an instance without them has no depths to tell.</summary>
    public void Started(string store)
    {
        _outcomes = _meter.CreateCounter<long>("tally_balance_sync_users", description: "Users' sync attempts by outcome: settled, retry, gave_up");
        _meter.CreateObservableGauge("tally_balance_sync_lane_depth", () => new[]
        {
            new Measurement<long>(Volatile.Read(ref _counts).Priority, new KeyValuePair<string, object?>("lane", "priority")),
            new Measurement<long>(Volatile.Read(ref _counts).Background, new KeyValuePair<string, object?>("lane", "background")),
            new Measurement<long>(Volatile.Read(ref _counts).InFlight, new KeyValuePair<string, object?>("lane", "in_flight")),
        }, description: "Users waiting per lane, and running, across the instances sharing the lanes");
        var o = _options.Value;
        LogStarted(_logger, o.Interval.TotalSeconds, o.AuthSyncTimeoutMs, store, o.MaxConcurrentCalls);
    }

    public void Counted(LaneCounts counts) => Volatile.Write(ref _counts, counts);

    public void Settled(LaneEntry entry) => _outcomes?.Add(1, new KeyValuePair<string, object?>("outcome", "settled"));

    public void Retrying(LaneEntry entry, int attempt, TimeSpan delay, string reason)
    {
        _outcomes?.Add(1, new KeyValuePair<string, object?>("outcome", "retry"));
        LogRetrying(_logger, entry.Key, attempt, delay.TotalMilliseconds, reason);
    }

    public void GaveUp(LaneEntry entry, int attempts, string reason)
    {
        LogGaveUp(_logger, entry.Key, attempts, reason);
        _outcomes?.Add(1, new KeyValuePair<string, object?>("outcome", "gave_up"));
    }

    /// <summary>A bug or the database: counted as an attempt, like a core that cannot be reached.</summary>
    public JobOutcome Threw(LaneEntry entry, Exception e)
    {
        LogSyncThrew(_logger, e, entry.Key, entry.Attempt);
        return JobOutcome.RetryLater(new T24Failure.Unreachable($"{e.GetType().Name} in Tally").Code);
    }

    public void WorkerFailed(string worker, Exception e) => LogWorkerFailed(_logger, e, worker);

    /// <summary>Seed 001's start lines, as one: what its operators look for when the service comes up.</summary>
    [LoggerMessage(Level = LogLevel.Information, Message = "Balance sync service started: sync interval {IntervalSeconds} s, auth timeout {AuthTimeoutMs} ms, {Lanes} lanes, {MaxCalls} core call(s) at once")]
    private static partial void LogStarted(ILogger logger, double intervalSeconds, int authTimeoutMs, string lanes, int maxCalls);

    [LoggerMessage(Level = LogLevel.Error, Message = "Balance sync {Lane} worker failed; carrying on")]
    private static partial void LogWorkerFailed(ILogger logger, Exception e, string lane);

    [LoggerMessage(Level = LogLevel.Error, Message = "Balance sync of user {UserId} threw on attempt {Attempt}")]
    private static partial void LogSyncThrew(ILogger logger, Exception e, Guid userId, int attempt);

    [LoggerMessage(Level = LogLevel.Information, Message = "Balance sync of user {UserId}: retry {Attempt} in {DelayMs:0} ms after {Reason}")]
    private static partial void LogRetrying(ILogger logger, Guid userId, int attempt, double delayMs, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Balance sync of user {UserId} gave up after {Attempts} attempts ({Reason}); the next period tries again")]
    private static partial void LogGaveUp(ILogger logger, Guid userId, int attempts, string reason);
}
