-- Connections: users' aggregator connections, their mirrored accounts, sync runs, and the Data
-- Protection key ring. See the PostgreSQL script for what each column guarantees. Balances are
-- TEXT as EF Core's SQLite provider writes decimals: exact, and no SQL arithmetic is done on them.

CREATE TABLE provider_connections (
    id                    TEXT PRIMARY KEY,
    user_id               TEXT NOT NULL REFERENCES users (id),
    provider_slug         TEXT NOT NULL,
    name                  TEXT NULL,
    status                TEXT NOT NULL CHECK (status IN ('ACTIVE', 'REAUTH_REQUIRED', 'DISCONNECTED')),
    credentials_encrypted TEXT NULL,
    consent_expires_at    TEXT NULL,
    last_sync_at          TEXT NULL,
    last_attempt_at       TEXT NULL,
    last_error            TEXT NULL,
    retry_not_before      TEXT NULL,
    sync_claimed_until    TEXT NULL,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL,
    deleted_at            TEXT NULL,
    CHECK ((deleted_at IS NULL) OR (credentials_encrypted IS NULL))
);
CREATE INDEX ix_provider_connections_user ON provider_connections (user_id, created_at) WHERE deleted_at IS NULL;
CREATE INDEX ix_provider_connections_active ON provider_connections (id) WHERE status = 'ACTIVE' AND deleted_at IS NULL;

CREATE TABLE provider_accounts (
    id                  TEXT PRIMARY KEY,
    connection_id       TEXT NOT NULL REFERENCES provider_connections (id),
    provider_account_id TEXT NOT NULL,
    masked_number       TEXT NULL,
    name                TEXT NOT NULL,
    account_type        TEXT NOT NULL,
    balance             TEXT NOT NULL,
    available_balance   TEXT NULL,
    currency            TEXT NOT NULL,
    is_active           INTEGER NOT NULL,
    balance_date        TEXT NULL,
    last_synced_at      TEXT NOT NULL,
    provider_metadata   TEXT NULL,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    UNIQUE (connection_id, provider_account_id)
);

CREATE TABLE connection_sync_runs (
    id              TEXT PRIMARY KEY,
    connection_id   TEXT NOT NULL REFERENCES provider_connections (id),
    trigger         TEXT NOT NULL CHECK (trigger IN ('api', 'schedule')),
    forced          INTEGER NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('RUNNING', 'SUCCEEDED', 'FAILED')),
    reason          TEXT NULL,
    provider_called INTEGER NOT NULL,
    created_count   INTEGER NOT NULL DEFAULT 0,
    updated_count   INTEGER NOT NULL DEFAULT 0,
    unchanged_count INTEGER NOT NULL DEFAULT 0,
    error_count     INTEGER NOT NULL DEFAULT 0,
    message         TEXT NULL,
    started_at      TEXT NOT NULL,
    finished_at     TEXT NULL
);
CREATE INDEX ix_connection_sync_runs_connection ON connection_sync_runs (connection_id, started_at);

CREATE TABLE data_protection_keys (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    friendly_name TEXT NULL,
    xml           TEXT NULL
);
