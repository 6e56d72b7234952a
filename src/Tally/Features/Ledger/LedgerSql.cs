using System.Globalization;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Tally.Data;

namespace Tally.Features.Ledger;

/// <summary>
/// The ledger's SQL for PostgreSQL and SQLite, side by side: the three statements of a transfer,
/// each one text for one transfer or thousands (<see cref="RowsStatement"/>).
/// </summary>
/// <param name="LockAccounts">The accounts of the transfers, in id order, as they are before the transfers: rows <c>(id)</c>.
/// PostgreSQL locks them (<c>FOR UPDATE</c>, in id order, so two sets of transfers never wait for each
/// other in a cycle); SQLite's write transaction (<c>BEGIN IMMEDIATE</c>) holds the whole database already.</param>
/// <param name="InsertTransfers">The transfer rows, once per idempotency key: rows <c>(id, debit, credit, amount, currency, kind, key)</c>, <c>{0}</c> the time.</param>
/// <param name="MoveBalances">One balance update per account, only where it stays in range: rows <c>(id, currency, debit, credit)</c>.
/// A user account must hold its debits (whatever it is credited in the same set), no account may pass
/// <see cref="Currencies.MaxMinor"/>, and a funding account may not issue more than <see cref="Currencies.MaxIssuedMinor"/>.</param>
public sealed record LedgerSql(StorageProvider Provider, RowsStatement LockAccounts, RowsStatement InsertTransfers, RowsStatement MoveBalances) : Dialect(Provider)
{
    // Where a balance must stay: from what a funding account may issue up to the ceiling of any account.
    private static readonly string InRange = string.Create(CultureInfo.InvariantCulture, $"BETWEEN {-Currencies.MaxIssuedMinor} AND {Currencies.MaxMinor}");

    public static readonly LedgerSql Postgres = new(
        StorageProvider.Postgres,
        LockAccounts: new(StorageProvider.Postgres, """
            SELECT * FROM ledger_accounts WHERE id = ANY ({0}::uuid[]) ORDER BY id FOR UPDATE
            """, Columns: 1),
        InsertTransfers: new(StorageProvider.Postgres, """
            INSERT INTO ledger_transfers (id, debit_account_id, credit_account_id, amount_minor, currency, kind, idempotency_key, created_at)
            SELECT t.id, t.debit, t.credit, t.amount, t.currency, t.kind, t.key, {0}::timestamptz
            FROM unnest({1}::uuid[], {2}::uuid[], {3}::uuid[], {4}::bigint[], {5}::text[], {6}::text[], {7}::text[])
                 AS t(id, debit, credit, amount, currency, kind, key)
            ON CONFLICT (idempotency_key) DO NOTHING
            """, Columns: 7),
        MoveBalances: new(StorageProvider.Postgres, $$"""
            UPDATE ledger_accounts AS a SET balance_minor = a.balance_minor - m.debit + m.credit
            FROM unnest({0}::uuid[], {1}::text[], {2}::bigint[], {3}::bigint[]) AS m(id, currency, debit, credit)
            WHERE a.id = m.id AND a.currency = m.currency
              AND (a.kind = 'FUNDING' OR a.balance_minor >= m.debit)
              AND a.balance_minor - m.debit + m.credit {{InRange}}
            """, Columns: 4));

    // SQLite: the same statements over a VALUES list. (WHERE true: before ON CONFLICT, an INSERT ...
    // SELECT needs a WHERE for SQLite to parse it.)
    public static readonly LedgerSql Sqlite = new(
        StorageProvider.Sqlite,
        LockAccounts: new(StorageProvider.Sqlite, """
            SELECT * FROM ledger_accounts WHERE id IN (VALUES {rows}) ORDER BY id
            """, Columns: 1),
        InsertTransfers: new(StorageProvider.Sqlite, """
            WITH t(id, debit, credit, amount, currency, kind, key) AS (VALUES {rows})
            INSERT INTO ledger_transfers (id, debit_account_id, credit_account_id, amount_minor, currency, kind, idempotency_key, created_at)
            SELECT t.id, t.debit, t.credit, t.amount, t.currency, t.kind, t.key, {0}
            FROM t WHERE true
            ON CONFLICT (idempotency_key) DO NOTHING
            """, Columns: 7),
        MoveBalances: new(StorageProvider.Sqlite, $$"""
            WITH m(id, currency, debit, credit) AS (VALUES {rows})
            UPDATE ledger_accounts AS a SET balance_minor = a.balance_minor - m.debit + m.credit
            FROM m
            WHERE a.id = m.id AND a.currency = m.currency
              AND (a.kind = 'FUNDING' OR a.balance_minor >= m.debit)
              AND a.balance_minor - m.debit + m.credit {{InRange}}
            """, Columns: 4));

    public static LedgerSql For(DatabaseFacade db) => db.Pick(Postgres, Sqlite);

    protected override IEnumerable<(string Name, string Sql)> Examples() => RowsStatement.ExamplesOf(this);
}
