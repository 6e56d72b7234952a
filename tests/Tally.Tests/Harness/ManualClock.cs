namespace Tally.Tests.Harness;

/// <summary>
/// A clock a test moves by hand. It starts near the real time (so tokens and keys stay valid while
/// it moves a little): at the next multiple of <c>alignTo</c> plus a second, when given, so a test
/// knows where it stands in periodic behaviour such as the sandbox's balance drift.
/// </summary>
public sealed class ManualClock : TimeProvider
{
    private long _ticks;

    public ManualClock(TimeSpan? alignTo = null)
    {
        var now = DateTimeOffset.UtcNow.UtcTicks;
        _ticks = alignTo is { Ticks: > 0 } align
            ? ((now / align.Ticks) + 1) * align.Ticks + TimeSpan.TicksPerSecond
            : now;
    }

    public override DateTimeOffset GetUtcNow() => new(Interlocked.Read(ref _ticks), TimeSpan.Zero);

    public void Advance(TimeSpan by) => Interlocked.Add(ref _ticks, by.Ticks);
}
