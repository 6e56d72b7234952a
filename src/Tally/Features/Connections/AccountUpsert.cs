using System.Text;
using Microsoft.EntityFrameworkCore;
using Tally.Data;
using Tally.Features.Connections.Providers;

namespace Tally.Features.Connections;

/// <summary>A balance that really moved: same account, same currency, a different amount; or a new account's, from 0.</summary>
public sealed record BalanceChange(Guid AccountId, string ProviderAccountId, decimal Previous, decimal Current, string Currency);

/// <summary>What one sync does to a connection's accounts, decided in memory from one read of them.</summary>
public sealed record UpsertPlan(
    IReadOnlyList<ProviderAccount> Created,
    IReadOnlyList<ProviderAccount> Updated,
    IReadOnlyList<Guid> Unchanged,
    int Errors,
    IReadOnlyList<BalanceChange> BalanceChanges)
{
    public int Total => Created.Count + Updated.Count + Unchanged.Count;

    public string Message => $"Synced {Total} accounts: {Created.Count} created, {Updated.Count} updated, {Unchanged.Count} unchanged"
        + (Errors > 0 ? $", {Errors} errors" : "");

    /// <summary>
    /// The plan cut into consecutive parts of at most <paramref name="size"/> accounts, to commit one
    /// per transaction: every account in exactly one part, each balance change in the part of its
    /// account (so a part's events commit with its rows). Errors belong to the whole, not to a part.
    /// </summary>
    public IReadOnlyList<UpsertPlan> Chunks(int size)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 1);
        var changes = BalanceChanges.ToDictionary(c => c.AccountId);
        var chunks = new List<UpsertPlan>();
        List<ProviderAccount> created = [], updated = [];
        List<Guid> unchanged = [];
        List<BalanceChange> moved = [];
        void Cut(bool last)
        {
            var count = created.Count + updated.Count + unchanged.Count;
            if (count == size || (last && count > 0))
            {
                chunks.Add(new UpsertPlan(created, updated, unchanged, 0, moved));
                (created, updated, unchanged, moved) = ([], [], [], []);
            }
        }
        foreach (var account in Created)
        {
            created.Add(account);
            if (changes.TryGetValue(account.Id, out var change))
            {
                moved.Add(change);
            }
            Cut(last: false);
        }
        foreach (var account in Updated)
        {
            updated.Add(account);
            if (changes.TryGetValue(account.Id, out var change))
            {
                moved.Add(change);
            }
            Cut(last: false);
        }
        foreach (var id in Unchanged)
        {
            unchanged.Add(id);
            Cut(last: false);
        }
        Cut(last: true);
        return chunks;
    }
}

/// <summary>
/// The account upsert: <see cref="Plan"/> is the pure decision (created / updated / unchanged /
/// errors, and which balances changed), in the seed's terms: an account is updated when anything the
/// provider reports of it changed (balance, name, active, metadata and the rest), but its balance
/// changed only when the amount moved; a new account's balance moved from 0, unless it holds 0; a
/// type Tally does not know is <see cref="AccountTypes.Other"/>. <see cref="WriteAsync"/> applies
/// the plan (or one of its <see cref="UpsertPlan.Chunks"/>) with multi-row statements, a fixed
/// number of rows per round trip, whatever the number of accounts.
/// </summary>
public static class AccountUpsert
{
    public const int RowsPerStatement = 1_000;

    /// <summary>numeric(19, 4): 15 integer digits and 4 decimals. Anything else is an error, never rounded.</summary>
    private const decimal MaxAmount = 999_999_999_999_999.9999m;

    private const int MaxText = 200;

    /// <param name="providerErrors">Accounts the provider sent that could not even be read.</param>
    public static UpsertPlan Plan(Guid connectionId, IReadOnlyList<ProviderAccount> existing, IReadOnlyList<ProviderAccountData> incoming, int providerErrors, DateTime now)
    {
        var known = existing.ToDictionary(a => a.ProviderAccountId, StringComparer.Ordinal);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var created = new List<ProviderAccount>();
        var updated = new List<ProviderAccount>();
        var unchanged = new List<Guid>();
        // In the order the chunks write them: the new accounts' first, then the updated ones'.
        var arrivals = new List<BalanceChange>();
        var changes = new List<BalanceChange>();
        var errors = providerErrors;
        foreach (var data in incoming)
        {
            if (!Storable(data) || !seen.Add(data.ProviderAccountId))
            {
                errors++; // unreadable as money, or the same account twice in one answer
                continue;
            }
            if (!known.TryGetValue(data.ProviderAccountId, out var current))
            {
                var row = Row(Guid.CreateVersion7(), connectionId, data, now, now);
                created.Add(row);
                if (row.Balance != 0)
                {
                    arrivals.Add(new BalanceChange(row.Id, row.ProviderAccountId, 0m, Normalize(row.Balance), row.Currency));
                }
                continue;
            }
            var next = Row(current.Id, connectionId, data, current.CreatedAt, now);
            if (SameAs(current, next))
            {
                unchanged.Add(current.Id);
                continue;
            }
            updated.Add(next);
            if (current.Balance != next.Balance && current.Currency == next.Currency)
            {
                changes.Add(new BalanceChange(current.Id, current.ProviderAccountId, Normalize(current.Balance), Normalize(next.Balance), next.Currency));
            }
        }
        return new UpsertPlan(created, updated, unchanged, errors, [.. arrivals, .. changes]);
    }

    /// <summary>100.2300 and 100.23 are the same amount; show the shorter.</summary>
    public static decimal Normalize(decimal value) => value / 1.000000000000000000000000000000000m;

    private static bool Storable(ProviderAccountData d) =>
        d.ProviderAccountId.Length is > 0 and <= MaxText
        && d.Currency.Length is > 0 and <= MaxText
        && Fits(d.Balance)
        && (d.AvailableBalance is null || Fits(d.AvailableBalance.Value));

    private static bool Fits(decimal amount) => Math.Abs(amount) <= MaxAmount && decimal.Round(amount, 4) == amount;

    private static ProviderAccount Row(Guid id, Guid connectionId, ProviderAccountData d, DateTime createdAt, DateTime now) => new()
    {
        Id = id,
        ConnectionId = connectionId,
        ProviderAccountId = d.ProviderAccountId,
        MaskedNumber = Clip(d.MaskedNumber),
        Name = Clip(d.Name) ?? d.ProviderAccountId,
        AccountType = AccountTypes.Known(d.AccountType),
        Balance = d.Balance,
        AvailableBalance = d.AvailableBalance,
        Currency = d.Currency,
        IsActive = d.IsActive,
        BalanceDate = d.BalanceDate,
        LastSyncedAt = now,
        ProviderMetadata = d.Metadata,
        CreatedAt = createdAt,
        UpdatedAt = now,
    };

    private static string? Clip(string? text) => text is null ? null : text.Length <= MaxText ? text : text[..MaxText];

    private static bool SameAs(ProviderAccount a, ProviderAccount b) =>
        a.Balance == b.Balance && a.AvailableBalance == b.AvailableBalance && a.Currency == b.Currency && a.Name == b.Name
        && a.MaskedNumber == b.MaskedNumber && a.AccountType == b.AccountType && a.IsActive == b.IsActive
        && a.BalanceDate == b.BalanceDate && a.ProviderMetadata == b.ProviderMetadata;

    /// <summary>
    /// Applies a plan in the caller's transaction: created and updated rows through
    /// <c>INSERT ... ON CONFLICT (connection_id, provider_account_id) DO UPDATE</c>, unchanged rows
    /// only get <c>last_synced_at</c>. Raw SQL because EF Core cannot batch on SQLite and this is the
    /// hot path of a large connection: ceil(n / 1000) statements per kind of row.
    /// </summary>
    public static async Task<int> WriteAsync(TallyDb db, UpsertPlan plan, DateTime now, CancellationToken ct)
    {
        var statements = 0;
        foreach (var chunk in plan.Created.Concat(plan.Updated).Chunk(RowsPerStatement))
        {
            var sql = new StringBuilder(
                "INSERT INTO provider_accounts (id, connection_id, provider_account_id, masked_number, name, account_type, balance, available_balance, "
                + "currency, is_active, balance_date, last_synced_at, provider_metadata, created_at, updated_at) VALUES ");
            var values = new List<object>(chunk.Length * 15);
            for (var i = 0; i < chunk.Length; i++)
            {
                var a = chunk[i];
                sql.Append(i == 0 ? "(" : ", (");
                Append(sql, values, a.Id);
                Append(sql, values, a.ConnectionId);
                Append(sql, values, a.ProviderAccountId);
                Append(sql, values, a.MaskedNumber);
                Append(sql, values, a.Name);
                Append(sql, values, a.AccountType);
                Append(sql, values, a.Balance);
                Append(sql, values, a.AvailableBalance);
                Append(sql, values, a.Currency);
                Append(sql, values, a.IsActive);
                Append(sql, values, a.BalanceDate);
                Append(sql, values, a.LastSyncedAt);
                Append(sql, values, a.ProviderMetadata);
                Append(sql, values, a.CreatedAt);
                Append(sql, values, a.UpdatedAt, last: true);
                sql.Append(')');
            }
            sql.Append(
                " ON CONFLICT (connection_id, provider_account_id) DO UPDATE SET masked_number = excluded.masked_number, name = excluded.name, "
                + "account_type = excluded.account_type, balance = excluded.balance, available_balance = excluded.available_balance, "
                + "currency = excluded.currency, is_active = excluded.is_active, balance_date = excluded.balance_date, "
                + "last_synced_at = excluded.last_synced_at, provider_metadata = excluded.provider_metadata, updated_at = excluded.updated_at");
            await db.Database.ExecuteSqlRawAsync(sql.ToString(), values, ct);
            statements++;
        }
        foreach (var chunk in plan.Unchanged.Chunk(RowsPerStatement))
        {
            var sql = new StringBuilder("UPDATE provider_accounts SET last_synced_at = {0} WHERE id IN (");
            var values = new List<object>(chunk.Length + 1) { now };
            for (var i = 0; i < chunk.Length; i++)
            {
                sql.Append(i == 0 ? "" : ", ").Append('{').Append(values.Count).Append('}');
                values.Add(chunk[i]);
            }
            await db.Database.ExecuteSqlRawAsync(sql.Append(')').ToString(), values, ct);
            statements++;
        }
        return statements;
    }

    /// <summary>A placeholder for a value, or a literal NULL (an untyped null parameter is ambiguous to some databases).</summary>
    private static void Append(StringBuilder sql, List<object> values, object? value, bool last = false)
    {
        if (value is null)
        {
            sql.Append("NULL");
        }
        else
        {
            sql.Append('{').Append(values.Count).Append('}');
            values.Add(value);
        }
        if (!last)
        {
            sql.Append(", ");
        }
    }
}
