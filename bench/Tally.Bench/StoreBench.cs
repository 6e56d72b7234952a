using System.Diagnostics;
using System.Globalization;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using Tally.Data;
using Tally.Features.StoreIntegrity;

namespace Tally.Bench;

/// <summary>
/// <c>store</c>: the has_orders repair over 1,000,000 store accounts and 5,000,000 orders with 5
/// accounts out of sync, against the seed's shape (every unflagged account looked up one query at a
/// time) on the same data in the same run.
/// </summary>
/// <remarks>
/// The data: account i (1..N) is in one of three groups by <c>i % 50</c>.
/// <list type="bullet">
/// <item>0: active, <c>has_orders = false</c>, rightly so: all their orders are of a non-managed type
///   (2%, the accounts both methods must look at and leave alone).</item>
/// <item>25: inactive, <c>has_orders = false</c>, with active managed orders: never repaired (2%).</item>
/// <item>otherwise: active, <c>has_orders = true</c>.</item>
/// </list>
/// Orders: account ((j-1) mod N)+1 sells order j, so every account sells about five; the buyer is
/// spread over all accounts by a multiplicative step; 10% cancelled; 20% one-off, 20% annual, 60%
/// monthly managed. Five accounts of the first group get one extra active managed order each
/// (three as seller, two as buyer): those are out of sync.
/// </remarks>
public static class StoreBench
{
    private static readonly string[] ManagedTypes = ["managed_subscription", "managed_subscription_annual"];

    public static async Task<int> RunAsync(string[] args, CancellationToken ct)
    {
        var options = Options.Parse(args);
        if (options is null)
        {
            await Console.Error.WriteLineAsync(
                "Usage: store --postgres CONNECTION_STRING [--accounts 1000000] [--orders 5000000] [--runs 7] [--loop-runs 3] [--explain] [--keep]");
            return 2;
        }

        var server = new NpgsqlConnectionStringBuilder(options.Postgres);
        var database = $"tally_bench_store_{DateTime.UtcNow:yyyyMMddHHmmss}";
        await ExecuteAsync(server.ConnectionString, $"CREATE DATABASE {database}", ct);
        var bench = new NpgsqlConnectionStringBuilder(options.Postgres) { Database = database, CommandTimeout = 0 }.ConnectionString;
        try
        {
            var storage = new StorageSettings(StorageProvider.Postgres, bench);
            await Migrator.ApplyAsync(storage, NullLogger.Instance, ct);

            var load = Stopwatch.StartNew();
            var outOfSync = await LoadAsync(bench, options.Accounts, options.Orders, ct);
            Console.WriteLine($"loaded {options.Accounts:N0} accounts and {options.Orders:N0} orders in {load.Elapsed.TotalSeconds:F0} s; "
                + $"{await ScalarAsync(bench, "SELECT count(*) FROM store_accounts WHERE active AND NOT has_orders", ct):N0} active accounts with has_orders = false, {outOfSync.Length} of them out of sync");

            var dbOptions = new DbContextOptionsBuilder<TallyDb>();
            DataSetup.Configure(dbOptions, storage);
            var setBased = new List<double>();
            for (var run = 0; run <= options.Runs; run++)
            {
                await ResetAsync(bench, outOfSync, ct);
                await using var db = new TallyDb(dbOptions.Options);
                var clock = Stopwatch.StartNew();
                var repaired = await RepairHasOrders.RepairAsync(db, ManagedTypes, ct);
                var seconds = clock.Elapsed.TotalSeconds;
                Expect(repaired, outOfSync, "set-based");
                if (run > 0) // run 0 warms EF's model and query cache and is not counted
                {
                    setBased.Add(seconds);
                }
            }

            var loop = new List<double>();
            for (var run = 0; run < options.LoopRuns; run++)
            {
                await ResetAsync(bench, outOfSync, ct);
                var clock = Stopwatch.StartNew();
                var repaired = await PerAccountLoopAsync(bench, ct);
                loop.Add(clock.Elapsed.TotalSeconds);
                Expect(repaired, outOfSync, "per-account loop");
            }

            if (options.Explain)
            {
                await ResetAsync(bench, outOfSync, ct);
                await ExplainAsync(bench, ct);
            }

            var (setMedian, loopMedian) = (Median(setBased), Median(loop));
            Console.WriteLine($"set-based runs (s): {string.Join(" ", setBased.Select(Format))}");
            Console.WriteLine($"per-account loop runs (s): {string.Join(" ", loop.Select(Format))}");
            Console.WriteLine(FormattableString.Invariant(
                $"store.sync-accounts: set-based {Format(setMedian)} s, per-account loop {Format(loopMedian)} s, ratio {loopMedian / setMedian:F0}x (target: set-based < 1 s{(setMedian < 1 ? ", met" : ", NOT met")})"));
            return setMedian < 1 ? 0 : 1;
        }
        finally
        {
            NpgsqlConnection.ClearAllPools();
            if (options.Keep)
            {
                Console.WriteLine($"kept database {database}");
            }
            else
            {
                await ExecuteAsync(server.ConnectionString, $"DROP DATABASE IF EXISTS {database} WITH (FORCE)", CancellationToken.None);
            }
        }
    }

    /// <summary>Loads the data set server-side (generate_series) and answers the ids of the out-of-sync accounts.</summary>
    private static async Task<Guid[]> LoadAsync(string connectionString, int accounts, int orders, CancellationToken ct)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync(ct);
        await RunAsync(connection, """
            CREATE FUNCTION pg_temp.account_id(i bigint) RETURNS uuid LANGUAGE sql IMMUTABLE
            AS $$ SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(i), 12, '0'))::uuid $$
            """, ct);
        await RunAsync(connection, $"""
            INSERT INTO store_accounts (id, active, has_orders, created_at)
            SELECT pg_temp.account_id(i), i % 50 <> 25, i % 50 NOT IN (0, 25), now()
            FROM generate_series(1, {accounts}) AS i
            """, ct);
        await RunAsync(connection, $"""
            INSERT INTO store_orders (id, seller_account, buyer_account, status, product_type, metadata, created_at)
            SELECT pg_temp.account_id(1000000000 + j), pg_temp.account_id(s), pg_temp.account_id(b),
                   CASE WHEN j % 10 = 0 THEN 'cancelled' ELSE 'active' END,
                   CASE WHEN s % 50 = 0 OR b % 50 = 0 OR j % 5 = 0 THEN 'one_off'
                        WHEN j % 5 = 1 THEN 'managed_subscription_annual'
                        ELSE 'managed_subscription' END,
                   NULL, now()
            FROM (SELECT j, (j - 1) % {accounts} + 1 AS s, (j * 7919) % {accounts} + 1 AS b
                  FROM generate_series(1::bigint, {orders - 5}) AS j) AS g
            """, ct);

        // Five accounts of the "rightly unflagged" group (i % 50 = 0) spread over the id range.
        var step = accounts / 50 / 5;
        var stale = Enumerable.Range(0, 5).Select(k => 50L * (1 + (k * step))).ToArray();
        for (var k = 0; k < stale.Length; k++)
        {
            var (seller, buyer) = k < 3 ? (stale[k], stale[k] + 1) : (stale[k] + 1, stale[k]);
            await RunAsync(connection, $$"""
                INSERT INTO store_orders (id, seller_account, buyer_account, status, product_type, metadata, created_at)
                VALUES (pg_temp.account_id({{2000000000 + k}}), pg_temp.account_id({{seller}}), pg_temp.account_id({{buyer}}),
                        'active', 'managed_subscription', '{"source":"bench"}', now())
                """, ct);
        }
        await RunAsync(connection, "RESET session_replication_role", ct);
        await RunAsync(connection, "VACUUM ANALYZE store_accounts", ct);
        await RunAsync(connection, "VACUUM ANALYZE store_orders", ct);

        await using var ids = new NpgsqlCommand($"SELECT pg_temp.account_id(i) FROM unnest(ARRAY[{string.Join(",", stale)}]::bigint[]) AS i", connection);
        var result = new List<Guid>();
        await using (var reader = await ids.ExecuteReaderAsync(ct))
        {
            while (await reader.ReadAsync(ct))
            {
                result.Add(reader.GetGuid(0));
            }
        }
        return [.. result.Order()];
    }

    /// <summary>
    /// The seed's shape: fetch every active account with has_orders = false, look up one active
    /// managed order per account (one query each, prepared, on the same indexes), then update the
    /// ones found.
    /// </summary>
    private static async Task<List<Guid>> PerAccountLoopAsync(string connectionString, CancellationToken ct)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync(ct);
        var candidates = new List<Guid>();
        await using (var find = new NpgsqlCommand("SELECT id FROM store_accounts WHERE active AND NOT has_orders", connection))
        await using (var reader = await find.ExecuteReaderAsync(ct))
        {
            while (await reader.ReadAsync(ct))
            {
                candidates.Add(reader.GetGuid(0));
            }
        }

        var found = new List<Guid>();
        await using (var lookup = new NpgsqlCommand(
            "SELECT 1 FROM store_orders WHERE status = 'active' AND product_type = ANY ($1) AND (seller_account = $2 OR buyer_account = $2) LIMIT 1",
            connection))
        {
            lookup.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = ManagedTypes });
            var account = new NpgsqlParameter<Guid>();
            lookup.Parameters.Add(account);
            await lookup.PrepareAsync(ct);
            foreach (var id in candidates)
            {
                account.TypedValue = id;
                if (await lookup.ExecuteScalarAsync(ct) is not null)
                {
                    found.Add(id);
                }
            }
        }

        await using var update = new NpgsqlCommand("UPDATE store_accounts SET has_orders = true WHERE id = ANY ($1)", connection);
        update.Parameters.Add(new NpgsqlParameter<Guid[]> { TypedValue = [.. found] });
        await update.ExecuteNonQueryAsync(ct);
        return [.. found.Order()];
    }

    private static async Task ExplainAsync(string connectionString, CancellationToken ct)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync(ct);
        await using var tx = await connection.BeginTransactionAsync(ct);
        await using var explain = new NpgsqlCommand(
            "EXPLAIN (ANALYZE, BUFFERS) " + string.Format(CultureInfo.InvariantCulture, StoreSql.Postgres.RepairFlags, "$1"), connection, tx);
        explain.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = ManagedTypes });
        Console.WriteLine("EXPLAIN (ANALYZE, BUFFERS) of the repair statement:");
        await using (var reader = await explain.ExecuteReaderAsync(ct))
        {
            while (await reader.ReadAsync(ct))
            {
                Console.WriteLine("  " + reader.GetString(0));
            }
        }
        await tx.RollbackAsync(ct);
    }

    private static async Task ResetAsync(string connectionString, Guid[] outOfSync, CancellationToken ct)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync(ct);
        await using var reset = new NpgsqlCommand("UPDATE store_accounts SET has_orders = false WHERE id = ANY ($1)", connection);
        reset.Parameters.Add(new NpgsqlParameter<Guid[]> { TypedValue = outOfSync });
        await reset.ExecuteNonQueryAsync(ct);
    }

    private static void Expect(List<Guid> repaired, Guid[] outOfSync, string method)
    {
        if (!repaired.SequenceEqual(outOfSync))
        {
            throw new InvalidOperationException($"{method} repaired {repaired.Count} accounts, expected exactly the {outOfSync.Length} out of sync.");
        }
    }

    private static async Task ExecuteAsync(string connectionString, string sql, CancellationToken ct)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync(ct);
        await RunAsync(connection, sql, ct);
    }

    private static async Task RunAsync(NpgsqlConnection connection, string sql, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(sql, connection) { CommandTimeout = 0 };
        await command.ExecuteNonQueryAsync(ct);
    }

    private static async Task<long> ScalarAsync(string connectionString, string sql, CancellationToken ct)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync(ct);
        await using var command = new NpgsqlCommand(sql, connection);
        return Convert.ToInt64(await command.ExecuteScalarAsync(ct), CultureInfo.InvariantCulture);
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[(sorted.Count / 2) - 1] + sorted[sorted.Count / 2]) / 2;
    }

    private static string Format(double seconds) => seconds.ToString(seconds < 1 ? "F3" : "F2", CultureInfo.InvariantCulture);

    private sealed record Options(string Postgres, int Accounts, int Orders, int Runs, int LoopRuns, bool Explain, bool Keep)
    {
        public static Options? Parse(string[] args)
        {
            var options = new Options("", 1_000_000, 5_000_000, 7, 3, false, false);
            for (var i = 0; i < args.Length; i++)
            {
                string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
                options = args[i] switch
                {
                    "--postgres" => options with { Postgres = Next() },
                    "--accounts" => options with { Accounts = int.Parse(Next(), CultureInfo.InvariantCulture) },
                    "--orders" => options with { Orders = int.Parse(Next(), CultureInfo.InvariantCulture) },
                    "--runs" => options with { Runs = int.Parse(Next(), CultureInfo.InvariantCulture) },
                    "--loop-runs" => options with { LoopRuns = int.Parse(Next(), CultureInfo.InvariantCulture) },
                    "--explain" => options with { Explain = true },
                    "--keep" => options with { Keep = true },
                    _ => null,
                };
                if (options is null)
                {
                    return null;
                }
            }
            return string.IsNullOrWhiteSpace(options.Postgres) || options.Accounts < 1000 || options.Orders < 1000 || options.Runs < 1 || options.LoopRuns < 1
                ? null
                : options;
        }
    }
}
