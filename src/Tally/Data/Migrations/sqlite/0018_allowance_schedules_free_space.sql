-- The PostgreSQL script gives allowance_schedules free space per page (fillfactor). SQLite has no
-- such setting; this script keeps the two lists of migrations alike.
SELECT 1;
