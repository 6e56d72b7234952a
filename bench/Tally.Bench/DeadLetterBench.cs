using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Npgsql;
using Tally.Hosting;
using Tally.Jobs.Queues;

namespace Tally.Bench;

/// <summary>
/// <c>dead-letters</c>: the dead-letter records at scale on PostgreSQL. Loads N dead letters with one
/// <c>INSERT ... SELECT generate_series</c>, starts one Tally process (api role, RabbitMQ), then times
/// over HTTP the listing's first view and its searches (by queue, reason, body text, message id),
/// each beside a primary-key read of one letter measured in the same run, and a bulk replay of
/// every letter of one queue (dry run, then the real call) beside a raw publish of the same
/// messages through the same transport.
/// </summary>
public static class DeadLetterBench
{
    public static async Task<int> RunAsync(string[] args, CancellationToken ct)
    {
        var options = Options.Parse(args);
        if (options is null)
        {
            await Console.Error.WriteLineAsync("Usage: dead-letters --postgres CONN --rabbitmq URL [--letters 1000000] [--calls 20]");
            return 2;
        }
        var database = await AllowanceBench.CreateDatabaseAsync(options.Postgres, "bench_dead_letters", ct);
        var queue = $"allowance.bench.{DateTime.UtcNow:HHmmss}";
        var replayCount = options.Letters / 10;
        var clock = Stopwatch.StartNew();
        await LoadAsync(database, queue, options.Letters, ct);
        Console.WriteLine($"dead-letters: loaded {options.Letters:N0} dead letters ({replayCount:N0} on {queue}) in {clock.Elapsed.TotalSeconds:F1} s, indexes included");

        var port = AllowanceBench.FreePort();
        var settings = new Dictionary<string, string>
        {
            ["ConnectionStrings__Postgres"] = database,
            ["RabbitMq__Url"] = options.RabbitMq,
            ["Allowances__QueueName"] = queue,
            ["Auth__SigningKey"] = AllowanceBench.SigningKey,
            ["ASPNETCORE_ENVIRONMENT"] = "Production",
            ["T24__BaseUrl"] = "http://127.0.0.1:9/no-core/",
            ["Logging__LogLevel__Default"] = "Warning",
        };
        using var tally = AllowanceBench.StartTally(settings, "api", $"http://127.0.0.1:{port}");
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = Timeout.InfiniteTimeSpan };
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer",
                Auth.CreateToken(AllowanceBench.SigningKey, Guid.Empty, [Roles.Admin], TimeSpan.FromHours(2)));
            await AllowanceBench.WaitHealthyAsync(http, ct);

            var middle = options.Letters / 2;
            var someId = await ScalarAsync<Guid>(database, $"SELECT id FROM dead_letters WHERE message_id = 'm-{middle}'", ct);
            var reference = await TimeAsync(http, $"/api/admin/dead-letters/{someId}", options.Calls, 1, ct);
            Console.WriteLine($"dead-letters: reference, one letter by primary key: {reference}");
            var views = new (string Name, string Path, int Rows)[]
            {
                ("first view (100 newest)", "/api/admin/dead-letters", 100),
                ("by queue", "/api/admin/dead-letters?queue=bench.mail", 100),
                ("by reason (rare word)", "/api/admin/dead-letters?reason=poison", 100),
                ("by reason (common word)", "/api/admin/dead-letters?reason=TIMEOUT", 100),
                ("by body text (rare)", "/api/admin/dead-letters?text=cust-12345%22", -1),
                ("by message id", $"/api/admin/dead-letters?messageId=m-{middle}", 1),
                ("second page by cursor", $"/api/admin/dead-letters?before={options.Letters - 100 + 1}", 100),
            };
            var worst = 0.0;
            foreach (var (name, path, rows) in views)
            {
                var timing = await TimeAsync(http, path, options.Calls, rows, ct);
                worst = Math.Max(worst, timing.P95);
                Console.WriteLine($"dead-letters: {name}: {timing}; p95 ratio to the primary-key read {timing.P95 / reference.P95:F1}x");
            }
            Console.WriteLine($"dead-letters: worst listing p95 {worst:F0} ms ({(worst <= 1000 ? "within" : "NOT within")} the 1 s target)");

            // Bulk replay of one queue's letters by filter: the dry run, then the real call up to it.
            clock.Restart();
            var preview = await PostAsync(http, "/api/admin/dead-letters/replay", new { queue, dryRun = true }, ct);
            var dryRun = clock.Elapsed;
            var matched = preview.GetProperty("matched").GetInt64();
            clock.Restart();
            var done = await PostAsync(http, "/api/admin/dead-letters/replay", new { queue, upTo = preview.GetProperty("upTo").GetInt64() }, ct);
            var replay = clock.Elapsed;
            var replayed = done.GetProperty("replayed").GetInt64();
            var marked = await ScalarAsync<long>(database, $"SELECT count(*) FROM dead_letters WHERE queue = '{queue}' AND state = 'replayed'", ct);

            // The reference: the same messages published raw through the same transport, in batches of the same size.
            var messages = await MessagesAsync(database, queue, ct);
            await using var transport = AllowanceBench.Transport(options.RabbitMq);
            clock.Restart();
            foreach (var batch in messages.Chunk(DeadLetterStore.BatchSize))
            {
                await transport.PublishAsync(queue, batch, ct);
            }
            var raw = clock.Elapsed;
            var inQueue = (await transport.GetDepthAsync(new QueueDefinition(queue, 5, TimeSpan.FromMinutes(1)), ct)).Ready;

            Console.WriteLine($"dead-letters: bulk replay dry run: {matched:N0} matched in {dryRun.TotalMilliseconds:F0} ms");
            Console.WriteLine($"dead-letters: bulk replay: {replayed:N0} replayed in {replay.TotalSeconds:F1} s ({replayed / replay.TotalSeconds:F0}/s; " +
                $"{(replay <= TimeSpan.FromSeconds(60) ? "within" : "NOT within")} the 60 s target); marked replayed: {marked:N0}");
            Console.WriteLine($"dead-letters: raw publish of the same {messages.Count:N0} messages: {raw.TotalSeconds:F1} s; " +
                $"replay / raw publish {replay / raw:F2}x; messages in the queue now {inQueue:N0}");
            return matched == replayCount && replayed == matched && marked == matched && inQueue == 2 * matched ? 0 : 1;
        }
        finally
        {
            tally.Kill(entireProcessTree: true);
            await tally.WaitForExitAsync(CancellationToken.None);
        }
    }

    /// <summary>
    /// N letters, one second apart, the newest last: every tenth on the allowance queue (an occurrence
    /// body), the rest over four other queues; reasons from four common ones, one in a thousand a rare
    /// "poison" one; bodies carrying one of 50,000 customers. Then VACUUM ANALYZE, as autovacuum would.
    /// </summary>
    private static async Task LoadAsync(string database, string queue, int letters, CancellationToken ct)
    {
        await using var connection = new NpgsqlConnection(database);
        await connection.OpenAsync(ct);
        foreach (var sql in new[]
        {
            $"""
            INSERT INTO dead_letters (id, queue, message_id, body, attempts, reason, dead_lettered_at)
            SELECT md5('dl' || i)::uuid,
                   CASE WHEN i % 10 = 0 THEN '{queue}' ELSE (ARRAY['bench.orders', 'bench.mail', 'bench.sync', 'bench.repair'])[1 + i % 4] END,
                   'm-' || i,
                   CASE WHEN i % 10 = 0
                        THEN json_build_object('scheduleId', md5('s' || i)::uuid, 'runAt', to_char(timestamp '2026-01-01' + i * interval '1 minute', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))::text
                        ELSE json_build_object('order', i, 'customer', 'cust-' || (i % 50000), 'sku', 'SKU-' || left(md5(i::text), 8), 'note', 'deliver before noon')::text END,
                   1 + i % 6,
                   CASE WHEN i % 1000 = 7 THEN 'poison message: cannot parse order ' || i
                        ELSE 'max retries (5) reached: ' || (ARRAY['insufficient funds', 'timeout talking to core', 'connection reset by peer', 'HTTP 503 from provider'])[1 + i % 4] END,
                   now() - ({letters} - i) * interval '1 second'
            FROM generate_series(1, {letters}) AS i
            """,
            "VACUUM ANALYZE dead_letters",
        })
        {
            await using var command = new NpgsqlCommand(sql, connection) { CommandTimeout = 0 };
            await command.ExecuteNonQueryAsync(ct);
        }
    }

    private static async Task<List<QueueMessage>> MessagesAsync(string database, string queue, CancellationToken ct)
    {
        await using var connection = new NpgsqlConnection(database);
        await connection.OpenAsync(ct);
        await using var command = new NpgsqlCommand("SELECT message_id, body FROM dead_letters WHERE queue = @queue ORDER BY sequence", connection);
        command.Parameters.AddWithValue("queue", queue);
        await using var reader = await command.ExecuteReaderAsync(ct);
        var messages = new List<QueueMessage>();
        while (await reader.ReadAsync(ct))
        {
            messages.Add(new QueueMessage(reader.GetString(0), reader.GetString(1)));
        }
        return messages;
    }

    private sealed record Timing(double P50, double P95, int Rows)
    {
        public override string ToString() => $"p50 {P50:F1} ms, p95 {P95:F1} ms ({Rows} row(s))";
    }

    /// <summary>One warm-up call, then <paramref name="calls"/> timed ones; checks the row count when one is expected.</summary>
    private static async Task<Timing> TimeAsync(HttpClient http, string path, int calls, int expectedRows, CancellationToken ct)
    {
        var times = new List<double>();
        var rows = 0;
        for (var i = 0; i <= calls; i++)
        {
            var started = Stopwatch.GetTimestamp();
            using var response = await http.GetAsync(path, ct);
            var body = await response.Content.ReadAsStringAsync(ct);
            var elapsed = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
            response.EnsureSuccessStatusCode();
            using var json = JsonDocument.Parse(body);
            rows = json.RootElement.ValueKind == JsonValueKind.Array ? json.RootElement.GetArrayLength() : 1;
            if (i > 0)
            {
                times.Add(elapsed);
            }
        }
        if (expectedRows >= 0 && rows != expectedRows)
        {
            throw new InvalidOperationException($"{path} answered {rows} rows, expected {expectedRows}.");
        }
        times.Sort();
        return new Timing(Percentile(times, 0.50), Percentile(times, 0.95), rows);
    }

    private static double Percentile(List<double> sorted, double p) => sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(p * sorted.Count) - 1)];

    private static async Task<JsonElement> PostAsync(HttpClient http, string path, object body, CancellationToken ct)
    {
        using var response = await http.PostAsJsonAsync(path, body, ct);
        var text = await response.Content.ReadAsStringAsync(ct);
        if (!response.IsSuccessStatusCode)
        {
            throw new InvalidOperationException($"{path} answered {(int)response.StatusCode}: {text}");
        }
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    private static async Task<T> ScalarAsync<T>(string database, string sql, CancellationToken ct)
    {
        await using var connection = new NpgsqlConnection(database);
        await connection.OpenAsync(ct);
        await using var command = new NpgsqlCommand(sql, connection);
        return (T)(await command.ExecuteScalarAsync(ct))!;
    }

    private sealed record Options(string Postgres, string RabbitMq, int Letters, int Calls)
    {
        public static Options? Parse(string[] args)
        {
            string? Value(string name)
            {
                var i = Array.IndexOf(args, name);
                return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
            }
            int Int(string name, int fallback) => int.TryParse(Value(name), CultureInfo.InvariantCulture, out var v) ? v : fallback;
            var postgres = Value("--postgres") ?? Environment.GetEnvironmentVariable("TALLY_TEST_POSTGRES");
            var rabbit = Value("--rabbitmq") ?? Environment.GetEnvironmentVariable("TALLY_TEST_RABBITMQ");
            return postgres is null || rabbit is null ? null : new Options(postgres, rabbit, Int("--letters", 1_000_000), Int("--calls", 20));
        }
    }
}
