-- Limits toward upstreams held across instances live in PostgreSQL and Redis only: an embedded
-- (SQLite) Tally is one process, whose own call gate and rate limits are the whole fleet's.

-- Which instance holds a connection's sync claim (see the PostgreSQL script).
ALTER TABLE provider_connections ADD COLUMN sync_claimed_by TEXT NULL;
