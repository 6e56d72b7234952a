-- Balance sync: the core-banking mirror. See the PostgreSQL script for what each column means.
-- Balances are TEXT, which is how EF Core's SQLite provider stores a decimal: exact, and no SQL
-- arithmetic is done on a mirror. The shared lanes table (balance_sync_queue) exists only on
-- PostgreSQL: an embedded instance keeps its lanes in memory and re-derives them on schedule.

CREATE TABLE core_accounts (
    id                TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL REFERENCES users (id),
    account_number    TEXT NOT NULL,
    account_type      TEXT NOT NULL,
    is_primary        INTEGER NOT NULL,
    is_active         INTEGER NOT NULL,
    currency          TEXT NOT NULL,
    balance           TEXT NULL,
    available_balance TEXT NULL,
    last_synced_at    TEXT NULL,
    last_attempt_at   TEXT NULL,
    bank_as_of        TEXT NULL,
    last_error        TEXT NULL,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    UNIQUE (user_id, account_number)
);
CREATE INDEX ix_core_accounts_account_number ON core_accounts (account_number);
