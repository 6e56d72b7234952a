using System.Diagnostics;
using System.Threading.Channels;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Tally.Data;
using Tally.Hosting;
using Tally.Jobs;

namespace Tally.Features.Allowances;

/// <summary>
/// Batched settling of allowance deliveries (<c>Allowances:BatchCommits</c>, on by default): the
/// occurrences that concurrent deliveries bring are settled together, by the same code that settles
/// one delivery alone (<see cref="CreditAllowance.SettleAsync"/>): one read gives the facts of the
/// whole batch (a batch of duplicates costs just that read), the payable ones are paid in ONE
/// transaction with a fixed number of set-based statements, and should any of them be refused, one
/// after another behind a savepoint each, so a refused credit leaves the others be.
/// Nothing is acked before the batch commits; a batch that fails (a deadlock victim, the database
/// gone) is tried again whole, then its deliveries are retried by the queue like any failure.
/// </summary>
public sealed partial class CreditBatcher(
    IDbContextFactory<TallyDb> dbs, IOptions<AllowanceOptions> options, TimeProvider clock, ILogger<CreditBatcher> logger) : IAsyncDisposable
{
    private readonly Channel<Request> _requests = Channel.CreateUnbounded<Request>();
    private readonly CancellationTokenSource _stopping = new();
    private readonly Lock _startGate = new();
    private Task[]? _loops;

    public bool Enabled => options.Value.BatchCommits;

    /// <summary>Settles one due occurrence in the next batch, and answers what its delivery comes to.</summary>
    public async Task<JobOutcome> SettleAsync(OccurrenceMessage occurrence, CancellationToken ct)
    {
        EnsureStarted();
        var request = new Request(occurrence, new TaskCompletionSource<JobOutcome>(TaskCreationOptions.RunContinuationsAsynchronously), Activity.Current?.Context ?? default);
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
            // The loops outlive the delivery that starts them: they must not inherit its span or log scope.
            using (ExecutionContext.SuppressFlow())
            {
                _loops ??= Enumerable.Range(0, Math.Max(1, options.Value.CommitBatchers)).Select(_ => Task.Run(LoopAsync)).ToArray();
            }
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
        // One span for the batch's statements, linked to each delivery's span: a batch serves many traces.
        using var activity = Tracing.Source.HasListeners()
            ? Tracing.Source.StartActivity("allowance.credit batch", ActivityKind.Internal, parentContext: default,
                links: batch.Where(r => r.Origin != default).Select(r => new ActivityLink(r.Origin)))
            : null;
        activity?.SetTag("tally.batch.size", batch.Count);
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                var outcomes = await SettleBatchAsync(batch);
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

    private async Task<JobOutcome[]> SettleBatchAsync(List<Request> batch)
    {
        var ct = _stopping.Token;
        await using var db = await dbs.CreateDbContextAsync(ct);
        return await CreditAllowance.SettleAsync(db, [.. batch.Select(r => r.Occurrence)], clock.GetUtcNow().UtcDateTime, logger, ct);
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

    /// <summary>One delivery waiting for its batch; <see cref="Origin"/> is the span of its delivery, linked from the batch's.</summary>
    private sealed record Request(OccurrenceMessage Occurrence, TaskCompletionSource<JobOutcome> Outcome, ActivityContext Origin);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Credit batch of {Count} failed transiently (attempt {Attempt}); trying it again")]
    private static partial void LogBatchRetried(ILogger logger, Exception e, int count, int attempt);

    [LoggerMessage(Level = LogLevel.Error, Message = "Credit batch of {Count} failed; its deliveries will be retried")]
    private static partial void LogBatchFailed(ILogger logger, Exception e, int count);
}
