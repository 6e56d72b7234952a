using System.Security.Cryptography;
using System.Text;
using Microsoft.EntityFrameworkCore;
using Tally.Data;

namespace Tally.Features.Ledger;

/// <summary>What a transfer came to. Anything but <see cref="Transferred"/> means the caller rolls back.</summary>
public abstract record TransferResult
{
    public sealed record Transferred(Guid TransferId) : TransferResult;

    /// <summary>The idempotency key was used before: the money moved then, not now.</summary>
    public sealed record AlreadyDone : TransferResult;

    public sealed record InsufficientFunds : TransferResult;

    public sealed record AccountNotFound(Guid AccountId) : TransferResult;

    public sealed record CurrencyMismatch : TransferResult;

    /// <summary>
    /// The credit would take an account past <see cref="Currencies.MaxMinor"/>, or the funding
    /// account past <see cref="Currencies.MaxIssuedMinor"/> issued.
    /// </summary>
    public sealed record BalanceLimitExceeded(Guid AccountId) : TransferResult;
}

/// <summary>What a set of transfers came to: all of them moved (<see cref="TransferIds"/>, in request order), or none, because of <see cref="Refusal"/>.</summary>
public sealed record TransferAllResult(IReadOnlyList<Guid>? TransferIds, TransferResult? Refusal)
{
    public static TransferAllResult Moved(IReadOnlyList<Guid> transferIds) => new(transferIds, null);

    public static TransferAllResult Refused(TransferResult refusal) => new(null, refusal);
}

public sealed record TransferRequest(Guid DebitAccountId, Guid CreditAccountId, long AmountMinor, string Currency, string Kind, string IdempotencyKey);

/// <summary>
/// Double-entry moves of money. Every move is one immutable transfer row plus two balance updates,
/// all inside the caller's transaction. Guarantees:
/// <list type="bullet">
/// <item>Once per idempotency key: the unique key makes a repeat insert a no-op.</item>
/// <item>No user balance below zero: the debit only applies when funds suffice, and the CHECK
///   constraint on <c>ledger_accounts</c> refuses it anyway.</item>
/// <item>The sum of balances per currency never changes: every debit has its equal credit.</item>
/// <item>Every balance fits its column on both databases: an account holds at most
///   <see cref="Currencies.MaxMinor"/>, a funding account issues at most <see cref="Currencies.MaxIssuedMinor"/>
///   (so a currency's sum of balances fits 64 bits); the updates refuse more, and the schema's
///   CHECK constraints (triggers on SQLite) refuse it anyway.</item>
/// </list>
/// </summary>
public static class Ledger
{
    public static Guid FundingAccountId(string currency)
    {
        // Deterministic, so every instance and every database agrees without a lookup.
        var hash = MD5.HashData(Encoding.UTF8.GetBytes($"tally:funding:{currency}"));
        return new Guid(hash);
    }

    /// <summary>Creates the funding account for a currency if it is not there yet; safe to race.</summary>
    public static async Task EnsureFundingAccountAsync(TallyDb db, string currency, DateTime now, CancellationToken ct)
    {
        var id = FundingAccountId(currency);
        await db.Database.ExecuteSqlAsync(
            $"INSERT INTO ledger_accounts (id, owner_id, currency, kind, balance_minor, created_at) VALUES ({id}, NULL, {currency}, {AccountKinds.Funding}, {0L}, {now}) ON CONFLICT DO NOTHING",
            ct);
    }

    /// <summary>
    /// Moves money inside the current transaction: a set of one (<see cref="TransferAllAsync"/>), so
    /// one transfer and thousands run the same statements. The caller commits on
    /// <see cref="TransferResult.Transferred"/>, and rolls back on anything else.
    /// </summary>
    public static async Task<TransferResult> TransferAsync(TallyDb db, TransferRequest request, DateTime now, CancellationToken ct)
    {
        var moved = await TransferAllAsync(db, [request], now, ct);
        return moved.Refusal ?? new TransferResult.Transferred(moved.TransferIds![0]);
    }

    /// <summary>
    /// Moves money for a set of transfers inside the current transaction, all or nothing, with three
    /// statements whatever their number (<see cref="LedgerSql"/>): the accounts locked in id order and
    /// read as they are before, the transfer rows, one balance update per account. Answers the
    /// transfer ids in request order, or why the set is refused (a used idempotency key, a missing
    /// account, another currency, not enough money, a balance limit); then the caller must roll back.
    /// For a set of one the reason is that transfer's; for more, the first one found.
    /// A debit account must cover the sum of its debits in the set, whatever it is credited in the
    /// same set, so every order of the same transfers one by one would have been accepted too.
    /// </summary>
    public static async Task<TransferAllResult> TransferAllAsync(TallyDb db, IReadOnlyList<TransferRequest> requests, DateTime now, CancellationToken ct)
    {
        if (db.Database.CurrentTransaction is null)
        {
            throw new InvalidOperationException("A ledger transfer must run inside a transaction.");
        }
        foreach (var request in requests)
        {
            CheckAmount(request);
            if (request.DebitAccountId == request.CreditAccountId)
            {
                return TransferAllResult.Refused(new TransferResult.CurrencyMismatch());
            }
        }

        var sql = LedgerSql.For(db.Database);
        var accountIds = requests.SelectMany(r => new[] { r.DebitAccountId, r.CreditAccountId }).Distinct().Order().ToArray();
        var before = await sql.LockAccounts.QueryAsync((text, parameters) => db.LedgerAccounts.FromSqlRaw(text, parameters).AsNoTracking(), [], [accountIds], ct);
        if (before.Count != accountIds.Length)
        {
            // A used key answers before a missing account, as the unique key did before the foreign key.
            var keys = requests.Select(r => r.IdempotencyKey).ToList();
            return TransferAllResult.Refused(await db.LedgerTransfers.AnyAsync(t => keys.Contains(t.IdempotencyKey), ct)
                ? new TransferResult.AlreadyDone()
                : WhyRefused(requests, before));
        }

        var transferIds = requests.Select(_ => Guid.CreateVersion7()).ToArray();
        var inserted = await db.Database.ExecuteAsync(sql.InsertTransfers, [now],
            [transferIds, requests.Select(r => r.DebitAccountId).ToArray(), requests.Select(r => r.CreditAccountId).ToArray(),
             requests.Select(r => r.AmountMinor).ToArray(), requests.Select(r => r.Currency).ToArray(),
             requests.Select(r => r.Kind).ToArray(), requests.Select(r => r.IdempotencyKey).ToArray()], ct);
        if (inserted != requests.Count)
        {
            return TransferAllResult.Refused(new TransferResult.AlreadyDone()); // an idempotency key was used before (or twice in this set)
        }

        var moves = Moves(requests);
        var updated = await db.Database.ExecuteAsync(sql.MoveBalances, [],
            [moves.Select(m => m.Account).ToArray(), moves.Select(m => m.Currency).ToArray(),
             moves.Select(m => m.Debit).ToArray(), moves.Select(m => m.Credit).ToArray()], ct);
        return updated == moves.Count ? TransferAllResult.Moved(transferIds) : TransferAllResult.Refused(WhyRefused(requests, before));
    }

    private static void CheckAmount(TransferRequest request)
    {
        // Callers validate amounts (Currencies.CheckAmount); one past the ceiling here is a bug.
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(request.AmountMinor);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(request.AmountMinor, Currencies.MaxMinor);
    }

    /// <summary>What leaves and what arrives, per (account, currency): one balance update each.</summary>
    private static List<(Guid Account, string Currency, long Debit, long Credit)> Moves(IReadOnlyList<TransferRequest> requests) =>
        requests.SelectMany(r => new[]
            {
                (Account: r.DebitAccountId, r.Currency, Debit: r.AmountMinor, Credit: 0L),
                (Account: r.CreditAccountId, r.Currency, Debit: 0L, Credit: r.AmountMinor),
            })
            .GroupBy(m => (m.Account, m.Currency))
            .Select(g => (g.Key.Account, g.Key.Currency, Debit: g.Sum(m => m.Debit), Credit: g.Sum(m => m.Credit)))
            .ToList();

    /// <summary>
    /// Why the ledger refuses transfers, from the accounts as they were before them: a missing account,
    /// another currency, not enough money, or a balance past its limit (the ceiling first, then a
    /// funding account's floor). For one transfer, the checks of <see cref="LedgerSql.MoveBalances"/> in that order.
    /// </summary>
    internal static TransferResult WhyRefused(IReadOnlyList<TransferRequest> requests, IReadOnlyList<LedgerAccount> before)
    {
        foreach (var request in requests)
        {
            foreach (var id in new[] { request.DebitAccountId, request.CreditAccountId })
            {
                var account = before.FirstOrDefault(a => a.Id == id);
                if (account is null)
                {
                    return new TransferResult.AccountNotFound(id);
                }
                if (account.Currency != request.Currency)
                {
                    return new TransferResult.CurrencyMismatch();
                }
            }
        }
        var moves = Moves(requests).Select(m =>
        {
            var account = before.First(a => a.Id == m.Account);
            return (m.Account, account.Kind, m.Debit, Before: account.BalanceMinor, After: account.BalanceMinor - m.Debit + m.Credit);
        }).ToList();
        if (moves.Any(m => m.Kind != AccountKinds.Funding && m.Before < m.Debit))
        {
            return new TransferResult.InsufficientFunds();
        }
        var past = moves.Where(m => m.After > Currencies.MaxMinor).Concat(moves.Where(m => m.After < -Currencies.MaxIssuedMinor))
            .Select(m => (Guid?)m.Account).FirstOrDefault();
        return new TransferResult.BalanceLimitExceeded(past ?? requests[0].DebitAccountId);
    }

    public static IQueryable<LedgerAccount> OwnedBy(this IQueryable<LedgerAccount> accounts, Guid ownerId) =>
        accounts.Where(a => a.OwnerId == ownerId);

    public static IQueryable<LedgerTransfer> Touching(this IQueryable<LedgerTransfer> transfers, IReadOnlyCollection<Guid> accountIds) =>
        transfers.Where(t => accountIds.Contains(t.DebitAccountId) || accountIds.Contains(t.CreditAccountId));
}
