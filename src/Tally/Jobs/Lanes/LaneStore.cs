namespace Tally.Jobs.Lanes;

/// <summary>The two lanes: work someone is waiting for (a login), and everything else.</summary>
public enum Lane
{
    Priority,
    Background,
}

/// <summary>
/// One key's place in a lane (balance sync's keys are users). <see cref="Ticket"/> names this queueing
/// of the key; a later one gets a new ticket. <see cref="Handed"/>: what the feature read together
/// with the claim (<see cref="PostgresLaneStore.EnqueueClaimingAsync"/>), handed to the worker so it
/// need not read it again; null when the worker must read it.
/// </summary>
public sealed record LaneEntry(Guid Key, Lane Lane, Guid Ticket, int Attempt, DateTime EnqueuedAt, object? Handed = null);

/// <summary>What asking for a key's run did.</summary>
public enum EnqueueOutcome
{
    /// <summary>The key was not queued; now it is.</summary>
    Queued,

    /// <summary>The key was already waiting in that lane (or a better one): nothing changed.</summary>
    AlreadyQueued,

    /// <summary>The key was waiting in the background lane and moved to the priority lane.</summary>
    Promoted,

    /// <summary>The key's entry is running now; this request is answered by it.</summary>
    InFlight,
}

public sealed record EnqueueResult(EnqueueOutcome Outcome, Guid Ticket);

/// <summary>Depths of the lanes. <see cref="Retrying"/> counts waiting entries held back by a retry delay (they are in their lane's count too).</summary>
public sealed record LaneCounts(long Priority, long Background, long InFlight, long Retrying);

/// <summary>
/// Deduplicating lanes with promotion: where keys wait for a run, at most once each. The real seam
/// between one instance (<see cref="InProcessLaneStore"/>, in memory) and many
/// (<see cref="PostgresLaneStore"/>, a table every instance claims from). Both keep one entry per key:
/// that is the deduplication, and a priority request promotes a waiting entry rather than adding a
/// second one. The contract is one shared test suite run against both.
/// </summary>
public interface ILaneStore
{
    /// <summary><c>in-process</c> or <c>postgres</c>, as the status endpoints answer it.</summary>
    string Name { get; }

    /// <summary>Queues one key, or promotes / joins its existing entry.</summary>
    Task<EnqueueResult> EnqueueAsync(Guid key, Lane lane, CancellationToken ct);

    /// <summary>Queues many keys on the background lane; keys already queued are left as they are. Answers how many were new.</summary>
    Task<int> EnqueueBackgroundAsync(IReadOnlyList<Guid> keys, CancellationToken ct);

    /// <summary>Takes the oldest due entry of <paramref name="lane"/> for this instance, or null.</summary>
    Task<LaneEntry?> ClaimAsync(Lane lane, CancellationToken ct);

    /// <summary>The entry is settled (done, or given up until it is queued again): the key leaves the lanes.</summary>
    Task CompleteAsync(LaneEntry entry, CancellationToken ct);

    /// <summary>
    /// Puts a claimed entry back in <paramref name="lane"/> as attempt <paramref name="attempt"/>, due at
    /// <paramref name="notBefore"/>. An entry promoted while it ran stays on the priority lane.
    /// </summary>
    Task RetryAsync(LaneEntry entry, Lane lane, int attempt, DateTime notBefore, CancellationToken ct);

    /// <summary>Nobody waits for it any more: the entry, if still waiting in the priority lane, moves to the background lane.</summary>
    Task DemoteAsync(Guid key, Guid ticket, CancellationToken ct);

    /// <summary>Whether the entry with this ticket is still queued or running (on any instance).</summary>
    Task<bool> IsPendingAsync(Guid key, Guid ticket, CancellationToken ct);

    Task<LaneCounts> CountAsync(CancellationToken ct);

    /// <summary>
    /// Claims the oldest due entry of <paramref name="lane"/>, waiting until there is one: woken at once
    /// by work queued on this instance, and looking again periodically for work queued elsewhere or a
    /// retry coming due.
    /// </summary>
    Task<LaneEntry> TakeAsync(Lane lane, CancellationToken ct);
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
