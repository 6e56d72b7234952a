using System.Reflection;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;

namespace Tally.Data;

/// <summary>
/// A feature's SQL for one database. A feature that drops below EF Core keeps its statements for
/// PostgreSQL and SQLite side by side in one record deriving from this one, with a static
/// <c>Postgres</c> and <c>Sqlite</c> instance and a <c>For(db)</c> that picks between them through
/// <see cref="Dialects.Pick{T}(DatabaseFacade, T, T)"/>. Feature code then reads <c>sql.ClaimCredits</c>
/// and never asks which database it is on; where the two databases need different steps rather
/// than different text, the dialect says so with a named member (a capability), not the caller.
/// </summary>
/// <remarks>
/// Every public <see cref="string"/> property is a statement. <c>DialectConformanceTests</c> prepares
/// each one, for both databases, against the migrated schema, so a statement that names a missing
/// column or uses the other database's syntax fails a test rather than a job. A statement built at
/// run time (a VALUES list of n rows) is checked through <see cref="Examples"/>.
/// </remarks>
public abstract record Dialect(StorageProvider Provider)
{
    /// <summary>Every statement of this dialect by name: its string properties, then <see cref="Examples"/>.</summary>
    public IEnumerable<(string Name, string Sql)> Statements()
    {
        foreach (var property in GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (property.PropertyType == typeof(string) && property.GetValue(this) is string sql)
            {
                yield return (property.Name, sql);
            }
        }
        foreach (var example in Examples())
        {
            yield return example;
        }
    }

    /// <summary>Samples of the statements this dialect builds at run time, for the conformance test.</summary>
    protected virtual IEnumerable<(string Name, string Sql)> Examples() => [];
}

/// <summary>The one place that asks which database a context is on.</summary>
public static class Dialects
{
    /// <summary>The PostgreSQL or the SQLite variant, for the database behind <paramref name="db"/>.</summary>
    public static T Pick<T>(this DatabaseFacade db, T postgres, T sqlite) => db.IsNpgsql() ? postgres : sqlite;

    /// <summary>The PostgreSQL or the SQLite variant, for the configured storage.</summary>
    public static T Pick<T>(this StorageSettings storage, T postgres, T sqlite) =>
        storage.Provider == StorageProvider.Postgres ? postgres : sqlite;
}
