-- Store accounts and orders mirrored from the store, for the has_orders repair (store.sync-accounts).

CREATE TABLE store_accounts (
    id         uuid PRIMARY KEY,
    active     boolean NOT NULL,
    has_orders boolean NOT NULL,
    created_at timestamptz NOT NULL
);
-- The repair's driving set: accounts that could be out of sync. Small by construction (most accounts
-- have orders), so the repair reads a few thousand index entries, not the whole table.
CREATE INDEX ix_store_accounts_unflagged ON store_accounts (id) WHERE active AND NOT has_orders;

-- Foreign keys keep an order from naming an account Tally does not know; the admin import checks
-- them first to answer which ones, the constraint is what holds under concurrent imports.
CREATE TABLE store_orders (
    id             uuid PRIMARY KEY,
    seller_account uuid NOT NULL CONSTRAINT fk_store_orders_seller REFERENCES store_accounts (id),
    buyer_account  uuid NOT NULL CONSTRAINT fk_store_orders_buyer REFERENCES store_accounts (id),
    status         text NOT NULL,
    product_type   text NOT NULL,
    metadata       text NULL, -- the store's JSON object, kept verbatim; nothing queries inside it
    created_at     timestamptz NOT NULL
);
-- One probe per role and candidate account: "does this account have an active order of one of these
-- types?". The managed product types are configuration, so they cannot be in the predicate; as the
-- second key column they are still an index condition. Partial on status: inactive orders never count.
CREATE INDEX ix_store_orders_seller_active ON store_orders (seller_account, product_type) WHERE status = 'active';
CREATE INDEX ix_store_orders_buyer_active ON store_orders (buyer_account, product_type) WHERE status = 'active';
