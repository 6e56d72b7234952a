using System.Globalization;
using Tally.Features.Ledger;
using Tally.Hosting;

namespace Tally.Features.Allowances;

/// <summary>The body of create and change. Every field is optional here; <see cref="AllowanceTerms"/> decides what is required.</summary>
public sealed record AllowanceRequest(
    decimal? Amount,
    string? Currency,
    string? Frequency,
    string? Status,
    string? StartAt,
    string? TimeZone,
    int? Interval,
    string[]? ByDay,
    int? ByMonthDay);

/// <summary>Validated, normalised terms of a schedule. A pure decision: no I/O.</summary>
public sealed record AllowanceTerms(
    long AmountMinor,
    string Currency,
    string Frequency,
    string Status,
    DateTime StartAtUtc,
    string TimeZone,
    int Interval,
    string? ByDay,
    int? ByMonthDay)
{
    public const int MaxInterval = 366;

    /// <summary>Terms for a new schedule, or the field errors.</summary>
    public static (AllowanceTerms? Terms, FieldErrors Errors) ForCreate(AllowanceRequest body, string defaultCurrency, DateTime now)
    {
        var errors = new FieldErrors();
        errors.Check(body.Amount is not null, "amount", "is required");
        errors.Check(body.Frequency is not null, "frequency", "is required: DAILY, WEEKLY or MONTHLY");
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
        var frequency = body.Frequency ?? current.Frequency;
        var byDay = body.ByDay ?? (frequency == "WEEKLY" && current.Frequency == "WEEKLY" ? Weekdays.ToCodes(Weekdays.Parse(current.ByDay)) : null);
        var byMonthDay = body.ByMonthDay ?? (frequency == "MONTHLY" && current.Frequency == "MONTHLY" ? current.ByMonthDay : null);
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
        else if ((minor = Currencies.ToMinor(amount, currency)) is null)
        {
            errors.Add("amount", $"has more decimals than {currency} allows ({Currencies.Exponent(currency)})");
        }
        errors.Check(frequency is "DAILY" or "WEEKLY" or "MONTHLY", "frequency", "must be DAILY, WEEKLY or MONTHLY");
        errors.Check(status is ScheduleStatus.On or ScheduleStatus.Off, "status", "must be ON or OFF");
        errors.Check(interval is >= 1 and <= MaxInterval, "interval", $"must be between 1 and {MaxInterval}");

        var zone = FindIanaZone(timeZone);
        errors.Check(zone is not null, "timeZone", "must be an IANA time zone such as Europe/London");

        var days = new List<DayOfWeek>();
        if (byDay is not null)
        {
            if (frequency != "WEEKLY")
            {
                errors.Add("byDay", "is only allowed with frequency WEEKLY");
            }
            else if (byDay.Length == 0)
            {
                errors.Add("byDay", "must name at least one day (MO, TU, WE, TH, FR, SA, SU)");
            }
            foreach (var code in byDay)
            {
                if (!Weekdays.TryParse(code ?? "", out var day))
                {
                    errors.Add("byDay", $"'{code}' is not one of MO, TU, WE, TH, FR, SA, SU");
                }
                else if (!days.Contains(day))
                {
                    days.Add(day);
                }
            }
        }
        if (byMonthDay is { } monthDay)
        {
            errors.Check(frequency == "MONTHLY", "byMonthDay", "is only allowed with frequency MONTHLY");
            errors.Check(monthDay == -1 || monthDay is >= 1 and <= 31, "byMonthDay", "must be 1..31, or -1 for the last day of the month");
        }

        DateTime? start = startAtUtc;
        if (start is null && zone is not null)
        {
            start = body.StartAt is null ? now : ParseStart(body.StartAt, zone);
            errors.Check(start is not null, "startAt", "must be an ISO 8601 date-time, e.g. 2026-01-31T09:00:00 (in timeZone) or with an offset");
        }
        if (errors.Any || zone is null || start is null || minor is null)
        {
            return (null, errors);
        }
        // Whole seconds: every database stores them exactly, so occurrences computed anywhere agree.
        var startUtc = new DateTime(start.Value.Ticks - (start.Value.Ticks % TimeSpan.TicksPerSecond), DateTimeKind.Utc);
        var ordered = days.OrderBy(d => ((int)d + 6) % 7).ToList();
        return (new AllowanceTerms(minor.Value, currency, frequency, status, startUtc, timeZone, interval,
            ordered.Count > 0 ? Weekdays.Format(ordered) : null, byMonthDay), errors);
    }

    private static TimeZoneInfo? FindIanaZone(string id)
    {
        if (!TimeZoneInfo.TryFindSystemTimeZoneById(id, out var zone))
        {
            return null;
        }
        return zone.HasIanaId || id == "UTC" ? zone : null;
    }

    /// <summary>An instant with an offset, or a wall-clock time read in the schedule's zone.</summary>
    private static DateTime? ParseStart(string text, TimeZoneInfo zone)
    {
        if (!DateTime.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var parsed))
        {
            return null;
        }
        return parsed.Kind switch
        {
            DateTimeKind.Unspecified => Recurrence.ToUtc(parsed, zone),
            DateTimeKind.Local => DateTimeOffset.Parse(text, CultureInfo.InvariantCulture).UtcDateTime,
            _ => parsed,
        };
    }
}
