-- The has_orders repair's results leave Tally, and orders may arrive before their accounts. Same
-- shape as the PostgreSQL script.

CREATE TABLE store_account_repairs (
    run_id      INTEGER NOT NULL CONSTRAINT fk_store_account_repairs_run REFERENCES cron_runs (id),
    account_id  TEXT NOT NULL,
    repaired_at TEXT NOT NULL,
    PRIMARY KEY (run_id, account_id)
);

-- SQLite cannot drop a constraint: store_orders is rebuilt without its foreign keys (why they go:
-- see the PostgreSQL script), rows kept as they are, and the repair's partial indexes made again
-- exactly as 0003 made them.
CREATE TABLE store_orders_unchecked (
    id             TEXT PRIMARY KEY,
    seller_account TEXT NOT NULL,
    buyer_account  TEXT NOT NULL,
    status         TEXT NOT NULL,
    product_type   TEXT NOT NULL,
    metadata       TEXT NULL,
    created_at     TEXT NOT NULL
);
INSERT INTO store_orders_unchecked (id, seller_account, buyer_account, status, product_type, metadata, created_at)
SELECT id, seller_account, buyer_account, status, product_type, metadata, created_at FROM store_orders;
DROP TABLE store_orders;
ALTER TABLE store_orders_unchecked RENAME TO store_orders;
CREATE INDEX ix_store_orders_seller_active ON store_orders (seller_account, product_type) WHERE status = 'active';
CREATE INDEX ix_store_orders_buyer_active ON store_orders (buyer_account, product_type) WHERE status = 'active';
