using System.Text.Json.Serialization;

namespace Tally.Features.Connections;

/// <summary>
/// The events of a connection sync, with the seed's names and meanings (camelCase in JSON). Every one
/// carries <c>eventId</c>, the id of its outbox row and so the message id it is published with (a
/// consumer dedupes on either); <c>occurredAt</c>, its row's <c>occurred_at</c>; <c>connectionId</c>
/// and <c>userId</c>. What Tally adds to the seed's fields comes after them, under names of its own.
/// </summary>
public abstract record ConnectionEvent(
    [property: JsonPropertyOrder(-4)] Guid EventId,
    [property: JsonPropertyOrder(-3)] DateTime OccurredAt,
    [property: JsonPropertyOrder(-2)] Guid ConnectionId,
    [property: JsonPropertyOrder(-1)] Guid UserId)
{
    /// <summary>The outbox <c>event_type</c> and routing key: the record's name, which is the seed's.</summary>
    [JsonIgnore]
    public string EventType => GetType().Name;
}

/// <summary>A sync was asked for, whatever became of it. Tally adds who asked (<c>trigger</c>) and whether it was <c>forced</c>.</summary>
public sealed record AccountSyncAttempted(Guid EventId, DateTime OccurredAt, Guid ConnectionId, Guid UserId, string Trigger, bool Forced)
    : ConnectionEvent(EventId, OccurredAt, ConnectionId, UserId);

/// <summary>
/// A sync did not happen, or did not finish: <c>reason</c> is one of <see cref="SyncFailureReasons"/> or
/// <see cref="Providers.ProviderFailureReasons"/>. Tally adds <c>retryAfterSeconds</c> when waiting is the remedy.
/// </summary>
public sealed record AccountSyncFailed(Guid EventId, DateTime OccurredAt, Guid ConnectionId, Guid UserId, string Reason, int? RetryAfterSeconds)
    : ConnectionEvent(EventId, OccurredAt, ConnectionId, UserId);

/// <summary>
/// A sync finished: <c>accountCount</c> is created + updated + unchanged, as the seed counts. Tally adds
/// those three counts and <c>errors</c> (accounts the provider sent that could not be stored).
/// </summary>
public sealed record AccountSyncSucceeded(
    Guid EventId, DateTime OccurredAt, Guid ConnectionId, Guid UserId, int AccountCount, int Created, int Updated, int Unchanged, int Errors)
    : ConnectionEvent(EventId, OccurredAt, ConnectionId, UserId);

/// <summary>
/// An account's balance moved: <c>delta</c> = <c>newBalance</c> - <c>previousBalance</c>, in
/// <c>currency</c>. A newly found account moved from 0 (none is emitted when it holds 0). Tally adds
/// <c>providerAccountId</c>, the provider's own id of the account.
/// </summary>
public sealed record AccountBalanceUpdated(
    Guid EventId, DateTime OccurredAt, Guid ConnectionId, Guid UserId, Guid AccountId, string ProviderAccountId,
    decimal PreviousBalance, decimal NewBalance, decimal Delta, string Currency)
    : ConnectionEvent(EventId, OccurredAt, ConnectionId, UserId);
