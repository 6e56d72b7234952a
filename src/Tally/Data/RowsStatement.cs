using System.Globalization;
using System.Reflection;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;

namespace Tally.Data;

/// <summary>
/// A statement over a set of rows, in the text of one database: a dialect member for the statements
/// a feature runs on one row or on thousands alike. Its first parameters are scalars (<c>{0}</c>,
/// <c>{1}</c>, ...); the rows follow, as columns. PostgreSQL receives each column as one array
/// parameter and reads the rows with <c>unnest</c> (or <c>= ANY</c>): one text whatever the number
/// of rows. SQLite has no arrays: its text says <see cref="Rows"/> where a VALUES list goes, and
/// <see cref="Bind"/> writes the rows there as parameters, in chunks under SQLite's limit of bound
/// parameters (32,766).
/// </summary>
public sealed partial record RowsStatement(StorageProvider Provider, string Text, int Columns)
{
    /// <summary>In a SQLite text, where the VALUES list of the rows goes: <c>WITH v(a, b) AS (VALUES {rows})</c>.</summary>
    public const string Rows = "{rows}";

    private const int MaxParameters = 30_000;

    /// <summary>
    /// The statement for these rows, as (text, parameters) to execute one after the other: one on
    /// PostgreSQL, one per chunk of rows on SQLite; none for no rows.
    /// </summary>
    /// <param name="scalars">The values of <c>{0}</c>, <c>{1}</c>, ...: the same in every chunk.</param>
    /// <param name="columns">One array per column, all as long as there are rows.</param>
    public IEnumerable<(string Sql, object?[] Parameters)> Bind(object?[] scalars, params Array[] columns)
    {
        if (columns.Length != Columns || columns.Any(c => c.Length != columns[0].Length))
        {
            throw new ArgumentException($"The statement takes {Columns} columns of the same length.", nameof(columns));
        }
        var count = columns[0].Length;
        if (count == 0)
        {
            yield break;
        }
        if (Provider == StorageProvider.Postgres)
        {
            yield return (Text, [.. scalars, .. columns]);
            yield break;
        }
        var perChunk = (MaxParameters - scalars.Length) / Columns;
        for (var first = 0; first < count; first += perChunk)
        {
            var rows = Math.Min(perChunk, count - first);
            var parameters = new object?[scalars.Length + (rows * Columns)];
            scalars.CopyTo(parameters, 0);
            for (var r = 0; r < rows; r++)
            {
                for (var c = 0; c < Columns; c++)
                {
                    parameters[scalars.Length + (r * Columns) + c] = columns[c].GetValue(first + r);
                }
            }
            yield return (WithRows(scalars.Length, rows), parameters);
        }
    }

    /// <summary>The text as <see cref="Bind"/> gives it for <paramref name="rows"/> rows, with its placeholders.</summary>
    public string Example(int rows = 2) =>
        Provider == StorageProvider.Postgres ? Text : WithRows(Placeholder().Matches(Text).Select(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) + 1).DefaultIfEmpty(0).Max(), rows);

    /// <summary>Every <see cref="RowsStatement"/> of a dialect, by name, as an example of two rows: a dialect's <c>Examples()</c>.</summary>
    public static IEnumerable<(string Name, string Sql)> ExamplesOf(Dialect dialect) =>
        dialect.GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.PropertyType == typeof(RowsStatement))
            .Select(p => (p.Name, ((RowsStatement)p.GetValue(dialect)!).Example()));

    /// <summary>The SQLite text with a VALUES list of <paramref name="rows"/> rows, numbered from <c>{first}</c>.</summary>
    private string WithRows(int first, int rows)
    {
        var values = new StringBuilder(rows * Columns * 8);
        for (var r = 0; r < rows; r++)
        {
            values.Append(r == 0 ? "(" : ", (");
            for (var c = 0; c < Columns; c++)
            {
                values.Append(c == 0 ? "{" : ", {").Append(first + (r * Columns) + c).Append('}');
            }
            values.Append(')');
        }
        return Text.Replace(Rows, values.ToString(), StringComparison.Ordinal);
    }

    [GeneratedRegex(@"\{(\d+)\}")]
    private static partial Regex Placeholder();
}

/// <summary>Runs a <see cref="RowsStatement"/> through EF Core, chunk by chunk, in the caller's transaction if any.</summary>
public static class RowsStatements
{
    /// <summary>Executes the statement for the rows; answers the rows it affected.</summary>
    public static async Task<int> ExecuteAsync(this DatabaseFacade db, RowsStatement statement, object?[] scalars, Array[] columns, CancellationToken ct)
    {
        var affected = 0;
        foreach (var (sql, parameters) in statement.Bind(scalars, columns))
        {
            affected += await db.ExecuteSqlRawAsync(sql, parameters!, ct);
        }
        return affected;
    }

    /// <summary>Runs the statement's query for the rows (<paramref name="query"/>: the statement's text and parameters as a query); answers every chunk's results in order.</summary>
    public static async Task<List<T>> QueryAsync<T>(this RowsStatement statement, Func<string, object[], IQueryable<T>> query, object?[] scalars, Array[] columns, CancellationToken ct)
    {
        var results = new List<T>();
        foreach (var (sql, parameters) in statement.Bind(scalars, columns))
        {
            results.AddRange(await query(sql, parameters!).ToListAsync(ct));
        }
        return results;
    }
}
