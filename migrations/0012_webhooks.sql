-- Brand webhooks (Standard Webhooks). An endpoint belongs to one brand and
-- receives that brand's events from `cursor_seq` on: the delivery worker
-- reads the event log after the cursor, queues one delivery per wanted
-- event and moves the cursor, in one transaction. The secret is kept in
-- clear because signing needs it; a rotated-out secret keeps signing
-- (beside the new one) until `previous_until_ms`.
CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY,
    brand TEXT NOT NULL,
    url TEXT NOT NULL,
    description TEXT NOT NULL,
    kinds TEXT NOT NULL,
    secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_until_ms BIGINT,
    cursor_seq BIGINT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_brand ON webhook_endpoints (brand);

-- One event for one endpoint. `next_attempt_ms` is also the claim: a
-- worker moves it past the attempt's timeout (compare-and-set) before it
-- sends, so two workers never send the same attempt, and an attempt cut
-- short by a crash is made again once that time has passed.
CREATE TABLE webhook_deliveries (
    id BIGINT PRIMARY KEY,
    endpoint_id TEXT NOT NULL,
    event_seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    first_attempt_ms BIGINT,
    next_attempt_ms BIGINT NOT NULL,
    last_attempt_ms BIGINT,
    last_status BIGINT,
    last_error TEXT,
    created_ms BIGINT NOT NULL,
    UNIQUE (endpoint_id, event_seq)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_ms);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id);
INSERT INTO counters (name, value) VALUES ('webhook_delivery_seq', 0);
