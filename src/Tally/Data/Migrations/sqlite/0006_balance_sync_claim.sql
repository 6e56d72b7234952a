-- Balance sync claim tokens and the index of claimed rows: nothing to change on SQLite. The
-- shared lanes table exists only on PostgreSQL; embedded lanes live in memory. Kept so both
-- providers share one list of versions.
SELECT 1;
