-- Proof of handoff: each stop's short code (shown to the factory operator
-- for a pickup, to the brand for a drop-off; the courier confirms with it),
-- the wrong codes tried so far (a stop locks at the configured limit), and
-- the reason of a failed attempt. Stops planned before this migration have
-- no code and are confirmed without one.
ALTER TABLE handoffs ADD COLUMN code TEXT;
ALTER TABLE handoffs ADD COLUMN wrong_codes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE handoffs ADD COLUMN failure TEXT;

-- Orders whose delivery attempts ran out: no wave plans them again; the
-- operator and the brand see why (`order.escalated`).
CREATE TABLE order_escalations (
    order_id TEXT PRIMARY KEY REFERENCES orders (id),
    reason TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    at_ms BIGINT NOT NULL
);
