using System.Data.Common;
using Microsoft.EntityFrameworkCore;
using Tally.Data;
using Tally.Tests.Harness;

namespace Tally.Tests.Hardening;

/// <summary>
/// A fingerprint of every table, read in one query: its row count, the newest value of each
/// <c>*_at</c> column (an update stamps one) and the sum of each <c>*_minor</c> column (money). Taken
/// after every request, so a refused request that wrote anything is caught in the act. Built from
/// the database's own catalog, so a new table is watched without anyone listing it.
/// <para>
/// The full query runs only when the database says something was committed since the last one: on
/// PostgreSQL the next transaction id moved (a transaction gets one only when it writes), on SQLite
/// <c>PRAGMA data_version</c> moved (another connection committed). Most requests are refusals that
/// write nothing, and for them this costs one trivial query.
/// </para>
/// </summary>
public sealed class RowSnapshot : IAsyncDisposable
{
    private readonly TallyDb _db;
    private readonly DbCommand _fingerprint;
    private readonly DbCommand _marker;
    private readonly string[] _labels;
    private string? _lastMarker;
    private string?[]? _last;

    private RowSnapshot(TallyDb db, DbCommand fingerprint, DbCommand marker, string[] labels)
    {
        _db = db;
        _fingerprint = fingerprint;
        _marker = marker;
        _labels = labels;
    }

    public int Tables { get; private init; }

    /// <summary>How many times the full fingerprint was read (the rest were answered by the marker).</summary>
    public int FullReads { get; private set; }

    public static async Task<RowSnapshot> OpenAsync(TallyApp app, CancellationToken ct)
    {
        var db = app.Db();
        var connection = db.Database.GetDbConnection();
        await connection.OpenAsync(ct);
        var catalog = db.Database.IsNpgsql()
            ? """
              SELECT c.table_name, c.column_name FROM information_schema.columns c
              JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
              WHERE t.table_type = 'BASE TABLE' AND c.table_schema = current_schema()
              ORDER BY c.table_name, c.ordinal_position
              """
            : """
              SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p
              WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'
              ORDER BY m.name, p.cid
              """;
        var columns = new List<(string Table, string Column)>();
        await using (var command = connection.CreateCommand())
        {
            command.CommandText = catalog;
            await using var reader = await command.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                columns.Add((reader.GetString(0), reader.GetString(1)));
            }
        }
        var parts = new List<(string Label, string Sql)>();
        foreach (var table in columns.Select(c => c.Table).Distinct().Where(t => t != "schema_migrations"))
        {
            parts.Add(($"{table}: rows", $"SELECT CAST(count(*) AS TEXT) FROM \"{table}\""));
            foreach (var column in columns.Where(c => c.Table == table).Select(c => c.Column))
            {
                if (column.EndsWith("_at", StringComparison.Ordinal))
                {
                    parts.Add(($"{table}: newest {column}", $"SELECT CAST(max(\"{column}\") AS TEXT) FROM \"{table}\""));
                }
                else if (column.EndsWith("_minor", StringComparison.Ordinal))
                {
                    parts.Add(($"{table}: sum of {column}", $"SELECT CAST(sum(\"{column}\") AS TEXT) FROM \"{table}\""));
                }
            }
        }
        var fingerprint = connection.CreateCommand();
        fingerprint.CommandText = "SELECT " + string.Join(",\n", parts.Select(p => $"({p.Sql})"));
        await fingerprint.PrepareAsync(ct);
        var marker = connection.CreateCommand();
        marker.CommandText = db.Database.IsNpgsql() ? "SELECT CAST(pg_snapshot_xmax(pg_current_snapshot()) AS TEXT)" : "PRAGMA data_version";
        await marker.PrepareAsync(ct);
        return new RowSnapshot(db, fingerprint, marker, [.. parts.Select(p => p.Label)]) { Tables = parts.Count(p => p.Label.EndsWith(": rows", StringComparison.Ordinal)) };
    }

    public async Task<string?[]> TakeAsync(CancellationToken ct)
    {
        // Read before the fingerprint: a write landing in between moves it again, so the next call reads in full.
        var marker = Convert.ToString(await _marker.ExecuteScalarAsync(ct), System.Globalization.CultureInfo.InvariantCulture);
        if (_last is not null && marker == _lastMarker)
        {
            return _last;
        }
        await using var reader = await _fingerprint.ExecuteReaderAsync(ct);
        await reader.ReadAsync(ct);
        var values = new string?[_labels.Length];
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = reader.IsDBNull(i) ? null : reader.GetString(i);
        }
        FullReads++;
        (_last, _lastMarker) = (values, marker);
        return values;
    }

    /// <summary>What differs between two snapshots, as "table: what: before -> after".</summary>
    public IReadOnlyList<string> Changes(string?[] before, string?[] after) =>
        [.. _labels.Select((label, i) => (label, i)).Where(x => before[x.i] != after[x.i]).Select(x => $"{x.label}: {before[x.i] ?? "null"} -> {after[x.i] ?? "null"}")];

    public async ValueTask DisposeAsync()
    {
        var connection = _fingerprint.Connection;
        await _fingerprint.DisposeAsync();
        await _marker.DisposeAsync();
        if (connection is not null)
        {
            await connection.CloseAsync();
        }
        await _db.DisposeAsync();
    }
}
