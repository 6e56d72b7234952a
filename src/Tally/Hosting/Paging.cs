using System.Globalization;

namespace Tally.Hosting;

/// <summary>One page of a listing, and the cursor that asks for the next one (null on the last page).</summary>
public sealed record Page<T>(List<T> Items, string? NextCursor);

/// <summary>
/// A keyset cursor: the sort key of the last item of a page (a time and an id, or an id alone). The
/// next page is everything after it in the listing's order, so a page costs an index seek and its
/// own rows however deep the listing goes, and rows added meanwhile neither repeat nor shift a page.
/// Opaque to clients: they send back what they were given.
/// </summary>
public readonly record struct Cursor(DateTime At, Guid Id)
{
    public override string ToString() => $"{At.Ticks.ToString(CultureInfo.InvariantCulture)}-{Id:N}";

    public static bool TryParse(string text, out Cursor cursor)
    {
        cursor = default;
        var dash = text.IndexOf('-', StringComparison.Ordinal);
        if (dash < 1 || text.Length > 60
            || !long.TryParse(text.AsSpan(0, dash), NumberStyles.None, CultureInfo.InvariantCulture, out var ticks)
            || ticks > DateTime.MaxValue.Ticks
            || !Guid.TryParseExact(text.AsSpan(dash + 1), "N", out var id))
        {
            return false;
        }
        cursor = new Cursor(new DateTime(ticks, DateTimeKind.Utc), id);
        return true;
    }
}

public static class Paging
{
    /// <summary>
    /// A page from rows read one beyond the page size (<paramref name="take"/> + 1): the extra row only
    /// says there is a next page, whose cursor is the key of the page's last row.
    /// </summary>
    public static Page<TView> Of<TRow, TView>(List<TRow> rows, int take, Func<TRow, Cursor> key, Func<TRow, TView> view)
    {
        var more = rows.Count > take;
        var page = more ? rows.GetRange(0, take) : rows;
        return new Page<TView>(page.Select(view).ToList(), more ? key(page[^1]).ToString() : null);
    }

    /// <summary>A page size: <paramref name="fallback"/> when not given, else between 1 and <paramref name="max"/>.</summary>
    public static FieldErrors CheckLimit(this FieldErrors errors, int? limit, int fallback, int max, out int take)
    {
        take = limit ?? fallback;
        return errors.Check(take >= 1 && take <= max, "limit", $"must be between 1 and {max}");
    }

    /// <summary>A cursor as this API gave it (<see cref="Page{T}.NextCursor"/>), or none.</summary>
    public static FieldErrors CheckCursor(this FieldErrors errors, string? text, out Cursor? cursor)
    {
        cursor = null;
        if (text is null)
        {
            return errors;
        }
        if (Cursor.TryParse(text, out var parsed))
        {
            cursor = parsed;
            return errors;
        }
        return errors.Check(false, "cursor", "must be the nextCursor of a previous page");
    }
}
