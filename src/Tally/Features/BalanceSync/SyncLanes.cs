namespace Tally.Features.BalanceSync;

/// <summary>
/// One user's place in a lane. <see cref="Ticket"/> names this queueing of the user; a later one gets
/// a new ticket. <see cref="Accounts"/>: the user's accounts when they were read together with the
/// claim (a login's entry on the shared lanes); null when the sync must read them.
/// </summary>
public sealed record SyncEntry(Guid UserId, SyncLane Lane, Guid Ticket, int Attempt, DateTime EnqueuedAt, IReadOnlyList<CoreAccount>? Accounts = null);

/// <summary>What asking for a user's sync did.</summary>
public enum EnqueueOutcome
{
    /// <summary>The user was not queued; now they are.</summary>
    Queued,

    /// <summary>The user was already waiting in that lane (or a better one): nothing changed.</summary>
    AlreadyQueued,

    /// <summary>The user was waiting in the background lane and moved to the priority lane.</summary>
    Promoted,

    /// <summary>The user's sync is running now; this request is answered by it.</summary>
    InFlight,
}

public sealed record EnqueueResult(EnqueueOutcome Outcome, Guid Ticket);

/// <summary>Depths of the lanes. <see cref="Retrying"/> counts waiting entries held back by a retry delay (they are in their lane's count too).</summary>
public sealed record LaneCounts(long Priority, long Background, long InFlight, long Retrying);

/// <summary>
/// Where users wait for their sync: the real seam between one instance (in memory) and many
/// (a PostgreSQL table every instance claims from). Both keep one entry per user: that is the
/// deduplication, and a login promotes a waiting entry rather than adding a second one.
/// </summary>
public interface ISyncLanes
{
    string Name { get; }

    /// <summary>Queues one user, or promotes / joins their existing entry.</summary>
    Task<EnqueueResult> EnqueueAsync(Guid userId, SyncLane lane, CancellationToken ct);

    /// <summary>Queues many users on the background lane; users already queued are left as they are. Answers how many were new.</summary>
    Task<int> EnqueueBackgroundAsync(IReadOnlyList<Guid> userIds, CancellationToken ct);

    /// <summary>Takes the oldest due entry of <paramref name="lane"/> for this instance, or null.</summary>
    Task<SyncEntry?> ClaimAsync(SyncLane lane, CancellationToken ct);

    /// <summary>The entry is settled (synced, or given up until the next period): the user leaves the lanes.</summary>
    Task CompleteAsync(SyncEntry entry, CancellationToken ct);

    /// <summary>
    /// Puts a claimed entry back in <paramref name="lane"/> as attempt <paramref name="attempt"/>, due at
    /// <paramref name="notBefore"/>. An entry a login joined while it ran stays on the priority lane.
    /// </summary>
    Task RetryAsync(SyncEntry entry, SyncLane lane, int attempt, DateTime notBefore, CancellationToken ct);

    /// <summary>A login stopped waiting: its entry, if still waiting in the priority lane, moves to the background lane.</summary>
    Task DemoteAsync(Guid userId, Guid ticket, CancellationToken ct);

    /// <summary>Whether the entry with this ticket is still queued or running (on any instance).</summary>
    Task<bool> IsPendingAsync(Guid userId, Guid ticket, CancellationToken ct);

    Task<LaneCounts> CountAsync(CancellationToken ct);

    /// <summary>
    /// Claims the oldest due entry of <paramref name="lane"/>, waiting until there is one: woken at once
    /// by work queued on this instance, and looking again periodically for work queued elsewhere or a
    /// retry coming due.
    /// </summary>
    Task<SyncEntry> TakeAsync(SyncLane lane, CancellationToken ct);
}

/// <summary>Wakes every current waiter; a waiter that took <see cref="Next"/> before looking for work cannot miss a wake-up.</summary>
internal sealed class WorkSignal
{
    private TaskCompletionSource _next = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public Task Next => Volatile.Read(ref _next).Task;

    public void Set() => Interlocked.Exchange(ref _next, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();

    public static async Task WaitAsync(Task next, TimeSpan max, TimeProvider clock, CancellationToken ct)
    {
        if (max <= TimeSpan.Zero)
        {
            return;
        }
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        await Task.WhenAny(next, Task.Delay(max, clock, stop.Token));
        await stop.CancelAsync();
        ct.ThrowIfCancellationRequested();
    }
}
