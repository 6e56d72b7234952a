-- The PostgreSQL script leaves room on the pages of allowance_schedules and ledger_accounts for
-- their rows' next versions (fillfactor). SQLite has no such setting; this script keeps the two
-- lists of migrations alike.
SELECT 1;
