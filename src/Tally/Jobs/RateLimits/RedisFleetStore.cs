using StackExchange.Redis;

namespace Tally.Jobs.RateLimits;

/// <summary>
/// The fleet's counts in Redis, decided by one script per call so two instances never both take the
/// last permit. Times are the Redis server's (<c>TIME</c>), so the instances' clocks do not matter.
/// Per upstream (one hash slot, so a Redis Cluster keeps them together):
/// <list type="bullet">
/// <item><c>starts</c>: a sorted set of call ids scored by their start, trimmed to the window;</item>
/// <item><c>calls</c> / <c>background</c>: calls in flight scored by when they stop counting (their
/// start plus the call's timeout), so a dead instance's calls free themselves;</item>
/// <item><c>paused</c>: the end of a pause the upstream asked for; <c>next</c>: the next even start;
/// <c>priority</c>: set for a moment by a priority call that had to wait, which holds every background call.</item>
/// </list>
/// </summary>
public sealed class RedisFleetStore(IConnectionMultiplexer redis) : IFleetStore
{
    private const string Take = """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local priority = ARGV[1] == '1'
        local id = ARGV[2]
        local permits = tonumber(ARGV[3])
        local reserve = tonumber(ARGV[4])
        local maxCalls = tonumber(ARGV[5])
        local window = tonumber(ARGV[6])
        local spacing = tonumber(ARGV[7])
        local timeout = tonumber(ARGV[8])
        local paused = tonumber(redis.call('GET', KEYS[3]) or '0')
        if now < paused then return paused - now end
        if not priority and redis.call('EXISTS', KEYS[6]) == 1 then return math.max(1, math.floor(spacing / 4)) end
        local function wait(ms)
          if priority then redis.call('SET', KEYS[6], '1', 'PX', math.max(50, 2 * ms)) end
          return math.max(1, ms)
        end
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
        if maxCalls > 0 then
          redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
          redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
          if redis.call('ZCARD', KEYS[2]) >= maxCalls then return wait(5) end
          if not priority and redis.call('ZCARD', KEYS[5]) >= maxCalls - reserve then return wait(5) end
        end
        local limit = permits
        if not priority then limit = permits - reserve end
        local count = redis.call('ZCARD', KEYS[1])
        if count >= limit then
          local frees = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
          return wait(tonumber(frees[2]) + window - now + 1)
        end
        if spacing > 0 then
          local nextStart = tonumber(redis.call('GET', KEYS[4]) or '0')
          if not priority and now < nextStart - spacing then return wait(nextStart - spacing - now) end
          redis.call('SET', KEYS[4], math.max(nextStart, now) + spacing, 'PX', 2 * window)
        end
        redis.call('ZADD', KEYS[1], now, id)
        redis.call('PEXPIRE', KEYS[1], 2 * window)
        if maxCalls > 0 then
          redis.call('ZADD', KEYS[2], now + timeout, id)
          redis.call('PEXPIRE', KEYS[2], 2 * timeout)
          if not priority then
            redis.call('ZADD', KEYS[5], now + timeout, id)
            redis.call('PEXPIRE', KEYS[5], 2 * timeout)
          end
        end
        return 0
        """;

    private const string Pause = """
        local t = redis.call('TIME')
        local untilMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
        if untilMs > tonumber(redis.call('GET', KEYS[1]) or '0') then
          redis.call('SET', KEYS[1], untilMs, 'PX', tonumber(ARGV[1]) + 1000)
        end
        return 0
        """;

    public string Name => "redis";

    public async Task<FleetAnswer> TryTakeAsync(FleetLimit limit, bool priority, string id, CancellationToken ct)
    {
        // Disconnected, a command would wait in the client's backlog for its timeout: go on the share at once.
        if (!redis.IsConnected)
        {
            throw new InvalidOperationException("Redis is not connected.");
        }
        var k = Keys(limit.Upstream);
        var wait = (long)await redis.GetDatabase().ScriptEvaluateAsync(Take,
            [k.Starts, k.Calls, k.Paused, k.Next, k.Background, k.Priority],
            [priority ? "1" : "0", id, limit.Permits, limit.Reserve, limit.MaxCalls,
             (long)Math.Ceiling(limit.Window.TotalMilliseconds), (long)limit.Spacing.TotalMilliseconds, (long)Math.Ceiling(limit.CallTimeout.TotalMilliseconds)]);
        return wait == 0 ? FleetAnswer.Grant : new FleetAnswer(false, TimeSpan.FromMilliseconds(wait));
    }

    public async Task ReleaseAsync(FleetLimit limit, string id)
    {
        var k = Keys(limit.Upstream);
        var db = redis.GetDatabase();
        var batch = db.CreateBatch();
        var calls = batch.SortedSetRemoveAsync(k.Calls, id);
        var background = batch.SortedSetRemoveAsync(k.Background, id);
        batch.Execute();
        await Task.WhenAll(calls, background);
    }

    public async Task PauseAsync(string upstream, TimeSpan pause, CancellationToken ct) =>
        await redis.GetDatabase().ScriptEvaluateAsync(Pause, [Keys(upstream).Paused], [(long)Math.Ceiling(pause.TotalMilliseconds)]);

    private static (RedisKey Starts, RedisKey Calls, RedisKey Paused, RedisKey Next, RedisKey Background, RedisKey Priority) Keys(string upstream)
    {
        var prefix = $"tally:fleet:{{{upstream}}}:";
        return (prefix + "starts", prefix + "calls", prefix + "paused", prefix + "next", prefix + "background", prefix + "priority");
    }
}
