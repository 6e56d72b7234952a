using System.Globalization;
using System.Net;
using System.Text;
using Microsoft.AspNetCore.Html;

namespace Tally.Dashboard;

/// <summary>
/// A small bar chart of the last 24 hours, drawn on the server as inline SVG (no script, nothing to
/// load). Each bar carries its hour and count as a tooltip, and the whole chart a text alternative
/// with the total and the busiest hour, so a screen reader gets the same facts.
/// </summary>
public static class HourChart
{
    private const int Width = 240;
    private const int Height = 40;

    /// <summary>One series: <paramref name="hours"/> oldest first, each with its count; bars of <paramref name="cssClass"/>.</summary>
    public static IHtmlContent Bars(string title, IReadOnlyList<(DateTime Hour, long Count)> hours, string cssClass)
    {
        var total = hours.Sum(h => h.Count);
        var max = hours.Count == 0 ? 0 : hours.Max(h => h.Count);
        var busiest = hours.Count == 0 || max == 0 ? "" : $", most in the hour from {Hour(hours.First(h => h.Count == max).Hour)} ({max})";
        var label = $"{title}: {total} in the last 24 hours{busiest}";
        var step = hours.Count == 0 ? Width : (double)Width / hours.Count;
        var svg = new StringBuilder();
        svg.Append(CultureInfo.InvariantCulture, $"<svg class=\"chart {cssClass}\" role=\"img\" aria-label=\"{WebUtility.HtmlEncode(label)}\" viewBox=\"0 0 {Width} {Height}\" width=\"{Width}\" height=\"{Height}\">");
        for (var i = 0; i < hours.Count; i++)
        {
            var (hour, count) = hours[i];
            var h = max == 0 ? 0 : Math.Max(count > 0 ? 1 : 0, Math.Round(count * (Height - 2.0) / max));
            svg.Append(CultureInfo.InvariantCulture,
                $"<rect x=\"{i * step + 1:0.##}\" y=\"{Height - h:0.##}\" width=\"{step - 2:0.##}\" height=\"{h:0.##}\"><title>{Hour(hour)}: {count}</title></rect>");
        }
        svg.Append("</svg>");
        return new HtmlString($"<figure class=\"chart\"><figcaption>{WebUtility.HtmlEncode(title)} <span class=\"total\">{total}</span></figcaption>{svg}</figure>");
    }

    private static string Hour(DateTime hour) => hour.ToString("yyyy-MM-dd HH:00", CultureInfo.InvariantCulture) + " UTC";
}
