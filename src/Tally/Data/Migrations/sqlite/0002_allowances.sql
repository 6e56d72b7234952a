-- Allowances: recurring guardian -> junior payments, exactly once per occurrence.
-- See the PostgreSQL script for what each column guarantees.

CREATE TABLE allowance_schedules (
    id               TEXT PRIMARY KEY,
    guardian_id      TEXT NOT NULL REFERENCES users (id),
    junior_id        TEXT NOT NULL REFERENCES users (id),
    amount_minor     INTEGER NOT NULL CHECK (amount_minor > 0),
    currency         TEXT NOT NULL,
    frequency        TEXT NOT NULL CHECK (frequency IN ('DAILY', 'WEEKLY', 'MONTHLY')),
    interval         INTEGER NOT NULL CHECK (interval >= 1),
    by_day           TEXT NULL,
    by_month_day     INTEGER NULL,
    time_zone        TEXT NOT NULL,
    start_at         TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('ON', 'OFF')),
    next_run_at      TEXT NULL,
    last_run_at      TEXT NULL,
    enqueued_through TEXT NULL,
    enqueued_at      TEXT NULL,
    active_from      TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    deleted_at       TEXT NULL
);
CREATE UNIQUE INDEX ux_allowance_schedules_pair ON allowance_schedules (guardian_id, junior_id) WHERE deleted_at IS NULL;
CREATE INDEX ix_allowance_schedules_due ON allowance_schedules (next_run_at, id) WHERE status = 'ON' AND deleted_at IS NULL;

CREATE TABLE allowance_credits (
    id             TEXT PRIMARY KEY,
    schedule_id    TEXT NOT NULL REFERENCES allowance_schedules (id),
    run_at         TEXT NOT NULL,
    amount_minor   INTEGER NOT NULL,
    currency       TEXT NOT NULL,
    outcome        TEXT NOT NULL CHECK (outcome IN ('PAID', 'FAILED', 'SKIPPED')),
    transaction_id TEXT NULL REFERENCES ledger_transfers (id),
    reason         TEXT NULL,
    credited_at    TEXT NOT NULL,
    UNIQUE (schedule_id, run_at),
    CHECK ((outcome = 'PAID') = (transaction_id IS NOT NULL))
);
