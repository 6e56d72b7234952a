using System.Text.Json;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Tally.Data;

namespace Tally.Features.StoreIntegrity;

/// <summary>The has_orders repair's SQL for PostgreSQL and SQLite, side by side.</summary>
public sealed record StoreSql(StorageProvider Provider, string RepairFlags, Func<IReadOnlyList<string>, object> TypesParameter) : Dialect(Provider)
{
    // Raw SQL on purpose: the repair is one set-based statement per database, shaped for the partial
    // indexes of 0003_store_integrity.sql, that updates and returns the ids in a single round trip.
    // It is driven by the few candidate accounts (ix_store_accounts_unflagged) and asks each one
    // "any active order of these types?" once per role, so each EXISTS is an index probe on
    // ix_store_orders_{seller|buyer}_active; one EXISTS with "seller = id OR buyer = id" could use
    // neither index directly. The NOT has_orders term makes a concurrent or repeated run a no-op.
    // {0} is the managed product types: a text[] on PostgreSQL, a JSON array on SQLite.
    public static readonly StoreSql Postgres = new(
        StorageProvider.Postgres,
        RepairFlags: """
            UPDATE store_accounts AS a
            SET has_orders = true
            WHERE a.active AND NOT a.has_orders
              AND (EXISTS (SELECT 1 FROM store_orders AS o
                           WHERE o.seller_account = a.id AND o.status = 'active' AND o.product_type = ANY ({0}))
                OR EXISTS (SELECT 1 FROM store_orders AS o
                           WHERE o.buyer_account = a.id AND o.status = 'active' AND o.product_type = ANY ({0})))
            RETURNING a.id
            """,
        TypesParameter: types => types.ToArray());

    public static readonly StoreSql Sqlite = new(
        StorageProvider.Sqlite,
        RepairFlags: """
            UPDATE store_accounts AS a
            SET has_orders = 1
            WHERE a.active AND NOT a.has_orders
              AND (EXISTS (SELECT 1 FROM store_orders AS o
                           WHERE o.seller_account = a.id AND o.status = 'active' AND o.product_type IN (SELECT value FROM json_each({0})))
                OR EXISTS (SELECT 1 FROM store_orders AS o
                           WHERE o.buyer_account = a.id AND o.status = 'active' AND o.product_type IN (SELECT value FROM json_each({0}))))
            RETURNING id
            """,
        TypesParameter: types => JsonSerializer.Serialize(types));

    public static StoreSql For(DatabaseFacade db) => db.Pick(Postgres, Sqlite);
}
