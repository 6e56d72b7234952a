using Tally.Features.Connections;
using Tally.Features.Connections.Providers;

namespace Tally.Tests.Features.Connections;

/// <summary>The pure decisions of a sync: its limits, and how a plan is cut into transactions.</summary>
public class SyncRulesTests
{
    private static readonly DateTime Now = new(2025, 3, 1, 12, 0, 0, DateTimeKind.Utc);
    private static readonly Guid Owner = Guid.NewGuid();
    private static readonly SyncLimits Limits = new(TimeSpan.FromMinutes(15), new ProviderPolicy(24, TimeSpan.FromHours(2)), 2);

    [Fact]
    public void Forced_WithinTheInterval_IsRefusedOnceTheDaysForcedSyncsAreUsed_UntilTheIntervalOrTheWindowEnds()
    {
        var connection = Connection(lastSyncAt: Now.AddMinutes(-5));
        var forced = new SyncCommand(connection.Id, Owner, Force: true, SyncTriggers.Api);
        ProviderCall[] oneForced = [new(Now.AddHours(-3), true), new(Now.AddMinutes(-5), false)];
        Assert.Null(SyncRules.Refusal(connection, forced, Now, Limits, oneForced));

        // The oldest forced call leaves the window in 20 minutes, the interval ends in 10: the sooner.
        ProviderCall[] twoForced = [new(Now.AddHours(-23).AddMinutes(-40), true), new(Now.AddHours(-1), true), new(Now.AddMinutes(-5), false)];
        var refusal = SyncRules.Refusal(connection, forced, Now, Limits, twoForced);
        Assert.Equal(SyncFailureReasons.ForcedSyncLimit, refusal?.Reason);
        Assert.Equal(TimeSpan.FromMinutes(10), refusal?.RetryAfter);
        var sooner = SyncRules.Refusal(connection, forced, Now, Limits with { MinInterval = TimeSpan.FromHours(1) }, twoForced);
        Assert.Equal(TimeSpan.FromMinutes(20), sooner?.RetryAfter);

        // Outside the interval, force skips nothing, so nothing is counted against it.
        Assert.Null(SyncRules.Refusal(Connection(lastSyncAt: Now.AddMinutes(-16)), forced, Now, Limits, twoForced));
        // Not forced, the interval answers as always.
        Assert.Equal(SyncFailureReasons.RecentlySynced, SyncRules.Refusal(connection, forced with { Force = false }, Now, Limits, twoForced)?.Reason);
        // With no forced syncs allowed at all, only the interval's end helps.
        var never = SyncRules.Refusal(connection, forced, Now, Limits with { MaxForcedPerDay = 0 }, []);
        Assert.Equal((SyncFailureReasons.ForcedSyncLimit, TimeSpan.FromMinutes(10)), (never?.Reason, never?.RetryAfter));
    }

    [Fact]
    public void Forced_StillMeetsTheProvidersQuota()
    {
        var connection = Connection(lastSyncAt: Now.AddMinutes(-5));
        var calls = Enumerable.Range(1, 24).Select(i => new ProviderCall(Now.AddMinutes(-30 * i), false)).OrderBy(c => c.StartedAt).ToList();
        var refusal = SyncRules.Refusal(connection, new SyncCommand(connection.Id, Owner, true, SyncTriggers.Api), Now, Limits, calls);
        Assert.Equal(SyncFailureReasons.QuotaExhausted, refusal?.Reason);
    }

    [Theory]
    [InlineData(0, 100, null)]
    [InlineData(40, 60, null)]
    [InlineData(40, 61, SyncFailureReasons.TooManyAccounts)]
    [InlineData(101, 0, SyncFailureReasons.TooManyAccounts)]
    public void AccountLimit_CountsWhatWouldBeStored(int existing, int created, string? reason) =>
        Assert.Equal(reason, SyncRules.AccountLimit(existing, created, 100)?.Reason);

    [Theory]
    [InlineData(0, 0, 0, 250)]
    [InlineData(7, 0, 0, 3)]
    [InlineData(3, 5, 4, 4)]
    [InlineData(250, 250, 250, 250)]
    [InlineData(1, 999, 17, 100)]
    [InlineData(10, 10, 10, 1)]
    public void Chunks_CoverEveryAccountOnce_AndKeepEachBalanceChangeWithItsAccount(int created, int updated, int unchanged, int size)
    {
        var connectionId = Guid.NewGuid();
        var existing = Enumerable.Range(0, updated + unchanged).Select(i => Account(connectionId, $"E{i}", 10m)).ToList();
        var incoming = existing.Select((a, i) => Data(a.ProviderAccountId, i < updated ? 10m + i + 1 : 10m))
            .Concat(Enumerable.Range(0, created).Select(i => Data($"N{i}", 1m))).ToList();
        var plan = AccountUpsert.Plan(connectionId, existing, incoming, providerErrors: 2, Now);
        Assert.Equal((created, updated, unchanged), (plan.Created.Count, plan.Updated.Count, plan.Unchanged.Count));

        var chunks = plan.Chunks(size);
        Assert.Equal((created + updated + unchanged + size - 1) / size, chunks.Count);
        Assert.All(chunks, c => Assert.InRange(c.Total, 1, size));
        Assert.All(chunks.SkipLast(1), c => Assert.Equal(size, c.Total));
        Assert.All(chunks, c => Assert.Equal(0, c.Errors));
        Assert.Equal(plan.Created.Select(a => a.Id), chunks.SelectMany(c => c.Created).Select(a => a.Id));
        Assert.Equal(plan.Updated.Select(a => a.Id), chunks.SelectMany(c => c.Updated).Select(a => a.Id));
        Assert.Equal(plan.Unchanged, chunks.SelectMany(c => c.Unchanged));
        Assert.Equal(plan.BalanceChanges, chunks.SelectMany(c => c.BalanceChanges));
        Assert.All(chunks, c => Assert.All(c.BalanceChanges, change => Assert.Contains(c.Created.Concat(c.Updated), a => a.Id == change.AccountId)));
    }

    private static ProviderConnection Connection(DateTime? lastSyncAt) => new()
    {
        Id = Guid.NewGuid(),
        UserId = Owner,
        ProviderSlug = "sandbox",
        Status = ConnectionStatus.Active,
        CredentialsEncrypted = "sealed",
        LastSyncAt = lastSyncAt,
        CreatedAt = Now.AddDays(-1),
        UpdatedAt = Now.AddDays(-1),
    };

    private static ProviderAccount Account(Guid connectionId, string providerId, decimal balance) => new()
    {
        Id = Guid.NewGuid(),
        ConnectionId = connectionId,
        ProviderAccountId = providerId,
        Name = providerId,
        AccountType = AccountTypes.Checking,
        Balance = balance,
        Currency = "USD",
        IsActive = true,
        LastSyncedAt = Now.AddDays(-1),
        CreatedAt = Now.AddDays(-1),
        UpdatedAt = Now.AddDays(-1),
    };

    private static ProviderAccountData Data(string providerId, decimal balance) =>
        new(providerId, providerId, AccountTypes.Checking, null, balance, null, "USD", true, null, null);
}
