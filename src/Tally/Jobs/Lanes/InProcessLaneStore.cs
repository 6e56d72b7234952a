namespace Tally.Jobs.Lanes;

/// <summary>
/// The embedded lanes: one process, in memory. Entries waiting here are lost with the process, so
/// only a feature that re-derives its keys may use them (balance sync's periodic job queues every
/// user each interval, and a login asks again); nothing else depends on an entry surviving (the
/// same argument as the in-process queue transport's). One entry per key (a dictionary), FIFO per
/// lane with lazy removal, and a timer-ordered heap for entries waiting out a retry delay.
/// </summary>
public sealed class InProcessLaneStore(TimeProvider clock) : ILaneStore
{
    private readonly object _lock = new();
    private readonly Dictionary<Guid, Entry> _entries = [];
    private readonly Queue<(Entry Entry, int Version)> _priority = new();
    private readonly Queue<(Entry Entry, int Version)> _background = new();
    private readonly PriorityQueue<(Entry Entry, int Version), DateTime> _delayed = new();
    private readonly WorkSignal _prioritySignal = new();
    private readonly WorkSignal _backgroundSignal = new();
    private long _waitingPriority;
    private long _waitingBackground;
    private long _inFlight;
    private long _retrying;

    public string Name => "in-process";

    public Task<EnqueueResult> EnqueueAsync(Guid key, Lane lane, CancellationToken ct)
    {
        EnqueueResult result;
        lock (_lock)
        {
            result = EnqueueLocked(key, lane, clock.GetUtcNow().UtcDateTime);
        }
        SignalFor(lane).Set();
        return Task.FromResult(result);
    }

    public Task<int> EnqueueBackgroundAsync(IReadOnlyList<Guid> keys, CancellationToken ct)
    {
        var queued = 0;
        lock (_lock)
        {
            var now = clock.GetUtcNow().UtcDateTime;
            foreach (var id in keys)
            {
                if (!_entries.ContainsKey(id))
                {
                    EnqueueLocked(id, Lane.Background, now);
                    queued++;
                }
            }
        }
        if (queued > 0)
        {
            _backgroundSignal.Set();
        }
        return Task.FromResult(queued);
    }

    private EnqueueResult EnqueueLocked(Guid key, Lane lane, DateTime now)
    {
        if (!_entries.TryGetValue(key, out var entry))
        {
            entry = new Entry(key, lane, Guid.CreateVersion7(), now);
            _entries[key] = entry;
            Push(entry);
            return new EnqueueResult(EnqueueOutcome.Queued, entry.Ticket);
        }
        if (lane != Lane.Priority || entry.Lane == Lane.Priority)
        {
            return new EnqueueResult(entry.Claimed ? EnqueueOutcome.InFlight : EnqueueOutcome.AlreadyQueued, entry.Ticket);
        }
        if (entry.Claimed)
        {
            // Running now: should it need a retry, the retry belongs to the priority lane.
            entry.Lane = Lane.Priority;
            return new EnqueueResult(EnqueueOutcome.InFlight, entry.Ticket);
        }
        // Promotion in place: out of the background lane (or its retry delay), to the back of the priority lane, due now.
        Unpush(entry);
        entry.Lane = Lane.Priority;
        entry.NotBefore = now;
        Push(entry);
        return new EnqueueResult(EnqueueOutcome.Promoted, entry.Ticket);
    }

    public Task<LaneEntry?> ClaimAsync(Lane lane, CancellationToken ct)
    {
        lock (_lock)
        {
            var now = clock.GetUtcNow().UtcDateTime;
            while (_delayed.TryPeek(out var due, out var at) && at <= now)
            {
                _delayed.Dequeue();
                if (due.Entry.Version == due.Version && !due.Entry.Claimed)
                {
                    _retrying--;
                    due.Entry.Delayed = false;
                    QueueOf(due.Entry.Lane).Enqueue((due.Entry, due.Entry.Version));
                }
            }
            var queue = QueueOf(lane);
            while (queue.TryDequeue(out var next))
            {
                var entry = next.Entry;
                if (entry.Version != next.Version || entry.Claimed || entry.Delayed || entry.Lane != lane)
                {
                    continue; // promoted, demoted or re-queued since: a stale place
                }
                entry.Claimed = true;
                AddWaiting(lane, -1);
                _inFlight++;
                return Task.FromResult<LaneEntry?>(new LaneEntry(entry.Key, lane, entry.Ticket, entry.Attempt, entry.EnqueuedAt));
            }
            return Task.FromResult<LaneEntry?>(null);
        }
    }

    public Task CompleteAsync(LaneEntry entry, CancellationToken ct)
    {
        lock (_lock)
        {
            if (_entries.TryGetValue(entry.Key, out var current) && current.Ticket == entry.Ticket && current.Claimed)
            {
                _entries.Remove(entry.Key);
                _inFlight--;
            }
        }
        return Task.CompletedTask;
    }

    public Task RetryAsync(LaneEntry entry, Lane lane, int attempt, DateTime notBefore, CancellationToken ct)
    {
        lock (_lock)
        {
            if (_entries.TryGetValue(entry.Key, out var current) && current.Ticket == entry.Ticket && current.Claimed)
            {
                current.Claimed = false;
                _inFlight--;
                current.Attempt = attempt;
                // A login that joined the running sync made it priority; keep that.
                current.Lane = current.Lane == Lane.Priority ? Lane.Priority : lane;
                current.NotBefore = notBefore;
                Push(current);
            }
        }
        SignalFor(lane).Set();
        return Task.CompletedTask;
    }

    public Task DemoteAsync(Guid key, Guid ticket, CancellationToken ct)
    {
        lock (_lock)
        {
            if (_entries.TryGetValue(key, out var entry) && entry.Ticket == ticket && !entry.Claimed && entry.Lane == Lane.Priority)
            {
                Unpush(entry);
                entry.Lane = Lane.Background;
                Push(entry);
            }
        }
        return Task.CompletedTask;
    }

    public Task<bool> IsPendingAsync(Guid key, Guid ticket, CancellationToken ct)
    {
        lock (_lock)
        {
            return Task.FromResult(_entries.TryGetValue(key, out var entry) && entry.Ticket == ticket);
        }
    }

    public Task<LaneCounts> CountAsync(CancellationToken ct)
    {
        lock (_lock)
        {
            return Task.FromResult(new LaneCounts(_waitingPriority, _waitingBackground, _inFlight, _retrying));
        }
    }

    public async Task<LaneEntry> TakeAsync(Lane lane, CancellationToken ct)
    {
        while (true)
        {
            var next = SignalFor(lane).Next;
            if (await ClaimAsync(lane, ct) is { } entry)
            {
                return entry;
            }
            var wait = TimeSpan.FromSeconds(1);
            lock (_lock)
            {
                // A retry coming due is not signalled: wake for the earliest one.
                if (_delayed.TryPeek(out _, out var at))
                {
                    var dueIn = at - clock.GetUtcNow().UtcDateTime;
                    wait = dueIn < wait ? dueIn : wait;
                }
            }
            await WorkSignal.WaitAsync(next, wait, clock, ct);
        }
    }

    /// <summary>Places a waiting entry in its lane, or in the retry heap when not yet due. Counts it.</summary>
    private void Push(Entry entry)
    {
        entry.Version++;
        AddWaiting(entry.Lane, +1);
        if (entry.NotBefore > clock.GetUtcNow().UtcDateTime)
        {
            entry.Delayed = true;
            _retrying++;
            _delayed.Enqueue((entry, entry.Version), entry.NotBefore);
        }
        else
        {
            entry.Delayed = false;
            QueueOf(entry.Lane).Enqueue((entry, entry.Version));
        }
    }

    /// <summary>Takes a waiting entry out of its place (lazily: its old place goes stale) and uncounts it.</summary>
    private void Unpush(Entry entry)
    {
        entry.Version++;
        AddWaiting(entry.Lane, -1);
        if (entry.Delayed)
        {
            entry.Delayed = false;
            _retrying--;
        }
    }

    private void AddWaiting(Lane lane, int delta)
    {
        if (lane == Lane.Priority)
        {
            _waitingPriority += delta;
        }
        else
        {
            _waitingBackground += delta;
        }
    }

    private Queue<(Entry Entry, int Version)> QueueOf(Lane lane) => lane == Lane.Priority ? _priority : _background;

    private WorkSignal SignalFor(Lane lane) => lane == Lane.Priority ? _prioritySignal : _backgroundSignal;

    private sealed class Entry(Guid key, Lane lane, Guid ticket, DateTime now)
    {
        public Guid Key { get; } = key;
        public Lane Lane { get; set; } = lane;
        public Guid Ticket { get; } = ticket;
        public DateTime EnqueuedAt { get; } = now;
        public DateTime NotBefore { get; set; } = now;
        public int Attempt { get; set; }
        public int Version { get; set; }
        public bool Claimed { get; set; }
        public bool Delayed { get; set; }
    }
}
