-- An operator's decision on an escalated order (issue 7): deliver again
-- (perhaps by a new deadline), put its units back on the factory's shelf,
-- or cancel the delivery. The order's escalation row is removed in the same
-- transaction; failed attempts count again from the latest decision.
CREATE TABLE escalation_decisions (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES orders (id),
    decision TEXT NOT NULL,
    deliver_by_ms BIGINT,
    actor TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);

CREATE INDEX escalation_decisions_order ON escalation_decisions (order_id, at_ms);
