using System.Diagnostics;
using Tally.Hosting;

namespace Tally.Jobs.Queues;

/// <summary>
/// Spans of the queues, after OpenTelemetry's messaging conventions: <c>{queue} publish</c> (producer)
/// and <c>{queue} process</c> (consumer), joined by the W3C trace context each message carries. Only
/// ids and names go into attributes, never a message body.
/// </summary>
public static class QueueTracing
{
    public const string TraceParentHeader = "traceparent";
    public const string TraceStateHeader = "tracestate";

    public static Activity? StartPublish(string system, string queue, int count)
    {
        var activity = Tracing.Source.StartActivity($"{queue} publish", ActivityKind.Producer);
        if (activity is { IsAllDataRequested: true })
        {
            activity.SetTag("messaging.system", system);
            activity.SetTag("messaging.operation.type", "send");
            activity.SetTag("messaging.destination.name", queue);
            activity.SetTag("messaging.batch.message_count", count);
        }
        return activity;
    }

    /// <summary>
    /// The messages, each carrying the current trace context unless it has one already (a retry or a
    /// replay keeps its own). Outside any span the same list comes back: nothing to carry, nothing copied.
    /// </summary>
    public static IReadOnlyList<QueueMessage> WithTraceContext(IReadOnlyList<QueueMessage> messages)
    {
        if (Activity.Current is not { IdFormat: ActivityIdFormat.W3C } current)
        {
            return messages;
        }
        var parent = current.Id;
        var state = current.TraceStateString;
        var stamped = new QueueMessage[messages.Count];
        for (var i = 0; i < messages.Count; i++)
        {
            var message = messages[i];
            stamped[i] = message.TraceParent is null ? message with { TraceParent = parent, TraceState = state } : message;
        }
        return stamped;
    }

    /// <summary>A consumer span, child of the context the message was published in (a new trace when it carries none).</summary>
    public static Activity? StartProcess(string system, string queue, QueueMessage message)
    {
        if (!Tracing.Source.HasListeners())
        {
            return null;
        }
        ActivityContext.TryParse(message.TraceParent, message.TraceState, isRemote: true, out var parent);
        var activity = Tracing.Source.StartActivity($"{queue} process", ActivityKind.Consumer, parent);
        if (activity is { IsAllDataRequested: true })
        {
            activity.SetTag("messaging.system", system);
            activity.SetTag("messaging.operation.type", "process");
            activity.SetTag("messaging.destination.name", queue);
            activity.SetTag("messaging.message.id", message.Id);
            activity.SetTag("tally.queue.attempt", message.Attempt);
        }
        return activity;
    }

    /// <summary>Records what became of the delivery; a dead letter marks the span failed.</summary>
    public static void RecordAction(Activity? activity, DeliveryAction action)
    {
        if (activity is null)
        {
            return;
        }
        activity.SetTag("tally.queue.action", action switch
        {
            DeliveryAction.RetryAction => "retry",
            DeliveryAction.DeadLetterAction => "dead_letter",
            DeliveryAction.SplitAction => "split",
            _ => "ack",
        });
        if (action is DeliveryAction.DeadLetterAction)
        {
            // The reason stays in the dead-letter row: it may quote an upstream's answer.
            activity.SetStatus(ActivityStatusCode.Error, "dead-lettered");
        }
    }
}
