using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Tally.Data;
using Tally.Features.BalanceSync;
using Tally.Features.Users;
using Tally.Hosting;
using Tally.Sandbox;

namespace Tally.Bench.BalanceSync;

/// <summary>
/// Balance-sync benchmark. The target: a login's balance sync has its p99 within the upstream's latency
/// plus 10 ms while 100,000 background syncs wait, and never more calls reach the core than its rate limit.
///
/// <c>dotnet run -c Release --project bench/BalanceSync -- [--users 100000] [--latency-ms 20]
/// [--logins 1000] [--throughput-s 30] [--postgres CONNECTION_STRING] [--instances 1,3] [--redis HOST:PORT] [--record bench/RESULTS.md]</c>
///
/// A sandbox core with a fixed latency L runs in its own process (so Tally's pauses cannot bunch its
/// arrival times); Tally runs in this one on a real Kestrel port, on a fresh database holding the
/// users. For each configuration the periodic job queues every user, then logins arrive one at a time
/// at random moments and their answer time is measured end to end (HTTP to Tally, Tally's call to
/// the core, the write, the answer). The reference, measured alongside: between the logins, a direct
/// call to an identical sandbox in a third process, over a kept-alive connection like Tally's. Then,
/// with no logins, the core's call rate over a window is compared with the configured rate limit.
/// With <c>--instances 1,3</c> (PostgreSQL only) each configuration runs once per fleet size: that many
/// Tally instances on the one database (and the one Redis, if given), each with the same settings, the
/// logins spread over them in turn: the fleet's limits hold across them, or the core sees N times its rate.
/// </summary>
public static class BalanceSyncBench
{
    private const string SigningKey = "tally-bench-signing-key-0123456789abcdef";

    private sealed record Config(string Name, int Rate, int MaxCalls, int Reserve, int Workers);

    public static async Task<int> Main(string[] args)
    {
        if (args is ["sandbox", var latency, var portFile])
        {
            return await ServeSandboxAsync(int.Parse(latency, CultureInfo.InvariantCulture), portFile);
        }
        var users = IntArg(args, "--users", 100_000);
        var latencyMs = IntArg(args, "--latency-ms", 20);
        var logins = IntArg(args, "--logins", 1000);
        var throughputSeconds = IntArg(args, "--throughput-s", 30);
        var postgres = StringArg(args, "--postgres");
        var record = StringArg(args, "--record");
        var redis = StringArg(args, "--redis");
        var fleets = (StringArg(args, "--instances") ?? "1").Split(',').Select(n => int.Parse(n, CultureInfo.InvariantCulture)).ToList();
        if (fleets.Any(n => n > 1) && postgres is null)
        {
            await Console.Error.WriteLineAsync("--instances above 1 needs --postgres: instances share the lanes table.");
            return 2;
        }
        // --config RATE:CALLS:RESERVE[:WORKERS], repeatable; by default the defaults and a login-first setup.
        var configs = args.Select((a, i) => (a, i)).Where(x => x.a == "--config" && x.i + 1 < args.Length)
            .Select(x => ParseConfig(args[x.i + 1])).ToList();
        if (configs.Count == 0)
        {
            configs = [ParseConfig("10:1:0"), ParseConfig("50:3:1")];
        }

        // Tally's content root (its appsettings.json), wherever this is run from.
        Environment.SetEnvironmentVariable("ASPNETCORE_TEST_CONTENTROOT_TALLY", Path.Combine(RepositoryRoot(), "src", "Tally"));
        await using var sandbox = await SandboxProcess.StartAsync(latencyMs);
        // The reference core: the same sandbox in another process, called directly between the logins,
        // so the reference sees the same machine at the same moments without adding to Tally's core.
        await using var referenceCore = await SandboxProcess.StartAsync(latencyMs);

        var database = postgres is null
            ? $"Data Source={Path.Combine(Path.GetTempPath(), $"tally-bench-{Guid.NewGuid():N}.db")}"
            : await NewPostgresDatabaseAsync(postgres);
        var storage = postgres is null ? "SQLite (embedded, in-process lanes)"
            : $"PostgreSQL (shared lanes table), the fleet's limits counted in {(redis is null ? "PostgreSQL" : "Redis")}";
        var rows = new List<string>();
        List<Guid>? ids = null;
        foreach (var (config, instances) in configs.SelectMany(c => fleets.Select(n => (c, n))))
        {
            var fleet = Enumerable.Range(1, instances).Select(n => new TallyHost(database, postgres is not null, sandbox, config, $"bench-{n}", redis)).ToList();
            await using var stop = new Fleet(fleet);
            var baseUrls = fleet.Select(host =>
            {
                host.StartServer();
                return host.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
            }).ToList();
            var tally = fleet[0];
            if (ids is null)
            {
                var load = Stopwatch.StartNew();
                ids = await InsertUsersAsync(tally.Services, users);
                Console.WriteLine($"loaded {users:N0} mobile-banking users with one core account each in {load.Elapsed.TotalSeconds:0} s ({storage})");
                if (postgres is not null)
                {
                    // The load's own dirty pages are written now, not by a checkpoint during the measurement.
                    await using var db = await tally.Services.GetRequiredService<IDbContextFactory<TallyDb>>().CreateDbContextAsync();
                    await db.Database.ExecuteSqlRawAsync("CHECKPOINT");
                }
            }
            else if (postgres is not null)
            {
                await using var db = await tally.Services.GetRequiredService<IDbContextFactory<TallyDb>>().CreateDbContextAsync();
                await db.Database.ExecuteSqlRawAsync("TRUNCATE balance_sync_queue");
            }
            await sandbox.ResetAsync();
            var row = await RunConfigAsync(config, instances, baseUrls, sandbox, referenceCore, ids, logins, throughputSeconds, latencyMs);
            rows.Add(row);
            Console.WriteLine(row);
        }

        if (postgres is not null)
        {
            await DropPostgresDatabaseAsync(postgres, database);
        }
        var report = Report(storage, users, latencyMs, logins, throughputSeconds, rows, args);
        Console.WriteLine();
        Console.WriteLine(report);
        if (record is not null)
        {
            if (!File.Exists(record))
            {
                await File.WriteAllTextAsync(record, "# Benchmark results\n\nEach entry gives the date, the machine, the command and the numbers as printed.\n");
            }
            await File.AppendAllTextAsync(record, "\n" + report);
        }
        return 0;
    }

    private static async Task<string> RunConfigAsync(
        Config config, int instances, List<string> baseUrls, SandboxProcess sandbox, SandboxProcess referenceCore, List<Guid> ids, int logins, int throughputSeconds, int latencyMs)
    {
        var https = baseUrls.Select(url => new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromMinutes(5) }).ToList();
        using var disposeAll = new Disposables(https);
        using var direct = new HttpClient();
        direct.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", referenceCore.ApiKey);
        var referenceTimes = new List<double>();
        var http = https[0];
        using var run = await http.SendAsync(Post("/api/admin/jobs/balance-sync.enqueue-all/run", Guid.Empty, Roles.Admin));
        var detail = JsonDocument.Parse(await run.Content.ReadAsStringAsync()).RootElement.GetProperty("detail");
        Console.WriteLine($"[{config.Name}] queued {detail.GetProperty("queued").GetInt32():N0} users on the background lane");

        // Logins at random moments (50-250 ms apart), for users waiting in the background lane: each is promoted.
        var random = new Random(42);
        var times = new List<double>();
        int ok = 0, queued = 0;
        for (var i = 0; i < logins + 20; i++)
        {
            await Task.Delay(random.Next(25, 125));
            var directClock = Stopwatch.StartNew();
            using (var directResponse = await direct.GetAsync($"{referenceCore.BaseUrl}/holdings/accounts/REF-{i:D4}/balances"))
            {
                await directResponse.Content.ReadAsStringAsync();
            }
            directClock.Stop();
            await Task.Delay(random.Next(25, 125));
            var user = ids[random.Next(ids.Count)];
            using var request = Post("/api/me/balances/sync", user, Roles.User);
            var clock = Stopwatch.StartNew();
            using var response = await https[i % https.Count].SendAsync(request);
            var body = await response.Content.ReadAsStringAsync();
            clock.Stop();
            if (i < 20)
            {
                continue; // warm-up
            }
            times.Add(clock.Elapsed.TotalMilliseconds);
            referenceTimes.Add(directClock.Elapsed.TotalMilliseconds);
            if (JsonDocument.Parse(body).RootElement.GetProperty("ok").GetBoolean())
            {
                ok++;
            }
            else
            {
                queued++;
            }
        }
        var login = Stats.Of(times);
        var reference = Stats.Of(referenceTimes);
        // The tail in more detail than the table: where the slow logins fell in the run.
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"[{config.Name}] login p90 {login.P90:0.0} ms, p95 {login.P95:0.0} ms; over L + 10: {times.Count(t => t > latencyMs + 10)}; slowest (login #: ms): {string.Join(", ", times.Select((t, n) => (t, n)).OrderByDescending(x => x.t).Take(5).Select(x => $"{x.n}: {x.t:0.0}"))}"));
        var waiting = await StatusAsync(http);

        // Background only: the core's call rate over a window, after a settling second.
        await Task.Delay(1000);
        var from = Stopwatch.GetTimestamp();
        var callsBefore = (await sandbox.StatsAsync()).GetProperty("calls").GetInt64();
        await Task.Delay(TimeSpan.FromSeconds(throughputSeconds));
        var stats = await sandbox.StatsAsync();
        var perSecond = (stats.GetProperty("calls").GetInt64() - callsBefore) / Stopwatch.GetElapsedTime(from).TotalSeconds;

        var target = latencyMs + 10;
        return string.Create(CultureInfo.InvariantCulture,
            $"| {config.Name} | {instances} | {waiting:N0} | {reference.P50:0.0} / {reference.P99:0.0} | {login.P50:0.0} | {login.P99:0.0} | {login.Max:0.0} | {login.P99 - reference.P99:+0.0;-0.0} | {(login.P99 <= target ? "met" : "missed")} | {(login.P99 <= reference.P99 + 10 ? "met" : "missed")} | {ok}/{queued} | {perSecond:0.00} / {config.Rate} = {perSecond / config.Rate:0.000} | {(perSecond / config.Rate >= 0.95 ? "met" : "missed")} | {stats.GetProperty("maxCallsInAnySecond").GetInt32()} | {stats.GetProperty("maxConcurrent").GetInt32()} |");
    }

    private static string Report(string storage, int users, int latencyMs, int logins, int throughputSeconds, List<string> rows, string[] args)
    {
        var cpu = File.Exists("/proc/cpuinfo")
            ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim()
            : null;
        var load = File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Split(' ')[0] : "?";
        var command = "dotnet run -c Release --project bench/BalanceSync --" + string.Concat(args.Select((a, i) =>
            a.StartsWith("Host=", StringComparison.Ordinal) ? " \"$TALLY_TEST_POSTGRES\""
            : i > 0 && args[i - 1] == "--redis" ? " \"$TALLY_TEST_REDIS\""
            : " " + a));
        return $"""
            ## Balance sync: login latency while {users:N0} background syncs wait, and background throughput

            **{DateTime.UtcNow:yyyy-MM-dd}**, {Environment.ProcessorCount} cores ({cpu ?? "unknown CPU"}), {Environment.OSVersion}, .NET {Environment.Version}, Release; load average {load} at the end.
            {storage}; the sandbox core in its own process, fixed latency L = {latencyMs} ms (no jitter); Tally with its default runtime settings (workstation GC).

            Command: `{command}`

            Login: {logins} logins (after 20 warm-up), one at a time at random moments 50-250 ms apart, each for a user waiting
            in the background lane (so each is a promotion), timed end to end over HTTP. Reference: between the logins, a direct
            call to an identical sandbox in a third process, so it sees the machine at the same moments. Targets: login
            p99 <= L + 10 ms (and, against the reference measured alongside, p99 <= ref p99 + 10 ms); background calls per
            second over {throughputSeconds} s with no logins >= 0.95 of the configured rate; the core's own count of calls in any
            second and in flight.

            | configuration | instances | waiting | ref p50 / p99 (ms) | login p50 (ms) | login p99 (ms) | max (ms) | p99 - ref p99 | p99 <= L + 10 | p99 <= ref p99 + 10 | ok/queued | background rate / limit | >= 0.95 | max calls in any 1 s | max in flight |
            |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
            {string.Join("\n", rows)}

            """;
    }

    private static async Task<long> StatusAsync(HttpClient http)
    {
        var status = JsonDocument.Parse(await http.GetStringAsync("/api/sync/status")).RootElement;
        return status.GetProperty("background").GetInt64();
    }

    private static HttpRequestMessage Post(string path, Guid user, string role)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, path);
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Auth.CreateToken(SigningKey, user, [role], TimeSpan.FromHours(2)));
        return request;
    }

    private static async Task<List<Guid>> InsertUsersAsync(IServiceProvider services, int count)
    {
        var dbs = services.GetRequiredService<IDbContextFactory<TallyDb>>();
        var now = DateTime.UtcNow;
        var ids = new List<Guid>(count);
        for (var start = 0; start < count; start += 10_000)
        {
            await using var db = await dbs.CreateDbContextAsync();
            db.ChangeTracker.AutoDetectChangesEnabled = false;
            for (var i = start; i < Math.Min(count, start + 10_000); i++)
            {
                var id = Guid.CreateVersion7();
                ids.Add(id);
                db.Users.Add(new User { Id = id, Username = $"bench-{id:N}", Context = UserContexts.MobileBanking, CustomerNumber = $"{i}", IsActive = true, CreatedAt = now });
                db.CoreAccounts.Add(new CoreAccount
                {
                    Id = Guid.CreateVersion7(),
                    UserId = id,
                    AccountNumber = $"BENCH-{i:D7}",
                    AccountType = "SAVINGS",
                    IsPrimary = true,
                    IsActive = true,
                    Currency = "USD",
                    CreatedAt = now,
                    UpdatedAt = now,
                });
            }
            await db.SaveChangesAsync();
        }
        return ids;
    }

    /// <summary>The sandbox core's own process: its arrival times are not bunched by Tally's pauses.</summary>
    private static async Task<int> ServeSandboxAsync(int latencyMs, string portFile)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Sandbox:Enabled"] = "true",
            ["Sandbox:T24:LatencyMs"] = latencyMs.ToString(CultureInfo.InvariantCulture),
            ["Sandbox:T24:JitterMs"] = "0",
        });
        builder.AddSandbox();
        await using var app = builder.Build();
        app.MapSandbox();
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        await File.WriteAllTextAsync(portFile + ".tmp", $"{address}\n{app.Services.GetRequiredService<SandboxT24>().Settings.ApiKey}\n");
        File.Move(portFile + ".tmp", portFile);
        // Until the parent closes our standard input.
        await Console.In.ReadToEndAsync();
        await app.StopAsync();
        return 0;
    }

    /// <summary>A fresh database on the given server, so every run starts from the same data.</summary>
    private static async Task<string> NewPostgresDatabaseAsync(string server)
    {
        var builder = new Npgsql.NpgsqlConnectionStringBuilder(server);
        var name = $"bench_{Guid.NewGuid():N}";
        await using (var connection = new Npgsql.NpgsqlConnection(builder.ConnectionString))
        {
            await connection.OpenAsync();
            await using var create = new Npgsql.NpgsqlCommand($"CREATE DATABASE {name}", connection);
            await create.ExecuteNonQueryAsync();
        }
        builder.Database = name;
        return builder.ConnectionString;
    }

    private static async Task DropPostgresDatabaseAsync(string server, string database)
    {
        var name = new Npgsql.NpgsqlConnectionStringBuilder(database).Database;
        await using var connection = new Npgsql.NpgsqlConnection(server);
        await connection.OpenAsync();
        await using var drop = new Npgsql.NpgsqlCommand($"DROP DATABASE IF EXISTS {name} WITH (FORCE)", connection);
        await drop.ExecuteNonQueryAsync();
    }

    private static Config ParseConfig(string text)
    {
        var parts = text.Split(':').Select(p => int.Parse(p, CultureInfo.InvariantCulture)).ToArray();
        var workers = parts.Length > 3 ? parts[3] : 0;
        return new Config($"{parts[0]}/s, {parts[1]} call{(parts[1] == 1 ? "" : "s")} at a time, reserve {parts[2]}{(workers > 0 ? $", {workers} workers" : "")}",
            parts[0], parts[1], parts[2], workers);
    }

    private static string RepositoryRoot()
    {
        for (var folder = new DirectoryInfo(AppContext.BaseDirectory); folder is not null; folder = folder.Parent)
        {
            if (File.Exists(Path.Combine(folder.FullName, "Tally.slnx")))
            {
                return folder.FullName;
            }
        }
        throw new InvalidOperationException("Run the benchmark from within the repository (Tally.slnx not found above the binaries).");
    }

    private static int IntArg(string[] args, string name, int fallback)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], CultureInfo.InvariantCulture) : fallback;
    }

    private static string? StringArg(string[] args, string name)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }

    private sealed record Stats(double P50, double P90, double P95, double P99, double Max)
    {
        public static Stats Of(List<double> times)
        {
            var sorted = times.Order().ToList();
            double At(double q) => sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(q * sorted.Count) - 1)];
            return new Stats(At(0.50), At(0.90), At(0.95), At(0.99), sorted[^1]);
        }
    }

    /// <summary>The sandbox core in a child process (this program with <c>sandbox LATENCY PORTFILE</c>), read over HTTP.</summary>
    private sealed class SandboxProcess : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly HttpClient _http = new();

        private SandboxProcess(Process process, string baseUrl, string apiKey)
        {
            _process = process;
            BaseUrl = baseUrl;
            ApiKey = apiKey;
        }

        public string BaseUrl { get; }
        public string ApiKey { get; }

        public static async Task<SandboxProcess> StartAsync(int latencyMs)
        {
            var portFile = Path.Combine(Path.GetTempPath(), $"tally-bench-sandbox-{Guid.NewGuid():N}");
            var self = Environment.ProcessPath!;
            var start = new ProcessStartInfo(self) { RedirectStandardInput = true, UseShellExecute = false };
            if (Path.GetFileNameWithoutExtension(self) == "dotnet")
            {
                start.ArgumentList.Add(typeof(BalanceSyncBench).Assembly.Location);
            }
            start.ArgumentList.Add("sandbox");
            start.ArgumentList.Add(latencyMs.ToString(CultureInfo.InvariantCulture));
            start.ArgumentList.Add(portFile);
            var process = Process.Start(start)!;
            for (var i = 0; i < 600 && !File.Exists(portFile); i++)
            {
                await Task.Delay(100);
            }
            var lines = await File.ReadAllLinesAsync(portFile);
            File.Delete(portFile);
            return new SandboxProcess(process, $"{lines[0]}/sandbox/t24", lines[1]);
        }

        public async Task<JsonElement> StatsAsync() => JsonDocument.Parse(await _http.GetStringAsync($"{BaseUrl}/_stats")).RootElement;

        public async Task ResetAsync()
        {
            using var response = await _http.PostAsync($"{BaseUrl}/_reset", null);
            response.EnsureSuccessStatusCode();
        }

        public async ValueTask DisposeAsync()
        {
            _process.StandardInput.Close();
            await _process.WaitForExitAsync();
            _process.Dispose();
            _http.Dispose();
        }
    }

    /// <summary>Every instance of one fleet, stopped together.</summary>
    private sealed class Fleet(List<TallyHost> hosts) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            foreach (var host in hosts)
            {
                await host.DisposeAsync();
            }
        }
    }

    private sealed class Disposables(IEnumerable<IDisposable> all) : IDisposable
    {
        public void Dispose()
        {
            foreach (var one in all)
            {
                one.Dispose();
            }
        }
    }

    /// <summary>Tally on a real Kestrel port (127.0.0.1, any free port), configured as an operator would.</summary>
    private sealed class TallyHost : WebApplicationFactory<global::Program>
    {
        private readonly Dictionary<string, string?> _settings;

        public TallyHost(string database, bool postgres, SandboxProcess sandbox, Config config, string instanceId, string? redis)
        {
            _settings = new Dictionary<string, string?>
            {
                ["Tally:InstanceId"] = instanceId,
                ["Redis:Url"] = redis,
                [postgres ? "ConnectionStrings:Postgres" : "ConnectionStrings:Sqlite"] = database,
                ["Auth:SigningKey"] = SigningKey,
                ["Tally:DemoData"] = "false",
                ["Sandbox:Enabled"] = "false",
                ["T24:BaseUrl"] = sandbox.BaseUrl,
                ["T24:ApiKey"] = sandbox.ApiKey,
                ["Jobs:balance-sync.enqueue-all:Enabled"] = "false",
                ["AUTH_SYNC_TIMEOUT"] = "2000",
                ["RateLimits:t24:PermitsPerSecond"] = config.Rate.ToString(CultureInfo.InvariantCulture),
                ["BalanceSync:MaxConcurrentCalls"] = config.MaxCalls.ToString(CultureInfo.InvariantCulture),
                ["BalanceSync:PriorityReserve"] = config.Reserve.ToString(CultureInfo.InvariantCulture),
                ["BalanceSync:BackgroundWorkers"] = config.Workers.ToString(CultureInfo.InvariantCulture),
                ["Logging:LogLevel:Default"] = "Warning",
                ["Logging:LogLevel:Microsoft.EntityFrameworkCore"] = "None",
            };
            UseKestrel(0);
        }

        protected override void ConfigureWebHost(IWebHostBuilder builder)
        {
            builder.UseEnvironment("Production");
            foreach (var (key, value) in _settings)
            {
                builder.UseSetting(key, value);
            }
        }
    }
}
