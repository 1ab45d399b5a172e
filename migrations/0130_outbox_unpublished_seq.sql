-- The publisher reads the oldest unpublished events in the log's order
-- (`WHERE published_ms IS NULL ORDER BY seq LIMIT n`). The index on
-- (published_ms, id) found those rows but not their order: every read
-- fetched and sorted the whole unpublished backlog, tens of thousands of
-- rows a read during an intake burst. This index holds only the unpublished
-- rows, in seq order, so a read touches the rows it returns; stamping a row
-- published takes it out. Stamping finds rows by id (the primary key).
DROP INDEX outbox_unpublished;
CREATE INDEX outbox_unpublished_seq ON outbox (seq) WHERE published_ms IS NULL;
