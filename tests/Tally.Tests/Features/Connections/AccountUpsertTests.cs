using Tally.Features.Connections;
using Tally.Features.Connections.Providers;

namespace Tally.Tests.Features.Connections;

/// <summary>The upsert's pure decision, against the seed's rules for created / updated / unchanged, balance changes and errors.</summary>
public class AccountUpsertTests
{
    private static readonly DateTime Now = new(2025, 3, 1, 12, 0, 0, DateTimeKind.Utc);
    private static readonly Guid ConnectionId = Guid.NewGuid();

    [Theory]
    [InlineData("checking", "checking")]
    [InlineData("savings", "savings")]
    [InlineData("credit_card", "credit_card")]
    [InlineData("loan", "loan")]
    [InlineData("investment", "investment")]
    [InlineData("other", "other")]
    [InlineData("crypto_wallet", "other")]
    [InlineData("Checking", "other")]
    [InlineData("", "other")]
    public void Plan_ProviderAccountType_IsKeptWhenTallyKnowsIt_ElseOther(string reported, string kept)
    {
        var plan = AccountUpsert.Plan(ConnectionId, [], [Data("A", 10m) with { AccountType = reported }], 0, Now);
        Assert.Equal(kept, Assert.Single(plan.Created).AccountType);
    }

    [Fact]
    public void Plan_NewAccount_MovesFromZeroToItsBalance_UnlessItHoldsZero()
    {
        var plan = AccountUpsert.Plan(ConnectionId, [], [Data("FUNDED", 12.50m), Data("EMPTY", 0.00m), Data("OWED", -3m)], 0, Now);
        Assert.Equal(3, plan.Created.Count);
        var ids = plan.Created.ToDictionary(a => a.ProviderAccountId, a => a.Id);
        Assert.Equal(
            [new BalanceChange(ids["FUNDED"], "FUNDED", 0m, 12.5m, "USD"), new BalanceChange(ids["OWED"], "OWED", 0m, -3m, "USD")],
            plan.BalanceChanges);
    }

    public static TheoryData<string, ProviderAccountData> NonBalanceChanges => new()
    {
        { "name", Data("A", 10m) with { Name = "Renamed" } },
        { "active", Data("A", 10m) with { IsActive = false } },
        { "metadata", Data("A", 10m) with { Metadata = """{"branch":"north"}""" } },
    };

    [Theory]
    [MemberData(nameof(NonBalanceChanges))]
    public void Plan_NameActiveOrMetadataChange_UpdatesTheAccount_WithoutABalanceChange(string change, ProviderAccountData incoming)
    {
        var existing = Stored("A", 10m);
        var plan = AccountUpsert.Plan(ConnectionId, [existing], [incoming], 0, Now);

        var updated = Assert.Single(plan.Updated);
        Assert.Equal(existing.Id, updated.Id);
        Assert.Equal((incoming.Name, incoming.IsActive, incoming.Metadata), (updated.Name, updated.IsActive, updated.ProviderMetadata));
        Assert.Equal("Synced 1 accounts: 0 created, 1 updated, 0 unchanged", plan.Message);
        Assert.True(plan.BalanceChanges.Count == 0, $"a {change} change is no balance change");
    }

    [Fact]
    public void Plan_SameAsStored_IsUnchanged()
    {
        var plan = AccountUpsert.Plan(ConnectionId, [Stored("A", 10m)], [Data("A", 10.00m)], 0, Now);
        Assert.Single(plan.Unchanged);
        Assert.Equal("Synced 1 accounts: 0 created, 0 updated, 1 unchanged", plan.Message);
    }

    [Theory]
    [InlineData(0, "Synced 2 accounts: 1 created, 0 updated, 1 unchanged")]
    [InlineData(2, "Synced 2 accounts: 1 created, 0 updated, 1 unchanged, 3 errors")]
    public void Plan_Errors_EndTheMessage_OnlyWhenThereAreAny(int unreadable, string message)
    {
        // One account sent twice is an error too (the second is not applied).
        ProviderAccountData[] incoming = unreadable == 0 ? [Data("A", 10m), Data("B", 1m)] : [Data("A", 10m), Data("B", 1m), Data("B", 2m)];
        var plan = AccountUpsert.Plan(ConnectionId, [Stored("A", 10m)], incoming, unreadable, Now);
        Assert.Equal(message, plan.Message);
        Assert.Equal(unreadable == 0 ? 0 : unreadable + 1, plan.Errors);
    }

    private static ProviderAccountData Data(string providerId, decimal balance) =>
        new(providerId, $"Account {providerId}", AccountTypes.Checking, null, balance, null, "USD", true, null, """{"branch":"main"}""");

    private static ProviderAccount Stored(string providerId, decimal balance) => new()
    {
        Id = Guid.NewGuid(),
        ConnectionId = ConnectionId,
        ProviderAccountId = providerId,
        Name = $"Account {providerId}",
        AccountType = AccountTypes.Checking,
        Balance = balance,
        Currency = "USD",
        IsActive = true,
        ProviderMetadata = """{"branch":"main"}""",
        LastSyncedAt = Now.AddDays(-1),
        CreatedAt = Now.AddDays(-1),
        UpdatedAt = Now.AddDays(-1),
    };
}
