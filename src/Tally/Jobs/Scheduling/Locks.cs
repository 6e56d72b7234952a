using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using Npgsql;
using StackExchange.Redis;

namespace Tally.Jobs.Scheduling;

/// <summary>A held lock. <see cref="Lost"/> fires if the lock can no longer be vouched for (renewal failed).</summary>
public interface ILockHandle : IAsyncDisposable
{
    CancellationToken Lost { get; }
}

/// <summary>The scheduler's mutual exclusion across instances: a real seam with three implementations.</summary>
public interface IDistributedLock
{
    string Name { get; }

    /// <summary>Takes the lock if free, else null. Never waits for a holder.</summary>
    Task<ILockHandle?> TryAcquireAsync(string key, TimeSpan ttl, CancellationToken ct);
}

/// <summary>One process only: embedded mode.</summary>
public sealed class InProcessLock : IDistributedLock
{
    private readonly ConcurrentDictionary<string, SemaphoreSlim> _locks = new(StringComparer.Ordinal);

    public string Name => "in-process";

    public Task<ILockHandle?> TryAcquireAsync(string key, TimeSpan ttl, CancellationToken ct)
    {
        var gate = _locks.GetOrAdd(key, _ => new SemaphoreSlim(1, 1));
        return Task.FromResult<ILockHandle?>(gate.Wait(0, CancellationToken.None) ? new Handle(gate) : null);
    }

    private sealed class Handle(SemaphoreSlim gate) : ILockHandle
    {
        public CancellationToken Lost => CancellationToken.None;

        public ValueTask DisposeAsync()
        {
            gate.Release();
            return ValueTask.CompletedTask;
        }
    }
}

/// <summary>
/// Redis <c>SET key token NX PX ttl</c>. The holder renews every third of the TTL and releases with a
/// compare-and-delete, so it never deletes a lock another instance took after it expired. A holder
/// that dies stops renewing and the lock frees itself within one TTL.
/// </summary>
public sealed partial class RedisLock(IConnectionMultiplexer redis, ILogger<RedisLock> logger) : IDistributedLock
{
    private const string Renew = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";
    private const string Release = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

    public string Name => "redis";

    public async Task<ILockHandle?> TryAcquireAsync(string key, TimeSpan ttl, CancellationToken ct)
    {
        var db = redis.GetDatabase();
        var redisKey = new RedisKey($"tally:lock:{key}");
        var token = Guid.NewGuid().ToString("N");
        if (!await db.StringSetAsync(redisKey, token, ttl, When.NotExists))
        {
            return null;
        }
        return new Handle(db, redisKey, token, ttl, logger);
    }

    private sealed class Handle : ILockHandle
    {
        private readonly IDatabase _db;
        private readonly RedisKey _key;
        private readonly string _token;
        private readonly CancellationTokenSource _lost = new();
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _renewal;

        public Handle(IDatabase db, RedisKey key, string token, TimeSpan ttl, ILogger logger)
        {
            _db = db;
            _key = key;
            _token = token;
            _renewal = RenewAsync(ttl, logger);
        }

        public CancellationToken Lost => _lost.Token;

        private async Task RenewAsync(TimeSpan ttl, ILogger logger)
        {
            using var timer = new PeriodicTimer(ttl / 3);
            try
            {
                while (await timer.WaitForNextTickAsync(_stop.Token))
                {
                    var renewed = (long)await _db.ScriptEvaluateAsync(Renew, [_key], [_token, (long)ttl.TotalMilliseconds]);
                    if (renewed != 1)
                    {
                        LogLost(logger, _key.ToString());
                        await _lost.CancelAsync();
                        return;
                    }
                }
            }
            catch (OperationCanceledException)
            {
            }
            catch (Exception e)
            {
                LogRenewFailed(logger, e, _key.ToString());
                await _lost.CancelAsync();
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            await _renewal;
            try
            {
                await _db.ScriptEvaluateAsync(Release, [_key], [_token]);
            }
            catch (RedisException)
            {
                // Unreachable Redis: the TTL frees the lock.
            }
            _stop.Dispose();
            _lost.Dispose();
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Lock {Key} was taken over before renewal")]
    private static partial void LogLost(ILogger logger, string key);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not renew lock {Key}")]
    private static partial void LogRenewFailed(ILogger logger, Exception e, string key);
}

/// <summary>
/// PostgreSQL session advisory lock on a dedicated connection. The lock lives exactly as long as
/// that connection, so a crashed holder releases it at once; a ping every few seconds notices a
/// dropped connection and raises <see cref="ILockHandle.Lost"/>.
/// </summary>
public sealed class PostgresAdvisoryLock(NpgsqlDataSource dataSource) : IDistributedLock
{
    public string Name => "postgres";

    public static long KeyOf(string key) =>
        BitConverter.ToInt64(SHA256.HashData(Encoding.UTF8.GetBytes($"tally:lock:{key}")), 0);

    public async Task<ILockHandle?> TryAcquireAsync(string key, TimeSpan ttl, CancellationToken ct)
    {
        var connection = await dataSource.OpenConnectionAsync(ct);
        try
        {
            await using var command = new NpgsqlCommand("SELECT pg_try_advisory_lock($1)", connection);
            command.Parameters.AddWithValue(KeyOf(key));
            if (await command.ExecuteScalarAsync(ct) is true)
            {
                return new Handle(connection, KeyOf(key));
            }
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
        await connection.DisposeAsync();
        return null;
    }

    private sealed class Handle : ILockHandle
    {
        private readonly NpgsqlConnection _connection;
        private readonly long _key;
        private readonly CancellationTokenSource _lost = new();
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _watch;
        private readonly SemaphoreSlim _connectionGate = new(1, 1);

        public Handle(NpgsqlConnection connection, long key)
        {
            _connection = connection;
            _key = key;
            _watch = WatchAsync();
        }

        public CancellationToken Lost => _lost.Token;

        private async Task WatchAsync()
        {
            using var timer = new PeriodicTimer(TimeSpan.FromSeconds(5));
            try
            {
                while (await timer.WaitForNextTickAsync(_stop.Token))
                {
                    await _connectionGate.WaitAsync(_stop.Token);
                    try
                    {
                        await using var ping = new NpgsqlCommand("SELECT 1", _connection);
                        await ping.ExecuteScalarAsync(_stop.Token);
                    }
                    finally
                    {
                        _connectionGate.Release();
                    }
                }
            }
            catch (OperationCanceledException)
            {
            }
            catch (Exception)
            {
                await _lost.CancelAsync();
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            await _watch;
            try
            {
                await using var unlock = new NpgsqlCommand("SELECT pg_advisory_unlock($1)", _connection);
                unlock.Parameters.AddWithValue(_key);
                await unlock.ExecuteScalarAsync();
            }
            catch (NpgsqlException)
            {
                // Connection already gone: so is the lock.
            }
            await _connection.DisposeAsync();
            _stop.Dispose();
            _lost.Dispose();
            _connectionGate.Dispose();
        }
    }
}
