-- Room on each page of allowance_schedules for a schedule's next row version. Every occurrence
-- updates its schedule twice: the producer's mark (enqueued_through, enqueued_at: no index holds
-- them) and the payment's advance. With free space on the page the mark is a HOT update: no new
-- index entries, and the old version is pruned in place. A full page (the default, 100) sends every
-- new version to another page and into all five indexes.
-- Applies to pages written from now on; existing pages keep their fill until the table is rewritten.
ALTER TABLE allowance_schedules SET (fillfactor = 50);
