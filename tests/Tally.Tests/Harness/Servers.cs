using Npgsql;

namespace Tally.Tests.Harness;

/// <summary>
/// The real servers the test command starts (scripts/test.sh exports their addresses). Run by hand
/// without them, a server test skips with a message saying so; under the test command or CI a
/// missing server is a failure, never a silent skip.
/// </summary>
public static class Servers
{
    public static string? PostgresUrl => Environment.GetEnvironmentVariable("TALLY_TEST_POSTGRES");
    public static string? RedisUrl => Environment.GetEnvironmentVariable("TALLY_TEST_REDIS");
    public static string? RabbitMqUrl => Environment.GetEnvironmentVariable("TALLY_TEST_RABBITMQ");
    public static string? ServersScript => Environment.GetEnvironmentVariable("TALLY_TEST_SERVERS_SCRIPT");
    public static string? ServersDir => Environment.GetEnvironmentVariable("TALLY_TEST_SERVERS_DIR");

    private static bool Required =>
        Environment.GetEnvironmentVariable("TALLY_TEST_REQUIRE_SERVERS") == "1"
        || string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    public static string RequirePostgres() => Require(PostgresUrl, "PostgreSQL", "TALLY_TEST_POSTGRES");

    public static string RequireRedis() => Require(RedisUrl, "Redis", "TALLY_TEST_REDIS");

    public static string RequireRabbitMq() => Require(RabbitMqUrl, "RabbitMQ", "TALLY_TEST_RABBITMQ");

    /// <summary>Debian's Chromium (package <c>chromium</c>, which the test command installs), or <c>TALLY_TEST_CHROMIUM</c>.</summary>
    public static string RequireChromium() => Require(
        Environment.GetEnvironmentVariable("TALLY_TEST_CHROMIUM") is { Length: > 0 } path ? path : File.Exists("/usr/bin/chromium") ? "/usr/bin/chromium" : null,
        "Chromium", "TALLY_TEST_CHROMIUM");

    private static string Require(string? value, string server, string variable)
    {
        if (!string.IsNullOrWhiteSpace(value))
        {
            return value;
        }
        if (Required)
        {
            throw new InvalidOperationException($"{server} is required here but {variable} is not set.");
        }
        Assert.Skip($"{server} not available ({variable} unset): run scripts/test.sh to start the servers.");
        return null!;
    }

    /// <summary>A fresh, empty PostgreSQL database for one test; dropped by nobody (the server's folder is temporary).</summary>
    public static async Task<string> NewPostgresDatabaseAsync()
    {
        var admin = new NpgsqlConnectionStringBuilder(RequirePostgres());
        var name = $"t_{Guid.NewGuid():N}";
        await using (var connection = new NpgsqlConnection(admin.ConnectionString))
        {
            await connection.OpenAsync();
            await using var create = new NpgsqlCommand($"CREATE DATABASE {name}", connection);
            await create.ExecuteNonQueryAsync();
        }
        admin.Database = name;
        return admin.ConnectionString;
    }

    /// <summary>Runs <c>servers.sh SUBCOMMAND DIR</c> (restart-postgres, restart-rabbitmq) and waits for it.</summary>
    public static async Task RunServersScriptAsync(string subcommand)
    {
        var script = ServersScript ?? throw new InvalidOperationException("TALLY_TEST_SERVERS_SCRIPT is not set.");
        using var process = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("bash", [script, subcommand, ServersDir!])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        var stderr = process.StandardError.ReadToEndAsync();
        await process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"servers.sh {subcommand} failed: {await stderr}");
        }
    }
}
