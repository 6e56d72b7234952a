using Tally.Jobs;
using Tally.Jobs.Queues;

namespace Tally.Tests.Jobs.Lanes;

/// <summary>The runtime's retry rule as lanes use it (<see cref="DeliveryPolicy"/>): when to try again, and when to give up.</summary>
public class LaneRetryTests
{
    private static readonly TimeSpan Base = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan Max = TimeSpan.FromSeconds(30);
    private static readonly DateTime Now = new(2026, 1, 1, 12, 0, 0, DateTimeKind.Utc);

    [Theory]
    [InlineData(0, 0.0, 500)]
    [InlineData(0, 1.0, 1000)]
    [InlineData(2, 0.0, 2000)]
    [InlineData(2, 1.0, 4000)]
    [InlineData(20, 1.0, 30000)]
    [InlineData(20, 0.0, 15000)]
    public void Backoff_DoublesPerAttempt_WithEqualJitter_UpToTheCap(int attempt, double jitter, int expectedMs) =>
        Assert.Equal(TimeSpan.FromMilliseconds(expectedMs), DeliveryPolicy.Backoff(attempt, Base, Max, jitter));

    [Fact]
    public void RetryAt_IsNeverBeforeTheOutcomesNotBefore()
    {
        var retryAfterNine = (JobOutcome.RetryLaterOutcome)JobOutcome.RetryLater("RATE_LIMITED", Now.AddSeconds(9));
        Assert.Equal(Now.AddSeconds(9), DeliveryPolicy.RetryAt(retryAfterNine, 0, Base, Max, 0.5, Now));
        var retryAfterOne = (JobOutcome.RetryLaterOutcome)JobOutcome.RetryLater("RATE_LIMITED", Now.AddSeconds(1));
        Assert.Equal(Now.AddSeconds(2), DeliveryPolicy.RetryAt(retryAfterOne, 2, Base, Max, 0, Now));
        var plain = (JobOutcome.RetryLaterOutcome)JobOutcome.RetryLater("SERVER_ERROR");
        Assert.Equal(Now.AddSeconds(1), DeliveryPolicy.RetryAt(plain, 0, Base, Max, 1, Now));
    }

    [Theory]
    [InlineData(0, 3, true)]
    [InlineData(2, 3, true)]
    [InlineData(3, 3, false)]
    [InlineData(0, 0, false)]
    public void Decide_RetriesWhileTheAttemptIsBelowTheRetriesAllowed_ThenGivesUp(int attempt, int maxRetries, bool retried)
    {
        var action = DeliveryPolicy.Decide(JobOutcome.RetryLater("SERVER_ERROR"), attempt, maxRetries);
        if (retried)
        {
            Assert.Equal(new DeliveryAction.RetryAction(attempt + 1, "SERVER_ERROR"), action);
        }
        else
        {
            Assert.IsType<DeliveryAction.DeadLetterAction>(action);
        }
        Assert.Equal(DeliveryAction.Ack, DeliveryPolicy.Decide(JobOutcome.Done, attempt, maxRetries));
    }
}
