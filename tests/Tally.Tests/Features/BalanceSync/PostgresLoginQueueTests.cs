using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Tally.Features.BalanceSync;
using Tally.Jobs.Lanes;

namespace Tally.Tests.Features.BalanceSync;

/// <summary>
/// The login's one statement on the shared PostgreSQL lanes (<see cref="PostgresLoginQueue"/>, over
/// <see cref="PostgresLaneStore.EnqueueClaimingAsync"/>),
/// driven by hand on an instance without workers: it claims only for an idle priority taker here,
/// hands that taker the user's accounts, and never takes an entry another worker runs.
/// </summary>
public class PostgresLoginQueueTests
{
    [Fact]
    public async Task NoIdleTaker_QueuesUnclaimed_AndAWorkerClaimsItFromTheTable()
    {
        await using var banking = await StartAsync();
        var lanes = Lanes(banking);
        var user = await banking.UserAsync("ACC-PGQ-1");

        var login = await QueueLoginAsync(banking, user);

        Assert.Equal(LoginUser.Eligible, login.User);
        Assert.Equal(EnqueueOutcome.Queued, login.Enqueued!.Outcome);
        Assert.Equal((null, "PRIORITY"), await RowAsync(banking, user));
        var entry = await lanes.TakeAsync(Lane.Priority, TestContext.Current.CancellationToken);
        Assert.Equal((user, login.Enqueued.Ticket), (entry.Key, entry.Ticket));
        Assert.Null(entry.Handed);
        Assert.Equal(("tally-pgq", "PRIORITY"), await RowAsync(banking, user));
    }

    [Fact]
    public async Task IdleTaker_IsHandedTheClaimedEntryWithTheAccounts_PromotingAWaitingBackgroundEntry()
    {
        await using var banking = await StartAsync();
        var lanes = Lanes(banking);
        var user = await banking.UserAsync("ACC-PGQ-2");
        Assert.Equal(1, await lanes.EnqueueBackgroundAsync([user], TestContext.Current.CancellationToken));
        var ticket = (await lanes.EnqueueAsync(user, Lane.Background, TestContext.Current.CancellationToken)).Ticket;
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        var take = lanes.TakeAsync(Lane.Priority, stop.Token);

        var login = await QueueLoginAsync(banking, user);

        Assert.Equal(new EnqueueResult(EnqueueOutcome.Promoted, ticket), login.Enqueued);
        var entry = await take.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
        Assert.Equal((user, ticket, Lane.Priority), (entry.Key, entry.Ticket, entry.Lane));
        var account = Assert.Single(Assert.IsAssignableFrom<IReadOnlyList<CoreAccount>>(entry.Handed));
        Assert.Equal(("ACC-PGQ-2", user, "USD", true), (account.AccountNumber, account.UserId, account.Currency, account.IsPrimary));
        Assert.Equal(("tally-pgq", "PRIORITY"), await RowAsync(banking, user));

        // A second login joins the claimed entry; nothing more is handed over.
        var again = lanes.TakeAsync(Lane.Priority, stop.Token);
        Assert.Equal(new EnqueueResult(EnqueueOutcome.InFlight, ticket), (await QueueLoginAsync(banking, user)).Enqueued);
        await Task.Delay(300, TestContext.Current.CancellationToken);
        Assert.False(again.IsCompleted);
        await stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => again);
    }

    [Fact]
    public async Task EntryRunningInTheBackground_IsJoinedNotClaimed()
    {
        await using var banking = await StartAsync();
        var lanes = Lanes(banking);
        var user = await banking.UserAsync("ACC-PGQ-3");
        await lanes.EnqueueBackgroundAsync([user], TestContext.Current.CancellationToken);
        var running = await lanes.ClaimAsync(Lane.Background, TestContext.Current.CancellationToken);
        Assert.Equal(user, running!.Key);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        var take = lanes.TakeAsync(Lane.Priority, stop.Token);

        var login = await QueueLoginAsync(banking, user);

        Assert.Equal(new EnqueueResult(EnqueueOutcome.InFlight, running.Ticket), login.Enqueued);
        await Task.Delay(300, TestContext.Current.CancellationToken);
        Assert.False(take.IsCompleted);
        // Promoted while running: should it need a retry, it stays on the priority lane.
        Assert.Equal(("tally-pgq", "PRIORITY"), await RowAsync(banking, user));
        await stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => take);
    }

    [Fact]
    public async Task UnknownAndIneligibleUsers_AreNotQueued()
    {
        await using var banking = await StartAsync();
        var lanes = Lanes(banking);
        var wallet = await banking.UserAsync("ACC-PGQ-W", context: "WALLET");
        var inactive = await banking.UserAsync("ACC-PGQ-I", isActive: false);

        Assert.Equal(LoginQueued.Unknown, await QueueLoginAsync(banking, Guid.NewGuid()));
        Assert.Equal(LoginQueued.NotEligible, await QueueLoginAsync(banking, wallet));
        Assert.Equal(LoginQueued.NotEligible, await QueueLoginAsync(banking, inactive));
        Assert.Equal(new LaneCounts(0, 0, 0, 0), await lanes.CountAsync(TestContext.Current.CancellationToken));
    }

    private static Task<CoreBanking> StartAsync() => CoreBanking.StartAsync("postgres", new Dictionary<string, string?>
    {
        ["Tally:InstanceId"] = "tally-pgq",
        ["Tally:Roles:0"] = "api",
    });

    private static PostgresLaneStore Lanes(CoreBanking banking) => banking.App.Services.GetRequiredService<PostgresLaneStore>();

    private static Task<LoginQueued> QueueLoginAsync(CoreBanking banking, Guid user) =>
        banking.App.Services.GetRequiredService<ILoginQueue>().QueueLoginAsync(user, TestContext.Current.CancellationToken);

    private static async Task<(string? ClaimedBy, string Lane)> RowAsync(CoreBanking banking, Guid user)
    {
        await using var connection = new NpgsqlConnection(banking.App.ConnectionString);
        await connection.OpenAsync(TestContext.Current.CancellationToken);
        await using var command = new NpgsqlCommand("SELECT claimed_by, lane FROM balance_sync_queue WHERE user_id = $1", connection);
        command.Parameters.Add(new NpgsqlParameter { Value = user });
        await using var reader = await command.ExecuteReaderAsync(TestContext.Current.CancellationToken);
        Assert.True(await reader.ReadAsync(TestContext.Current.CancellationToken));
        return (reader.IsDBNull(0) ? null : reader.GetString(0), reader.GetString(1));
    }
}
