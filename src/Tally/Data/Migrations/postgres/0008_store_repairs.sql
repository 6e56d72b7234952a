-- The has_orders repair's results leave Tally (store.sync-accounts), and orders may arrive before
-- their accounts.

-- The ids each run of store.sync-accounts set has_orders on, keyed by the run (its cron_runs id).
-- Written in the transaction that sets the flags, with the run's StoreAccountsRepaired event: a
-- committed repair always has its record and its event, a rolled-back one neither. The key keeps an
-- account once per run and serves both reads: one run's ids, and the runs newest first.
CREATE TABLE store_account_repairs (
    run_id      bigint NOT NULL CONSTRAINT fk_store_account_repairs_run REFERENCES cron_runs (id),
    account_id  uuid NOT NULL,
    repaired_at timestamptz NOT NULL,
    PRIMARY KEY (run_id, account_id)
);

-- The store's accounts and orders are exported separately and may be loaded in either order, so an
-- order may name an account Tally does not know yet: it is kept, and counts at the first repair after
-- the account arrives. The foreign keys refused exactly that, and guarded nothing else (nothing
-- deletes store accounts), so they go. The repair's partial indexes (0003) are untouched: the
-- repair still probes ix_store_orders_{seller|buyer}_active once per role and candidate account.
ALTER TABLE store_orders DROP CONSTRAINT fk_store_orders_seller, DROP CONSTRAINT fk_store_orders_buyer;
