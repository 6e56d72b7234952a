using Tally.Features.BalanceSync;

namespace Tally.Tests.Features.BalanceSync;

public class RetryPolicyTests
{
    private static readonly TimeSpan Base = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan Max = TimeSpan.FromSeconds(30);

    [Theory]
    [InlineData(0, 0.0, 500)]
    [InlineData(0, 1.0, 1000)]
    [InlineData(2, 0.0, 2000)]
    [InlineData(2, 1.0, 4000)]
    [InlineData(20, 1.0, 30000)]
    [InlineData(20, 0.0, 15000)]
    public void Delay_DoublesPerAttempt_WithEqualJitter_UpToTheCap(int attempt, double jitter, int expectedMs) =>
        Assert.Equal(TimeSpan.FromMilliseconds(expectedMs), RetryPolicy.Delay(attempt, null, Base, Max, jitter));

    [Fact]
    public void Delay_IsNeverShorterThanRetryAfter()
    {
        Assert.Equal(TimeSpan.FromSeconds(9), RetryPolicy.Delay(0, new T24Failure.RateLimited(TimeSpan.FromSeconds(9)), Base, Max, 0.5));
        Assert.Equal(TimeSpan.FromSeconds(2), RetryPolicy.Delay(2, new T24Failure.RateLimited(TimeSpan.FromSeconds(1)), Base, Max, 0));
    }
}
