-- Store accounts and orders for the has_orders repair. Same shape as the PostgreSQL script; uuids
-- and times are TEXT as EF Core's SQLite provider writes them, booleans are INTEGER 0/1.

CREATE TABLE store_accounts (
    id         TEXT PRIMARY KEY,
    active     INTEGER NOT NULL,
    has_orders INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
-- SQLite uses a partial index only when the query repeats its WHERE terms: the repair says exactly
-- "active AND NOT has_orders" and "status = 'active'".
CREATE INDEX ix_store_accounts_unflagged ON store_accounts (id) WHERE active AND NOT has_orders;

CREATE TABLE store_orders (
    id             TEXT PRIMARY KEY,
    seller_account TEXT NOT NULL CONSTRAINT fk_store_orders_seller REFERENCES store_accounts (id),
    buyer_account  TEXT NOT NULL CONSTRAINT fk_store_orders_buyer REFERENCES store_accounts (id),
    status         TEXT NOT NULL,
    product_type   TEXT NOT NULL,
    metadata       TEXT NULL,
    created_at     TEXT NOT NULL
);
CREATE INDEX ix_store_orders_seller_active ON store_orders (seller_account, product_type) WHERE status = 'active';
CREATE INDEX ix_store_orders_buyer_active ON store_orders (buyer_account, product_type) WHERE status = 'active';
