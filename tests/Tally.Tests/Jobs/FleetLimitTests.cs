using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using StackExchange.Redis;
using Tally.Data;
using Tally.Jobs;
using Tally.Jobs.RateLimits;
using Tally.Tests.Harness;

namespace Tally.Tests.Jobs;

/// <summary>
/// Limits toward an upstream held by three "instances" (three limiters, each with its own store
/// client) sharing one Redis or one PostgreSQL: the whole fleet, not each instance, gets the limit.
/// </summary>
public sealed class FleetLimitTests : IAsyncLifetime
{
    private readonly List<IAsyncDisposable> _owned = [];

    public static TheoryData<string> Stores => new() { "redis", "postgres" };

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task ThreeInstances_TogetherNeverExceedTheCallsInFlightNorTheRate(string store)
    {
        var ct = TestContext.Current.CancellationToken;
        var limiters = await LimitersAsync(store, 3);
        // 20 starts in any second, at most 3 in flight, background evenly spaced (50 ms apart).
        var limit = new FleetLimit(Upstream(), 20, TimeSpan.FromSeconds(1), MaxCalls: 3, Reserve: 0, Even: true, TimeSpan.FromSeconds(30));
        var inFlight = 0;
        var mostInFlight = 0;
        var clock = Stopwatch.StartNew();

        await Task.WhenAll(limiters.SelectMany(limiter => Enumerable.Range(0, 15).Select(async _ =>
        {
            await using (await limiter.EnterAsync(limit, () => false, ct))
            {
                var now = Interlocked.Increment(ref inFlight);
                InterlockedMax(ref mostInFlight, now);
                await Task.Delay(20, ct);
                Interlocked.Decrement(ref inFlight);
            }
        })));

        // Counted between the grant and the release, so never more than the store let through at once.
        Assert.InRange(mostInFlight, 1, 3);
        // 45 starts evenly 50 ms apart take at least 44 spacings (2.2 s); each instance alone would have
        // let its 15 through in 0.7 s. (A bound from below: a busy machine only makes it later.)
        Assert.True(clock.Elapsed >= TimeSpan.FromSeconds(2.1), $"45 starts at 20/s across three instances took only {clock.Elapsed}");
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task APriorityCall_GoesBeforeBackgroundCallsWaitingOnAnotherInstance(string store)
    {
        var ct = TestContext.Current.CancellationToken;
        var limiters = await LimitersAsync(store, 2);
        // Two starts per 2 s, one of them reserved for priority: the background lane gets one per 2 s.
        var limit = new FleetLimit(Upstream(), 2, TimeSpan.FromSeconds(2), MaxCalls: 2, Reserve: 1, Even: true, TimeSpan.FromSeconds(30));
        await using (await limiters[0].EnterAsync(limit, () => false, ct))
        {
        }
        var waitingBackground = limiters[0].EnterAsync(limit, () => false, ct);

        var clock = Stopwatch.StartNew();
        await using (await limiters[1].EnterAsync(limit, () => true, ct))
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1), $"the priority call waited {clock.Elapsed} behind the background lane");
            Assert.False(waitingBackground.IsCompleted, "the background call went before its window had room");
        }
        await using (await waitingBackground)
        {
        }
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task APauseAskedForOnOneInstance_HoldsEveryInstance(string store)
    {
        var ct = TestContext.Current.CancellationToken;
        var limiters = await LimitersAsync(store, 2);
        var limit = new FleetLimit(Upstream(), 100, TimeSpan.FromSeconds(1), MaxCalls: 10, Reserve: 0, Even: false, TimeSpan.FromSeconds(30));

        await limiters[0].PauseAsync(limit.Upstream, TimeSpan.FromMilliseconds(800), ct);
        var clock = Stopwatch.StartNew();
        await using (await limiters[1].EnterAsync(limit, () => true, ct))
        {
        }

        Assert.True(clock.Elapsed >= TimeSpan.FromMilliseconds(700), $"a call went {clock.Elapsed} into an 800 ms pause");
    }

    [Fact]
    public async Task AStoreOutOfReach_LeavesEachInstanceItsShare_NeverUnlimited_AndSaysSo()
    {
        var ct = TestContext.Current.CancellationToken;
        // A Redis nobody listens on: the client never connects.
        var options = JobRuntimeSetup.RedisConfiguration($"127.0.0.1:{UnusedPort()}");
        options.ConnectTimeout = 200;
        var redis = await ConnectionMultiplexer.ConnectAsync(options);
        _owned.Add(redis);
        using var logs = new CapturedLogs();
        var limiter = new FleetLimiter(new RedisFleetStore(redis), new FleetLimitOptions { ExpectedInstances = 4 }, TimeProvider.System, new Logger<FleetLimiter>(new LoggerFactory([logs])));
        _owned.Add(limiter);
        // 20 per second for the fleet: 5 per second for one of four instances.
        var limit = new FleetLimit(Upstream(), 20, TimeSpan.FromSeconds(1), MaxCalls: 8, Reserve: 0, Even: true, TimeSpan.FromSeconds(30));

        var clock = Stopwatch.StartNew();
        for (var i = 0; i < 11; i++)
        {
            await using (await limiter.EnterAsync(limit, () => false, ct))
            {
            }
        }

        Assert.True(limiter.OnShare);
        // Eleven starts at 5 per second, one every 200 ms: at least 2 s (at the whole limit: 0.5 s).
        Assert.True(clock.Elapsed >= TimeSpan.FromSeconds(1.9), $"eleven starts on a quarter share of 20/s took only {clock.Elapsed}");
        Assert.Contains(logs.Entries, e => e.Level == LogLevel.Warning && e.Message.Contains("out of reach", StringComparison.Ordinal) && e.Message.Contains("1/4", StringComparison.Ordinal));
    }

    [Fact]
    public void AShare_IsTheLimitDividedByTheInstances_RoundedDownButNeverZero()
    {
        var limit = new FleetLimit("core", 50, TimeSpan.FromSeconds(1), MaxCalls: 8, Reserve: 2, Even: true, TimeSpan.FromSeconds(10));

        Assert.Equal((16, TimeSpan.FromSeconds(1), 2, 0), Parts(limit.ShareOf(3)));
        Assert.Equal((1, TimeSpan.FromSeconds(3), 1, 0), Parts((limit with { Permits = 1, MaxCalls = 1, Reserve = 0 }).ShareOf(3)));
        Assert.Equal((50, TimeSpan.FromSeconds(1), 8, 0), Parts(limit.ShareOf(1)));

        static (int, TimeSpan, int, int) Parts(FleetLimit l) => (l.Permits, l.Window, l.MaxCalls, l.Reserve);
    }

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        foreach (var owned in Enumerable.Reverse(_owned))
        {
            await owned.DisposeAsync();
        }
    }

    private async Task<List<FleetLimiter>> LimitersAsync(string store, int count)
    {
        var limiters = new List<FleetLimiter>();
        string? postgres = store == "postgres" ? await MigratedDatabaseAsync() : null;
        var redisUrl = store == "redis" ? Servers.RequireRedis() : null;
        for (var i = 0; i < count; i++)
        {
            IFleetStore shared;
            if (redisUrl is not null)
            {
                var redis = await ConnectionMultiplexer.ConnectAsync(JobRuntimeSetup.RedisConfiguration(redisUrl));
                _owned.Add(redis);
                shared = new RedisFleetStore(redis);
            }
            else
            {
                var dataSource = NpgsqlDataSource.Create(postgres!);
                _owned.Add(dataSource);
                shared = new PostgresFleetStore(dataSource);
            }
            var limiter = new FleetLimiter(shared, new FleetLimitOptions(), TimeProvider.System, NullLogger<FleetLimiter>.Instance);
            _owned.Add(limiter);
            limiters.Add(limiter);
        }
        return limiters;
    }

    private static async Task<string> MigratedDatabaseAsync()
    {
        var connectionString = await Servers.NewPostgresDatabaseAsync();
        await Migrator.ApplyAsync(new StorageSettings(StorageProvider.Postgres, connectionString), NullLogger.Instance, TestContext.Current.CancellationToken);
        return connectionString;
    }

    /// <summary>Each test its own upstream name, so tests sharing the Redis server never share counts.</summary>
    private static string Upstream() => $"test-{Guid.NewGuid():N}";

    private static int UnusedPort()
    {
        using var socket = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        socket.Start();
        return ((System.Net.IPEndPoint)socket.LocalEndpoint).Port;
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int seen;
        while ((seen = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, seen) != seen)
        {
        }
    }
}
