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
    public async Task<JobOutcome> SettleAsync(OccurrenceMessage occurrence, CancellationToken ct) => (await SettleAsync([occurrence], ct))[0];

    /// <summary>Settles due occurrences (a page's) in the next batch, together, and answers each one's outcome in order.</summary>
    public async Task<JobOutcome[]> SettleAsync(IReadOnlyList<OccurrenceMessage> occurrences, CancellationToken ct)
    {
        EnsureStarted();
        var request = new Request(occurrences, new TaskCompletionSource<JobOutcome[]>(TaskCreationOptions.RunContinuationsAsynchronously), Activity.Current?.Context ?? default);
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
        var batch = new List<Request>();
        Request? carried = null;
        while (carried is not null || await WaitAsync(reader))
        {
            batch.Clear();
            // Whole requests, up to the batch size in occurrences (a page larger than that is a batch
            // alone); a request that does not fit starts this loop's next batch.
            var size = 0;
            if (carried is not null)
            {
                batch.Add(carried);
                size = carried.Occurrences.Count;
                carried = null;
            }
            while (size < options.Value.CommitBatchSize && reader.TryRead(out var request))
            {
                if (size > 0 && size + request.Occurrences.Count > options.Value.CommitBatchSize)
                {
                    carried = request;
                    break;
                }
                batch.Add(request);
                size += request.Occurrences.Count;
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
        activity?.SetTag("tally.batch.size", batch.Sum(r => r.Occurrences.Count));
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                var outcomes = await SettleBatchAsync(batch);
                var at = 0;
                foreach (var request in batch)
                {
                    request.Outcome.TrySetResult(outcomes[at..(at + request.Occurrences.Count)]);
                    at += request.Occurrences.Count;
                }
                return;
            }
            catch (Exception e) when (attempt < 3 && DbErrors.IsTransient(e) && !_stopping.IsCancellationRequested)
            {
                LogBatchRetried(logger, e, batch.Sum(r => r.Occurrences.Count), attempt);
            }
            catch (Exception e)
            {
                LogBatchFailed(logger, e, batch.Sum(r => r.Occurrences.Count));
                foreach (var request in batch)
                {
                    request.Outcome.TrySetResult([.. request.Occurrences.Select(_ => JobOutcome.RetryLater($"batch commit failed: {e.GetType().Name}"))]);
                }
                return;
            }
        }
    }

    private async Task<JobOutcome[]> SettleBatchAsync(List<Request> batch)
    {
        var ct = _stopping.Token;
        await using var db = await dbs.CreateDbContextAsync(ct);
        return await CreditAllowance.SettleAsync(db, [.. batch.SelectMany(r => r.Occurrences)], clock.GetUtcNow().UtcDateTime, logger, ct);
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

    /// <summary>One delivery's occurrences waiting for their batch; <see cref="Origin"/> is the span of the delivery, linked from the batch's.</summary>
    private sealed record Request(IReadOnlyList<OccurrenceMessage> Occurrences, TaskCompletionSource<JobOutcome[]> Outcome, ActivityContext Origin);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Credit batch of {Count} failed transiently (attempt {Attempt}); trying it again")]
    private static partial void LogBatchRetried(ILogger logger, Exception e, int count, int attempt);

    [LoggerMessage(Level = LogLevel.Error, Message = "Credit batch of {Count} failed; its deliveries will be retried")]
    private static partial void LogBatchFailed(ILogger logger, Exception e, int count);
}
