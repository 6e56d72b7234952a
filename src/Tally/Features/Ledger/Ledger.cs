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
    /// Moves money inside the current transaction: one insert and two conditional updates on the
    /// happy path, with the reasons for a refusal looked up only when one of them refuses.
    /// The caller commits on <see cref="TransferResult.Transferred"/>, and rolls back on anything else.
    /// </summary>
    public static async Task<TransferResult> TransferAsync(TallyDb db, TransferRequest request, DateTime now, CancellationToken ct)
    {
        if (db.Database.CurrentTransaction is null)
        {
            throw new InvalidOperationException("A ledger transfer must run inside a transaction.");
        }
        CheckAmount(request);
        if (request.DebitAccountId == request.CreditAccountId)
        {
            return new TransferResult.CurrencyMismatch();
        }

        var transferId = Guid.CreateVersion7();
        int inserted;
        try
        {
            inserted = await db.Database.ExecuteSqlAsync(
                $"""
                INSERT INTO ledger_transfers (id, debit_account_id, credit_account_id, amount_minor, currency, kind, idempotency_key, created_at)
                VALUES ({transferId}, {request.DebitAccountId}, {request.CreditAccountId}, {request.AmountMinor}, {request.Currency}, {request.Kind}, {request.IdempotencyKey}, {now})
                ON CONFLICT (idempotency_key) DO NOTHING
                """,
                ct);
        }
        catch (Exception e) when (DbErrors.IsForeignKeyViolation(e))
        {
            return await WhyRefusedAsync(db, request, new Applied(TransactionAborted: true), ct);
        }
        if (inserted == 0)
        {
            return new TransferResult.AlreadyDone();
        }

        // Touch the two rows in id order so two opposite transfers cannot deadlock.
        var debitFirst = request.DebitAccountId.CompareTo(request.CreditAccountId) < 0;
        if (debitFirst && !await DebitAsync(db, request, ct))
        {
            return await WhyRefusedAsync(db, request, new Applied(), ct);
        }
        // The ceiling is tested as balance <= max - amount: the sum itself could overflow.
        var credited = await db.Database.ExecuteSqlAsync(
            $"""
            UPDATE ledger_accounts SET balance_minor = balance_minor + {request.AmountMinor}
            WHERE id = {request.CreditAccountId} AND currency = {request.Currency} AND balance_minor <= {Currencies.MaxMinor - request.AmountMinor}
            """, ct);
        if (credited != 1 || (!debitFirst && !await DebitAsync(db, request, ct)))
        {
            return await WhyRefusedAsync(db, request, new Applied(Debited: debitFirst, Credited: credited == 1), ct);
        }
        return new TransferResult.Transferred(transferId);
    }

    /// <summary>
    /// Moves money for many transfers at once inside the current transaction, all or nothing: on
    /// PostgreSQL three set-based statements whatever the count (the accounts locked in id order,
    /// the transfer rows, one balance update per account). Returns the transfer ids in request
    /// order, or null when any one of them would be refused (a used idempotency key, a missing
    /// account, another currency, not enough money); then the caller must roll back, and can find
    /// out which one by moving them one at a time with <see cref="TransferAsync"/>.
    /// A debit account must cover the sum of its debits in the set, whatever it is credited in the
    /// same set, so every order of the same transfers one by one would have been accepted too.
    /// </summary>
    public static async Task<IReadOnlyList<Guid>?> TransferAllAsync(TallyDb db, IReadOnlyList<TransferRequest> requests, DateTime now, CancellationToken ct)
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
                return null;
            }
        }
        if (!db.Database.IsNpgsql())
        {
            var moved = new List<Guid>(requests.Count);
            foreach (var request in requests)
            {
                if (await TransferAsync(db, request, now, ct) is not TransferResult.Transferred { TransferId: var id })
                {
                    return null;
                }
                moved.Add(id);
            }
            return moved;
        }

        var accountIds = requests.SelectMany(r => new[] { r.DebitAccountId, r.CreditAccountId }).Distinct().Order().ToArray();
        var locked = await db.Database.SqlQuery<int>(
            $"SELECT count(*)::int AS \"Value\" FROM (SELECT id FROM ledger_accounts WHERE id = ANY({accountIds}) ORDER BY id FOR UPDATE) l")
            .SingleAsync(ct);
        if (locked != accountIds.Length)
        {
            return null; // an account is missing
        }

        var transferIds = requests.Select(_ => Guid.CreateVersion7()).ToArray();
        var inserted = await db.Database.ExecuteSqlAsync(
            $"""
            INSERT INTO ledger_transfers (id, debit_account_id, credit_account_id, amount_minor, currency, kind, idempotency_key, created_at)
            SELECT t.id, t.debit, t.credit, t.amount, t.currency, t.kind, t.key, {now}
            FROM unnest({transferIds}, {requests.Select(r => r.DebitAccountId).ToArray()}, {requests.Select(r => r.CreditAccountId).ToArray()},
                        {requests.Select(r => r.AmountMinor).ToArray()}, {requests.Select(r => r.Currency).ToArray()},
                        {requests.Select(r => r.Kind).ToArray()}, {requests.Select(r => r.IdempotencyKey).ToArray()})
                 AS t(id, debit, credit, amount, currency, kind, key)
            ON CONFLICT (idempotency_key) DO NOTHING
            """, ct);
        if (inserted != requests.Count)
        {
            return null; // an idempotency key was used before (or twice in this set)
        }

        // One row per (account, currency): what leaves it and what arrives.
        var moves = requests.SelectMany(r => new[]
            {
                (Account: r.DebitAccountId, r.Currency, Debit: r.AmountMinor, Credit: 0L),
                (Account: r.CreditAccountId, r.Currency, Debit: 0L, Credit: r.AmountMinor),
            })
            .GroupBy(m => (m.Account, m.Currency))
            .Select(g => (g.Key.Account, g.Key.Currency, Debit: g.Sum(m => m.Debit), Credit: g.Sum(m => m.Credit)))
            .ToList();
        var updated = await db.Database.ExecuteSqlAsync(
            $"""
            UPDATE ledger_accounts a SET balance_minor = a.balance_minor - m.debit + m.credit
            FROM unnest({moves.Select(m => m.Account).ToArray()}, {moves.Select(m => m.Currency).ToArray()},
                        {moves.Select(m => m.Debit).ToArray()}, {moves.Select(m => m.Credit).ToArray()}) AS m(id, currency, debit, credit)
            WHERE a.id = m.id AND a.currency = m.currency
              AND (a.kind = {AccountKinds.Funding} OR a.balance_minor >= m.debit)
              AND a.balance_minor - m.debit + m.credit BETWEEN {-Currencies.MaxIssuedMinor} AND {Currencies.MaxMinor}
            """, ct);
        return updated == moves.Count ? transferIds : null;
    }

    private static void CheckAmount(TransferRequest request)
    {
        // Callers validate amounts (Currencies.CheckAmount); one past the ceiling here is a bug.
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(request.AmountMinor);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(request.AmountMinor, Currencies.MaxMinor);
    }

    private static async Task<bool> DebitAsync(TallyDb db, TransferRequest request, CancellationToken ct) =>
        await db.Database.ExecuteSqlAsync(
            $"""
            UPDATE ledger_accounts SET balance_minor = balance_minor - {request.AmountMinor}
            WHERE id = {request.DebitAccountId} AND currency = {request.Currency}
              AND (kind = {AccountKinds.Funding} OR balance_minor >= {request.AmountMinor})
              AND balance_minor >= {request.AmountMinor - Currencies.MaxIssuedMinor}
            """,
            ct) == 1;

    /// <summary>The slow path: why an update refused. Missing account, other currency, a balance at its limit, or not enough money.</summary>
    /// <summary>Which of the transfer's writes went through before one refused (the caller rolls them back).</summary>
    private readonly record struct Applied(bool TransactionAborted = false, bool Debited = false, bool Credited = false);

    private static async Task<TransferResult> WhyRefusedAsync(TallyDb db, TransferRequest request, Applied applied, CancellationToken ct)
    {
        if (applied.TransactionAborted && db.Database.IsNpgsql())
        {
            // A failed statement aborts a PostgreSQL transaction; read the reason outside it.
            await using var diagnose = new TallyDb(new DbContextOptionsBuilder<TallyDb>().UseNpgsql(db.Database.GetConnectionString()).Options);
            return await DiagnoseAsync(diagnose, request, applied, ct);
        }
        return await DiagnoseAsync(db, request, applied, ct);
    }

    private static async Task<TransferResult> DiagnoseAsync(TallyDb db, TransferRequest request, Applied applied, CancellationToken ct)
    {
        var accounts = await db.LedgerAccounts.AsNoTracking()
            .Where(a => a.Id == request.DebitAccountId || a.Id == request.CreditAccountId)
            .Select(a => new { a.Id, a.Currency, a.Kind, a.BalanceMinor })
            .ToListAsync(ct);
        foreach (var id in new[] { request.DebitAccountId, request.CreditAccountId })
        {
            var account = accounts.Find(a => a.Id == id);
            if (account is null)
            {
                return new TransferResult.AccountNotFound(id);
            }
            if (account.Currency != request.Currency)
            {
                return new TransferResult.CurrencyMismatch();
            }
        }
        // Balances as they were before this transfer touched them.
        var debit = accounts.Find(a => a.Id == request.DebitAccountId)!;
        var debitBalance = debit.BalanceMinor + (applied.Debited ? request.AmountMinor : 0);
        var creditBalance = accounts.Find(a => a.Id == request.CreditAccountId)!.BalanceMinor - (applied.Credited ? request.AmountMinor : 0);
        if (debit.Kind != AccountKinds.Funding && debitBalance < request.AmountMinor)
        {
            return new TransferResult.InsufficientFunds();
        }
        return new TransferResult.BalanceLimitExceeded(creditBalance > Currencies.MaxMinor - request.AmountMinor ? request.CreditAccountId : request.DebitAccountId);
    }

    public static IQueryable<LedgerAccount> OwnedBy(this IQueryable<LedgerAccount> accounts, Guid ownerId) =>
        accounts.Where(a => a.OwnerId == ownerId);

    public static IQueryable<LedgerTransfer> Touching(this IQueryable<LedgerTransfer> transfers, IReadOnlyCollection<Guid> accountIds) =>
        transfers.Where(t => accountIds.Contains(t.DebitAccountId) || accountIds.Contains(t.CreditAccountId));
}
