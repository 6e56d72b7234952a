-- The operator audit. Same shape and rules as the PostgreSQL script.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    occurred_at TEXT NOT NULL,
    finished_at TEXT NULL,
    actor       TEXT NOT NULL,
    actor_roles TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NULL,
    outcome     TEXT NOT NULL CONSTRAINT ck_audit_log_outcome
                CHECK (outcome IN ('started', 'succeeded', 'refused', 'forbidden', 'failed')),
    status      INTEGER NULL,
    detail      TEXT NULL,
    trace_id    TEXT NULL
);

CREATE INDEX ix_audit_log_actor ON audit_log (actor, id);
CREATE INDEX ix_audit_log_action ON audit_log (action, id);
