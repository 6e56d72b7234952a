using Npgsql;

namespace Tally.Features.BalanceSync;

/// <summary>
/// What instances sharing the PostgreSQL lanes tell each other, over <c>LISTEN</c>/<c>NOTIFY</c> on
/// one channel, so a login answered by one instance and synced by another is not left to polls:
/// <list type="bullet">
/// <item><c>p</c>: a priority entry waits with no worker of its own instance on it: idle priority
/// workers everywhere look now;</item>
/// <item><c>s:{userId}</c>: a priority entry of the user settled: logins waiting for the user
/// anywhere look at the lanes now.</item>
/// </list>
/// A signal only shortens a wait: the lanes table decides, and the polls stay as the fallback, so a
/// lost notification (the listening connection dropped and is being opened again) costs a poll.
/// </summary>
public sealed partial class PostgresSyncSignals(
    NpgsqlDataSource dataSource, PostgresSyncLanes lanes, SyncCompletions completions, ILogger<PostgresSyncSignals> logger) : BackgroundService
{
    public const string Channel = "tally_balance_sync";
    public const string PriorityWork = "p";
    public const string Settled = "s:";

    private static readonly TimeSpan Reconnect = TimeSpan.FromSeconds(1);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await using var connection = await dataSource.OpenConnectionAsync(stoppingToken);
                connection.Notification += (_, e) => On(e.Payload);
                await using (var listen = new NpgsqlCommand($"LISTEN {Channel}", connection))
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
                LogListenFailed(logger, e, Reconnect.TotalSeconds);
                await Task.Delay(Reconnect, stoppingToken).ContinueWith(_ => { }, TaskScheduler.Default);
            }
        }
    }

    private void On(string payload)
    {
        if (payload == PriorityWork)
        {
            lanes.Wake();
        }
        else if (payload.StartsWith(Settled, StringComparison.Ordinal) && Guid.TryParse(payload.AsSpan(Settled.Length), out var userId))
        {
            completions.Nudge(userId);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Listening for other instances' balance-sync signals failed; polling alone until listening again in {Seconds} s")]
    private static partial void LogListenFailed(ILogger logger, Exception e, double seconds);
}
