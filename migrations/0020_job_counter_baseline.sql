-- Machines whose counters are lifetime totals (profile `counts =
-- "cumulative"`): the counter values read when the job was started, stored
-- with its dispatch, so the units it made are the difference even after a
-- daemon restart mid-job. NULL for machines counting per job.
ALTER TABLE jobs ADD COLUMN good_base BIGINT;
ALTER TABLE jobs ADD COLUMN scrap_base BIGINT;
