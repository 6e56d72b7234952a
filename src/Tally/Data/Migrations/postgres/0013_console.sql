-- The operator console's admin API (issue #13): the registry of instances, and the indexes its
-- reads need so each stays an index seek or a short range scan however large the tables grow.

-- One row per instance id (Tally:InstanceId, else host and process id). Each instance upserts its
-- row at start and every Tally:HeartbeatSeconds, and stamps stopped_at when it stops gracefully. Its
-- heartbeat is kept with it, so an instance is judged by its own: alive means not stopped and seen
-- within three of its heartbeats, worked out when read, never stored. The upsert on the primary key
-- lets any number of instances (even two with the same id) start at once.
CREATE TABLE instances (
    id                text PRIMARY KEY,
    roles             text NOT NULL,
    version           text NOT NULL,
    host              text NOT NULL,
    heartbeat_seconds integer NOT NULL CHECK (heartbeat_seconds >= 1),
    started_at        timestamptz NOT NULL,
    last_seen_at      timestamptz NOT NULL,
    stopped_at        timestamptz NULL
);

-- A job's last success (the job page and its stale mark) and its latest failures (the overview),
-- each a backward seek on one job and one status. ix_cron_runs_job_started alone would walk back
-- through every other status first: through years of failures for a job that never succeeds.
CREATE INDEX ix_cron_runs_job_status ON cron_runs (job_name, status, started_at);

-- The overview's credits paid per hour over the last 24 hours: a range scan of one day, index-only
-- on PostgreSQL, instead of a scan of every credit ever made.
CREATE INDEX ix_allowance_credits_credited ON allowance_credits (credited_at, outcome);

-- The admin search of schedules by guardian or by junior, deleted ones included, in id order (its
-- keyset). ux_allowance_schedules_pair serves neither: it is partial (live schedules) and has no
-- junior first.
CREATE INDEX ix_allowance_schedules_guardian ON allowance_schedules (guardian_id, id);
CREATE INDEX ix_allowance_schedules_junior ON allowance_schedules (junior_id, id);

-- The admin listing of a user's connections, deleted ones included (ix_provider_connections_user
-- is partial: live connections only), in id order.
CREATE INDEX ix_provider_connections_user_id ON provider_connections (user_id, id);
