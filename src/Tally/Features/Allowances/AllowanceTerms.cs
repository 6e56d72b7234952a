using System.Collections.Frozen;
using System.ComponentModel.DataAnnotations;
using System.Globalization;
using System.Text.RegularExpressions;
using Tally.Features.Ledger;
using Tally.Hosting;

namespace Tally.Features.Allowances;

/// <summary>The body of create and change. Every field is optional here; <see cref="AllowanceTerms"/> decides what is required.</summary>
public sealed record AllowanceRequest(
    decimal? Amount,
    string? Currency,
    [property: AllowedValues(Frequencies.Daily, Frequencies.Weekly, Frequencies.Monthly)] string? Frequency,
    [property: AllowedValues(ScheduleStatus.On, ScheduleStatus.Off)] string? Status,
    string? StartAt,
    string? TimeZone,
    int? Interval,
    string[]? ByDay,
    int? ByMonthDay);

/// <summary>Validated, normalised terms of a schedule. A pure decision: no I/O.</summary>
public sealed partial record AllowanceTerms(
    long AmountMinor,
    string Currency,
    Frequency Frequency,
    string Status,
    DateTime StartAtUtc,
    string TimeZone,
    int Interval,
    string? ByDay,
    int? ByMonthDay)
{
    public const int MaxInterval = 366;

    /// <summary>A day can be named once each.</summary>
    public const int MaxByDay = 7;

    /// <summary>
    /// The earliest start, inclusive, as a UTC instant. Far enough back for any real agreement; near
    /// enough that every computation on a schedule (a day either side for zone offsets, the recurrence
    /// horizon) stays far from the ends of the calendar.
    /// </summary>
    public static readonly DateTime EarliestStart = new(1900, 1, 1, 0, 0, 0, DateTimeKind.Utc);

    /// <summary>The end of the start range, exclusive, as a UTC instant.</summary>
    public static readonly DateTime StartRangeEnd = new(2200, 1, 1, 0, 0, 0, DateTimeKind.Utc);

    /// <summary>The longest startAt text read: an ISO 8601 date-time with 7 decimals and an offset is 33 characters.</summary>
    public const int MaxStartAtLength = 64;

    private const string StartAtRule =
        "must be an ISO 8601 date-time from 1900-01-01T00:00:00Z (inclusive) to 2200-01-01T00:00:00Z (exclusive), " +
        "e.g. 2026-01-31T09:00:00 (read in timeZone) or 2026-01-31T09:00:00Z or 2026-01-31T09:00:00+01:00";

    /// <summary>Terms for a new schedule, or the field errors.</summary>
    public static (AllowanceTerms? Terms, FieldErrors Errors) ForCreate(AllowanceRequest body, string defaultCurrency, DateTime now)
    {
        var errors = new FieldErrors();
        errors.Check(body.Amount is not null, "amount", "is required");
        errors.Check(body.Frequency is not null, "frequency", $"is required: {Frequencies.Listed}");
        errors.Check(body.Status is not null, "status", "is required: ON or OFF");
        if (errors.Any)
        {
            return (null, errors);
        }
        return Resolve(body, body.Currency ?? defaultCurrency, body.Frequency!, body.Status!, body.Interval ?? 1,
            body.ByDay, body.ByMonthDay, body.TimeZone ?? "UTC", startAtUtc: null, now);
    }

    /// <summary>Terms after a change: fields not given keep their value; by-rules that no longer fit the frequency are dropped.</summary>
    public static (AllowanceTerms? Terms, FieldErrors Errors) ForChange(AllowanceSchedule current, AllowanceRequest body, DateTime now)
    {
        var frequency = body.Frequency ?? current.Frequency.Code();
        var byDay = body.ByDay ?? (frequency == Frequencies.Weekly && current.Frequency == Frequency.Weekly ? Weekdays.ToCodes(Weekdays.Parse(current.ByDay)) : null);
        var byMonthDay = body.ByMonthDay ?? (frequency == Frequencies.Monthly && current.Frequency == Frequency.Monthly ? current.ByMonthDay : null);
        var request = body with { Amount = body.Amount ?? Currencies.FromMinor(current.AmountMinor, current.Currency) };
        return Resolve(request, body.Currency ?? current.Currency, frequency, body.Status ?? current.Status, body.Interval ?? current.Interval,
            byDay is { Length: > 0 } ? byDay : null, byMonthDay, body.TimeZone ?? current.TimeZone,
            body.StartAt is null ? current.StartAt : null, now);
    }

    private static (AllowanceTerms? Terms, FieldErrors Errors) Resolve(
        AllowanceRequest body, string currency, string frequency, string status, int interval,
        string[]? byDay, int? byMonthDay, string timeZone, DateTime? startAtUtc, DateTime now)
    {
        var errors = new FieldErrors();
        long? minor = null;
        if (!Currencies.IsKnown(currency))
        {
            errors.Add("currency", "must be a supported ISO 4217 code such as USD");
        }
        else if (body.Amount is not { } amount || amount <= 0)
        {
            errors.Add("amount", "must be positive");
        }
        else
        {
            var check = Currencies.CheckAmount(amount, currency);
            minor = check.Minor;
            if (check.Error is { } refused)
            {
                errors.Add("amount", refused);
            }
        }
        var rule = Frequencies.Parse(frequency);
        errors.Check(rule is not null, "frequency", $"must be {Frequencies.Listed}");
        errors.Check(status is ScheduleStatus.On or ScheduleStatus.Off, "status", "must be ON or OFF");
        errors.Check(interval is >= 1 and <= MaxInterval, "interval", $"must be between 1 and {MaxInterval}");

        var zone = IanaZones.Find(timeZone);
        errors.Check(zone is not null, "timeZone", IanaZones.Rule);

        var days = new List<DayOfWeek>();
        if (byDay is not null)
        {
            if (rule != Frequency.Weekly)
            {
                errors.Add("byDay", "is only allowed with frequency WEEKLY");
            }
            else if (byDay.Length == 0)
            {
                errors.Add("byDay", "must name at least one day (MO, TU, WE, TH, FR, SA, SU)");
            }
            else if (byDay.Length > MaxByDay)
            {
                errors.Add("byDay", $"must name at most {MaxByDay} days (MO, TU, WE, TH, FR, SA, SU)");
            }
            else
            {
                foreach (var code in byDay)
                {
                    if (!Weekdays.TryParse(code ?? "", out var day))
                    {
                        // The client's text is not echoed: it may be long or hold control characters.
                        errors.Add("byDay", "must hold only MO, TU, WE, TH, FR, SA, SU");
                        break;
                    }
                    if (!days.Contains(day))
                    {
                        days.Add(day);
                    }
                }
            }
        }
        if (byMonthDay is { } monthDay)
        {
            errors.Check(rule == Frequency.Monthly, "byMonthDay", "is only allowed with frequency MONTHLY");
            errors.Check(monthDay == -1 || monthDay is >= 1 and <= 31, "byMonthDay", "must be 1..31, or -1 for the last day of the month");
        }

        // Read in UTC when the zone is refused, so that a bad startAt is still reported with it.
        var start = startAtUtc ?? (body.StartAt is null ? now : ParseStart(body.StartAt, zone ?? TimeZoneInfo.Utc));
        // A kept start is checked too: a schedule stored before the range existed must be given a new one to change.
        errors.Check(start is { } at && at >= EarliestStart && at < StartRangeEnd, "startAt", StartAtRule);
        if (errors.Any || zone is null || start is null || minor is null || rule is null)
        {
            return (null, errors);
        }
        // Whole seconds: every database stores them exactly, so occurrences computed anywhere agree.
        var startUtc = new DateTime(start.Value.Ticks - (start.Value.Ticks % TimeSpan.TicksPerSecond), DateTimeKind.Utc);
        var ordered = days.OrderBy(d => ((int)d + 6) % 7).ToList();
        return (new AllowanceTerms(minor.Value, currency, rule.Value, status, startUtc, timeZone, interval,
            ordered.Count > 0 ? Weekdays.Format(ordered) : null, byMonthDay), errors);
    }

    private static readonly string[] StartAtFormats = ["yyyy-MM-dd'T'HH:mm:ss.FFFFFFFK", "yyyy-MM-dd'T'HH:mmK", "yyyy-MM-dd"];

    /// <summary>
    /// An ISO 8601 instant (with Z or an offset), or a wall-clock time read in the schedule's zone; null
    /// when unreadable. Never reads the server's own zone, and never does arithmetic near the ends of
    /// the calendar: a wall-clock time a day or more outside the start range is refused before it is converted.
    /// </summary>
    public static DateTime? ParseStart(string text, TimeZoneInfo zone)
    {
        if (text.Length > MaxStartAtLength)
        {
            return null;
        }
        // Starts are whole seconds anyway; digits beyond the 7 a DateTime holds (RFC 3339 allows any number) are dropped.
        text = BeyondTicks().Replace(text, "");
        if (!DateTime.TryParseExact(text, StartAtFormats, CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal, out var parsed))
        {
            return null;
        }
        if (parsed.Kind == DateTimeKind.Utc)
        {
            return parsed;
        }
        return parsed >= EarliestStart.AddDays(-2) && parsed < StartRangeEnd.AddDays(2) ? Recurrence.ToUtc(parsed, zone) : null;
    }

    [GeneratedRegex(@"(?<=T\d\d:\d\d:\d\d\.\d{7})\d+", RegexOptions.CultureInvariant)]
    private static partial Regex BeyondTicks();
}

/// <summary>
/// Which time zone ids a schedule may name: a region of the IANA zone database or one of its usual
/// aliases (Europe/London, US/Eastern, Europe/Kiev, Etc/GMT+5, Etc/UTC, UTC). Refused: the database's
/// technical entries (Factory, posixrules, localtime, the right/, posix/ and SystemV/ copies), Windows
/// ids, and anything that is not shaped like a zone id, which also keeps paths (.., a leading /),
/// blanks and control characters away from the zone lookup.
/// </summary>
public static class IanaZones
{
    public const int MaxLength = 64;

    public const string Rule = "must be an IANA time zone such as Europe/London, America/New_York or UTC";

    private static readonly FrozenSet<string> Technical =
        new[] { "Factory", "posixrules", "localtime", "leapseconds", "leap-seconds", "+VERSION", "SECURITY" }.ToFrozenSet(StringComparer.OrdinalIgnoreCase);

    private static readonly string[] TechnicalFolders = ["right/", "posix/", "SystemV/"];

    /// <summary>The zone for <paramref name="id"/>, or null when it is not an accepted zone id.</summary>
    public static TimeZoneInfo? Find(string? id)
    {
        if (!IsWellFormed(id))
        {
            return null;
        }
        if (!TimeZoneInfo.TryFindSystemTimeZoneById(id, out var zone))
        {
            return null;
        }
        // A Windows id (UTC-11, Eastern Standard Time) is found too, through ICU; only IANA ids are stored.
        // So is an id in another case once the zone is cached (europe/london), but not after a restart,
        // when the zone database's files are read again: only the exact id is stored.
        return (zone.HasIanaId || id == "UTC") && string.Equals(zone.Id, id, StringComparison.Ordinal) ? zone : null;
    }

    /// <summary>
    /// Shaped like an IANA zone id and not a technical entry: 1 to <see cref="MaxLength"/> characters,
    /// segments of ASCII letters, digits, '_', '-' and '+' joined by single '/', starting with a letter.
    /// </summary>
    public static bool IsWellFormed([System.Diagnostics.CodeAnalysis.NotNullWhen(true)] string? id)
    {
        if (string.IsNullOrEmpty(id) || id.Length > MaxLength || !char.IsAsciiLetter(id[0]) || id[^1] == '/' || id.Contains("//", StringComparison.Ordinal))
        {
            return false;
        }
        foreach (var c in id)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '+' or '/'))
            {
                return false;
            }
        }
        return !Technical.Contains(id) && !TechnicalFolders.Any(f => id.StartsWith(f, StringComparison.OrdinalIgnoreCase));
    }
}
