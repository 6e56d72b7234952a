using System.Diagnostics;

namespace Tally.Tests.Harness;

/// <summary>
/// Tally as a real operating-system process (the build's Tally.dll), for tests that must kill it
/// with SIGKILL mid-work. Settings become environment variables exactly as an operator sets them.
/// </summary>
public sealed class TallyProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly string _log;

    private TallyProcess(Process process, string log, string name)
    {
        _process = process;
        _log = log;
        Name = name;
    }

    public string Name { get; }

    public bool HasExited => _process.HasExited;

    public static TallyProcess Start(string name, IDictionary<string, string?> settings)
    {
        var log = Path.Combine(Path.GetTempPath(), $"tally-{name}-{Guid.NewGuid():N}.log");
        var start = new ProcessStartInfo("dotnet", [Path.Combine(AppContext.BaseDirectory, "Tally.dll"), "--urls", "http://127.0.0.1:0"])
        {
            WorkingDirectory = AppContext.BaseDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.Environment["ASPNETCORE_ENVIRONMENT"] = "Testing";
        start.Environment["Auth__SigningKey"] = TallyApp.SigningKey;
        start.Environment["T24__BaseUrl"] = TallyApp.NoCore;
        start.Environment["Tally__InstanceId"] = name;
        start.Environment["Logging__LogLevel__Default"] = "Warning";
        start.Environment["Logging__LogLevel__Microsoft.EntityFrameworkCore"] = "None";
        foreach (var (key, value) in settings)
        {
            start.Environment[key.Replace(":", "__", StringComparison.Ordinal)] = value;
        }
        return Launch(start, log, name);
    }

    /// <summary>
    /// Tally with exactly <paramref name="environment"/> as its settings, as a container or a unit would
    /// start it: no test defaults, and none of the Tally or ASP.NET Core settings this process happens
    /// to carry. The environment names the listening address (<c>ASPNETCORE_URLS</c> or <c>_HTTP_PORTS</c>).
    /// </summary>
    public static TallyProcess StartExactly(string name, IReadOnlyDictionary<string, string> environment)
    {
        var log = Path.Combine(Path.GetTempPath(), $"tally-{name}-{Guid.NewGuid():N}.log");
        var start = new ProcessStartInfo("dotnet", [Path.Combine(AppContext.BaseDirectory, "Tally.dll")])
        {
            WorkingDirectory = AppContext.BaseDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var inherited in start.Environment.Keys.Where(IsSetting).ToList())
        {
            start.Environment.Remove(inherited);
        }
        foreach (var (key, value) in environment)
        {
            start.Environment[key] = value;
        }
        return Launch(start, log, name);
    }

    private static bool IsSetting(string variable) =>
        variable.Contains("__", StringComparison.Ordinal)
        || variable.StartsWith("ASPNETCORE_", StringComparison.OrdinalIgnoreCase)
        || variable.Equals("DOTNET_ENVIRONMENT", StringComparison.OrdinalIgnoreCase);

    private static TallyProcess Launch(ProcessStartInfo start, string log, string name)
    {
        var process = Process.Start(start) ?? throw new InvalidOperationException("Could not start Tally.");
        var writer = new StreamWriter(log) { AutoFlush = true };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) { lock (writer) { writer.WriteLine(e.Data); } } };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) { lock (writer) { writer.WriteLine(e.Data); } } };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return new TallyProcess(process, log, name);
    }

    public int Pid => _process.Id;

    /// <summary>Waits for the process to end by itself; false if it still runs after <paramref name="timeout"/>.</summary>
    public async Task<bool> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    public int ExitCode => _process.ExitCode;

    /// <summary>SIGKILL: no shutdown hooks, no acks, no rollbacks but the database's own.</summary>
    public void Kill()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit(10_000);
        }
    }

    /// <summary>SIGTERM, as an orchestrator stops an instance: a graceful stop (Tally:ShutdownTimeout). True when it exited within <paramref name="timeout"/>.</summary>
    public async Task<bool> TerminateAsync(TimeSpan timeout)
    {
        if (_process.HasExited)
        {
            return true;
        }
        using (var kill = Process.Start("kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
        {
            await kill.WaitForExitAsync();
        }
        return await WaitForExitAsync(timeout);
    }

    public string Log() => File.Exists(_log) ? File.ReadAllText(_log) : "";

    public ValueTask DisposeAsync()
    {
        Kill();
        _process.Dispose();
        return ValueTask.CompletedTask;
    }
}
