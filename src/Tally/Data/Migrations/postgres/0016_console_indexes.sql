-- The console's runs and events listings and its search box (issue: operator console). Each filter
-- is answered by walking one index backwards (newest first) from the filter's value, or from the
-- keyset cursor, and stopping after a page: the cost is a page's rows whatever the table holds.
-- Measured on 10,000,000 runs and 10,000,000 events: bench/RESULTS.md, "Console listings at scale".

-- Runs, newest first, SKIPPED_LOCKED hidden (the default view): with several instances each
-- occurrence leaves one skipped row per other instance, so the primary key alone would walk through
-- them. The listing writes the predicate as this literal, which PostgreSQL matches.
CREATE INDEX ix_cron_runs_shown ON cron_runs (id) WHERE status <> 'SKIPPED_LOCKED';
CREATE INDEX ix_cron_runs_job_shown ON cron_runs (job_name, id) WHERE status <> 'SKIPPED_LOCKED';
-- One status (failures, or the skipped rows asked for), alone or for one job.
CREATE INDEX ix_cron_runs_status_id ON cron_runs (status, id);
CREATE INDEX ix_cron_runs_job_status_id ON cron_runs (job_name, status, id);
-- One instance; one trigger (manual runs are rare: a seek, not a walk through scheduled ones).
CREATE INDEX ix_cron_runs_instance_id ON cron_runs (instance_id, id);
CREATE INDEX ix_cron_runs_trigger_id ON cron_runs (trigger, id);

-- Events of one subject (a connection, a schedule, a user), in sequence order either way; events in
-- a time window. By type: ix_outbox_events_type; pending: ix_outbox_events_unpublished (0001).
CREATE INDEX ix_outbox_events_subject ON outbox_events (subject_id, sequence);
CREATE INDEX ix_outbox_events_occurred ON outbox_events (occurred_at);

-- The search box: a dead letter by its message id, whichever queue it came from (the unique key is
-- (queue, message_id), which a search without the queue cannot seek).
CREATE INDEX IF NOT EXISTS ix_dead_letters_message_id ON dead_letters (message_id);
