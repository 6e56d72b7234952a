using System.Diagnostics.Metrics;
using Tally.Hosting;

namespace Tally.Jobs.Queues;

public sealed record QueueRegistration(QueueDefinition Definition, Type HandlerType);

/// <summary>Every queue this deployable knows, whether or not this instance consumes it.</summary>
public sealed class QueueRegistry(IEnumerable<QueueRegistration> registrations)
{
    private readonly Dictionary<string, QueueRegistration> _byName = registrations.ToDictionary(r => r.Definition.Name, StringComparer.Ordinal);

    public IReadOnlyCollection<QueueRegistration> All => _byName.Values;

    public QueueRegistration? Find(string queue) => _byName.GetValueOrDefault(queue);
}

public static class QueueSetup
{
    /// <summary>Registers a queue and its handler. The queue is consumed on instances with the <c>worker</c> role.</summary>
    public static IServiceCollection AddQueueHandler<THandler>(this IServiceCollection services, Func<IServiceProvider, QueueDefinition> definition)
        where THandler : class, IQueueHandler
    {
        services.AddScoped<THandler>();
        services.AddSingleton(sp => new QueueRegistration(definition(sp), typeof(THandler)));
        return services;
    }
}

/// <summary>
/// Runs every registered queue's consumer on a worker instance. Each delivery is handled in its own
/// DI scope; an exception becomes a retry, never the end of the consumer.
/// </summary>
public sealed partial class QueueConsumerHost(
    QueueRegistry registry,
    IQueueTransport transport,
    DeadLetterStore deadLetters,
    IServiceProvider services,
    ILogger<QueueConsumerHost> logger) : BackgroundService
{
    private static readonly Meter Meter = new("Tally.Queues");
    private static readonly Counter<long> Outcomes = Meter.CreateCounter<long>("tally_queue_outcomes", description: "Handled messages by queue and action");

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Task.WhenAll(registry.All.Select(r => ConsumeForeverAsync(r, stoppingToken)));

    private async Task ConsumeForeverAsync(QueueRegistration registration, CancellationToken stoppingToken)
    {
        var queue = registration.Definition;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await transport.DeclareAsync(queue, stoppingToken);
                await transport.ConsumeAsync(queue, (m, ct) => HandleAsync(registration, m, ct), deadLetters.RecordAsync, stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                // Broker gone or channel closed: start again after a pause; unacked messages are redelivered.
                LogConsumerFailed(logger, e, queue.Name);
                await Task.Delay(TimeSpan.FromSeconds(2), stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }
    }

    internal async Task<DeliveryAction> HandleAsync(QueueRegistration registration, QueueMessage message, CancellationToken ct)
    {
        using var activity = QueueTracing.StartProcess(transport.Name, registration.Definition.Name, message);
        // Every line logged while handling it, in any category, names the message.
        using var logScope = MessageScope(logger, message.Id, registration.Definition.Name, message.Attempt);
        JobOutcome outcome;
        try
        {
            await using var scope = services.CreateAsyncScope();
            var handler = (IQueueHandler)scope.ServiceProvider.GetRequiredService(registration.HandlerType);
            outcome = await handler.HandleAsync(message, ct);
        }
        catch (Exception e) when (!ct.IsCancellationRequested)
        {
            LogHandlerThrew(logger, e, registration.Definition.Name, message.Id, message.Attempt);
            activity?.SetStatus(System.Diagnostics.ActivityStatusCode.Error, e.GetType().Name);
            outcome = JobOutcome.RetryLater($"{e.GetType().Name}: {e.Message}");
        }
        var action = DeliveryPolicy.Decide(outcome, message, registration.Definition);
        QueueTracing.RecordAction(activity, action);
        Outcomes.Add(1, new KeyValuePair<string, object?>("queue", registration.Definition.Name), new KeyValuePair<string, object?>("action", action.GetType().Name));
        if (action is DeliveryAction.DeadLetterAction dead)
        {
            LogDeadLettered(logger, registration.Definition.Name, message.Id, message.Attempt, dead.Reason);
        }
        if (action is DeliveryAction.SplitAction split)
        {
            foreach (var part in split.Parts)
            {
                if (part.Action is DeliveryAction.DeadLetterAction deadPart)
                {
                    LogDeadLettered(logger, registration.Definition.Name, part.Part.Id, part.Part.Attempt, deadPart.Reason);
                }
            }
        }
        return action;
    }

    private static readonly Func<ILogger, string, string, int, IDisposable?> MessageScope =
        LoggerMessage.DefineScope<string, string, int>("Message {MessageId} of {Queue}, attempt {Attempt}");

    [LoggerMessage(Level = LogLevel.Error, Message = "Consumer of {Queue} failed; restarting")]
    private static partial void LogConsumerFailed(ILogger logger, Exception e, string queue);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Handler for {Queue} threw on message {MessageId} (attempt {Attempt}); will retry")]
    private static partial void LogHandlerThrew(ILogger logger, Exception e, string queue, string messageId, int attempt);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Message {MessageId} on {Queue} dead-lettered after attempt {Attempt}: {Reason}")]
    private static partial void LogDeadLettered(ILogger logger, string queue, string messageId, int attempt, string reason);
}
