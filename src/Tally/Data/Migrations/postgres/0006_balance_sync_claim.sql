-- Balance sync: each claim of a lanes row gets its own token, so the statement that queues a
-- login's user and claims the row for the instance serving the login in the same step can tell
-- its own claim from one made just before by a worker of the same instance.
ALTER TABLE balance_sync_queue ADD COLUMN claim uuid NULL;

-- The release of dead instances' claims looks only at claimed rows (a handful), not at every
-- waiting user.
CREATE INDEX ix_balance_sync_queue_claimed ON balance_sync_queue (claimed_at) WHERE claimed_by IS NOT NULL;
