using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Npgsql;
using Tally.Data;
using Tally.Hosting;
using Tally.Jobs.Lanes;
using Tally.Tests.Harness;

namespace Tally.Tests.Jobs.Lanes;

/// <summary>
/// What every <see cref="ILaneStore"/> guarantees, one suite run against each store (the way River
/// runs one driver suite against each driver): one entry per key, promotion in place, FIFO per lane,
/// retries held back until due, tickets that tell one queueing of a key from the next, and a taker
/// woken by work queued on its instance. Time is a hand-moved clock, so "not yet due" is exact.
/// </summary>
public abstract class LaneStoreContract : IAsyncLifetime
{
    private ILaneStore? _lanes;

    protected ManualClock Clock { get; } = new();

    protected ILaneStore Lanes => _lanes ?? throw new InvalidOperationException("Not initialized.");

    protected static CancellationToken Ct => TestContext.Current.CancellationToken;

    protected abstract Task<ILaneStore> CreateAsync(TimeProvider clock);

    public async ValueTask InitializeAsync() => _lanes = await CreateAsync(Clock);

    public virtual ValueTask DisposeAsync()
    {
        GC.SuppressFinalize(this);
        return ValueTask.CompletedTask;
    }

    [Fact]
    public async Task Enqueue_SameKeyTwice_KeepsOneEntry()
    {
        var key = Guid.NewGuid();
        var first = await Lanes.EnqueueAsync(key, Lane.Background, Ct);
        var second = await Lanes.EnqueueAsync(key, Lane.Background, Ct);

        Assert.Equal(EnqueueOutcome.Queued, first.Outcome);
        Assert.Equal(new EnqueueResult(EnqueueOutcome.AlreadyQueued, first.Ticket), second);
        Assert.Equal(new LaneCounts(0, 1, 0, 0), await Lanes.CountAsync(Ct));
    }

    [Fact]
    public async Task PriorityRequest_PromotesAWaitingBackgroundEntry_InPlace()
    {
        var key = Guid.NewGuid();
        var other = Guid.NewGuid();
        await Lanes.EnqueueAsync(other, Lane.Background, Ct);
        var queued = await Lanes.EnqueueAsync(key, Lane.Background, Ct);

        var promoted = await Lanes.EnqueueAsync(key, Lane.Priority, Ct);

        Assert.Equal(new EnqueueResult(EnqueueOutcome.Promoted, queued.Ticket), promoted);
        Assert.Equal(new EnqueueResult(EnqueueOutcome.AlreadyQueued, queued.Ticket), await Lanes.EnqueueAsync(key, Lane.Priority, Ct));
        Assert.Equal(new LaneCounts(1, 1, 0, 0), await Lanes.CountAsync(Ct));
        var claimed = await Lanes.ClaimAsync(Lane.Priority, Ct);
        Assert.Equal((key, Lane.Priority, queued.Ticket, 0), (claimed!.Key, claimed.Lane, claimed.Ticket, claimed.Attempt));
        Assert.Null(await Lanes.ClaimAsync(Lane.Priority, Ct));
    }

    [Fact]
    public async Task EnqueueBackground_LeavesQueuedKeysAsTheyAre_AndCountsOnlyNewOnes()
    {
        var waiting = Guid.NewGuid();
        await Lanes.EnqueueAsync(waiting, Lane.Priority, Ct);

        Assert.Equal(2, await Lanes.EnqueueBackgroundAsync([waiting, Guid.NewGuid(), Guid.NewGuid()], Ct));
        Assert.Equal(0, await Lanes.EnqueueBackgroundAsync([], Ct));
        Assert.Equal(new LaneCounts(1, 2, 0, 0), await Lanes.CountAsync(Ct));
    }

    [Fact]
    public async Task Claim_TakesTheOldestDueEntryOfItsLaneFirst()
    {
        var keys = new List<Guid>();
        for (var i = 0; i < 3; i++)
        {
            keys.Add(Guid.NewGuid());
            await Lanes.EnqueueAsync(keys[^1], Lane.Background, Ct);
            Clock.Advance(TimeSpan.FromMilliseconds(10));
        }
        var priority = Guid.NewGuid();
        await Lanes.EnqueueAsync(priority, Lane.Priority, Ct);

        var claimed = new List<Guid>();
        while (await Lanes.ClaimAsync(Lane.Background, Ct) is { } entry)
        {
            claimed.Add(entry.Key);
        }

        Assert.Equal(keys, claimed);
        Assert.Equal(new LaneCounts(1, 0, 3, 0), await Lanes.CountAsync(Ct));
        Assert.Equal(priority, (await Lanes.ClaimAsync(Lane.Priority, Ct))!.Key);
    }

    [Fact]
    public async Task PriorityRequestWhileRunning_JoinsIt_AndItsRetryStaysOnThePriorityLane()
    {
        var key = Guid.NewGuid();
        await Lanes.EnqueueAsync(key, Lane.Background, Ct);
        var running = (await Lanes.ClaimAsync(Lane.Background, Ct))!;

        var joined = await Lanes.EnqueueAsync(key, Lane.Priority, Ct);
        await Lanes.RetryAsync(running, Lane.Background, 1, Clock.GetUtcNow().UtcDateTime, Ct);

        Assert.Equal(new EnqueueResult(EnqueueOutcome.InFlight, running.Ticket), joined);
        Assert.Null(await Lanes.ClaimAsync(Lane.Background, Ct));
        var retried = (await Lanes.ClaimAsync(Lane.Priority, Ct))!;
        Assert.Equal((key, running.Ticket, 1), (retried.Key, retried.Ticket, retried.Attempt));
    }

    [Fact]
    public async Task Retry_IsNotClaimedBeforeItIsDue_AndCountsAsRetrying()
    {
        var key = Guid.NewGuid();
        await Lanes.EnqueueAsync(key, Lane.Background, Ct);
        var first = (await Lanes.ClaimAsync(Lane.Background, Ct))!;

        await Lanes.RetryAsync(first, Lane.Background, 1, Clock.GetUtcNow().UtcDateTime.AddSeconds(10), Ct);

        Assert.Null(await Lanes.ClaimAsync(Lane.Background, Ct));
        Assert.Equal(new LaneCounts(0, 1, 0, 1), await Lanes.CountAsync(Ct));
        Assert.True(await Lanes.IsPendingAsync(key, first.Ticket, Ct));
        Clock.Advance(TimeSpan.FromSeconds(11));
        var second = (await Lanes.ClaimAsync(Lane.Background, Ct))!;
        Assert.Equal((key, first.Ticket, 1, first.EnqueuedAt), (second.Key, second.Ticket, second.Attempt, second.EnqueuedAt));
    }

    [Fact]
    public async Task Complete_RemovesTheEntry_AndAnEarlierTicketChangesNothing()
    {
        var key = Guid.NewGuid();
        await Lanes.EnqueueAsync(key, Lane.Background, Ct);
        var first = (await Lanes.ClaimAsync(Lane.Background, Ct))!;
        Assert.True(await Lanes.IsPendingAsync(key, first.Ticket, Ct));

        await Lanes.CompleteAsync(first, Ct);
        Assert.False(await Lanes.IsPendingAsync(key, first.Ticket, Ct));
        Assert.Equal(new LaneCounts(0, 0, 0, 0), await Lanes.CountAsync(Ct));

        // Queued again: a new ticket, which the first run's late moves do not touch.
        var again = await Lanes.EnqueueAsync(key, Lane.Background, Ct);
        Assert.Equal(EnqueueOutcome.Queued, again.Outcome);
        Assert.NotEqual(first.Ticket, again.Ticket);
        await Lanes.CompleteAsync(first, Ct);
        await Lanes.RetryAsync(first, Lane.Priority, 3, Clock.GetUtcNow().UtcDateTime, Ct);
        Assert.True(await Lanes.IsPendingAsync(key, again.Ticket, Ct));
        Assert.Equal(new LaneCounts(0, 1, 0, 0), await Lanes.CountAsync(Ct));
    }

    [Fact]
    public async Task Demote_MovesAWaitingPriorityEntryToTheBackground_NeverARunningOne()
    {
        var waiting = Guid.NewGuid();
        var ticket = (await Lanes.EnqueueAsync(waiting, Lane.Priority, Ct)).Ticket;
        await Lanes.DemoteAsync(waiting, Guid.NewGuid(), Ct);
        Assert.Equal(new LaneCounts(1, 0, 0, 0), await Lanes.CountAsync(Ct));

        await Lanes.DemoteAsync(waiting, ticket, Ct);
        Assert.Equal(new LaneCounts(0, 1, 0, 0), await Lanes.CountAsync(Ct));

        var running = (await Lanes.ClaimAsync(Lane.Background, Ct))!;
        Assert.Equal(EnqueueOutcome.InFlight, (await Lanes.EnqueueAsync(waiting, Lane.Priority, Ct)).Outcome);
        await Lanes.DemoteAsync(waiting, running.Ticket, Ct);
        await Lanes.RetryAsync(running, Lane.Background, 1, Clock.GetUtcNow().UtcDateTime, Ct);
        Assert.Equal(new LaneCounts(1, 0, 0, 0), await Lanes.CountAsync(Ct));
    }

    [Fact]
    public async Task Take_WaitsForWork_AndIsWokenWhenItIsQueuedHere()
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var take = Lanes.TakeAsync(Lane.Background, stop.Token);
        await Task.Delay(200, Ct);
        Assert.False(take.IsCompleted);

        var key = Guid.NewGuid();
        await Lanes.EnqueueAsync(key, Lane.Background, Ct);

        Assert.Equal(key, (await take.WaitAsync(TimeSpan.FromSeconds(10), Ct)).Key);
        var idle = Lanes.TakeAsync(Lane.Priority, stop.Token);
        await stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => idle);
    }
}

public sealed class InProcessLaneStoreContract : LaneStoreContract
{
    protected override Task<ILaneStore> CreateAsync(TimeProvider clock) => Task.FromResult<ILaneStore>(new InProcessLaneStore(clock));
}

/// <summary>The PostgreSQL store on a table of its own per test, of the lanes' shape but no feature's (no key refers to a user).</summary>
public sealed class PostgresLaneStoreContract : LaneStoreContract
{
    private static readonly SemaphoreSlim Once = new(1, 1);
    private static string? MigratedDatabase;
    private NpgsqlDataSource? _dataSource;

    protected override async Task<ILaneStore> CreateAsync(TimeProvider clock)
    {
        _dataSource = NpgsqlDataSource.Create(await DatabaseAsync());
        var table = $"lanes_{Guid.NewGuid():N}";
        await using (var create = _dataSource.CreateCommand($"CREATE TABLE {table} (LIKE balance_sync_queue INCLUDING ALL)"))
        {
            await create.ExecuteNonQueryAsync(Ct);
        }
        var options = new PostgresLaneOptions("contract", table, "user_id", $"{table}_signals", TimeSpan.FromMilliseconds(100), TimeSpan.FromMinutes(5), AsynchronousCommit: true);
        return new PostgresLaneStore(_dataSource, options, Options.Create(new TallyOptions { InstanceId = $"contract-{table}" }), clock);
    }

    public override async ValueTask DisposeAsync()
    {
        if (_dataSource is not null)
        {
            await _dataSource.DisposeAsync();
        }
        await base.DisposeAsync();
    }

    /// <summary>One migrated database for every test of the suite; each test's table is its own.</summary>
    private static async Task<string> DatabaseAsync()
    {
        await Once.WaitAsync(Ct);
        try
        {
            if (MigratedDatabase is null)
            {
                var database = await Servers.NewPostgresDatabaseAsync();
                await Migrator.ApplyAsync(new StorageSettings(StorageProvider.Postgres, database), NullLogger.Instance, Ct);
                MigratedDatabase = database;
            }
            return MigratedDatabase;
        }
        finally
        {
            Once.Release();
        }
    }
}
