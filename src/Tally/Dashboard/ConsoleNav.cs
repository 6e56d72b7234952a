using System.Globalization;
using System.Security.Claims;
using Microsoft.AspNetCore.Html;
using Tally.Hosting;

namespace Tally.Dashboard;

/// <summary>What every console page shares: its sections, who may act, and how a time is shown.</summary>
public static class ConsoleNav
{
    public static readonly (string Href, string Label)[] Sections =
    [
        ("/dashboard", "Overview"),
        ("/dashboard/jobs", "Jobs"),
        ("/dashboard/runs", "Runs"),
        ("/dashboard/dead-letters", "Dead letters"),
        ("/dashboard/events", "Events"),
        ("/dashboard/allowances", "Allowances"),
        ("/dashboard/balance-sync", "Balance sync"),
        ("/dashboard/connections", "Connections"),
        ("/dashboard/store", "Store integrity"),
        ("/dashboard/audit", "Audit"),
    ];

    /// <summary>Operators and admins see the buttons that change something; a viewer sees none.</summary>
    public static bool CanOperate(ClaimsPrincipal user) => user.IsInRole(Roles.Operator) || user.IsInRole(Roles.Admin);

    /// <summary>
    /// A time, always exact with its zone (UTC), with the relative form beside it: <c>2026-12-02 07:34:15 UTC (3 min ago)</c>.
    /// The zone of a job's schedule is shown where it matters, by the page.
    /// </summary>
    public static IHtmlContent Time(DateTime? utc, DateTime now)
    {
        if (utc is not { } t)
        {
            return new HtmlString("<span class=\"none\">never</span>");
        }
        var exact = t.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture) + " UTC";
        var iso = t.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);
        return new HtmlString($"<time datetime=\"{iso}\">{exact}</time> <span class=\"relative\">({Relative(t - now)})</span>");
    }

    /// <summary>A wall-clock time in a schedule's zone, with its offset and the zone's name: <c>2026-12-02 09:00 +01:00 Europe/Paris</c>.</summary>
    public static string Local(DateTimeOffset local, string zone) =>
        local.ToString("yyyy-MM-dd HH:mm:ss zzz", CultureInfo.InvariantCulture) + " " + zone;

    /// <summary>Money as the API answers it: the exact decimal and its currency, never rounded for show.</summary>
    public static string Money(decimal amount, string currency) => amount.ToString(CultureInfo.InvariantCulture) + " " + currency;

    /// <summary>"in 3 min", "2 h ago", "just now".</summary>
    public static string Relative(TimeSpan offset)
    {
        var span = offset.Duration();
        var text = span.TotalSeconds < 45 ? null
            : span.TotalMinutes < 90 ? $"{Math.Round(span.TotalMinutes)} min"
            : span.TotalHours < 36 ? $"{Math.Round(span.TotalHours)} h"
            : $"{Math.Round(span.TotalDays)} d";
        return text is null ? "just now" : offset > TimeSpan.Zero ? $"in {text}" : $"{text} ago";
    }

    public static string Duration(DateTime started, DateTime? finished) =>
        finished is { } f ? $"{(f - started).TotalMilliseconds.ToString("0", CultureInfo.InvariantCulture)} ms" : "running";
}
