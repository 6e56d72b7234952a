using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using Tally.Data;
using Tally.Hosting;

namespace Tally.Bench;

/// <summary>
/// <c>console</c>: the console's runs and events listings and its search box over HTTP, against a
/// Tally process on PostgreSQL holding a year of generated history (10,000,000 runs and 10,000,000
/// events by default). Each page's p50 and p95 over <c>--calls</c> calls (after one warm-up call of
/// the page) is printed beside the 1 s goal and beside a primary-key point query through the same
/// endpoint stack (<c>/api/admin/cron-runs?run=ID</c>) measured in the same run.
/// </summary>
/// <remarks>
/// The data, generated server-side with <c>generate_series</c>; row g (1..N) of each table is at
/// <c>start + g * (one year / N)</c>, so ids and sequences follow time as they do in service.
/// <list type="bullet">
/// <item>Runs: 12 jobs; 4 instances; by <c>(g * 7919) % 100</c>: 0 FAILED (1%) with an error, 1..10
///   SKIPPED_LOCKED (10%), otherwise SUCCESS; the last 3 rows RUNNING; 1 in 97 manual; durations
///   0..5 s.</item>
/// <item>Events: 8 types; subjects spread over 200,000 ids (every 20th event without one); all
///   published one second after they occurred, but the last 2,000 and 1 in 10,000 before them
///   (pending, with attempts).</item>
/// <item>100,000 users, for the search by username.</item>
/// </list>
/// The secondary indexes of both tables are dropped before the load and rebuilt after it (the same
/// definitions, read from the catalog), then <c>VACUUM ANALYZE</c>: the state of a table that grew
/// over a year, reached in minutes.
/// </remarks>
public static class ConsoleBench
{
    private const string SigningKey = "tally-bench-signing-key-0123456789abcdef";
    private static readonly TimeSpan Goal = TimeSpan.FromSeconds(1);

    private static readonly string[] Jobs =
    [
        "allowances.enqueue-due", "balance-sync.enqueue-all", "connections.sync-all", "store.sync-accounts", "runtime.heartbeat", "outbox.cleanup",
        "ledger.totals", "reports.daily", "reports.weekly", "audit.rotate", "instances.prune", "rates.refresh",
    ];

    private static readonly string[] EventTypes =
    [
        "AllowanceCredited", "AllowanceCreditFailed", "CoreBalanceUpdated", "AccountBalanceUpdated", "ConnectionSynced", "ConnectionFailed",
        "StoreAccountsRepaired", "UserLinked",
    ];

    public static async Task<int> RunAsync(string[] args, CancellationToken ct)
    {
        var options = Options.Parse(args);
        if (options is null)
        {
            await Console.Error.WriteLineAsync("Usage: console --postgres CONN [--runs 10000000] [--events 10000000] [--users 100000] [--calls 20] [--keep] [--reuse DATABASE]");
            return 2;
        }
        var server = new NpgsqlConnectionStringBuilder(options.Postgres);
        var database = options.Reuse ?? $"tally_bench_console_{DateTime.UtcNow:yyyyMMddHHmmss}";
        if (options.Reuse is null)
        {
            await ExecuteAsync(server.ConnectionString, $"CREATE DATABASE {database}", ct);
        }
        var bench = new NpgsqlConnectionStringBuilder(options.Postgres) { Database = database, CommandTimeout = 0, MaxPoolSize = 50 }.ConnectionString;
        Process? tally = null;
        try
        {
            var end = new DateTime(DateTime.UtcNow.Year, DateTime.UtcNow.Month, DateTime.UtcNow.Day, 0, 0, 0, DateTimeKind.Utc);
            var start = end.AddDays(-365);
            if (options.Reuse is null)
            {
                await Migrator.ApplyAsync(new StorageSettings(StorageProvider.Postgres, bench), NullLogger.Instance, ct);
                var load = Stopwatch.StartNew();
                await LoadAsync(bench, options, start, ct);
                Console.WriteLine($"console: loaded {options.Runs:N0} runs, {options.Events:N0} events and {options.Users:N0} users in {load.Elapsed.TotalSeconds:F0} s "
                + "(indexes rebuilt, VACUUM ANALYZE done)");
            }

            var port = AllowanceBench.FreePort();
            var settings = new Dictionary<string, string>
            {
                ["ConnectionStrings__Postgres"] = bench,
                ["Auth__SigningKey"] = SigningKey,
                ["ASPNETCORE_ENVIRONMENT"] = "Production",
                ["T24__BaseUrl"] = "http://127.0.0.1:9/no-core/",
                ["Logging__LogLevel__Default"] = "Warning",
            };
            // The api role alone: no scheduler adds runs and no worker publishes events while the bench reads.
            tally = AllowanceBench.StartTally(settings, "api", $"http://127.0.0.1:{port}");
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromMinutes(2) };
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer",
                Auth.CreateToken(SigningKey, Guid.Empty, [Roles.Viewer], TimeSpan.FromHours(2)));
            await AllowanceBench.WaitHealthyAsync(http, ct);

            var pages = Pages(options, start);
            var reference = await MeasureAsync(http, pages[0].Url, options.Calls, ct);
            Console.WriteLine($"console: {options.Calls} calls per page after one warm-up; reference = {pages[0].Name}: p50 {Ms(reference.P50)}, p95 {Ms(reference.P95)}");
            Console.WriteLine($"{"page",-34} {"p50 ms",8} {"p95 ms",8} {"rows",5} {"p95/1s",7} {"p95/ref",8}");
            var allWithin = true;
            foreach (var page in pages.Skip(1))
            {
                var m = await MeasureAsync(http, page.Url, options.Calls, ct);
                allWithin &= m.P95 <= Goal;
                Console.WriteLine($"{page.Name,-34} {Ms(m.P50),8} {Ms(m.P95),8} {m.Rows,5} {m.P95 / Goal,7:F3} {m.P95 / reference.P95,8:F1}");
            }
            Console.WriteLine($"console: every page's p95 {(allWithin ? "within" : "NOT within")} the 1 s goal");
            return allWithin ? 0 : 1;
        }
        finally
        {
            if (tally is not null)
            {
                tally.Kill(entireProcessTree: true);
                await tally.WaitForExitAsync(CancellationToken.None);
            }
            if (!options.Keep && options.Reuse is null)
            {
                NpgsqlConnection.ClearAllPools();
                await ExecuteAsync(server.ConnectionString, $"DROP DATABASE IF EXISTS {database} WITH (FORCE)", CancellationToken.None);
            }
            else
            {
                Console.WriteLine($"console: kept database {database}");
            }
        }
    }

    private sealed record Page(string Name, Func<int, string> Url);

    /// <summary>The pages, each call with its own value where the console would vary it (another job, instance, day, subject), so the p95 includes cold pages.</summary>
    private static List<Page> Pages(Options o, DateTime start)
    {
        string Day(int i) => start.AddDays(30 + (i * 11 % 300)).ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);
        string Subject(int i) => SubjectId(1 + (i * 7_919 % 200_000));
        long Deep(int i) => Math.Max(2, o.Runs / 10 + i * 1_000L);
        return
        [
            new("reference: run by id (primary key)", i => $"/api/admin/cron-runs?run={1 + (o.Runs / 2) + i * 977L}"),
            new("runs: first view", _ => "/api/admin/cron-runs"),
            new("runs: job + FAILED", i => $"/api/admin/cron-runs?job={Jobs[i % Jobs.Length]}&status=FAILED"),
            new("runs: job", i => $"/api/admin/cron-runs?job={Jobs[i % Jobs.Length]}"),
            new("runs: instance", i => $"/api/admin/cron-runs?instance=tally-{i % 4}"),
            new("runs: trigger manual", _ => "/api/admin/cron-runs?trigger=manual"),
            new("runs: one day (months ago)", i => $"/api/admin/cron-runs?from={Day(i)}T00:00:00Z&to={Day(i)}T23:59:59Z"),
            new("runs: deep cursor (90% back)", i => $"/api/admin/cron-runs?before={Deep(i)}"),
            new("runs: SKIPPED_LOCKED", _ => "/api/admin/cron-runs?status=SKIPPED_LOCKED"),
            new("events: first view (newest)", _ => "/api/admin/events?order=desc"),
            new("events: type", i => $"/api/admin/events?type={EventTypes[i % EventTypes.Length]}&order=desc"),
            new("events: subject", i => $"/api/admin/events?subject={Subject(i)}&order=desc"),
            new("events: one day (months ago)", i => $"/api/admin/events?from={Day(i)}T00:00:00Z&to={Day(i)}T23:59:59Z&order=desc"),
            new("events: pending", _ => "/api/admin/events?state=pending&order=desc"),
            new("events: oldest first (after)", i => $"/api/admin/events?after={o.Events / 3 + i * 1_000L}"),
            new("search: username", i => $"/api/admin/search?q=user-{1 + (i * 4_999 % o.Users)}"),
            new("search: event id (a GUID)", i => $"/api/admin/search?q={EventId(1 + (o.Events / 4) + i * 313L)}"),
            new("search: run id", i => $"/api/admin/search?q={1 + (o.Runs / 3) + i * 577L}"),
        ];
    }

    private sealed record Measure(TimeSpan P50, TimeSpan P95, int Rows);

    private static async Task<Measure> MeasureAsync(HttpClient http, Func<int, string> url, int calls, CancellationToken ct)
    {
        await CallAsync(http, url(calls), ct);
        var times = new List<TimeSpan>();
        var rows = 0;
        for (var i = 0; i < calls; i++)
        {
            var clock = Stopwatch.StartNew();
            rows = await CallAsync(http, url(i), ct);
            times.Add(clock.Elapsed);
        }
        times.Sort();
        return new Measure(Percentile(times, 0.50), Percentile(times, 0.95), rows);
    }

    /// <summary>Nearest rank: the smallest time that at least <paramref name="p"/> of the calls did not exceed.</summary>
    private static TimeSpan Percentile(List<TimeSpan> sorted, double p) => sorted[Math.Max(0, (int)Math.Ceiling(p * sorted.Count) - 1)];

    private static async Task<int> CallAsync(HttpClient http, string url, CancellationToken ct)
    {
        using var response = await http.GetAsync(url, ct);
        var body = await response.Content.ReadAsStringAsync(ct);
        if (!response.IsSuccessStatusCode)
        {
            throw new InvalidOperationException($"{url}: {(int)response.StatusCode} {body}");
        }
        using var json = System.Text.Json.JsonDocument.Parse(body);
        return json.RootElement.GetArrayLength();
    }

    private static string Ms(TimeSpan t) => t.TotalMilliseconds.ToString("F1", CultureInfo.InvariantCulture);

    private static string SubjectId(long n) => Md5Uuid($"s{n}");

    private static string EventId(long g) => Md5Uuid($"e{g}");

    private static string Md5Uuid(string text) =>
        new Guid(Convert.ToHexString(System.Security.Cryptography.MD5.HashData(System.Text.Encoding.UTF8.GetBytes(text)))).ToString();

    private static async Task LoadAsync(string bench, Options o, DateTime start, CancellationToken ct)
    {
        var indexes = new List<string>();
        await using (var connection = new NpgsqlConnection(bench))
        {
            await connection.OpenAsync(ct);
            await using var read = new NpgsqlCommand("""
                SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
                FROM pg_index i
                WHERE i.indrelid IN ('cron_runs'::regclass, 'outbox_events'::regclass)
                  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
                """, connection);
            await using var reader = await read.ExecuteReaderAsync(ct);
            var names = new List<string>();
            while (await reader.ReadAsync(ct))
            {
                names.Add(reader.GetString(0));
                indexes.Add(reader.GetString(1));
            }
            await reader.CloseAsync();
            foreach (var name in names)
            {
                await using var drop = new NpgsqlCommand($"DROP INDEX {name}", connection);
                await drop.ExecuteNonQueryAsync(ct);
            }
        }
        var step = TimeSpan.FromDays(365);
        const int Chunk = 1_000_000;
        var jobs = "ARRAY[" + string.Join(",", Jobs.Select(j => $"'{j}'")) + "]";
        var types = "ARRAY[" + string.Join(",", EventTypes.Select(j => $"'{j}'")) + "]";
        var startText = start.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture);
        var runStep = (step.TotalSeconds / o.Runs).ToString("F6", CultureInfo.InvariantCulture);
        var eventStep = (step.TotalSeconds / o.Events).ToString("F6", CultureInfo.InvariantCulture);
        var clock = Stopwatch.StartNew();
        for (long lo = 1; lo <= o.Runs; lo += Chunk)
        {
            var hi = Math.Min(o.Runs, lo + Chunk - 1);
            await ExecuteAsync(bench, $"""
                INSERT INTO cron_runs (id, job_name, status, trigger, scheduled_for, processed_count, error_message, started_at, finished_at, instance_id)
                SELECT g, ({jobs})[1 + g % {Jobs.Length}],
                       CASE WHEN g > {o.Runs} - 3 THEN 'RUNNING' WHEN (g * 7919) % 100 = 0 THEN 'FAILED' WHEN (g * 7919) % 100 <= 10 THEN 'SKIPPED_LOCKED' ELSE 'SUCCESS' END,
                       CASE WHEN g % 97 = 0 THEN 'manual' ELSE 'schedule' END,
                       date_trunc('minute', t.at), (g % 1000)::int,
                       CASE WHEN (g * 7919) % 100 = 0 AND g <= {o.Runs} - 3 THEN 'TimeoutException: the upstream did not answer within 30 s (attempt ' || g % 5 || ')' END,
                       t.at, CASE WHEN g > {o.Runs} - 3 THEN NULL ELSE t.at + (g % 5000) * interval '1 millisecond' END,
                       'tally-' || (g * 31) % 4
                FROM generate_series({lo}::bigint, {hi}::bigint) AS g,
                     LATERAL (SELECT timestamptz '{startText}+00' + g * interval '{runStep} seconds' AS at) AS t
                """, ct);
            Console.WriteLine($"console: runs {hi:N0} ({clock.Elapsed.TotalSeconds:F0} s)");
        }
        await ExecuteAsync(bench, $"SELECT setval(pg_get_serial_sequence('cron_runs', 'id'), {o.Runs})", ct);
        for (long lo = 1; lo <= o.Events; lo += Chunk)
        {
            var hi = Math.Min(o.Events, lo + Chunk - 1);
            await ExecuteAsync(bench, $"""
                INSERT INTO outbox_events (sequence, event_id, event_type, subject_id, payload, occurred_at, published_at, attempts, last_error)
                SELECT g, md5('e' || g)::uuid, ({types})[1 + g % {EventTypes.Length}],
                       CASE WHEN g % 20 = 0 THEN NULL ELSE md5('s' || (1 + (g * 7) % 200000))::uuid::text END,
                       '{"{"}"amount":' || (g % 10000) || ',"currency":"USD","n":' || g || '{"}"}',
                       t.at, CASE WHEN p.pending THEN NULL ELSE t.at + interval '1 second' END,
                       CASE WHEN p.pending THEN 1 ELSE 0 END, CASE WHEN p.pending THEN 'BrokerUnreachable' END
                FROM generate_series({lo}::bigint, {hi}::bigint) AS g,
                     LATERAL (SELECT timestamptz '{startText}+00' + g * interval '{eventStep} seconds' AS at) AS t,
                     LATERAL (SELECT g > {o.Events} - 2000 OR g % 10000 = 1234 AS pending) AS p
                """, ct);
            Console.WriteLine($"console: events {hi:N0} ({clock.Elapsed.TotalSeconds:F0} s)");
        }
        await ExecuteAsync(bench, $"SELECT setval(pg_get_serial_sequence('outbox_events', 'sequence'), {o.Events})", ct);
        await ExecuteAsync(bench, $"""
            INSERT INTO users (id, username, context, customer_number, is_active, created_at)
            SELECT md5('u' || g)::uuid, 'user-' || g, 'MOBILE_BANKING', NULL, true, now() FROM generate_series(1, {o.Users}) AS g
            """, ct);
        foreach (var index in indexes)
        {
            await ExecuteAsync(bench, $"SET maintenance_work_mem = '1GB'; {index}", ct);
        }
        Console.WriteLine($"console: {indexes.Count} indexes rebuilt ({clock.Elapsed.TotalSeconds:F0} s)");
        await ExecuteAsync(bench, "VACUUM ANALYZE cron_runs", ct);
        await ExecuteAsync(bench, "VACUUM ANALYZE outbox_events", ct);
        await ExecuteAsync(bench, "VACUUM ANALYZE users", ct);
    }

    private static async Task ExecuteAsync(string connectionString, string sql, CancellationToken ct)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync(ct);
        await using var command = new NpgsqlCommand(sql, connection) { CommandTimeout = 0 };
        await command.ExecuteNonQueryAsync(ct);
    }

    /// <param name="Reuse">A database a previous <c>--keep</c> run loaded with the same sizes, measured again without loading (and kept).</param>
    private sealed record Options(string Postgres, long Runs, long Events, int Users, int Calls, bool Keep, string? Reuse)
    {
        public static Options? Parse(string[] args)
        {
            string? Value(string name)
            {
                var i = Array.IndexOf(args, name);
                return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
            }
            long Long(string name, long fallback) => long.TryParse(Value(name), CultureInfo.InvariantCulture, out var v) && v > 0 ? v : fallback;
            var postgres = Value("--postgres") ?? Environment.GetEnvironmentVariable("TALLY_TEST_POSTGRES");
            return postgres is null
                ? null
                : new Options(postgres, Long("--runs", 10_000_000), Long("--events", 10_000_000), (int)Long("--users", 100_000),
                    (int)Long("--calls", 20), args.Contains("--keep"), Value("--reuse"));
        }
    }
}
