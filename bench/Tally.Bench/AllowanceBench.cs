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
/// <c>allowances</c>: end-to-end allowance credits per second (producer -> RabbitMQ -> worker
/// processes -> PostgreSQL) for N due schedules, beside the same credit SQL driven raw by pgbench
/// against the same server in the same run, on an identically loaded database. Then the rate at
/// which duplicate deliveries of every paid occurrence are acknowledged without writes.
/// </summary>
public static class AllowanceBench
{
    private const string SigningKey = "tally-bench-signing-key-0123456789abcdef";

    public static async Task<int> RunAsync(string[] args, CancellationToken ct)
    {
        var options = Options.Parse(args);
        if (options is null)
        {
            await Console.Error.WriteLineAsync("Usage: allowances --postgres CONN --rabbitmq URL [--schedules 100000] [--workers 1] [--concurrency N] [--clients 8] [--single] [--producer-only] [--no-reference]");
            return 2;
        }
        Console.WriteLine($"allowances: {options.Schedules:N0} due schedules, {options.Workers} worker process(es){(options.Concurrency is { } c ? $" x {c}" : "")}, pgbench {options.Clients} clients, {(options.Single ? "one transaction per credit" : "batched (the default)")}");

        var tallyDb = await CreateDatabaseAsync(options.Postgres, "bench_allowances_tally", ct);
        var load = await AllowanceLoad.SeedPostgresAsync(tallyDb, options.Schedules, 1);
        var pgbenchRate = double.NaN;
        if (!options.ProducerOnly && !options.NoReference)
        {
            var referenceDb = await CreateDatabaseAsync(options.Postgres, "bench_allowances_pgbench", ct);
            await AllowanceLoad.SeedPostgresAsync(referenceDb, options.Schedules, 1);
            Console.WriteLine("loaded both databases");
            pgbenchRate = await RunPgbenchAsync(referenceDb, options, ct);
            Console.WriteLine($"pgbench raw single-transaction credit: {pgbenchRate:F0} tx/s");
        }

        var queue = $"allowance.bench.{DateTime.UtcNow:HHmmss}";
        var port = FreePort();
        var settings = new Dictionary<string, string>
        {
            ["ConnectionStrings__Postgres"] = tallyDb,
            ["RabbitMq__Url"] = options.RabbitMq,
            ["Allowances__QueueName"] = queue,
            ["Allowances__BatchSize"] = "1000",
            ["Auth__SigningKey"] = SigningKey,
            ["ASPNETCORE_ENVIRONMENT"] = "Production",
            // A worker must name its core outside Development; no balance is synced in this benchmark.
            ["T24__BaseUrl"] = "http://127.0.0.1:9/no-core/",
            ["Logging__LogLevel__Default"] = "Warning",
            ["Jobs__allowances.enqueue-due__Enabled"] = "false",
            ["Allowances__BatchCommits"] = options.Single ? "false" : "true",
        };
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

            var clock = Stopwatch.StartNew();
            using (var run = await http.PostAsync($"/api/admin/jobs/{EnqueueDueAllowances.Name}/run", null, ct))
            {
                run.EnsureSuccessStatusCode();
            }
            var produced = clock.Elapsed;
            if (options.ProducerOnly)
            {
                Console.WriteLine($"allowances: producer alone enqueued {options.Schedules:N0} in {produced.TotalSeconds:F1} s: {options.Schedules / produced.TotalSeconds:F0}/s");
                return 0;
            }
            await WaitForPaidAsync(tallyDb, options.Schedules, ct);
            var elapsed = clock.Elapsed;
            var tallyRate = options.Schedules / elapsed.TotalSeconds;
            Console.WriteLine($"producer enqueued {options.Schedules:N0} in {produced.TotalSeconds:F1} s; all paid after {elapsed.TotalSeconds:F1} s " +
                $"({(elapsed <= TimeSpan.FromMinutes(5) ? "within" : "NOT within")} one 5-minute window)");

            // Duplicates: every occurrence published again; each must be acked without a write.
            var transfersBefore = await CountAsync(tallyDb, "SELECT count(*) FROM ledger_transfers", ct);
            await using var transport = Transport(options.RabbitMq);
            var duplicates = Enumerable.Range(1, options.Schedules)
                .Select(i => new OccurrenceMessage(MdUuid("s" + i), load.Start).ToQueueMessage()).ToList();
            clock.Restart();
            await transport.PublishAsync(queue, duplicates, ct);
            var definition = new QueueDefinition(queue, 5, TimeSpan.FromMinutes(10));
            while ((await transport.GetDepthAsync(definition, ct)).Ready > 0)
            {
                await Task.Delay(20, ct);
            }
            var duplicateElapsed = clock.Elapsed;
            var duplicateRate = options.Schedules / duplicateElapsed.TotalSeconds;
            var transfersAfter = await CountAsync(tallyDb, "SELECT count(*) FROM ledger_transfers", ct);
            var paid = await CountAsync(tallyDb, "SELECT count(*) FROM allowance_credits WHERE outcome = 'PAID'", ct);
            var total = await CountAsync(tallyDb, "SELECT coalesce(sum(balance_minor), 0) FROM ledger_accounts", ct);

            Console.WriteLine(double.IsNaN(pgbenchRate)
                ? $"allowances: tally end-to-end {tallyRate:F0} credits/s (no pgbench reference in this run)"
                : $"allowances: tally end-to-end {tallyRate:F0} credits/s, pgbench raw {pgbenchRate:F0} tx/s, ratio {tallyRate / pgbenchRate:F2} (target >= 0.8)");
            Console.WriteLine($"allowances: duplicates acked {duplicateRate:F0}/s ({options.Schedules:N0} in {duplicateElapsed.TotalSeconds:F1} s; target >= 10000/s); " +
                $"writes by duplicates: {transfersAfter - transfersBefore}; paid {paid:N0}; ledger total {total}");
            return paid == options.Schedules && transfersAfter == transfersBefore && total == 0 ? 0 : 1;
        }
        finally
        {
            foreach (var process in processes)
            {
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync(CancellationToken.None);
            }
        }
    }

    private static async Task<double> RunPgbenchAsync(string connectionString, Options options, CancellationToken ct)
    {
        var script = Path.Combine(Path.GetTempPath(), $"tally-credit-{Guid.NewGuid():N}.sql");
        await File.WriteAllTextAsync(script, $"""
            \set i random(1, {options.Schedules})
            BEGIN;
            SELECT id, guardian_id, junior_id, amount_minor FROM allowance_schedules WHERE id = md5('s' || :i)::uuid;
            INSERT INTO ledger_transfers (id, debit_account_id, credit_account_id, amount_minor, currency, kind, idempotency_key, created_at) VALUES (gen_random_uuid(), md5('ga' || :i)::uuid, md5('ja' || :i)::uuid, 500, 'USD', 'ALLOWANCE', gen_random_uuid()::text, now()) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id AS tid \gset
            UPDATE ledger_accounts SET balance_minor = balance_minor - 500 WHERE id = md5('ga' || :i)::uuid AND currency = 'USD' AND (kind = 'FUNDING' OR balance_minor >= 500);
            UPDATE ledger_accounts SET balance_minor = balance_minor + 500 WHERE id = md5('ja' || :i)::uuid AND currency = 'USD';
            INSERT INTO allowance_credits (id, schedule_id, run_at, amount_minor, currency, outcome, transaction_id, reason, credited_at) VALUES (gen_random_uuid(), md5('s' || :i)::uuid, clock_timestamp(), 500, 'USD', 'PAID', :tid, NULL, now()) ON CONFLICT (schedule_id, run_at) DO UPDATE SET outcome = excluded.outcome WHERE allowance_credits.outcome = 'FAILED';
            UPDATE allowance_schedules SET last_run_at = now(), next_run_at = now() + interval '1 day', updated_at = now() WHERE id = md5('s' || :i)::uuid;
            INSERT INTO outbox_events (event_id, event_type, subject_id, payload, occurred_at) VALUES (gen_random_uuid(), 'AllowanceCredited', :i::text, '[]', now());
            END;

            """, ct);
        var csb = new NpgsqlConnectionStringBuilder(connectionString);
        var perClient = Math.Max(1, options.Schedules / options.Clients);
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
        return double.Parse(line.Split(' ')[2], CultureInfo.InvariantCulture);
    }

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

    private static RabbitMqTransport Transport(string url)
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

    private static async Task<string> CreateDatabaseAsync(string adminConnection, string prefix, CancellationToken ct)
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

    private static async Task WaitForPaidAsync(string connectionString, int expected, CancellationToken ct)
    {
        var last = -1L;
        var stalledSince = DateTime.UtcNow;
        while (true)
        {
            var paid = await CountAsync(connectionString, "SELECT count(*) FROM allowance_credits WHERE outcome = 'PAID'", ct);
            if (paid >= expected)
            {
                return;
            }
            if (paid != last)
            {
                (last, stalledSince) = (paid, DateTime.UtcNow);
            }
            else if (DateTime.UtcNow - stalledSince > TimeSpan.FromSeconds(60))
            {
                throw new InvalidOperationException($"Stalled at {paid} of {expected} paid.");
            }
            await Task.Delay(100, ct);
        }
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

    private static async Task<long> CountAsync(string connectionString, string sql, CancellationToken ct)
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

    private sealed record Options(string Postgres, string RabbitMq, int Schedules, int Workers, int? Concurrency, int Clients, bool Single, bool ProducerOnly, bool NoReference)
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
            return postgres is null || rabbit is null
                ? null
                : new Options(postgres, rabbit, Int("--schedules", 100_000), Int("--workers", 1),
                    int.TryParse(Value("--concurrency"), CultureInfo.InvariantCulture, out var c) ? c : null, Int("--clients", 8), args.Contains("--single"),
                    args.Contains("--producer-only"), args.Contains("--no-reference"));
        }
    }
}
