using System.Net;
using Tally.Features.Connections;
using Tally.Features.Connections.Providers;
using Tally.Tests.Harness;
using static Tally.Tests.Features.Connections.ScriptedProvider;

namespace Tally.Tests.Features.Connections;

/// <summary>What a provider's answer does, through the whole sync: the accounts stored, the counts, the run and the events.</summary>
public class ProviderAnswerTests
{
    [Fact]
    public async Task Sync_AccountTypeTallyDoesNotKnow_IsStoredAsOther()
    {
        var bank = new ScriptedProvider();
        await using var t = await AppAsync("sqlite", bank);
        var id = await ConnectAsync(t.User);
        bank.Answer(Account("WALLET", 5m, type: "crypto_wallet"), Account("SAVER", 7m, type: AccountTypes.Savings));

        await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK);

        var types = (await t.User.GetAsync($"/api/connections/{id}/accounts").ExpectAsync(HttpStatusCode.OK)).EnumerateArray()
            .ToDictionary(a => a.GetProperty("providerAccountId").GetString()!, a => a.GetProperty("type").GetString());
        Assert.Equal(new Dictionary<string, string?> { ["WALLET"] = "other", ["SAVER"] = "savings" }, types);
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Sync_NameActiveOrMetadataChange_CountsAsUpdated_AndEmitsNoBalanceEvent(string storage)
    {
        var bank = new ScriptedProvider();
        await using var t = await AppAsync(storage, bank);
        var id = await ConnectAsync(t.User);
        bank.Answer(Account("A", 1m), Account("B", 2m), Account("C", 3m), Account("D", 4m));
        await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK);
        var eventsBefore = (await t.Admin.EventsAsync(id)).Count;

        t.Clock.Advance(TimeSpan.FromMinutes(16));
        bank.Answer(Account("A", 1m, name: "Holidays"), Account("B", 2m, active: false), Account("C", 3m, metadata: """{"branch":"north"}"""), Account("D", 4m));
        var second = await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK);

        Assert.Equal((0, 3, 1, 0), SyncConnectionTests.Counts(second));
        Assert.Equal("Synced 4 accounts: 0 created, 3 updated, 1 unchanged", second.GetProperty("message").GetString());
        var events = (await t.Admin.EventsAsync(id)).Skip(eventsBefore).ToList();
        Assert.Equal([SyncConnection.AttemptedEvent, SyncConnection.SucceededEvent], events.Select(e => e.Type).ToList());
        Assert.Equal((4, 3), (events[1].Payload.GetProperty("accountCount").GetInt32(), events[1].Payload.GetProperty("updated").GetInt32()));
        var accounts = (await t.User.GetAsync($"/api/connections/{id}/accounts").ExpectAsync(HttpStatusCode.OK)).EnumerateArray()
            .ToDictionary(a => a.GetProperty("providerAccountId").GetString()!);
        Assert.Equal("Holidays", accounts["A"].GetProperty("name").GetString());
        Assert.False(accounts["B"].GetProperty("isActive").GetBoolean());
        Assert.Equal("north", accounts["C"].GetProperty("metadata").GetProperty("branch").GetString());
    }

    [Fact]
    public async Task Sync_ProviderReportsUnreadableAccounts_CountsThemAsErrors_AndTheRunsMessageEndsWithThem()
    {
        var bank = new ScriptedProvider();
        await using var t = await AppAsync("sqlite", bank);
        var id = await ConnectAsync(t.User);
        bank.Answer(unreadable: 2, Account("A", 1m));

        var synced = await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK);

        const string Message = "Synced 1 accounts: 1 created, 0 updated, 0 unchanged, 2 errors";
        Assert.Equal((1, 0, 0, 2), SyncConnectionTests.Counts(synced));
        Assert.Equal(Message, synced.GetProperty("message").GetString());
        var run = (await t.User.GetAsync($"/api/connections/{id}/sync-runs").ExpectAsync(HttpStatusCode.OK))[0];
        Assert.Equal(("SUCCEEDED", Message, 2), (run.GetProperty("status").GetString(), run.GetProperty("message").GetString(), run.GetProperty("errors").GetInt32()));
        var succeeded = (await t.Admin.EventsAsync(id))[^1];
        Assert.Equal(SyncConnection.SucceededEvent, succeeded.Type);
        Assert.Equal((1, 2), (succeeded.Payload.GetProperty("accountCount").GetInt32(), succeeded.Payload.GetProperty("errors").GetInt32()));
    }
}
