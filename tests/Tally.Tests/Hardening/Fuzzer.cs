using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging;
using Tally.Tests.Harness;

namespace Tally.Tests.Hardening;

/// <summary>A request that broke a rule (a 5xx, no answer, too slow, a refusal that wrote), or a broken invariant (no case).</summary>
public sealed record FuzzFailure(string Rule, FuzzCase? Case, int? Status, string Body, string? Error);

/// <summary>
/// Sends the cases one at a time (so every database change belongs to one request), times each,
/// fingerprints the database after each, and collects every broken rule instead of stopping at the
/// first. The error behind a 5xx is read from the app's log (the exception the error handler logged).
/// </summary>
public sealed class Fuzzer(RowSnapshot rows, CapturedLogs logs)
{
    /// <summary>A hang detector, not a performance bound: no answer may take this long.</summary>
    public static readonly TimeSpan HangThreshold = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Tables a refused request may append to: connection sync records every attempt and failure,
    /// refusals included (events <c>AccountSyncAttempted</c> and <c>AccountSyncFailed(reason)</c>,
    /// written by the one place that records failures); and the operator audit, which records every
    /// change asked of the admin API, refused ones included. Any other change, or a change here together with one
    /// elsewhere, is a failure.
    /// </summary>
    private static readonly string[] AttemptRecords = ["outbox_events", "connection_sync_runs", "audit_log"];

    private readonly Dictionary<int, int> _statuses = [];
    private readonly Dictionary<string, int> _attemptsRecorded = new(StringComparer.Ordinal);

    public List<FuzzFailure> Failures { get; } = [];

    public int Requests { get; private set; }

    public TimeSpan Elapsed { get; private set; }

    /// <summary>Time spent waiting for answers, and time spent fingerprinting the database after them.</summary>
    public TimeSpan Answering { get; private set; }

    public TimeSpan Fingerprinting { get; private set; }

    public (FuzzCase Case, TimeSpan Time)? Slowest { get; private set; }

    public async Task RunAsync(IEnumerable<FuzzCase> cases, CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        var before = await rows.TakeAsync(ct);
        foreach (var fuzz in cases)
        {
            var logged = logs.Entries.Count;
            int? status = null;
            var body = "";
            string? noAnswer = null;
            var started = Stopwatch.GetTimestamp();
            try
            {
                using var request = fuzz.Build();
                using var response = await fuzz.Caller.Client.SendAsync(request, ct);
                status = (int)response.StatusCode;
                body = await response.Content.ReadAsStringAsync(ct);
            }
            catch (Exception e) when (!ct.IsCancellationRequested)
            {
                // A timeout, a dropped connection, or an exception the app let escape to the test server.
                noAnswer = $"{e.GetType().Name}: {FirstLine(e.Message)}";
            }
            var elapsed = Stopwatch.GetElapsedTime(started);
            var fingerprinting = Stopwatch.GetTimestamp();
            var after = await rows.TakeAsync(ct);
            Fingerprinting += Stopwatch.GetElapsedTime(fingerprinting);
            Answering += elapsed;
            Requests++;
            _statuses[status ?? 0] = _statuses.GetValueOrDefault(status ?? 0) + 1;
            if (Slowest is null || elapsed > Slowest.Value.Time)
            {
                Slowest = (fuzz, elapsed);
            }

            var error = ErrorLoggedSince(logged);
            if (noAnswer is not null)
            {
                Failures.Add(new("no answer", fuzz, null, "", noAnswer + (error is null ? "" : $" | logged: {error}")));
            }
            else if (status >= 500)
            {
                Failures.Add(new("5xx answer", fuzz, status, body, error));
            }
            if (elapsed > HangThreshold)
            {
                Failures.Add(new($"slower than {HangThreshold.TotalSeconds:0} s", fuzz, status, body, $"took {elapsed.TotalSeconds:F1} s"));
            }
            if (noAnswer is not null || status >= 400)
            {
                var changes = rows.Changes(before, after);
                if (changes.Count > 0 && changes.All(c => AttemptRecords.Any(t => c.StartsWith(t + ":", StringComparison.Ordinal))))
                {
                    var key = $"{fuzz.Operation} -> {status}";
                    _attemptsRecorded[key] = _attemptsRecorded.GetValueOrDefault(key) + 1;
                }
                else if (changes.Count > 0)
                {
                    Failures.Add(new("refused but wrote to the database", fuzz, status, body, string.Join("; ", changes)));
                }
            }
            before = after;
        }
        Elapsed = clock.Elapsed;
    }

    public string Summary(string storage)
    {
        var statuses = string.Join(", ", _statuses.OrderBy(s => s.Key).Select(s => $"{(s.Key == 0 ? "none" : s.Key.ToString(CultureInfo.InvariantCulture))} x {s.Value}"));
        var slowest = Slowest is { } s
            ? $"{s.Time.TotalMilliseconds:F0} ms for {s.Case.Operation} [{s.Case.Target}] {s.Case.Value.Shown} as {s.Case.Caller.Name}"
            : "none";
        var attempts = _attemptsRecorded.Count == 0 ? "none"
            : string.Join(", ", _attemptsRecorded.OrderBy(a => a.Key, StringComparer.Ordinal).Select(a => $"{a.Key} x {a.Value}"));
        return $"""
            fuzz on {storage}: {Requests} requests in {Elapsed.TotalSeconds:F1} s ({Requests / Math.Max(Elapsed.TotalSeconds, 0.001):F0}/s): answers {Answering.TotalSeconds:F1} s, database fingerprints {Fingerprinting.TotalSeconds:F1} s
              statuses: {statuses}
              slowest: {slowest}
              refusals that only recorded the attempt ({string.Join(", ", AttemptRecords)}): {attempts}
              failures: {Failures.Count}
            """;
    }

    /// <summary>Every failure, grouped by rule, then by operation and target, with up to three distinct errors per group.</summary>
    public static string Describe(IEnumerable<FuzzFailure> failures)
    {
        var report = new StringBuilder();
        foreach (var rule in failures.GroupBy(f => f.Rule))
        {
            report.AppendLine(CultureInfo.InvariantCulture, $"== {rule.Key}: {rule.Count()} request(s) or check(s)");
            foreach (var group in rule.GroupBy(f => f.Case is null ? "(after the fuzz)" : $"{f.Case.Operation}  [{f.Case.Target}]").OrderBy(g => g.Key, StringComparer.Ordinal))
            {
                var statuses = string.Join("/", group.Select(f => f.Status?.ToString(CultureInfo.InvariantCulture) ?? "-").Distinct());
                report.AppendLine(CultureInfo.InvariantCulture, $"  {group.Key}  {group.Count()} request(s), status {statuses}");
                foreach (var sample in group.GroupBy(f => Shape(f.Error ?? f.Body)).Take(3).Select(g => g.First()))
                {
                    if (sample.Case is { } c)
                    {
                        report.AppendLine(CultureInfo.InvariantCulture, $"    e.g. {c.Value.Shown} as {c.Caller.Name} -> {sample.Status?.ToString(CultureInfo.InvariantCulture) ?? "no answer"}");
                    }
                    if (sample.Error is not null)
                    {
                        report.AppendLine(CultureInfo.InvariantCulture, $"      error: {Clip(sample.Error, 600)}");
                    }
                    if (sample.Body.Length > 0)
                    {
                        report.AppendLine(CultureInfo.InvariantCulture, $"      body: {Clip(sample.Body, 300)}");
                    }
                }
            }
        }
        return report.ToString();
    }

    private string? ErrorLoggedSince(int mark)
    {
        var entry = logs.Entries.Skip(mark).FirstOrDefault(e => e.Exception is not null && e.Level >= LogLevel.Error);
        return entry?.Exception is { } exception ? Describe(exception) : null;
    }

    /// <summary>"DbUpdateException -> PostgresException: 22021: invalid byte sequence ... at Tally.Features.X.Method(...)".</summary>
    private static string Describe(Exception exception)
    {
        var chain = new List<Exception>();
        for (Exception? e = exception; e is not null; e = e.InnerException)
        {
            chain.Add(e);
        }
        var frame = chain
            .SelectMany(e => (e.StackTrace ?? "").Split('\n').Select(l => l.Trim()))
            .FirstOrDefault(l => l.StartsWith("at Tally.", StringComparison.Ordinal) && !l.StartsWith("at Tally.Tests", StringComparison.Ordinal));
        var at = frame is null ? "" : " " + (frame.IndexOf(" in ", StringComparison.Ordinal) is var i and > 0 ? frame[..i] : frame);
        return $"{string.Join(" -> ", chain.Select(e => e.GetType().Name))}: {FirstLine(chain[^1].Message)}{at}";
    }

    // Errors that differ only in the values they quote are one error.
    private static string Shape(string text) => new([.. Clip(text, 120).Where(c => !char.IsDigit(c))]);

    private static string FirstLine(string text) => text.Split('\n')[0].Trim();

    private static string Clip(string text, int max)
    {
        var flat = text.Replace("\r", "", StringComparison.Ordinal).Replace('\n', ' ');
        return FuzzCorpus.Show(flat, max);
    }
}
