using Microsoft.EntityFrameworkCore;
using Tally.Data;
using Tally.Jobs.Lanes;

namespace Tally.Features.BalanceSync;

/// <summary>Whether a login's user may be synced at all.</summary>
public enum LoginUser
{
    Unknown,
    NotEligible,
    Eligible,
}

/// <summary>What queueing a login's user did; <see cref="Enqueued"/> is set for an eligible user.</summary>
public sealed record LoginQueued(LoginUser User, EnqueueResult? Enqueued)
{
    public static readonly LoginQueued Unknown = new(LoginUser.Unknown, null);
    public static readonly LoginQueued NotEligible = new(LoginUser.NotEligible, null);
}

/// <summary>
/// The first step of a login's sync: check that the user may be synced, then queue them on the
/// priority lane (promoting or joining an entry they already have). A seam for the round trips
/// alone: with the embedded lanes it is a user look-up and an in-memory enqueue
/// (<see cref="LanesLoginQueue"/>); with the shared PostgreSQL lanes it is ONE statement that also
/// claims the entry for an idle priority worker of this instance and reads the user's accounts, so
/// the worker starts the core call without going back to the database (<see cref="PostgresLoginQueue"/>).
/// </summary>
public interface ILoginQueue
{
    Task<LoginQueued> QueueLoginAsync(Guid userId, CancellationToken ct);
}

/// <summary>The login's first step over any <see cref="ILaneStore"/>: the user's eligibility from the database, then an ordinary priority enqueue.</summary>
public sealed class LanesLoginQueue(TallyDb db, ILaneStore lanes) : ILoginQueue
{
    public async Task<LoginQueued> QueueLoginAsync(Guid userId, CancellationToken ct)
    {
        var user = await db.Users.AsNoTracking().Where(u => u.Id == userId).Select(u => new { u.Context, u.IsActive }).FirstOrDefaultAsync(ct);
        if (user is null)
        {
            return LoginQueued.Unknown;
        }
        if (!SyncUserBalances.IsEligible(user.Context, user.IsActive))
        {
            return LoginQueued.NotEligible;
        }
        return new LoginQueued(LoginUser.Eligible, await lanes.EnqueueAsync(userId, Lane.Priority, ct));
    }
}

/// <summary>The login's first step on the shared PostgreSQL lanes, in one statement (<see cref="BalanceSyncSql.QueueLogin"/>); a claimed entry carries the user's accounts.</summary>
public sealed class PostgresLoginQueue(PostgresLaneStore lanes) : ILoginQueue
{
    private static readonly string Sql = BalanceSyncSql.Postgres.QueueLogin
        ?? throw new InvalidOperationException("PostgreSQL's balance-sync dialect has no login statement.");

    public async Task<LoginQueued> QueueLoginAsync(Guid userId, CancellationToken ct)
    {
        var queued = await lanes.EnqueueClaimingAsync(Sql, userId, async (reader, first, token) => await CoreAccountRows.ReadAllAsync(reader, first, token), ct);
        return queued.Check switch
        {
            KeyCheck.Unknown => LoginQueued.Unknown,
            KeyCheck.Refused => LoginQueued.NotEligible,
            _ => new LoginQueued(LoginUser.Eligible, queued.Enqueued),
        };
    }
}
