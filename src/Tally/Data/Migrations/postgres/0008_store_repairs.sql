-- The has_orders repair's results leave Tally (store.sync-accounts).

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
