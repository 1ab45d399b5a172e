-- Every event gets its position in the event log, `seq`: allocated from a
-- counter inside the writing transaction, so the counter's row lock orders
-- the writers and a larger seq is never committed before a smaller one. A
-- consumer that was away resumes with GET /v1/events?after=<seq>.
ALTER TABLE outbox ADD COLUMN seq BIGINT;
UPDATE outbox SET seq = (
    SELECT COUNT(*) FROM outbox earlier
    WHERE earlier.created_ms < outbox.created_ms
       OR (earlier.created_ms = outbox.created_ms AND earlier.id <= outbox.id)
);
CREATE UNIQUE INDEX outbox_seq ON outbox (seq);
CREATE INDEX outbox_brand_seq ON outbox (brand, seq);
INSERT INTO counters (name, value) SELECT 'event_seq', COUNT(*) FROM outbox;
