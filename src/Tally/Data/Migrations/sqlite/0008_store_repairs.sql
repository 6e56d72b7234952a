-- The has_orders repair's results leave Tally. Same shape as the PostgreSQL script.

CREATE TABLE store_account_repairs (
    run_id      INTEGER NOT NULL CONSTRAINT fk_store_account_repairs_run REFERENCES cron_runs (id),
    account_id  TEXT NOT NULL,
    repaired_at TEXT NOT NULL,
    PRIMARY KEY (run_id, account_id)
);
