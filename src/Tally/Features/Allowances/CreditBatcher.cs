using System.Threading.Channels;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Tally.Data;
using Tally.Jobs;

namespace Tally.Features.Allowances;

/// <summary>
/// Group commit for allowance credits (<c>Allowances:BatchCommits</c>): the credits that concurrent
/// deliveries want to pay are run one after another inside ONE transaction, each behind its own
/// savepoint, and committed together, so a whole batch costs one commit (one fsync) instead of one
/// each. The money logic is exactly the single path's (<see cref="CreditAllowance.PayInTransactionAsync"/>):
/// a credit that is refused rolls back to its savepoint and leaves the others be. Nothing is acked
/// before the batch commits; a batch that fails (a deadlock victim, the database gone) is tried again
/// whole, then its deliveries are retried by the queue like any failure.
/// </summary>
public sealed partial class CreditBatcher(
    IDbContextFactory<TallyDb> dbs, IOptions<AllowanceOptions> options, TimeProvider clock, ILogger<CreditBatcher> logger) : IAsyncDisposable
{
    private readonly Channel<Request> _requests = Channel.CreateUnbounded<Request>();
    private readonly CancellationTokenSource _stopping = new();
    private readonly Lock _startGate = new();
    private Task[]? _loops;

    public bool Enabled => options.Value.BatchCommits;

    public async Task<JobOutcome> PayAsync(CreditAllowance.Payable payable, CancellationToken ct)
    {
        EnsureStarted();
        var request = new Request(payable, new TaskCompletionSource<JobOutcome>(TaskCreationOptions.RunContinuationsAsynchronously));
        await _requests.Writer.WriteAsync(request, ct);
        // Cancelling the wait does not cancel the batch: its outcome simply goes unobserved, and an
        // unacked message is delivered again, which the unique keys make harmless.
        return await request.Outcome.Task.WaitAsync(ct);
    }

    private void EnsureStarted()
    {
        if (_loops is not null)
        {
            return;
        }
        lock (_startGate)
        {
            _loops ??= Enumerable.Range(0, Math.Max(1, options.Value.CommitBatchers)).Select(_ => Task.Run(LoopAsync)).ToArray();
        }
    }

    private async Task LoopAsync()
    {
        var reader = _requests.Reader;
        var batch = new List<Request>(options.Value.CommitBatchSize);
        while (await WaitAsync(reader))
        {
            batch.Clear();
            while (batch.Count < options.Value.CommitBatchSize && reader.TryRead(out var request))
            {
                batch.Add(request);
            }
            if (batch.Count > 0)
            {
                await RunBatchAsync(batch);
            }
        }
    }

    private async Task<bool> WaitAsync(ChannelReader<Request> reader)
    {
        try
        {
            return await reader.WaitToReadAsync(_stopping.Token);
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    private async Task RunBatchAsync(List<Request> batch)
    {
        // Schedules in id order in every batch, as the producer locks them, so they wait for each other rather than deadlock.
        batch.Sort((a, b) => a.Payable.Schedule.Id.CompareTo(b.Payable.Schedule.Id));
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                var outcomes = await PayBatchAsync(batch);
                for (var i = 0; i < batch.Count; i++)
                {
                    batch[i].Outcome.TrySetResult(outcomes[i]);
                }
                return;
            }
            catch (Exception e) when (attempt < 3 && DbErrors.IsTransient(e) && !_stopping.IsCancellationRequested)
            {
                LogBatchRetried(logger, e, batch.Count, attempt);
            }
            catch (Exception e)
            {
                LogBatchFailed(logger, e, batch.Count);
                foreach (var request in batch)
                {
                    request.Outcome.TrySetResult(JobOutcome.RetryLater($"batch commit failed: {e.GetType().Name}"));
                }
                return;
            }
        }
    }

    private async Task<JobOutcome[]> PayBatchAsync(List<Request> batch)
    {
        var ct = _stopping.Token;
        var now = clock.GetUtcNow().UtcDateTime;
        var outcomes = new JobOutcome[batch.Count];
        await using var db = await dbs.CreateDbContextAsync(ct);
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        for (var i = 0; i < batch.Count; i++)
        {
            await tx.CreateSavepointAsync("credit", ct);
            var result = await CreditAllowance.PayInTransactionAsync(db, batch[i].Payable, now, ct);
            if (result.Paid)
            {
                await tx.ReleaseSavepointAsync("credit", ct);
            }
            else
            {
                await tx.RollbackToSavepointAsync("credit", ct);
            }
            db.ChangeTracker.Clear();
            outcomes[i] = result.Outcome;
        }
        await tx.CommitAsync(ct);
        return outcomes;
    }

    public async ValueTask DisposeAsync()
    {
        _requests.Writer.TryComplete();
        await _stopping.CancelAsync();
        if (_loops is not null)
        {
            await Task.WhenAll(_loops).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
        _stopping.Dispose();
    }

    private sealed record Request(CreditAllowance.Payable Payable, TaskCompletionSource<JobOutcome> Outcome);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Credit batch of {Count} failed transiently (attempt {Attempt}); trying it again")]
    private static partial void LogBatchRetried(ILogger logger, Exception e, int count, int attempt);

    [LoggerMessage(Level = LogLevel.Error, Message = "Credit batch of {Count} failed; its deliveries will be retried")]
    private static partial void LogBatchFailed(ILogger logger, Exception e, int count);
}
