-- Room on each page for the next version of rows that are updated over and over: schedules (twice
-- per occurrence) and balances (every transfer). An update that changes no indexed column is a HOT
-- update when the page has room: the new version stays on the page, no index gets a new entry, and
-- the old version is pruned in place. On a full page (the default fillfactor, 100, and so every
-- freshly loaded table) each update moves the row to another page and adds an entry to every index.
-- - allowance_schedules: the producer's mark (enqueued_through, enqueued_at: in no index). The
--   payment's advance changes next_run_at, which the due index holds, so it cannot be HOT.
-- - ledger_accounts: balance_minor, in no index.
-- Applies to pages written from now on; existing pages keep their fill until the table is rewritten.
ALTER TABLE allowance_schedules SET (fillfactor = 50);
ALTER TABLE ledger_accounts SET (fillfactor = 50);
