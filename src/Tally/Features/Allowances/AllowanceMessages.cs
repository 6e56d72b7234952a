using System.Globalization;
using System.Security.Cryptography;
using System.Text;
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

/// <summary>
/// A page of due occurrences in one message (<c>Allowances:MessageShape</c> = <c>page</c>): the
/// worker settles them together, and an occurrence that is not paid (refused, not payable yet) leaves
/// the page as its own <see cref="OccurrenceMessage"/>, with its own id, retried and dead-lettered alone.
/// </summary>
public sealed record OccurrencePage(IReadOnlyList<OccurrenceMessage> Occurrences)
{
    /// <summary>The prefix of every page's message id; a single occurrence's id starts <c>allowance:</c>.</summary>
    public const string IdPrefix = "allowance-page:";

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    /// <summary>Deterministic: the same occurrences in the same order always make the same id (a hash of their ids).</summary>
    public string MessageId
    {
        get
        {
            var ids = string.Join('\n', Occurrences.Select(o => o.MessageId));
            return $"{IdPrefix}{Occurrences.Count}:{Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(ids)))[..32]}";
        }
    }

    public QueueMessage ToQueueMessage() => new(MessageId, JsonSerializer.Serialize(new Body([.. Occurrences]), Json));

    /// <summary>The page in a message, or null when the message is not a page (or not a well-formed one).</summary>
    public static OccurrencePage? TryParse(QueueMessage message)
    {
        if (!message.Id.StartsWith(IdPrefix, StringComparison.Ordinal))
        {
            return null;
        }
        try
        {
            var body = JsonSerializer.Deserialize<Body>(message.Body, Json);
            if (body?.Occurrences is not { Length: > 0 } occurrences || occurrences.Any(o => o is null || o.ScheduleId == Guid.Empty))
            {
                return null;
            }
            return new OccurrencePage([.. occurrences.Select(o => o with { RunAt = DateTime.SpecifyKind(o.RunAt.ToUniversalTime(), DateTimeKind.Utc) })]);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>Occurrences in pages of at most <paramref name="size"/>, in order.</summary>
    public static IEnumerable<OccurrencePage> Paged(IReadOnlyList<OccurrenceMessage> occurrences, int size) =>
        occurrences.Chunk(size).Select(chunk => new OccurrencePage(chunk));

    private sealed record Body(OccurrenceMessage[] Occurrences);
}

public sealed record AllowanceCredited(Guid ScheduleId, Guid GuardianId, Guid JuniorId, DateTime RunAt, decimal Amount, string Currency, Guid TransferId);

public sealed record AllowanceCreditFailed(Guid ScheduleId, Guid GuardianId, Guid JuniorId, DateTime RunAt, decimal Amount, string Currency, string Reason);
