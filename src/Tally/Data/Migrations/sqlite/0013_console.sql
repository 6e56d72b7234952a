-- The operator console's admin API: the registry of instances and the indexes its reads need. Same
-- shape and reasons as the PostgreSQL script.
CREATE TABLE instances (
    id                TEXT PRIMARY KEY,
    roles             TEXT NOT NULL,
    version           TEXT NOT NULL,
    host              TEXT NOT NULL,
    heartbeat_seconds INTEGER NOT NULL CHECK (heartbeat_seconds >= 1),
    started_at        TEXT NOT NULL,
    last_seen_at      TEXT NOT NULL,
    stopped_at        TEXT NULL
);

CREATE INDEX ix_cron_runs_job_status ON cron_runs (job_name, status, started_at);
CREATE INDEX ix_allowance_credits_credited ON allowance_credits (credited_at, outcome);
CREATE INDEX ix_allowance_schedules_guardian ON allowance_schedules (guardian_id, id);
CREATE INDEX ix_allowance_schedules_junior ON allowance_schedules (junior_id, id);
CREATE INDEX ix_provider_connections_user_id ON provider_connections (user_id, id);
