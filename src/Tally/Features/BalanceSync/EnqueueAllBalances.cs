using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Tally.Data;
using Tally.Jobs.Lanes;
using Tally.Jobs.Scheduling;

namespace Tally.Features.BalanceSync;

/// <summary>
/// <c>balance-sync.enqueue-all</c>, every <c>BalanceSync:IntervalMs</c> (<c>BALANCE_SYNC_INTERVAL</c>):
/// pages through the active MOBILE_BANKING users (never WALLET users, never inactive ones) with a
/// keyset cursor on id, and puts each on the background lane. Users already queued, or running, stay
/// as they are: the lanes deduplicate. It never calls the core itself.
/// </summary>
public sealed partial class EnqueueAllBalances(TallyDb db, ILaneStore lanes, IOptions<BalanceSyncOptions> options, ILogger<EnqueueAllBalances> logger) : IScheduledJob
{
    public const string Name = "balance-sync.enqueue-all";

    public sealed record Detail(int Eligible, int Queued, int AlreadyQueued);

    public async Task<JobResult> RunAsync(JobRun run, CancellationToken ct)
    {
        var size = options.Value.BatchSize;
        var cursor = Guid.Empty;
        int eligible = 0, queued = 0;
        while (true)
        {
            var page = await db.Database.SqlQuery<Guid>(
                $"""
                SELECT id AS "Value" FROM users
                WHERE context = 'MOBILE_BANKING' AND is_active AND id > {cursor}
                ORDER BY id
                LIMIT {size}
                """).ToListAsync(ct);
            if (page.Count == 0)
            {
                break;
            }
            eligible += page.Count;
            queued += await lanes.EnqueueBackgroundAsync(page, ct);
            cursor = page[^1];
            if (page.Count < size)
            {
                break;
            }
        }
        LogQueued(logger, eligible, queued);
        return new JobResult(queued, new Detail(eligible, queued, eligible - queued));
    }

    /// <summary>Seed 001's "Found N users to sync" of each periodic run.</summary>
    [LoggerMessage(Level = LogLevel.Information, Message = "Periodic balance sync: found {Eligible} users to sync, queued {Queued}")]
    private static partial void LogQueued(ILogger logger, int eligible, int queued);
}
