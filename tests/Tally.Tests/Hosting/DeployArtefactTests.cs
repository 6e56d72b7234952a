using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using Tally.Tests.Harness;
using YamlDotNet.Core;
using YamlDotNet.Serialization;

namespace Tally.Tests.Hosting;

/// <summary>Tests that start Tally fleets as real processes: one at a time, never beside other tests (2 cores).</summary>
[CollectionDefinition(nameof(FleetProcesses), DisableParallelization = true)]
public sealed class FleetProcesses;

/// <summary>
/// deploy/ as files: the compose file parses, its Tally services carry their role and only settings
/// Tally has, and the systemd unit passes <c>systemd-analyze verify</c>. No container engine runs here.
/// </summary>
public class DeployArtefactTests
{
    [Fact]
    public void Compose_Parses_EachTallyServiceHasItsRole_AndOnlyKnownSettings()
    {
        var services = DeployFiles.ComposeServices();
        Assert.Equal(["api", "scheduler", "worker"], DeployFiles.TallyRoles.Where(services.ContainsKey).Order());
        foreach (var role in DeployFiles.TallyRoles)
        {
            var environment = DeployFiles.ComposeEnvironment(role);
            Assert.Equal(role, environment["Tally__Roles"]);
            Assert.Equal("Production", environment["ASPNETCORE_ENVIRONMENT"]);
            Assert.False(environment.ContainsKey("Sandbox__Enabled"), $"{role}: the sandbox stays off in Production");
            Assert.Contains("${TALLY_SIGNING_KEY", environment["Auth__SigningKey"], StringComparison.Ordinal);
            Assert.All(environment.Keys, key => Assert.True(Settings.IsKnown(key), $"compose service {role} sets {key}, which Tally does not read"));
        }
        Assert.All(DeployFiles.DockerfileEnvironment().Keys, key => Assert.True(Settings.IsKnown(key), $"the Dockerfile sets {key}, which Tally does not read"));
    }

    [Fact]
    public void Compose_TallyServices_WaitForHealthyServers_CheckReadiness_AndRunTwice()
    {
        var services = DeployFiles.ComposeServices();
        foreach (var server in new[] { "postgres", "rabbitmq", "redis" })
        {
            Assert.True(DeployFiles.Map(services[server]).ContainsKey("healthcheck"), $"{server} has no healthcheck");
        }
        foreach (var role in DeployFiles.TallyRoles)
        {
            var service = DeployFiles.Map(services[role]);
            var dependsOn = DeployFiles.Map(service["depends_on"]);
            foreach (var server in new[] { "postgres", "rabbitmq", "redis" })
            {
                Assert.Equal("service_healthy", DeployFiles.Map(dependsOn[server])["condition"]);
            }
            var check = string.Join(' ', (List<object>)DeployFiles.Map(service["healthcheck"])["test"]);
            Assert.Contains("/readyz", check, StringComparison.Ordinal);
            Assert.Equal("2", DeployFiles.Map(service["deploy"])["replicas"]);
        }
    }

    [Fact]
    public void SystemdEnvFiles_SetTheirRole_AndOnlyKnownSettings()
    {
        foreach (var role in DeployFiles.TallyRoles)
        {
            var environment = DeployFiles.UnitEnvironment(role);
            Assert.Equal(role, environment["Tally__Roles"]);
            Assert.Equal($"{Environment.MachineName}-{role}", environment["Tally__InstanceId"]);
            Assert.Equal("Production", environment["ASPNETCORE_ENVIRONMENT"]);
            Assert.False(environment.ContainsKey("Sandbox__Enabled"), $"{role}: the sandbox stays off in Production");
            Assert.True(environment.ContainsKey("Tally__ManagementPort"), $"{role}: no management port");
            Assert.All(environment.Keys, key => Assert.True(Settings.IsKnown(key), $"tally@{role} sets {key}, which Tally does not read"));
        }
    }

    [Theory]
    [InlineData("Tally__Roles", true)]
    [InlineData("Tally__ManagementPort", true)]
    [InlineData("T24__BaseUrl", true)]
    [InlineData("Sandbox__T24__LatencyMs", true)]
    [InlineData("StoreIntegrity__ManagedSubscriptionTypes__0", true)]
    [InlineData("Tally__Role", false)]
    [InlineData("T24__Url", false)]
    [InlineData("Talley__Roles", false)]
    [InlineData("ConnectionStrings__Postgress", false)]
    public void KnownSettings_AreTheOptionsProperties(string variable, bool known) => Assert.Equal(known, Settings.IsKnown(variable));

    /// <summary>
    /// <c>systemd-analyze verify</c> needs no systemd running (PID 1 here is not systemd). It checks the
    /// unit as <c>tally@api.service</c>, on a copy whose ExecStart is <c>/bin/true</c>: verify fails on a
    /// missing executable, and the published app is not installed here. It only warns about unknown
    /// keys and unparsable values, so any output fails the test too.
    /// </summary>
    [Fact]
    public async Task SystemdUnit_PassesSystemdAnalyzeVerify()
    {
        var unit = await File.ReadAllTextAsync(DeployFiles.Path("deploy/systemd/tally@.service"), TestContext.Current.CancellationToken);
        Assert.Contains("ExecStart=/usr/bin/dotnet /opt/tally/Tally.dll", unit, StringComparison.Ordinal);
        var folder = Directory.CreateTempSubdirectory("tally-unit-").FullName;
        var copy = System.IO.Path.Combine(folder, "tally@api.service");
        await File.WriteAllTextAsync(copy, unit.Replace("ExecStart=/usr/bin/dotnet /opt/tally/Tally.dll", "ExecStart=/bin/true", StringComparison.Ordinal), TestContext.Current.CancellationToken);

        var (code, output) = await DeployFiles.RunAsync("systemd-analyze", ["verify", "--man=no", copy], TimeSpan.FromSeconds(60));
        Assert.True(code == 0 && output.Length == 0, $"systemd-analyze verify exited {code}:\n{output}");

        // The check itself can fail: a misspelt key is reported.
        await File.WriteAllTextAsync(copy, unit.Replace("Type=exec", "Typ=exec", StringComparison.Ordinal).Replace("ExecStart=/usr/bin/dotnet /opt/tally/Tally.dll", "ExecStart=/bin/true", StringComparison.Ordinal), TestContext.Current.CancellationToken);
        (_, output) = await DeployFiles.RunAsync("systemd-analyze", ["verify", "--man=no", copy], TimeSpan.FromSeconds(60));
        Directory.Delete(folder, recursive: true);
        Assert.Contains("Unknown key", output, StringComparison.Ordinal);
    }
}

/// <summary>
/// Tally started as real processes with exactly the environment deploy/ gives each role (the servers'
/// addresses, the secrets and the ports put in for the placeholders): each comes up ready, and the
/// instance registry shows it with its roles.
/// </summary>
[Collection(nameof(FleetProcesses))]
public class DeployEnvironmentTests
{
    [Fact]
    public async Task ComposeServices_StartedWithTheirEnvironment_AreReady_WithTheirRoles()
    {
        var database = await Servers.NewPostgresDatabaseAsync();
        var image = DeployFiles.DockerfileEnvironment();
        await StartRolesAsync(database, role => DeployFiles.Overlay(image, DeployFiles.ComposeEnvironment(role)), "compose");
    }

    [Fact]
    public async Task SystemdUnits_StartedWithTheirEnvironment_AreReady_WithTheirRoles()
    {
        var database = await Servers.NewPostgresDatabaseAsync();
        await StartRolesAsync(database, DeployFiles.UnitEnvironment, "systemd");
    }

    private static async Task StartRolesAsync(string database, Func<string, Dictionary<string, string>> environmentOf, string source)
    {
        var started = new List<(string Role, TallyProcess Process, Uri Url)>();
        try
        {
            foreach (var role in DeployFiles.TallyRoles)
            {
                var port = Ports.Free();
                var environment = DeployFiles.ForThisMachine(environmentOf(role), database, port, Ports.Free());
                started.Add((role, TallyProcess.StartExactly($"{source}-{role}", environment), new Uri($"http://127.0.0.1:{port}")));
            }
            await Task.WhenAll(started.Select(s => Fleet.WaitReadyAsync(s.Process, s.Url)));

            var api = started.Single(s => s.Role == "api");
            var instances = await Fleet.InstancesAsync(api.Url, TallyApp.SigningKey);
            foreach (var (role, process, _) in started)
            {
                var id = source == "systemd" ? $"{Environment.MachineName}-{role}" : Fleet.DefaultInstanceId(process);
                Assert.True(instances.TryGetValue(id, out var instance), $"{id} is not registered: {string.Join(", ", instances.Keys)}");
                Assert.Equal([role], instance.Roles);
                Assert.True(instance.Alive);
            }
        }
        finally
        {
            foreach (var (_, process, _) in started)
            {
                await process.DisposeAsync();
            }
        }
    }
}

/// <summary>The files under deploy/, read as docker compose and systemd read them.</summary>
internal static class DeployFiles
{
    public static readonly string[] TallyRoles = ["api", "worker", "scheduler"];

    public static string Path(string relative)
    {
        for (var folder = new DirectoryInfo(AppContext.BaseDirectory); folder is not null; folder = folder.Parent)
        {
            if (File.Exists(System.IO.Path.Combine(folder.FullName, "Tally.slnx")))
            {
                return System.IO.Path.Combine(folder.FullName, relative);
            }
        }
        throw new InvalidOperationException("The repository root (Tally.slnx) is not above the test's folder.");
    }

    public static Dictionary<object, object> Map(object node) => (Dictionary<object, object>)node;

    /// <summary>compose.yaml's services, with YAML merge keys (<c>&lt;&lt;: *anchor</c>) applied as compose applies them.</summary>
    public static Dictionary<object, object> ComposeServices()
    {
        using var reader = new StringReader(File.ReadAllText(Path("deploy/compose.yaml")));
        var document = new DeserializerBuilder().Build().Deserialize<Dictionary<object, object>>(new MergingParser(new Parser(reader)));
        return Map(document["services"]);
    }

    public static Dictionary<string, string> ComposeEnvironment(string service) =>
        Map(Map(ComposeServices()[service])["environment"]).ToDictionary(e => (string)e.Key, e => (string)e.Value);

    /// <summary>The <c>ENV</c> of the Dockerfile's last stage: what every container starts with.</summary>
    public static Dictionary<string, string> DockerfileEnvironment()
    {
        var text = File.ReadAllText(Path("deploy/Dockerfile")).Replace("\\\n", " ", StringComparison.Ordinal);
        var lastStage = text[text.LastIndexOf("\nFROM ", StringComparison.Ordinal)..];
        return lastStage.Split('\n')
            .Where(line => line.StartsWith("ENV ", StringComparison.Ordinal))
            .SelectMany(line => line[4..].Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Select(pair => pair.Split('=', 2))
            .ToDictionary(kv => kv[0], kv => kv[1]);
    }

    /// <summary>
    /// tally@ROLE.service's environment as systemd builds it: the unit's <c>Environment=</c> lines (with
    /// %H and %i resolved), then each <c>EnvironmentFile=</c> in order, later ones winning. The files
    /// are the examples under deploy/systemd (common.env.example for /etc/tally/common.env).
    /// </summary>
    public static Dictionary<string, string> UnitEnvironment(string role)
    {
        var environment = new Dictionary<string, string>();
        foreach (var line in File.ReadLines(Path("deploy/systemd/tally@.service")).Select(l => l.Replace("%H", Environment.MachineName, StringComparison.Ordinal).Replace("%i", role, StringComparison.Ordinal)))
        {
            if (line.StartsWith("Environment=", StringComparison.Ordinal))
            {
                var pair = line["Environment=".Length..].Split('=', 2);
                environment[pair[0]] = pair[1];
            }
            else if (line.StartsWith("EnvironmentFile=", StringComparison.Ordinal))
            {
                var name = System.IO.Path.GetFileName(line["EnvironmentFile=".Length..]);
                var file = Path($"deploy/systemd/{name}");
                foreach (var (key, value) in ReadEnvFile(File.Exists(file) ? file : file + ".example"))
                {
                    environment[key] = value;
                }
            }
        }
        return environment;
    }

    private static IEnumerable<(string Key, string Value)> ReadEnvFile(string file) =>
        File.ReadLines(file)
            .Select(l => l.Trim())
            .Where(l => l.Length > 0 && !l.StartsWith('#'))
            .Select(l => l.Split('=', 2))
            .Select(kv => (kv[0], kv[1]));

    public static Dictionary<string, string> Overlay(Dictionary<string, string> under, Dictionary<string, string> over)
    {
        var all = new Dictionary<string, string>(under);
        foreach (var (key, value) in over)
        {
            all[key] = value;
        }
        return all;
    }

    /// <summary>
    /// The deployed environment with this machine's servers, a test secret and free ports put in for
    /// the placeholders; every other setting as deployed. Only settings the deployment itself sets are
    /// replaced, and no placeholder may be left.
    /// </summary>
    public static Dictionary<string, string> ForThisMachine(Dictionary<string, string> deployed, string database, int port, int managementPort)
    {
        var here = new Dictionary<string, string>
        {
            ["ConnectionStrings__Postgres"] = database,
            ["RabbitMq__Url"] = Servers.RequireRabbitMq(),
            ["Redis__Url"] = Servers.RequireRedis(),
            ["Auth__SigningKey"] = TallyApp.SigningKey,
            ["T24__BaseUrl"] = TallyApp.NoCore,
            ["T24__ApiKey"] = "test-core-key",
            ["Tally__ManagementPort"] = managementPort.ToString(CultureInfo.InvariantCulture),
            ["ASPNETCORE_URLS"] = $"http://127.0.0.1:{port}",
            ["ASPNETCORE_HTTP_PORTS"] = port.ToString(CultureInfo.InvariantCulture),
        };
        var environment = new Dictionary<string, string>(deployed);
        foreach (var (key, value) in here.Where(h => deployed.ContainsKey(h.Key)))
        {
            environment[key] = value;
        }
        Assert.True(environment.ContainsKey("ASPNETCORE_URLS") || environment.ContainsKey("ASPNETCORE_HTTP_PORTS"), "the deployment names no port");
        foreach (var (key, value) in environment)
        {
            Assert.False(value.Contains("${", StringComparison.Ordinal) || value.Contains("CHANGE_ME", StringComparison.Ordinal) || value.Contains(".example.", StringComparison.Ordinal),
                $"{key}={value} is a placeholder this test does not fill in");
        }
        return environment;
    }

    public static async Task<(int Code, string Output)> RunAsync(string command, string[] arguments, TimeSpan timeout)
    {
        var start = new ProcessStartInfo(command, arguments) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {command}.");
        using var cts = new CancellationTokenSource(timeout);
        var stdout = process.StandardOutput.ReadToEndAsync(cts.Token);
        var stderr = process.StandardError.ReadToEndAsync(cts.Token);
        await process.WaitForExitAsync(cts.Token);
        return (process.ExitCode, ((await stdout) + (await stderr)).Trim());
    }
}

/// <summary>
/// Whether an environment variable names a setting Tally reads: <c>__</c> is <c>:</c>, the first part
/// is an options class's <c>Section</c>, and every further part one of its properties (an index or a
/// key where the property is a list or a dictionary).
/// </summary>
internal static class Settings
{
    private static readonly HashSet<string> ReadByName = new(StringComparer.OrdinalIgnoreCase)
    {
        // ASP.NET Core's own
        "ASPNETCORE_ENVIRONMENT", "ASPNETCORE_URLS", "ASPNETCORE_HTTP_PORTS",
        // read by name, not bound to an options class (StorageSettings.From, JobRuntimeSetup)
        "ConnectionStrings:Postgres", "Redis:Url",
    };

    private static readonly Type[] OptionsTypes = [.. typeof(Program).Assembly.GetTypes().Where(t => SectionOf(t) is not null)];

    public static bool IsKnown(string variable)
    {
        var key = variable.Replace("__", ":", StringComparison.Ordinal);
        if (ReadByName.Contains(key))
        {
            return true;
        }
        var parts = key.Split(':');
        return parts.Length > 1 && OptionsTypes.Where(t => string.Equals(SectionOf(t), parts[0], StringComparison.OrdinalIgnoreCase)).Any(t => Has(t, parts[1..]));
    }

    private static string? SectionOf(Type type) =>
        type.GetField("Section", BindingFlags.Public | BindingFlags.Static) is { IsLiteral: true } field ? field.GetRawConstantValue() as string : null;

    private static bool Has(Type type, string[] path)
    {
        if (path.Length == 0)
        {
            return true;
        }
        type = Nullable.GetUnderlyingType(type) ?? type;
        if (type.IsArray)
        {
            return int.TryParse(path[0], CultureInfo.InvariantCulture, out _) && Has(type.GetElementType()!, path[1..]);
        }
        if (type.IsGenericType && type.GetInterfaces().Append(type).FirstOrDefault(i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(IDictionary<,>)) is { } dictionary)
        {
            return Has(dictionary.GetGenericArguments()[1], path[1..]);
        }
        if (type.IsGenericType && type.GetInterfaces().FirstOrDefault(i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(IList<>)) is { } list)
        {
            return int.TryParse(path[0], CultureInfo.InvariantCulture, out _) && Has(list.GetGenericArguments()[0], path[1..]);
        }
        var property = type.GetProperty(path[0], BindingFlags.Public | BindingFlags.Instance | BindingFlags.IgnoreCase);
        return property is not null && Has(property.PropertyType, path[1..]);
    }
}
