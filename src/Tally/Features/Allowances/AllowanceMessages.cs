using System.Globalization;
using System.Text.Json;
using Tally.Jobs.Queues;

namespace Tally.Features.Allowances;

/// <summary>One due occurrence of one schedule: the unit the producer enqueues and a worker pays.</summary>
public sealed record OccurrenceMessage(Guid ScheduleId, DateTime RunAt)
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    /// <summary>Deterministic: the same occurrence always has the same message id, across producers and retries.</summary>
    public string MessageId => $"allowance:{ScheduleId:N}:{RunAt.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture)}";

    public QueueMessage ToQueueMessage() => new(MessageId, JsonSerializer.Serialize(this, Json));

    public static OccurrenceMessage? TryParse(QueueMessage message)
    {
        try
        {
            var parsed = JsonSerializer.Deserialize<OccurrenceMessage>(message.Body, Json);
            return parsed is null || parsed.ScheduleId == Guid.Empty
                ? null
                : parsed with { RunAt = DateTime.SpecifyKind(parsed.RunAt.ToUniversalTime(), DateTimeKind.Utc) };
        }
        catch (JsonException)
        {
            return null;
        }
    }
}

public sealed record AllowanceCredited(Guid ScheduleId, Guid GuardianId, Guid JuniorId, DateTime RunAt, decimal Amount, string Currency, Guid TransferId);

public sealed record AllowanceCreditFailed(Guid ScheduleId, Guid GuardianId, Guid JuniorId, DateTime RunAt, decimal Amount, string Currency, string Reason);
