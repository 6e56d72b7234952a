using Tally.Features.BalanceSync;
using Tally.Jobs.Lanes;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.BalanceSync;

/// <summary>The gate's limits and precedence on a manual clock: exact, and no waiting.</summary>
public class CoreCallGateTests
{
    private static readonly CancellationToken None = CancellationToken.None;

    private static Func<Lane> On(Lane lane) => () => lane;

    [Fact]
    public async Task Priority_GoesBeforeEveryBackgroundCallWaitingAtTheGate()
    {
        var clock = new TimerClock();
        using var gate = new CoreCallGate(1, 0, new CoreRate(100, TimeSpan.FromSeconds(1)), clock);
        var first = await gate.EnterAsync(On(Lane.Background), None);
        var background = Enumerable.Range(0, 5).Select(_ => gate.EnterAsync(On(Lane.Background), None)).ToList();
        var priority = gate.EnterAsync(On(Lane.Priority), None);
        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.False(priority.IsCompleted); // one call at a time: the one in flight finishes first

        first.Dispose();
        Assert.True(priority.IsCompleted);
        Assert.All(background, t => Assert.False(t.IsCompleted));
        (await priority).Dispose();
        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(1, background.Count(t => t.IsCompleted));
    }

    [Fact]
    public async Task PromotedWaiter_IsServedAsPriority()
    {
        var clock = new TimerClock();
        using var gate = new CoreCallGate(1, 0, new CoreRate(100, TimeSpan.FromSeconds(1)), clock);
        var first = await gate.EnterAsync(On(Lane.Background), None);
        var other = gate.EnterAsync(On(Lane.Background), None);
        var lane = Lane.Background;
        var promoted = gate.EnterAsync(() => lane, None);
        lane = Lane.Priority;
        gate.Reconsider();
        first.Dispose();
        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.True(promoted.IsCompleted);
        Assert.False(other.IsCompleted);
        Assert.Equal(Lane.Priority, (await promoted).Lane);
    }

    [Fact]
    public async Task Rate_NeverMorePermitsInAnyWindow_AndBackgroundFollowsAnEvenSchedule()
    {
        var clock = new TimerClock();
        var rate = new CoreRate(10, TimeSpan.FromSeconds(1));
        using var gate = new CoreCallGate(4, 0, rate, clock);
        var grants = new List<DateTimeOffset>();
        var waiting = Enumerable.Range(0, 60).Select(_ => gate.EnterAsync(On(Lane.Background), None)).ToList();
        for (var step = 0; step < 6000; step++)
        {
            foreach (var done in waiting.Where(t => t.IsCompleted).ToList())
            {
                grants.Add(clock.GetUtcNow());
                waiting.Remove(done);
                (await done).Dispose();
            }
            clock.Advance(TimeSpan.FromMilliseconds(1));
        }
        Assert.Empty(waiting);
        for (var i = 0; i + 10 < grants.Count; i++)
        {
            Assert.True(grants[i + 10] - grants[i] >= TimeSpan.FromSeconds(1), $"11 calls within a second at {i}");
        }
        // Evenly: never three starts within one spacing (100 ms); the schedule may catch up by one.
        Assert.All(grants.Zip(grants.Skip(2)), pair => Assert.True(pair.Second - pair.First >= TimeSpan.FromMilliseconds(100)));
        Assert.True(grants[^1] - grants[0] >= TimeSpan.FromMilliseconds(100 * (grants.Count - 2)));
    }

    [Fact]
    public async Task LateStart_IsCountedFromWhenTheCallReallyStarted()
    {
        var clock = new TimerClock();
        using var gate = new CoreCallGate(2, 0, new CoreRate(2, TimeSpan.FromSeconds(1)), clock);
        var first = await gate.EnterAsync(On(Lane.Priority), None);
        clock.Advance(TimeSpan.FromMilliseconds(400)); // the caller resumed late
        first.Starting();
        first.Dispose();
        (await gate.EnterAsync(On(Lane.Priority), None)).Dispose();
        var third = gate.EnterAsync(On(Lane.Priority), None);
        clock.Advance(TimeSpan.FromMilliseconds(700)); // 1.1 s after the grant, 0.7 s after the real start
        Assert.False(third.IsCompleted);
        clock.Advance(TimeSpan.FromMilliseconds(300));
        Assert.True(third.IsCompleted);
        (await third).Dispose();
    }

    [Fact]
    public async Task Reserve_KeepsASlotAndAPermitFreeForALogin()
    {
        var clock = new TimerClock();
        using var gate = new CoreCallGate(2, 1, new CoreRate(3, TimeSpan.FromSeconds(1)), clock);
        var background = await gate.EnterAsync(On(Lane.Background), None);
        var second = gate.EnterAsync(On(Lane.Background), None);
        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.False(second.IsCompleted); // the background lane has one slot of two

        var login = gate.EnterAsync(On(Lane.Priority), None);
        Assert.True(login.IsCompleted); // at once, though a background call is in flight and another waits
        (await login).Dispose();
        background.Dispose();
        clock.Advance(TimeSpan.FromMilliseconds(500));
        Assert.True(second.IsCompleted);
        (await second).Dispose();

        // Background used 2 of 3 permits in the last second (its limit); a login still has the third.
        var third = gate.EnterAsync(On(Lane.Background), None);
        clock.Advance(TimeSpan.FromMilliseconds(100));
        Assert.False(third.IsCompleted);
        var login2 = gate.EnterAsync(On(Lane.Priority), None);
        Assert.True(login2.IsCompleted);
        (await login2).Dispose();
    }

    /// <summary>
    /// The defaults under load: three background workers that always have work, calls of 21 ms, one
    /// call at a time, 10 per (1 s + 25 ms), and logins arriving every 50-250 ms, for two simulated
    /// minutes. A login waits for the call in flight and the next free permit: never more than two
    /// spacings and a call. The core stays busy at its rate, logins included.
    /// </summary>
    [Fact]
    public async Task Defaults_UnderLoad_ALoginWaitsAtMostTwoSpacingsAndACall_AndTheRateIsUsed()
    {
        var clock = new TimerClock();
        var rate = new CoreRate(10, TimeSpan.FromMilliseconds(1025));
        using var gate = new CoreCallGate(1, 0, rate, clock);
        var call = TimeSpan.FromMilliseconds(21);
        var workers = Enumerable.Range(0, 3).Select(_ => (Waiting: gate.EnterAsync(On(Lane.Background), None), Lease: (CoreCallGate.Lease?)null, Until: DateTimeOffset.MinValue)).ToArray();
        (Task<CoreCallGate.Lease>? Waiting, CoreCallGate.Lease? Lease, DateTimeOffset Arrived, DateTimeOffset Until) login = (null, null, default, default);
        var random = new Random(7);
        var nextLogin = clock.GetUtcNow().AddMilliseconds(500);
        var waits = new List<TimeSpan>();
        var starts = new List<DateTimeOffset>();
        var end = clock.GetUtcNow().AddMinutes(2);
        while (clock.GetUtcNow() < end)
        {
            var now = clock.GetUtcNow();
            for (var i = 0; i < workers.Length; i++)
            {
                if (workers[i].Lease is null && workers[i].Waiting.IsCompleted)
                {
                    workers[i] = (workers[i].Waiting, await workers[i].Waiting, now + call);
                    workers[i].Lease!.Starting();
                    starts.Add(now);
                }
                if (workers[i].Lease is { } lease && now >= workers[i].Until)
                {
                    lease.Dispose();
                    workers[i] = (gate.EnterAsync(On(Lane.Background), None), null, DateTimeOffset.MinValue);
                }
            }
            if (login.Waiting is null && now >= nextLogin)
            {
                login = (gate.EnterAsync(On(Lane.Priority), None), null, now, default);
            }
            if (login is { Waiting.IsCompleted: true, Lease: null })
            {
                login = (login.Waiting, await login.Waiting, login.Arrived, now + call);
                login.Lease!.Starting();
                waits.Add(now - login.Arrived);
                starts.Add(now);
            }
            if (login.Lease is { } mine && now >= login.Until)
            {
                mine.Dispose();
                login = (null, null, default, default);
                nextLogin = now.AddMilliseconds(random.Next(50, 250));
            }
            clock.Advance(TimeSpan.FromMilliseconds(1));
        }

        var spacing = rate.Window / rate.Permits;
        Assert.True(waits.Count > 400);
        Assert.True(waits.Max() <= (2 * spacing) + call + TimeSpan.FromMilliseconds(2), $"a login waited {waits.Max().TotalMilliseconds} ms");
        for (var i = 0; i + 10 < starts.Count; i++)
        {
            Assert.True(starts[i + 10] - starts[i] >= rate.Window);
        }
        var perSecond = starts.Count / 120.0;
        Assert.True(perSecond >= 0.97 * rate.Permits / rate.Window.TotalSeconds, $"the core got {perSecond:0.00} calls a second");
    }

    [Fact]
    public async Task Pause_HoldsEveryLaneUntilRetryAfter()
    {
        var clock = new TimerClock();
        using var gate = new CoreCallGate(1, 0, new CoreRate(100, TimeSpan.FromSeconds(1)), clock);
        gate.PauseFor(TimeSpan.FromSeconds(2));
        var login = gate.EnterAsync(On(Lane.Priority), None);
        clock.Advance(TimeSpan.FromMilliseconds(1999));
        Assert.False(login.IsCompleted);
        clock.Advance(TimeSpan.FromMilliseconds(1));
        Assert.True(login.IsCompleted);
        (await login).Dispose();
    }

    [Fact]
    public async Task CancelledWaiter_LeavesTheQueue()
    {
        var clock = new TimerClock();
        using var gate = new CoreCallGate(1, 0, new CoreRate(100, TimeSpan.FromSeconds(1)), clock);
        var held = await gate.EnterAsync(On(Lane.Background), None);
        using var cancel = new CancellationTokenSource();
        var abandoned = gate.EnterAsync(On(Lane.Priority), cancel.Token);
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => abandoned);
        Assert.Equal(0, gate.Waiting);
        held.Dispose();
        Assert.Equal(0, gate.InFlight);
    }

    [Fact]
    public void Reserve_MustLeaveTheBackgroundLaneSomething() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new CoreCallGate(1, 1, new CoreRate(10, TimeSpan.FromSeconds(1)), TimeProvider.System));
}
