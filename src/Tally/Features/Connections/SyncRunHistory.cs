using System.ComponentModel.DataAnnotations;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Tally.Data;
using Tally.Jobs.Retention;

namespace Tally.Features.Connections;

/// <summary><c>Retention:SyncRunsDays</c>: the connections' part of the <c>Retention</c> section.</summary>
public sealed class SyncRunRetentionOptions
{
    /// <summary>Connection sync runs older than this (by start) are removed.</summary>
    [Range(1, 36_500, ErrorMessage = "Retention:SyncRunsDays must be between 1 and 36500.")]
    public int SyncRunsDays { get; set; } = 90;
}

/// <summary>Connection sync runs, kept <see cref="SyncRunRetentionOptions.SyncRunsDays"/> by <c>runtime.prune-history</c>.</summary>
public sealed class SyncRunHistory(IOptions<SyncRunRetentionOptions> options) : IFeatureHistory
{
    public string Name => "syncRuns";

    public Task<int> DeleteBatchAsync(TallyDb db, DateTime now, int take, CancellationToken ct)
    {
        var before = now.AddDays(-options.Value.SyncRunsDays);
        return db.ConnectionSyncRuns.Where(r => r.StartedAt < before).OrderBy(r => r.StartedAt).Take(take).ExecuteDeleteAsync(ct);
    }
}
