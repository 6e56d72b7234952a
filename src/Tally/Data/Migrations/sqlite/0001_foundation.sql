-- Foundation: users, the ledger, and the job runtime's tables.
-- Same shape as the PostgreSQL script; uuids and times are TEXT as EF Core's SQLite provider writes them.

CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    username        TEXT NOT NULL UNIQUE,
    context         TEXT NOT NULL CHECK (context IN ('MOBILE_BANKING', 'WALLET')),
    customer_number TEXT NULL,
    is_active       INTEGER NOT NULL,
    created_at      TEXT NOT NULL
);

CREATE TABLE guardian_juniors (
    guardian_id TEXT NOT NULL REFERENCES users (id),
    junior_id   TEXT NOT NULL REFERENCES users (id),
    linked_at   TEXT NOT NULL,
    PRIMARY KEY (guardian_id, junior_id),
    CHECK (guardian_id <> junior_id)
);
CREATE INDEX ix_guardian_juniors_junior ON guardian_juniors (junior_id);

-- Money in minor units as INTEGER: exact. See the PostgreSQL script for the funding account rule.
CREATE TABLE ledger_accounts (
    id            TEXT PRIMARY KEY,
    owner_id      TEXT NULL REFERENCES users (id),
    currency      TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('USER', 'FUNDING')),
    balance_minor INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    CONSTRAINT ck_ledger_accounts_user_not_negative CHECK (kind = 'FUNDING' OR balance_minor >= 0),
    CONSTRAINT ck_ledger_accounts_owner CHECK ((kind = 'FUNDING') = (owner_id IS NULL))
);
CREATE UNIQUE INDEX ux_ledger_accounts_owner_currency ON ledger_accounts (owner_id, currency) WHERE owner_id IS NOT NULL;
CREATE UNIQUE INDEX ux_ledger_accounts_funding_currency ON ledger_accounts (currency) WHERE kind = 'FUNDING';

CREATE TABLE ledger_transfers (
    id                TEXT PRIMARY KEY,
    debit_account_id  TEXT NOT NULL REFERENCES ledger_accounts (id),
    credit_account_id TEXT NOT NULL REFERENCES ledger_accounts (id),
    amount_minor      INTEGER NOT NULL CHECK (amount_minor > 0),
    currency          TEXT NOT NULL,
    kind              TEXT NOT NULL,
    idempotency_key   TEXT NOT NULL UNIQUE,
    created_at        TEXT NOT NULL,
    CHECK (debit_account_id <> credit_account_id)
);
CREATE INDEX ix_ledger_transfers_debit ON ledger_transfers (debit_account_id, created_at);
CREATE INDEX ix_ledger_transfers_credit ON ledger_transfers (credit_account_id, created_at);

CREATE TRIGGER ledger_transfers_no_update BEFORE UPDATE ON ledger_transfers
BEGIN
    SELECT RAISE(ABORT, 'ledger transfers are immutable');
END;
CREATE TRIGGER ledger_transfers_no_delete BEFORE DELETE ON ledger_transfers
BEGIN
    SELECT RAISE(ABORT, 'ledger transfers are immutable');
END;

CREATE TABLE cron_runs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    job_name        TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('RUNNING', 'SUCCESS', 'FAILED', 'SKIPPED_LOCKED')),
    trigger         TEXT NOT NULL,
    scheduled_for   TEXT NULL,
    processed_count INTEGER NOT NULL DEFAULT 0,
    error_message   TEXT NULL,
    started_at      TEXT NOT NULL,
    finished_at     TEXT NULL,
    instance_id     TEXT NOT NULL
);
CREATE INDEX ix_cron_runs_job_started ON cron_runs (job_name, started_at);
CREATE INDEX ix_cron_runs_started ON cron_runs (started_at);

CREATE TABLE job_states (
    job_name        TEXT PRIMARY KEY,
    paused          INTEGER NOT NULL DEFAULT 0,
    last_occurrence TEXT NULL,
    updated_at      TEXT NOT NULL
);

CREATE TABLE dead_letters (
    id               TEXT PRIMARY KEY,
    queue            TEXT NOT NULL,
    message_id       TEXT NOT NULL,
    body             TEXT NOT NULL,
    attempts         INTEGER NOT NULL,
    reason           TEXT NOT NULL,
    dead_lettered_at TEXT NOT NULL,
    UNIQUE (queue, message_id)
);

CREATE TABLE outbox_events (
    sequence     INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id     TEXT NOT NULL UNIQUE,
    event_type   TEXT NOT NULL,
    subject_id   TEXT NULL,
    payload      TEXT NOT NULL,
    occurred_at  TEXT NOT NULL,
    published_at TEXT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT NULL
);
CREATE INDEX ix_outbox_events_unpublished ON outbox_events (sequence) WHERE published_at IS NULL;
CREATE INDEX ix_outbox_events_type ON outbox_events (event_type, sequence);
