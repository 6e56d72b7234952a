-- Allowances: recurring guardian -> junior payments, exactly once per occurrence.

CREATE TABLE allowance_schedules (
    id               uuid PRIMARY KEY,
    guardian_id      uuid NOT NULL REFERENCES users (id),
    junior_id        uuid NOT NULL REFERENCES users (id),
    amount_minor     bigint NOT NULL CHECK (amount_minor > 0),
    currency         char(3) NOT NULL,
    frequency        text NOT NULL CHECK (frequency IN ('DAILY', 'WEEKLY', 'MONTHLY')),
    interval         integer NOT NULL CHECK (interval >= 1),
    by_day           text NULL,
    by_month_day     integer NULL,
    time_zone        text NOT NULL,
    start_at         timestamptz NOT NULL,
    status           text NOT NULL CHECK (status IN ('ON', 'OFF')),
    next_run_at      timestamptz NULL,
    last_run_at      timestamptz NULL,
    -- The latest occurrence handed to the queue, and when: the producer does not enqueue an
    -- occurrence again while it is in flight.
    enqueued_through timestamptz NULL,
    enqueued_at      timestamptz NULL,
    -- Occurrences before this instant (the last OFF -> ON) are never paid.
    active_from      timestamptz NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    deleted_at       timestamptz NULL
);
CREATE UNIQUE INDEX ux_allowance_schedules_pair ON allowance_schedules (guardian_id, junior_id) WHERE deleted_at IS NULL;
-- The producer's keyset scan: due, active schedules in (next_run_at, id) order.
CREATE INDEX ix_allowance_schedules_due ON allowance_schedules (next_run_at, id) WHERE status = 'ON' AND deleted_at IS NULL;

-- One row per occurrence, whatever became of it. The unique (schedule_id, run_at) is the
-- exactly-once guarantee: a credit is committed in the same transaction as its ledger transfer.
CREATE TABLE allowance_credits (
    id             uuid PRIMARY KEY,
    schedule_id    uuid NOT NULL REFERENCES allowance_schedules (id),
    run_at         timestamptz NOT NULL,
    amount_minor   bigint NOT NULL,
    currency       char(3) NOT NULL,
    outcome        text NOT NULL CHECK (outcome IN ('PAID', 'FAILED', 'SKIPPED')),
    transaction_id uuid NULL REFERENCES ledger_transfers (id),
    reason         text NULL,
    credited_at    timestamptz NOT NULL,
    UNIQUE (schedule_id, run_at),
    CHECK ((outcome = 'PAID') = (transaction_id IS NOT NULL))
);
