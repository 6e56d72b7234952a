using System.Collections.Concurrent;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Tally.Tests.Harness;

/// <summary>
/// An in-memory logger provider: pass <c>logs.Register</c> as an app's test services, then assert on
/// <see cref="Entries"/>. Captures Tally's own categories from Information up, whatever the
/// app's configured levels (or from <paramref name="tallyLevel"/>), with each entry's structured fields
/// and the fields of the scopes it was logged in (<see cref="Entry.Scopes"/>, innermost last).
/// </summary>
public sealed class CapturedLogs(LogLevel tallyLevel = LogLevel.Information) : ILoggerProvider, ISupportExternalScope
{
    private readonly ConcurrentQueue<Entry> _entries = new();
    private IExternalScopeProvider _scopes = new LoggerExternalScopeProvider();

    public sealed record Entry(
        string Category, LogLevel Level, string Message, IReadOnlyDictionary<string, object?> Fields, Exception? Exception,
        IReadOnlyDictionary<string, object?> Scopes);

    public IReadOnlyList<Entry> Entries => [.. _entries];

    public IEnumerable<string> Messages(string categoryPrefix) =>
        Entries.Where(e => e.Category.StartsWith(categoryPrefix, StringComparison.Ordinal)).Select(e => e.Message);

    public void Register(IServiceCollection services)
    {
        services.AddSingleton<ILoggerProvider>(this);
        services.Configure<LoggerFilterOptions>(o => o
            .AddFilter<CapturedLogs>(null, LogLevel.Warning)
            .AddFilter<CapturedLogs>("Tally", tallyLevel));
    }

    public ILogger CreateLogger(string categoryName) => new Logger(categoryName, _entries, () => _scopes);

    public void SetScopeProvider(IExternalScopeProvider scopeProvider) => _scopes = scopeProvider;

    public void Dispose()
    {
    }

    private sealed class Logger(string category, ConcurrentQueue<Entry> entries, Func<IExternalScopeProvider> scopes) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => scopes().Push(state);

        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var fields = state is IEnumerable<KeyValuePair<string, object?>> pairs
                ? pairs.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal)
                : new Dictionary<string, object?>(StringComparer.Ordinal);
            var scoped = new Dictionary<string, object?>(StringComparer.Ordinal);
            scopes().ForEachScope(
                (scope, into) =>
                {
                    if (scope is IEnumerable<KeyValuePair<string, object?>> scopePairs)
                    {
                        foreach (var (key, value) in scopePairs)
                        {
                            into[key] = value;
                        }
                    }
                },
                scoped);
            entries.Enqueue(new Entry(category, logLevel, formatter(state, exception), fields, exception, scoped));
        }
    }
}
