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
        var process = Process.Start(start) ?? throw new InvalidOperationException("Could not start Tally.");
        var writer = new StreamWriter(log) { AutoFlush = true };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) { lock (writer) { writer.WriteLine(e.Data); } } };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) { lock (writer) { writer.WriteLine(e.Data); } } };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return new TallyProcess(process, log, name);
    }

    /// <summary>SIGKILL: no shutdown hooks, no acks, no rollbacks but the database's own.</summary>
    public void Kill()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit(10_000);
        }
    }

    public string Log() => File.Exists(_log) ? File.ReadAllText(_log) : "";

    public ValueTask DisposeAsync()
    {
        Kill();
        _process.Dispose();
        return ValueTask.CompletedTask;
    }
}
