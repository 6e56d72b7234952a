namespace Tally.Jobs.Lanes;

/// <summary>
/// Who is waiting for whose run on this instance: a request registers before it queues, so the
/// settlement it waits for cannot slip past it. Several requests for one key share one wait.
/// </summary>
public sealed class LaneWaiters
{
    private readonly object _lock = new();
    private readonly Dictionary<Guid, Awaited> _awaited = [];

    /// <summary>Starts waiting for <paramref name="key"/>'s next settlement; dispose to stop.</summary>
    public Registration Await(Guid key)
    {
        lock (_lock)
        {
            if (!_awaited.TryGetValue(key, out var awaited))
            {
                _awaited[key] = awaited = new Awaited();
            }
            awaited.Count++;
            return new Registration(this, key, awaited);
        }
    }

    public bool IsAwaited(Guid key)
    {
        lock (_lock)
        {
            return _awaited.ContainsKey(key);
        }
    }

    /// <summary>
    /// An entry of the key settled on another instance (PostgreSQL's <c>NOTIFY</c>, see
    /// <see cref="PostgresLaneSignals"/>): whoever waits here looks at the lanes now rather than at
    /// their next poll. Only a look: which entry settled is for the lanes to say.
    /// </summary>
    public void Nudge(Guid key)
    {
        TaskCompletionSource? nudged = null;
        lock (_lock)
        {
            if (_awaited.TryGetValue(key, out var awaited))
            {
                nudged = awaited.Nudged;
                awaited.Nudged = new(TaskCreationOptions.RunContinuationsAsynchronously);
            }
        }
        nudged?.TrySetResult();
    }

    /// <summary>The key's entry settled on this instance: wake everyone waiting for it, with the run's answer (<see cref="LaneResult.Answer"/>).</summary>
    public void Settled(Guid key, object? answer)
    {
        Awaited? awaited;
        lock (_lock)
        {
            if (!_awaited.Remove(key, out awaited))
            {
                return;
            }
        }
        awaited.Done.TrySetResult(answer);
    }

    private void Leave(Guid key, Awaited awaited)
    {
        lock (_lock)
        {
            if (--awaited.Count == 0 && _awaited.TryGetValue(key, out var current) && current == awaited)
            {
                _awaited.Remove(key);
            }
        }
    }

    internal sealed class Awaited
    {
        public TaskCompletionSource<object?> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public TaskCompletionSource Nudged { get; set; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public int Count { get; set; }
    }

    public sealed class Registration : IDisposable
    {
        private readonly LaneWaiters _owner;
        private readonly Guid _key;
        private readonly Awaited _awaited;
        private int _left;

        internal Registration(LaneWaiters owner, Guid key, Awaited awaited)
        {
            _owner = owner;
            _key = key;
            _awaited = awaited;
        }

        /// <summary>Completes when the entry settled here, with the run's answer.</summary>
        public Task<object?> Settled => _awaited.Done.Task;

        /// <summary>Completes at the next sign that an entry of the key settled elsewhere; read it again after each look.</summary>
        public Task Nudged
        {
            get
            {
                lock (_owner._lock)
                {
                    return _awaited.Nudged.Task;
                }
            }
        }

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _left, 1) == 0)
            {
                _owner.Leave(_key, _awaited);
            }
        }
    }
}
