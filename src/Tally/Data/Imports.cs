using System.Linq.Expressions;
using Microsoft.EntityFrameworkCore;

namespace Tally.Data;

/// <summary>What an import of one row did: made it, found the same row already there, or found a different one in the way.</summary>
public abstract record Imported<T>
    where T : class
{
    private Imported()
    {
    }

    /// <summary>The row is new: answer 201.</summary>
    public sealed record Created(T Row) : Imported<T>;

    /// <summary>The same row was imported before: answer 200 with it, so a repeated import is answered, not refused.</summary>
    public sealed record Matched(T Row) : Imported<T>;

    /// <summary>A different row holds the id or the natural key: answer 409.</summary>
    public sealed record Clashed : Imported<T>;
}

/// <summary>
/// The one way an admin import creates a row whose id the caller may choose: create it, or answer
/// the existing row when it is the same, else report the clash.
/// </summary>
public static class Imports
{
    /// <summary>
    /// Looks for a row that <paramref name="clashes"/> (same id or same natural key); when there is one,
    /// it is <see cref="Imported{T}.Matched"/> if <paramref name="same"/> holds and
    /// <see cref="Imported{T}.Clashed"/> otherwise. When there is none, adds <paramref name="create"/>'s
    /// row and saves.
    /// </summary>
    /// <remarks>
    /// The lookup is an optimisation for the common repeat; the guarantee is the unique keys: an insert
    /// that loses a race to a concurrent import is reported as a clash, never as a second row.
    /// </remarks>
    public static async Task<Imported<T>> CreateOrMatchAsync<T>(
        TallyDb db, Expression<Func<T, bool>> clashes, Func<T, bool> same, Func<T> create, CancellationToken ct)
        where T : class
    {
        var existing = await db.Set<T>().AsNoTracking().FirstOrDefaultAsync(clashes, ct);
        if (existing is not null)
        {
            return same(existing) ? new Imported<T>.Matched(existing) : new Imported<T>.Clashed();
        }
        var row = create();
        db.Set<T>().Add(row);
        try
        {
            await db.SaveChangesAsync(ct);
        }
        catch (DbUpdateException e) when (DbErrors.IsUniqueViolation(e))
        {
            return new Imported<T>.Clashed();
        }
        return new Imported<T>.Created(row);
    }
}
