-- The promise, as planned: the estimated ready and delivery times from the
-- current plan, and the at-risk flag (why the network cannot deliver the
-- order by its deadline, and since when). NULL until known or while on track.
ALTER TABLE orders ADD COLUMN eta_ready_ms BIGINT;
ALTER TABLE orders ADD COLUMN eta_delivery_ms BIGINT;
ALTER TABLE orders ADD COLUMN at_risk TEXT;
ALTER TABLE orders ADD COLUMN at_risk_ms BIGINT;
