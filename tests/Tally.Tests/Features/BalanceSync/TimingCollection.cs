namespace Tally.Tests.Features.BalanceSync;

/// <summary>
/// Tests that assert a time bound (the login's wait) or load the machine (ten thousand users) run in
/// this collection, alone: neither disturbs the other, nor does the rest of the suite.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class TimingCollection
{
    public const string Name = "Balance sync: timing and load";
}
