using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Tally.Jobs;
using Tally.Jobs.Queues;
using Tally.Tests.Harness;

namespace Tally.Tests.Jobs;

/// <summary>
/// A test queue whose handler answers by a script and remembers every delivery it saw, with when.
/// Each instance has its own queue name, so tests on a shared broker never see each other's messages;
/// disposing it (after the app) removes that queue's RabbitMQ topology.
/// </summary>
public sealed class ScriptedQueue(Func<QueueMessage, JobOutcome> decide, int maxRetries = 3, int retryDelayMs = 300) : IAsyncDisposable
{
    private bool _onBroker;

    public string Name { get; } = $"test.{Guid.NewGuid():N}";

    /// <summary>The allowance queue of this test's app, kept apart from other tests' apps on the shared broker.</summary>
    public string AllowanceQueue => $"{Name}.allowances";

    public QueueDefinition Definition => new(Name, maxRetries, TimeSpan.FromMilliseconds(retryDelayMs));

    public ConcurrentQueue<Seen> Deliveries { get; } = new();

    public sealed record Seen(QueueMessage Message, long Timestamp);

    internal JobOutcome Decide(QueueMessage message)
    {
        Deliveries.Enqueue(new Seen(message, Stopwatch.GetTimestamp()));
        return decide(message);
    }

    public void Register(IServiceCollection services)
    {
        services.AddSingleton(this);
        services.AddQueueHandler<ScriptedHandler>(_ => Definition);
    }

    /// <summary>
    /// An app on the named transport: "inprocess" runs on SQLite, "rabbitmq" on PostgreSQL and the test
    /// RabbitMQ server, both real; "rabbitmq-quorum" the same with quorum queues.
    /// </summary>
    public async Task<TallyApp> StartAppAsync(string transport, IDictionary<string, string?>? settings = null)
    {
        switch (transport)
        {
            case "inprocess":
                return TallyApp.Sqlite(settings, Register);
            case "rabbitmq" or "rabbitmq-quorum":
                var all = new Dictionary<string, string?>(settings ?? new Dictionary<string, string?>())
                {
                    ["RabbitMq:Url"] = Servers.RequireRabbitMq(),
                    ["RabbitMq:QueueType"] = transport == "rabbitmq-quorum" ? RabbitMqOptions.QuorumQueues : RabbitMqOptions.ClassicQueues,
                    // The app's own queues too: apps of parallel tests share the broker, never a queue.
                    ["Allowances:QueueName"] = AllowanceQueue,
                };
                _onBroker = true;
                return TallyApp.Postgres(await Servers.NewPostgresDatabaseAsync(), all, Register);
            default:
                throw new ArgumentOutOfRangeException(nameof(transport), transport, null);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_onBroker)
        {
            await using var broker = await TestBroker.ConnectAsync();
            await broker.DeleteTopologyAsync(Name);
            await broker.DeleteTopologyAsync(AllowanceQueue);
        }
    }
}

public sealed class ScriptedHandler(ScriptedQueue script) : IQueueHandler
{
    public Task<JobOutcome> HandleAsync(QueueMessage message, CancellationToken ct) => Task.FromResult(script.Decide(message));
}
