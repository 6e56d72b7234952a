-- The console's runs and events listings and its search box: the same indexes and reasons as the
-- PostgreSQL script.
CREATE INDEX ix_cron_runs_shown ON cron_runs (id) WHERE status <> 'SKIPPED_LOCKED';
CREATE INDEX ix_cron_runs_job_shown ON cron_runs (job_name, id) WHERE status <> 'SKIPPED_LOCKED';
CREATE INDEX ix_cron_runs_status_id ON cron_runs (status, id);
CREATE INDEX ix_cron_runs_job_status_id ON cron_runs (job_name, status, id);
CREATE INDEX ix_cron_runs_instance_id ON cron_runs (instance_id, id);
CREATE INDEX ix_cron_runs_trigger_id ON cron_runs (trigger, id);
CREATE INDEX ix_outbox_events_subject ON outbox_events (subject_id, sequence);
CREATE INDEX ix_outbox_events_occurred ON outbox_events (occurred_at);
CREATE INDEX IF NOT EXISTS ix_dead_letters_message_id ON dead_letters (message_id);
