using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using Tally.Data;
using Tally.Features.Allowances;
using Tally.Hosting;
using Tally.Jobs.Queues;
using Tally.Tests.Harness;

namespace Tally.Bench;

/// <summary>
/// <c>allowances</c>: due allowances paid end to end (producer -> RabbitMQ -> worker process ->
/// PostgreSQL, the outbox publisher running) in each message shape (pages of occurrences, and the
/// seed's one message per occurrence), each on its own identically loaded database, beside the raw
/// credit SQL driven by pgbench on a third one in the same run. Then, per shape, the rate at which
/// duplicate deliveries of every paid occurrence are acknowledged without writes. CPU is read from
/// <c>/proc</c> per process for the time from the trigger to the last credit.
/// </summary>
public static class AllowanceBench
{
    internal const string SigningKey = "tally-bench-signing-key-0123456789abcdef";

    /// <summary>Credits per transaction of the batched pgbench reference.</summary>
    private const int ReferenceBatch = 100;

    public static async Task<int> RunAsync(string[] args, CancellationToken ct)
    {
        var options = Options.Parse(args);
        if (options is null)
        {
            await Console.Error.WriteLineAsync("Usage: allowances --postgres CONN --rabbitmq URL [--schedules 100000] [--shapes page,occurrence] [--reference batched|single|none] " +
                "[--workers 1] [--concurrency N] [--clients 8] [--queue-type classic|quorum] [--single] [--producer-only] [--no-reference]");
            return 2;
        }
        Console.WriteLine($"allowances: {options.Schedules:N0} due schedules; shapes {string.Join(", ", options.Shapes)}; {options.Workers} worker process(es)" +
            $"{(options.Concurrency is { } c ? $" x {c}" : "")}; {(options.Single ? "one transaction per delivery" : "batched settling (the default)")}; " +
            $"{options.QueueType ?? "classic"} queues; reference: {options.Reference}, pgbench {options.Clients} clients");

        var reference = double.NaN;
        if (!options.ProducerOnly && options.Reference != "none")
        {
            var referenceDb = await CreateDatabaseAsync(options.Postgres, "bench_allowances_pgbench", ct);
            await AllowanceLoad.SeedPostgresAsync(referenceDb, options.Schedules, 1);
            var batched = options.Reference == "batched";
            reference = await RunPgbenchAsync(referenceDb, options, batched, ct);
            Console.WriteLine(batched
                ? $"reference: pgbench raw credit SQL, {ReferenceBatch} credits per transaction: {reference:F0} credits/s"
                : $"reference: pgbench raw credit SQL, one transaction per credit: {reference:F0} credits/s");
        }

        var results = new List<ShapeResult>();
        foreach (var shape in options.Shapes)
        {
            if (await RunShapeAsync(options, shape, ct) is not { } result)
            {
                return 0; // producer only
            }
            results.Add(result);
        }

        Console.WriteLine();
        Console.WriteLine($"summary, {options.Schedules:N0} occurrences:");
        foreach (var r in results)
        {
            var toReference = double.IsNaN(reference) ? "" : $", {r.Rate / reference:F2} of the {options.Reference} reference";
            var toFirst = r == results[0] ? "" : $", {r.Rate / results[0].Rate:F2} of the {results[0].Shape} shape";
            Console.WriteLine($"  {r.Shape,-10} paid in {r.Elapsed.TotalSeconds:F1} s: {r.Rate:F0} credits/s{toReference}{toFirst}; " +
                $"producer {r.ProducerRate:F0}/s; duplicates acked {r.DuplicateRate:F0}/s");
        }
        var fast = results[0];
        if (fast.Shape == AllowanceOptions.PageShape && options.Schedules >= 1_000_000)
        {
            Console.WriteLine($"  target: {options.Schedules:N0} within 60 s: {(fast.Elapsed <= TimeSpan.FromSeconds(60) ? "met" : "NOT met")} ({fast.Elapsed.TotalSeconds:F1} s); " +
                $"duplicates >= 20000/s: {(fast.DuplicateRate >= 20_000 ? "met" : "NOT met")}");
        }
        return results.All(r => r.Correct) ? 0 : 1;
    }

    private sealed record ShapeResult(string Shape, TimeSpan Elapsed, double Rate, double ProducerRate, double DuplicateRate, bool Correct);

    private static async Task<ShapeResult?> RunShapeAsync(Options options, string shape, CancellationToken ct)
    {
        Console.WriteLine();
        Console.WriteLine($"shape {shape}:");
        var tallyDb = await CreateDatabaseAsync(options.Postgres, $"bench_allowances_{shape}", ct);
        var load = await AllowanceLoad.SeedPostgresAsync(tallyDb, options.Schedules, 1);
        var queue = $"allowance.bench.{shape}.{DateTime.UtcNow:HHmmss}";
        var port = FreePort();
        var settings = new Dictionary<string, string>
        {
            ["ConnectionStrings__Postgres"] = tallyDb,
            ["RabbitMq__Url"] = options.RabbitMq,
            ["Allowances__QueueName"] = queue,
            ["Allowances__BatchSize"] = "1000",
            ["Allowances__MessageShape"] = shape,
            ["Auth__SigningKey"] = SigningKey,
            ["ASPNETCORE_ENVIRONMENT"] = "Production",
            // A worker must name its core outside Development; no balance is synced in this benchmark.
            ["T24__BaseUrl"] = "http://127.0.0.1:9/no-core/",
            ["Logging__LogLevel__Default"] = "Warning",
            ["Jobs__allowances.enqueue-due__Enabled"] = "false",
            ["Allowances__BatchCommits"] = options.Single ? "false" : "true",
        };
        if (options.QueueType is { } queueType)
        {
            settings["RabbitMq__QueueType"] = queueType;
        }
        if (options.Concurrency is { } concurrency)
        {
            settings["Allowances__Concurrency"] = concurrency.ToString(CultureInfo.InvariantCulture);
            settings["Allowances__Prefetch"] = (concurrency * 2).ToString(CultureInfo.InvariantCulture);
        }
        var processes = new List<Process>();
        try
        {
            processes.Add(StartTally(settings, options.ProducerOnly ? "api" : "api,worker", $"http://127.0.0.1:{port}"));
            for (var i = 1; i < options.Workers && !options.ProducerOnly; i++)
            {
                processes.Add(StartTally(settings, "worker", "http://127.0.0.1:0"));
            }
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = Timeout.InfiniteTimeSpan };
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer",
                Auth.CreateToken(SigningKey, Guid.Empty, [Roles.Admin], TimeSpan.FromHours(2)));
            await WaitHealthyAsync(http, ct);
            await Task.Delay(2000, ct); // let every worker's consumer attach

            var cpu = CpuSample.Take(processes);
            var clock = Stopwatch.StartNew();
            var paying = options.ProducerOnly ? null : WaitForPaidAsync(tallyDb, options.Schedules, clock, ct);
            using (var run = await http.PostAsync($"/api/admin/jobs/{EnqueueDueAllowances.Name}/run", null, ct))
            {
                run.EnsureSuccessStatusCode();
            }
            var produced = clock.Elapsed;
            var producerRate = options.Schedules / produced.TotalSeconds;
            Console.WriteLine($"  producer enqueued {options.Schedules:N0} occurrences in {produced.TotalSeconds:F1} s: {producerRate:F0}/s");
            if (paying is null)
            {
                return null;
            }
            var (firstCredit, elapsed) = await paying;
            var used = CpuSample.Take(processes).Minus(cpu);
            var rate = options.Schedules / elapsed.TotalSeconds;
            var workerRate = options.Schedules / (elapsed - firstCredit).TotalSeconds;
            Console.WriteLine($"  all paid {elapsed.TotalSeconds:F1} s after the trigger: {rate:F0} credits/s end to end; " +
                $"workers {workerRate:F0} credits/s from the first credit (at {firstCredit.TotalSeconds:F1} s) to the last");
            Console.WriteLine($"  cpu, trigger to last credit, in cores busy: {used.Describe(elapsed)}");

            // Duplicates: every occurrence published again in this shape; each must be acked without a write.
            var transfersBefore = await CountAsync(tallyDb, "SELECT count(*) FROM ledger_transfers", ct);
            await using var transport = Transport(options.RabbitMq);
            var occurrences = Enumerable.Range(1, options.Schedules).Select(i => new OccurrenceMessage(MdUuid("s" + i), load.Start)).ToList();
            var duplicates = EnqueueDueAllowances.Messages(occurrences, new AllowanceOptions { MessageShape = shape });
            clock.Restart();
            foreach (var chunk in duplicates.Chunk(10_000))
            {
                await transport.PublishAsync(queue, chunk, ct);
            }
            await WaitDrainedAsync(http, queue, ct);
            var duplicateElapsed = clock.Elapsed;
            var duplicateRate = options.Schedules / duplicateElapsed.TotalSeconds;
            var transfersAfter = await CountAsync(tallyDb, "SELECT count(*) FROM ledger_transfers", ct);
            var paid = await CountAsync(tallyDb, "SELECT count(*) FROM allowance_credits WHERE outcome = 'PAID'", ct);
            var total = await CountAsync(tallyDb, "SELECT coalesce(sum(balance_minor), 0) FROM ledger_accounts", ct);
            Console.WriteLine($"  duplicates acked {duplicateRate:F0}/s ({options.Schedules:N0} in {duplicateMessages(duplicates.Count)}, {duplicateElapsed.TotalSeconds:F1} s, publishing included); " +
                $"writes by duplicates: {transfersAfter - transfersBefore}; paid {paid:N0}; ledger total {total}");
            return new ShapeResult(shape, elapsed, rate, producerRate, duplicateRate, paid == options.Schedules && transfersAfter == transfersBefore && total == 0);
        }
        finally
        {
            foreach (var process in processes)
            {
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync(CancellationToken.None);
            }
            await DropDatabaseAsync(options.Postgres, tallyDb);
        }

        static string duplicateMessages(int count) => $"{count:N0} message{(count == 1 ? "" : "s")}";
    }

    private static async Task<double> RunPgbenchAsync(string connectionString, Options options, bool batched, CancellationToken ct)
    {
        var script = Path.Combine(Path.GetTempPath(), $"tally-credit-{Guid.NewGuid():N}.sql");
        await File.WriteAllTextAsync(script, batched ? BatchedCreditScript(options.Schedules / ReferenceBatch) : SingleCreditScript(options.Schedules), ct);
        var transactions = batched ? options.Schedules / ReferenceBatch : options.Schedules;
        var csb = new NpgsqlConnectionStringBuilder(connectionString);
        var perClient = Math.Max(1, transactions / options.Clients);
        var start = new ProcessStartInfo(PgBin("pgbench"),
            ["-n", "-M", "extended", "-c", options.Clients.ToString(CultureInfo.InvariantCulture), "-j", "2", "-t", perClient.ToString(CultureInfo.InvariantCulture),
             "-f", script, "-h", csb.Host!, "-p", csb.Port.ToString(CultureInfo.InvariantCulture), "-U", csb.Username ?? "postgres", csb.Database!])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var process = Process.Start(start)!;
        var output = await process.StandardOutput.ReadToEndAsync(ct);
        var errors = await process.StandardError.ReadToEndAsync(ct);
        await process.WaitForExitAsync(ct);
        File.Delete(script);
        var line = output.Split('\n').FirstOrDefault(l => l.StartsWith("tps = ", StringComparison.Ordinal))
            ?? throw new InvalidOperationException($"pgbench failed: {errors}\n{output}");
        var tps = double.Parse(line.Split(' ')[2], CultureInfo.InvariantCulture);
        return batched ? tps * ReferenceBatch : tps;
    }

    /// <summary>The worker's credit SQL for one occurrence per transaction, as the seed's worker runs it.</summary>
    private static string SingleCreditScript(int schedules) => $"""
        \set i random(1, {schedules})
        BEGIN;
        SELECT id, guardian_id, junior_id, amount_minor FROM allowance_schedules WHERE id = md5('s' || :i)::uuid;
        INSERT INTO ledger_transfers (id, debit_account_id, credit_account_id, amount_minor, currency, kind, idempotency_key, created_at) VALUES (gen_random_uuid(), md5('ga' || :i)::uuid, md5('ja' || :i)::uuid, 500, 'USD', 'ALLOWANCE', gen_random_uuid()::text, now()) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id AS tid \gset
        UPDATE ledger_accounts SET balance_minor = balance_minor - 500 WHERE id = md5('ga' || :i)::uuid AND currency = 'USD' AND (kind = 'FUNDING' OR balance_minor >= 500);
        UPDATE ledger_accounts SET balance_minor = balance_minor + 500 WHERE id = md5('ja' || :i)::uuid AND currency = 'USD';
        INSERT INTO allowance_credits (id, schedule_id, run_at, amount_minor, currency, outcome, transaction_id, reason, credited_at) VALUES (gen_random_uuid(), md5('s' || :i)::uuid, clock_timestamp(), 500, 'USD', 'PAID', :tid, NULL, now()) ON CONFLICT (schedule_id, run_at) DO UPDATE SET outcome = excluded.outcome WHERE allowance_credits.outcome = 'FAILED';
        UPDATE allowance_schedules SET last_run_at = now(), next_run_at = now() + interval '1 day', updated_at = now() WHERE id = md5('s' || :i)::uuid;
        INSERT INTO outbox_events (event_id, event_type, subject_id, payload, occurred_at) VALUES (gen_random_uuid(), 'AllowanceCredited', :i::text, '[]', now());
        END;

        """;

    /// <summary>
    /// The same statements over a block of <see cref="ReferenceBatch"/> consecutive schedules per
    /// transaction, set-based (one statement per step for the whole block), as a raw upper bound.
    /// </summary>
    private static string BatchedCreditScript(int blocks) => $"""
        \set b random(0, {Math.Max(1, blocks) - 1})
        \set lo :b * {ReferenceBatch} + 1
        \set hi :b * {ReferenceBatch} + {ReferenceBatch}
        BEGIN;
        SELECT s.id, s.amount_minor, g.id, j.id FROM allowance_schedules s JOIN ledger_accounts g ON g.owner_id = s.guardian_id AND g.currency = s.currency JOIN ledger_accounts j ON j.owner_id = s.junior_id AND j.currency = s.currency WHERE s.id IN (SELECT md5('s' || i)::uuid FROM generate_series(:lo::int, :hi::int) i);
        UPDATE ledger_accounts SET balance_minor = balance_minor - 500 WHERE id IN (SELECT md5('ga' || i)::uuid FROM generate_series(:lo::int, :hi::int) i) AND currency = 'USD' AND (kind = 'FUNDING' OR balance_minor >= 500);
        UPDATE ledger_accounts SET balance_minor = balance_minor + 500 WHERE id IN (SELECT md5('ja' || i)::uuid FROM generate_series(:lo::int, :hi::int) i) AND currency = 'USD';
        WITH t AS (INSERT INTO ledger_transfers (id, debit_account_id, credit_account_id, amount_minor, currency, kind, idempotency_key, created_at) SELECT gen_random_uuid(), md5('ga' || i)::uuid, md5('ja' || i)::uuid, 500, 'USD', 'ALLOWANCE', 'bench:' || i || ':' || gen_random_uuid(), now() FROM generate_series(:lo::int, :hi::int) i ON CONFLICT (idempotency_key) DO NOTHING RETURNING id, split_part(idempotency_key, ':', 2)::int AS i) INSERT INTO allowance_credits (id, schedule_id, run_at, amount_minor, currency, outcome, transaction_id, reason, credited_at) SELECT gen_random_uuid(), md5('s' || t.i)::uuid, clock_timestamp(), 500, 'USD', 'PAID', t.id, NULL, now() FROM t ON CONFLICT (schedule_id, run_at) DO UPDATE SET outcome = excluded.outcome WHERE allowance_credits.outcome = 'FAILED';
        UPDATE allowance_schedules SET last_run_at = now(), next_run_at = now() + interval '1 day', updated_at = now() WHERE id IN (SELECT md5('s' || i)::uuid FROM generate_series(:lo::int, :hi::int) i);
        INSERT INTO outbox_events (event_id, event_type, subject_id, payload, occurred_at) SELECT gen_random_uuid(), 'AllowanceCredited', i::text, '[]', now() FROM generate_series(:lo::int, :hi::int) i;
        END;

        """;

    private static string PgBin(string tool)
    {
        var folder = Environment.GetEnvironmentVariable("TALLY_TEST_PG_BIN")
            ?? Directory.GetDirectories("/usr/lib/postgresql").Order().Last() + "/bin";
        return Path.Combine(folder, tool);
    }

    internal static Process StartTally(Dictionary<string, string> settings, string roles, string urls)
    {
        var start = new ProcessStartInfo("dotnet", [Path.Combine(AppContext.BaseDirectory, "Tally.dll"), "--urls", urls])
        {
            WorkingDirectory = AppContext.BaseDirectory,
            UseShellExecute = false,
        };
        foreach (var (k, v) in settings)
        {
            start.Environment[k] = v;
        }
        var i = 0;
        foreach (var role in roles.Split(','))
        {
            start.Environment[$"Tally__Roles__{i++}"] = role;
        }
        return Process.Start(start)!;
    }

    internal static RabbitMqTransport Transport(string url)
    {
        var services = new ServiceCollection()
            .AddLogging(l => l.SetMinimumLevel(LogLevel.Warning))
            .Configure<RabbitMqOptions>(o => o.Url = url)
            .Configure<TallyOptions>(o => o.InstanceId = "bench")
            .AddSingleton<RabbitMqConnection>()
            .AddSingleton(new QueueRegistry([]))
            .AddSingleton<RabbitMqTransport>()
            .BuildServiceProvider();
        return services.GetRequiredService<RabbitMqTransport>();
    }

    internal static async Task<string> CreateDatabaseAsync(string adminConnection, string prefix, CancellationToken ct)
    {
        var builder = new NpgsqlConnectionStringBuilder(adminConnection);
        var name = $"{prefix}_{DateTime.UtcNow:yyyyMMddHHmmss}";
        await using (var connection = new NpgsqlConnection(builder.ConnectionString))
        {
            await connection.OpenAsync(ct);
            await using var create = new NpgsqlCommand($"CREATE DATABASE {name}", connection);
            await create.ExecuteNonQueryAsync(ct);
        }
        builder.Database = name;
        builder.MaxPoolSize = 200;
        await Migrator.ApplyAsync(new StorageSettings(StorageProvider.Postgres, builder.ConnectionString), NullLogger.Instance, ct);
        return builder.ConnectionString;
    }

    /// <summary>
    /// Polls the paid count: when the first credit was seen, and when the last. Every 100 ms until the
    /// first and from 95% on, so both are at most 100 ms late, and every second in between: a count
    /// over a million rows takes PostgreSQL about 90 ms, time taken from the pipeline being measured.
    /// </summary>
    private static async Task<(TimeSpan First, TimeSpan Last)> WaitForPaidAsync(string connectionString, int expected, Stopwatch clock, CancellationToken ct)
    {
        var last = -1L;
        var first = TimeSpan.Zero;
        var stalledSince = DateTime.UtcNow;
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync(ct);
        await using var command = new NpgsqlCommand("SELECT count(*) FROM allowance_credits WHERE outcome = 'PAID'", connection);
        while (true)
        {
            var paid = Convert.ToInt64(await command.ExecuteScalarAsync(ct), CultureInfo.InvariantCulture);
            if (paid > 0 && first == TimeSpan.Zero)
            {
                first = clock.Elapsed;
            }
            if (paid >= expected)
            {
                return (first, clock.Elapsed);
            }
            if (paid != last)
            {
                (last, stalledSince) = (paid, DateTime.UtcNow);
            }
            else if (DateTime.UtcNow - stalledSince > TimeSpan.FromSeconds(120))
            {
                throw new InvalidOperationException($"Stalled at {paid} of {expected} paid.");
            }
            await Task.Delay(paid == 0 || paid >= expected * 0.95 ? 100 : 1000, ct);
        }
    }

    /// <summary>Until the queue has nothing ready and the worker nothing in hand (the api,worker process answers for its consumer).</summary>
    private static async Task WaitDrainedAsync(HttpClient http, string queue, CancellationToken ct)
    {
        while (true)
        {
            var queues = System.Text.Json.JsonDocument.Parse(await http.GetStringAsync("/api/admin/queues", ct)).RootElement;
            var row = queues.EnumerateArray().FirstOrDefault(q => q.GetProperty("queue").GetString() == queue);
            if (row.ValueKind != System.Text.Json.JsonValueKind.Undefined && row.GetProperty("ready").GetInt64() == 0 && row.GetProperty("inFlight").GetInt64() == 0)
            {
                return;
            }
            await Task.Delay(20, ct);
        }
    }

    private static async Task DropDatabaseAsync(string adminConnection, string database)
    {
        var name = new NpgsqlConnectionStringBuilder(database).Database;
        NpgsqlConnection.ClearAllPools();
        await using var connection = new NpgsqlConnection(adminConnection);
        await connection.OpenAsync();
        await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS {name} WITH (FORCE)", connection);
        await drop.ExecuteNonQueryAsync();
    }

    internal static async Task WaitHealthyAsync(HttpClient http, CancellationToken ct)
    {
        for (var i = 0; i < 300; i++)
        {
            try
            {
                using var response = await http.GetAsync("/readyz", ct);
                if (response.IsSuccessStatusCode)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
            }
            await Task.Delay(200, ct);
        }
        throw new InvalidOperationException("Tally did not become ready.");
    }

    internal static async Task<long> CountAsync(string connectionString, string sql, CancellationToken ct)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync(ct);
        await using var command = new NpgsqlCommand(sql, connection);
        return Convert.ToInt64(await command.ExecuteScalarAsync(ct), CultureInfo.InvariantCulture);
    }

    internal static int FreePort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static Guid MdUuid(string text) =>
        Guid.ParseExact(Convert.ToHexString(System.Security.Cryptography.MD5.HashData(System.Text.Encoding.UTF8.GetBytes(text))), "N");

    private sealed record Options(string Postgres, string RabbitMq, int Schedules, int Workers, int? Concurrency, int Clients, bool Single, bool ProducerOnly,
        string Reference, IReadOnlyList<string> Shapes, string? QueueType)
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
            var shapes = (Value("--shapes") ?? $"{AllowanceOptions.PageShape},{AllowanceOptions.OccurrenceShape}").Split(',', StringSplitOptions.RemoveEmptyEntries);
            var reference = args.Contains("--no-reference") ? "none" : Value("--reference") ?? "batched";
            var queueType = Value("--queue-type");
            if (postgres is null || rabbit is null || shapes.Length == 0 || shapes.Any(s => s is not (AllowanceOptions.PageShape or AllowanceOptions.OccurrenceShape))
                || reference is not ("batched" or "single" or "none") || queueType is not (null or "classic" or "quorum"))
            {
                return null;
            }
            return new Options(postgres, rabbit, Int("--schedules", 100_000), Int("--workers", 1),
                int.TryParse(Value("--concurrency"), CultureInfo.InvariantCulture, out var c) ? c : null, Int("--clients", 8), args.Contains("--single"),
                args.Contains("--producer-only"), reference, shapes, queueType);
        }
    }

    /// <summary>
    /// CPU time (user + system, from <c>/proc</c>) of the Tally processes, PostgreSQL's processes, the
    /// broker's Erlang VM, this bench, and the whole machine, at one moment.
    /// </summary>
    private sealed record CpuSample(double Tally, double Postgres, double RabbitMq, double Bench, double Machine)
    {
        private static readonly double Tick = 100.0; // USER_HZ on Linux

        public static CpuSample Take(IReadOnlyList<Process> tally)
        {
            double tallySeconds = 0, postgres = 0, rabbit = 0;
            foreach (var process in tally)
            {
                tallySeconds += Seconds(process.Id);
            }
            foreach (var dir in Directory.EnumerateDirectories("/proc"))
            {
                if (!int.TryParse(Path.GetFileName(dir), out var pid))
                {
                    continue;
                }
                var comm = TryRead($"{dir}/comm")?.Trim();
                if (comm == "postgres")
                {
                    postgres += Seconds(pid);
                }
                else if (comm is "beam.smp")
                {
                    rabbit += Seconds(pid);
                }
            }
            var machine = TryRead("/proc/stat")?.Split('\n')[0].Split(' ', StringSplitOptions.RemoveEmptyEntries)[1..]
                .Select((v, i) => i is 3 or 4 ? 0 : double.Parse(v, CultureInfo.InvariantCulture)).Sum() / Tick ?? 0; // all but idle and iowait
            return new CpuSample(tallySeconds, postgres, rabbit, Seconds(Environment.ProcessId), machine);
        }

        public CpuSample Minus(CpuSample before) =>
            new(Tally - before.Tally, Postgres - before.Postgres, RabbitMq - before.RabbitMq, Bench - before.Bench, Machine - before.Machine);

        public string Describe(TimeSpan over)
        {
            string Cores(double seconds) => (seconds / over.TotalSeconds).ToString("F2", CultureInfo.InvariantCulture);
            return $"tally {Cores(Tally)}, postgres {Cores(Postgres)}, rabbitmq {Cores(RabbitMq)}, bench {Cores(Bench)}; machine {Cores(Machine)} of {Environment.ProcessorCount}";
        }

        private static double Seconds(int pid)
        {
            // Fields after the command's closing parenthesis: state is field 3, utime 14, stime 15, and
            // cutime 16, cstime 17: the children it reaped. PostgreSQL's backends come and go (a pool
            // retires idle connections), and the postmaster reaps them, so their time is counted there.
            var stat = TryRead($"/proc/{pid}/stat");
            if (stat is null)
            {
                return 0;
            }
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return fields[11..15].Sum(f => double.Parse(f, CultureInfo.InvariantCulture)) / Tick;
        }

        private static string? TryRead(string path)
        {
            try
            {
                return File.ReadAllText(path);
            }
            catch (IOException)
            {
                return null;
            }
            catch (UnauthorizedAccessException)
            {
                return null;
            }
        }
    }
}
