using Npgsql;
using NpgsqlTypes;
using Tally.Data;
using Tally.Jobs.Outbox;

namespace Tally.Features.BalanceSync;

/// <summary>
/// PostgreSQL: writes one user's recorded accounts and their events in ONE round trip, a batch of
/// two statements that Npgsql sends with a single sync, so they run in one implicit transaction:
/// both or neither. Its own connections keep the two statements prepared and skip the session reset
/// on reuse; the login path touches no EF Core context at all.
/// </summary>
/// <remarks>
/// Asynchronous commit (<c>synchronous_commit = off</c>): the commit is visible to every reader at
/// once, so a login answers with exactly what is stored, but it does not wait for the WAL flush,
/// which on a busy disk stalls for tens to hundreds of milliseconds (bench/RESULTS.md) and was the
/// whole tail of the login's answer time. What that trades, and why it is safe for a mirror:
/// a crash of PostgreSQL itself (not of Tally) may forget the last few hundred milliseconds of
/// balance writes, always whole transactions, balances together with their events. The lane entry
/// of such a sync is removed later in the same WAL, so it is forgotten too and the user is synced
/// again; the core stays the record of these balances. No event of a forgotten write has left Tally:
/// the outbox dispatcher publishes only rows that a synchronous commit of its own has made durable
/// (<see cref="OutboxDispatcher"/>). Ledger money never takes this path: it commits synchronously.
/// </remarks>
public sealed class PostgresBalanceWriter(StorageSettings storage) : IAsyncDisposable
{
    private readonly NpgsqlDataSource _dataSource = NpgsqlDataSource.Create(
        new NpgsqlConnectionStringBuilder(storage.ConnectionString) { Options = "-c synchronous_commit=off", MaxAutoPrepare = 8, NoResetOnClose = true }.ConnectionString);

    public ValueTask DisposeAsync() => _dataSource.DisposeAsync();

    public async Task SaveAsync(IReadOnlyList<CoreAccount> recorded, IReadOnlyList<(string? SubjectId, object Payload)> events, DateTime now, CancellationToken ct)
    {
        if (recorded.Count == 0)
        {
            return;
        }
        await using var batch = _dataSource.CreateBatch();
        var update = new NpgsqlBatchCommand("""
            UPDATE core_accounts a
            SET working_balance = v.working, available_balance = v.available, bank_as_of = v.as_of, last_synced_at = v.synced_at,
                last_attempt_at = v.attempted_at, last_error = v.error, updated_at = v.attempted_at
            FROM unnest($1::uuid[], $2::numeric[], $3::numeric[], $4::timestamptz[], $5::timestamptz[], $6::timestamptz[], $7::text[])
                 AS v(id, working, available, as_of, synced_at, attempted_at, error)
            WHERE a.id = v.id
            """);
        update.Parameters.Add(new NpgsqlParameter { Value = recorded.Select(a => a.Id).ToArray() });
        update.Parameters.Add(new NpgsqlParameter { Value = recorded.Select(a => a.WorkingBalance).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Numeric });
        update.Parameters.Add(new NpgsqlParameter { Value = recorded.Select(a => a.AvailableBalance).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Numeric });
        update.Parameters.Add(new NpgsqlParameter { Value = recorded.Select(a => a.BankAsOf).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.TimestampTz });
        update.Parameters.Add(new NpgsqlParameter { Value = recorded.Select(a => a.LastSyncedAt).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.TimestampTz });
        update.Parameters.Add(new NpgsqlParameter { Value = recorded.Select(_ => now).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.TimestampTz });
        update.Parameters.Add(new NpgsqlParameter { Value = recorded.Select(a => a.LastError).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
        batch.BatchCommands.Add(update);
        if (events.Count > 0)
        {
            batch.BatchCommands.Add(Outbox.InsertMany(SyncUserBalances.BalanceUpdatedEvent, events, now));
        }
        await batch.ExecuteNonQueryAsync(ct);
    }
}
