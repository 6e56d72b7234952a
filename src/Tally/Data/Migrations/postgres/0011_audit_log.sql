-- The operator audit: one row per change asked of the admin API (or refused to the caller's role),
-- written BEFORE the change runs (outcome 'started') and completed after it, so a change that ran
-- always has its row, even when the process dies before answering. Rows are never updated again
-- and never deleted by Tally.
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at timestamptz NOT NULL,
    finished_at timestamptz NULL,
    actor       text NOT NULL,
    actor_roles text NOT NULL,
    action      text NOT NULL,
    target      text NULL,
    outcome     text NOT NULL CONSTRAINT ck_audit_log_outcome
                CHECK (outcome IN ('started', 'succeeded', 'refused', 'forbidden', 'failed')),
    status      integer NULL,
    detail      text NULL,
    trace_id    text NULL
);

-- The listing is newest first (the primary key), filtered by who or what.
CREATE INDEX ix_audit_log_actor ON audit_log (actor, id);
CREATE INDEX ix_audit_log_action ON audit_log (action, id);
