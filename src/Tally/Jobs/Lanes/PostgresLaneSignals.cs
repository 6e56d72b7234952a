using Npgsql;

namespace Tally.Jobs.Lanes;

/// <summary>
/// What instances sharing a <see cref="PostgresLaneStore"/> tell each other, over <c>LISTEN</c>/<c>NOTIFY</c>
/// on the store's channel, so a request answered by one instance and run by another is not left to polls:
/// <list type="bullet">
/// <item><c>p</c>: a priority entry waits with no worker of its own instance on it: idle priority
/// workers everywhere look now;</item>
/// <item><c>s:{key}</c>: a priority entry of the key settled: whoever waits for the key anywhere
/// looks at the lanes now (<see cref="LaneWaiters.Nudge"/>).</item>
/// </list>
/// A signal only shortens a wait: the lanes table decides, and the polls stay as the fallback, so a
/// lost notification (the listening connection dropped and is being opened again) costs a poll.
/// </summary>
public sealed partial class PostgresLaneSignals(
    NpgsqlDataSource dataSource, PostgresLaneStore lanes, LaneWaiters waiters, ILogger<PostgresLaneSignals> logger) : BackgroundService
{
    private static readonly TimeSpan Reconnect = TimeSpan.FromSeconds(1);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await using var connection = await dataSource.OpenConnectionAsync(stoppingToken);
                connection.Notification += (_, e) => On(e.Payload);
                await using (var listen = new NpgsqlCommand($"LISTEN {lanes.Options.Channel}", connection))
                {
                    await listen.ExecuteNonQueryAsync(stoppingToken);
                }
                // Whatever was said while not listening: the waiters look once more.
                lanes.Wake();
                while (true)
                {
                    await connection.WaitAsync(stoppingToken);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                LogListenFailed(logger, e, lanes.Options.Name, Reconnect.TotalSeconds);
                await Task.Delay(Reconnect, stoppingToken).ContinueWith(_ => { }, TaskScheduler.Default);
            }
        }
    }

    private void On(string payload)
    {
        if (payload == PostgresLaneSql.PriorityWork)
        {
            lanes.Wake();
        }
        else if (payload.StartsWith(PostgresLaneSql.Settled, StringComparison.Ordinal) && Guid.TryParse(payload.AsSpan(PostgresLaneSql.Settled.Length), out var key))
        {
            waiters.Nudge(key);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Listening for other instances' {Lanes} signals failed; polling alone until listening again in {Seconds} s")]
    private static partial void LogListenFailed(ILogger logger, Exception e, string lanes, double seconds);
}
