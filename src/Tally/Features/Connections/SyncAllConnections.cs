using System.Buffers.Binary;
using System.Security.Cryptography;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Tally.Data;
using Tally.Jobs.Scheduling;

namespace Tally.Features.Connections;

/// <summary>
/// When the schedule syncs a connection. Each connection has a fixed phase inside its provider's
/// period (a hash of its id), so N connections spread evenly over the period instead of all falling
/// due at once; a connection is due when its latest slot (the last instant at or before now that is
/// its phase plus a whole number of periods) came after its last provider call. Whatever the tick
/// rate of the job, that is at most one scheduled call per period per connection (SimpleFIN: every
/// 2 hours, 12 of its 24 a day), and never sooner than the minimum interval after a sync.
/// </summary>
public static class SyncSchedule
{
    public static TimeSpan Phase(Guid connectionId, TimeSpan period)
    {
        Span<byte> id = stackalloc byte[16];
        connectionId.TryWriteBytes(id);
        var hash = BinaryPrimitives.ReadUInt64BigEndian(SHA256.HashData(id));
        return TimeSpan.FromTicks((long)(hash % (ulong)period.Ticks));
    }

    public static DateTime LatestSlot(Guid connectionId, DateTime now, TimeSpan period)
    {
        var phase = Phase(connectionId, period).Ticks;
        var slots = (now.Ticks - phase) / period.Ticks;
        return new DateTime((slots * period.Ticks) + phase, DateTimeKind.Utc);
    }

    public static bool IsDue(Guid connectionId, DateTime? lastAttemptAt, DateTime? lastSyncAt, DateTime? retryNotBefore, DateTime now, TimeSpan period, TimeSpan minInterval) =>
        (retryNotBefore is null || retryNotBefore <= now)
        && (lastSyncAt is null || now - lastSyncAt >= minInterval)
        && (lastAttemptAt is null || lastAttemptAt < LatestSlot(connectionId, now, period));
}

/// <summary>
/// <c>connections.sync-all</c> (every 5 minutes): pages through active connections with a keyset
/// cursor on id, keeps those <see cref="SyncSchedule"/> says are due and whose provider quota is not
/// spent (at most <c>DailyQuota</c> calls in any 24 hours, counted from the sync runs), and syncs
/// them a few at a time through <see cref="SyncConnection"/>, each in its own error boundary. Calls
/// to each provider also pass its <c>RateLimits:{slug}</c> limiter, which delays rather
/// than drops.
/// </summary>
public sealed partial class SyncAllConnections(
    IDbContextFactory<TallyDb> dbs, SyncConnection sync, IOptions<ConnectionsOptions> options, TimeProvider clock, ILogger<SyncAllConnections> logger)
    : IScheduledJob
{
    public const string Name = "connections.sync-all";

    public sealed record Summary(int Due, int Synced, int Failed, int SkippedForQuota);

    private sealed record Candidate(Guid Id, Guid UserId, string ProviderSlug, DateTime? LastAttemptAt, DateTime? LastSyncAt, DateTime? RetryNotBefore);

    public async Task<JobResult> RunAsync(JobRun run, CancellationToken ct)
    {
        var settings = options.Value;
        var now = clock.GetUtcNow().UtcDateTime;
        var cursor = Guid.Empty;
        int due = 0, synced = 0, failed = 0, skipped = 0;
        while (true)
        {
            var (page, full) = await DuePageAsync(cursor, now, ct);
            if (page.Count > 0)
            {
                var eligible = await WithinQuotaAsync(page, now, ct);
                due += page.Count;
                skipped += page.Count - eligible.Count;
                await Parallel.ForEachAsync(eligible, new ParallelOptions { MaxDegreeOfParallelism = settings.SyncConcurrency, CancellationToken = ct }, async (c, token) =>
                {
                    try
                    {
                        var outcome = await sync.HandleAsync(new SyncCommand(c.Id, c.UserId, false, SyncTriggers.Schedule), token);
                        Interlocked.Increment(ref outcome is SyncOutcome.Synced ? ref synced : ref failed);
                    }
                    catch (Exception e) when (!token.IsCancellationRequested)
                    {
                        // One connection's fault (a database hiccup) costs that connection this run, not the others.
                        LogConnectionFailed(logger, e, c.Id);
                        Interlocked.Increment(ref failed);
                    }
                });
            }
            if (full is not { } next)
            {
                break;
            }
            cursor = next;
        }
        LogRun(logger, due, synced, failed, skipped);
        return new JobResult(synced + failed, new Summary(due, synced, failed, skipped));
    }

    /// <summary>The due connections of one page of the keyset scan, and where the next page starts (null after the last).</summary>
    private async Task<(List<Candidate> Due, Guid? Next)> DuePageAsync(Guid after, DateTime now, CancellationToken ct)
    {
        var settings = options.Value;
        await using var db = await dbs.CreateDbContextAsync(ct);
        var page = await db.ProviderConnections.AsNoTracking()
            .Where(c => c.Status == ConnectionStatus.Active && c.DeletedAt == null
                && (c.ConsentExpiresAt == null || c.ConsentExpiresAt > now) && c.Id.CompareTo(after) > 0)
            .OrderBy(c => c.Id).Take(settings.PageSize)
            .Select(c => new Candidate(c.Id, c.UserId, c.ProviderSlug, c.LastAttemptAt, c.LastSyncAt, c.RetryNotBefore))
            .ToListAsync(ct);
        var due = page.Where(c => SyncSchedule.IsDue(c.Id, c.LastAttemptAt, c.LastSyncAt, c.RetryNotBefore, now,
            settings.PolicyFor(c.ProviderSlug).SchedulePeriod, settings.MinSyncInterval)).ToList();
        return (due, page.Count == settings.PageSize ? page[^1].Id : null);
    }

    /// <summary>Those that made fewer than their provider's daily quota of calls in the last 24 hours.</summary>
    private async Task<List<Candidate>> WithinQuotaAsync(List<Candidate> due, DateTime now, CancellationToken ct)
    {
        var ids = due.Select(c => c.Id).ToList();
        await using var db = await dbs.CreateDbContextAsync(ct);
        var calls = await db.ConnectionSyncRuns.AsNoTracking()
            .Where(r => ids.Contains(r.ConnectionId)).ProviderCallsSince(now.AddDays(-1))
            .GroupBy(r => r.ConnectionId).Select(g => new { g.Key, Count = g.Count() })
            .ToDictionaryAsync(g => g.Key, g => g.Count, ct);
        return due.Where(c => calls.GetValueOrDefault(c.Id) < options.Value.PolicyFor(c.ProviderSlug).DailyQuota).ToList();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Connections due {Due}: {Synced} synced, {Failed} failed, {Skipped} skipped for quota")]
    private static partial void LogRun(ILogger logger, int due, int synced, int failed, int skipped);

    [LoggerMessage(Level = LogLevel.Error, Message = "Scheduled sync of connection {ConnectionId} failed unexpectedly")]
    private static partial void LogConnectionFailed(ILogger logger, Exception e, Guid connectionId);
}
