using Tally.Jobs.Lanes;

namespace Tally.Features.BalanceSync;

/// <summary>
/// The call gate of one instance (the one that answers): calls in flight (of which background),
/// waiting, the limits (calls at once, the priority reserve, permits per window), starts within the
/// current window, and the end of a pause the core asked for (a 429's Retry-After), if one holds.
/// </summary>
public sealed record CoreCallGateState(
    int InFlight, int InFlightBackground, int Waiting, int MaxCalls, int PriorityReserve, int Permits, double WindowSeconds, int StartsInWindow,
    DateTime? PausedUntil);

/// <summary>
/// The door to the core of one instance, which orders that instance's callers; behind it the
/// fleet's counts (<see cref="Jobs.RateLimits.FleetLimiter"/>) hold the same limits across every
/// instance. It holds three limits and one ordering:
/// <list type="bullet">
/// <item>at most <c>maxCalls</c> calls in flight, of which the background lane may hold only
/// <c>maxCalls - reserve</c>;</item>
/// <item>at most <see cref="CoreRate.Permits"/> call starts in any <see cref="CoreRate.Window"/>
/// (a sliding log, so no timer drift lets one more through), of which the background lane may use
/// only <c>permits - reserve</c>, on an even schedule shared with the priority lane (a login takes the
/// background's next turn), so the core sees a steady trickle, not bursts, and a waiting login finds a
/// free permit within about one spacing (a late start may catch up by one);</item>
/// <item>a pause until the time a 429's <c>Retry-After</c> named, for every lane;</item>
/// <item>strict precedence: a waiting priority call always goes before any waiting background call,
/// and a background waiter whose user logs in meanwhile is promoted in place.</item>
/// </list>
/// Why not <see cref="System.Threading.RateLimiting.TokenBucketRateLimiter"/>: it has no notion of
/// priority, and its timer-driven refills can let one call too many into a one-second window.
/// </summary>
public sealed class CoreCallGate : IDisposable
{
    private readonly object _lock = new();
    private readonly TimeProvider _clock;
    private readonly int _maxCalls;
    private readonly int _reserve;
    private readonly int _permits;
    private readonly long _window;
    private readonly long _spacing;
    private readonly Queue<Start> _starts = new();
    private readonly List<Waiter> _waiters = [];
    private readonly ITimer _timer;
    private long _timerDue = long.MaxValue;
    private int _inFlight;
    private int _inFlightBackground;
    private long _nextScheduledStart = long.MinValue;
    private long _pausedUntil = long.MinValue;

    public CoreCallGate(int maxCalls, int reserve, CoreRate rate, TimeProvider clock)
    {
        if (maxCalls < 1 || reserve < 0 || reserve >= maxCalls || reserve >= rate.Permits)
        {
            throw new ArgumentOutOfRangeException(nameof(reserve), "The priority reserve must leave the background lane at least one call slot and one permit.");
        }
        _clock = clock;
        _maxCalls = maxCalls;
        _reserve = reserve;
        _permits = rate.Permits;
        _window = ToTimestamp(rate.Window);
        _spacing = _window / (rate.Permits - reserve);
        _timer = clock.CreateTimer(_ => OnTimer(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    /// <summary>Calls in flight through this gate now.</summary>
    public int InFlight
    {
        get
        {
            lock (_lock)
            {
                return _inFlight;
            }
        }
    }

    /// <summary>Calls waiting to go through.</summary>
    public int Waiting
    {
        get
        {
            lock (_lock)
            {
                return _waiters.Count;
            }
        }
    }

    /// <summary>What the gate holds now, for the operator: calls in flight and waiting, starts in the current window, and a pause the core asked for.</summary>
    public CoreCallGateState State()
    {
        lock (_lock)
        {
            var now = Now();
            var inWindow = _starts.Count(s => s.At > now - _window);
            DateTime? pausedUntil = now < _pausedUntil
                ? _clock.GetUtcNow().UtcDateTime + _clock.GetElapsedTime(now, _pausedUntil)
                : null;
            return new CoreCallGateState(_inFlight, _inFlightBackground, _waiters.Count, _maxCalls, _reserve, _permits,
                _clock.GetElapsedTime(0, _window).TotalSeconds, inWindow, pausedUntil);
        }
    }

    /// <summary>
    /// Waits for the right to make one call. <paramref name="lane"/> is read each time the gate
    /// decides, so a caller promoted while waiting is served as priority. Dispose the lease when the
    /// call has its answer.
    /// </summary>
    public Task<Lease> EnterAsync(Func<Lane> lane, CancellationToken ct)
    {
        var waiter = new Waiter(lane);
        lock (_lock)
        {
            _waiters.Add(waiter);
            Pump();
        }
        var granted = waiter.Granted.Task;
        if (!granted.IsCompleted && ct.CanBeCanceled)
        {
            var registration = ct.Register(() => Abandon(waiter, ct));
            granted.ContinueWith(_ => registration.Dispose(), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
        return granted;
    }

    /// <summary>The core asked for a pause (429 Retry-After): no lane calls it for <paramref name="pause"/>.</summary>
    public void PauseFor(TimeSpan pause)
    {
        lock (_lock)
        {
            _pausedUntil = Math.Max(_pausedUntil, Now() + ToTimestamp(pause));
            Pump();
        }
    }

    /// <summary>A waiter's lane may have changed (a login promoted it): decide again.</summary>
    public void Reconsider()
    {
        lock (_lock)
        {
            Pump();
        }
    }

    public void Dispose() => _timer.Dispose();

    /// <summary>
    /// The call really starts now: count it from now, not from the grant. Under load the granted caller
    /// may resume late; counting from the grant would let the next calls follow too closely.
    /// </summary>
    private void MarkStarted(Lease lease)
    {
        lock (_lock)
        {
            lease.Started.At = Math.Max(lease.Started.At, Now());
        }
    }

    private void Release(Lease lease)
    {
        lock (_lock)
        {
            _inFlight--;
            if (lease.Lane == Lane.Background)
            {
                _inFlightBackground--;
            }
            Pump();
        }
    }

    private void Abandon(Waiter waiter, CancellationToken ct)
    {
        lock (_lock)
        {
            if (_waiters.Remove(waiter))
            {
                waiter.Granted.TrySetCanceled(ct);
            }
        }
    }

    private void OnTimer()
    {
        lock (_lock)
        {
            _timerDue = long.MaxValue;
            Pump();
        }
    }

    /// <summary>Grants as many waiters as the limits allow, best first. Runs under the lock.</summary>
    private void Pump()
    {
        var now = Now();
        while (_starts.Count > 0 && _starts.Peek().At <= now - _window)
        {
            _starts.Dequeue();
        }
        if (now < _pausedUntil)
        {
            Arm(_pausedUntil, now);
            return;
        }
        while (_waiters.Count > 0)
        {
            var index = _waiters.FindIndex(w => w.Lane() == Lane.Priority);
            var lane = index >= 0 ? Lane.Priority : Lane.Background;
            index = Math.Max(index, 0);
            // Strict precedence: the best waiter's limits are the loosest, so if it cannot go, nobody can.
            if (!CanStart(lane, now, out var retryAt))
            {
                if (retryAt is { } at)
                {
                    Arm(at, now);
                }
                return;
            }
            var waiter = _waiters[index];
            _waiters.RemoveAt(index);
            _inFlight++;
            if (lane == Lane.Background)
            {
                _inFlightBackground++;
            }
            // One schedule for both lanes: a start per spacing, which a late start may catch up by one.
            // A priority call takes the background's next turn, so the two together stay even and a
            // login finds a free permit within about one spacing.
            _nextScheduledStart = Math.Max(_nextScheduledStart, now) + _spacing;
            var start = new Start { At = now };
            _starts.Enqueue(start);
            waiter.Granted.TrySetResult(new Lease(this, lane, start));
        }
    }

    /// <summary>Whether a call of <paramref name="lane"/> may start now; if only time stands in the way, when to look again.</summary>
    private bool CanStart(Lane lane, long now, out long? retryAt)
    {
        retryAt = null;
        var background = lane == Lane.Background;
        if (_inFlight >= _maxCalls || (background && _inFlightBackground >= _maxCalls - _reserve))
        {
            return false; // a release will pump again
        }
        var limit = background ? _permits - _reserve : _permits;
        if (_starts.Count >= limit)
        {
            // The window frees a permit when its (count - limit + 1)th oldest start leaves it.
            retryAt = _starts.ElementAt(_starts.Count - limit).At + _window;
            return false;
        }
        if (background && _nextScheduledStart != long.MinValue && now < _nextScheduledStart - _spacing)
        {
            retryAt = _nextScheduledStart - _spacing;
            return false;
        }
        return true;
    }

    private void Arm(long at, long now)
    {
        if (at >= _timerDue)
        {
            return;
        }
        _timerDue = at;
        _timer.Change(TimeSpan.FromTicks(Math.Max(1, (at - now) * TimeSpan.TicksPerSecond / _clock.TimestampFrequency)), Timeout.InfiniteTimeSpan);
    }

    private long Now() => _clock.GetTimestamp();

    private long ToTimestamp(TimeSpan span) => (long)(span.TotalSeconds * _clock.TimestampFrequency);

    private sealed class Waiter(Func<Lane> lane)
    {
        public Func<Lane> Lane { get; } = lane;
        public TaskCompletionSource<Lease> Granted { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>A call's start in the rate window; moved to the real start by <see cref="Lease.Starting"/>.</summary>
    internal sealed class Start
    {
        public long At { get; set; }
    }

    /// <summary>The right to one call in flight. Disposing it frees the slot (the rate window keeps its start).</summary>
    public sealed class Lease : IDisposable
    {
        private readonly CoreCallGate _gate;
        private int _released;

        internal Lease(CoreCallGate gate, Lane lane, Start started)
        {
            _gate = gate;
            Lane = lane;
            Started = started;
        }

        public Lane Lane { get; }

        internal Start Started { get; }

        /// <summary>Call right before sending: the rate window counts the call from this moment.</summary>
        public void Starting() => _gate.MarkStarted(this);

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0)
            {
                _gate.Release(this);
            }
        }
    }
}
