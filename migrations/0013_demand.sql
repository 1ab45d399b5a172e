-- Demand and production per brand, SKU and factory and UTC day of the
-- domain clock, counted by the forecaster from the event log: `units`
-- ordered (the lines of each `order.accepted`) and `produced` (the good
-- units of each `job.done` of a line's last step). The counter `demand_cursor` is the last event seq
-- counted: moving it and adding the units is one transaction, so every
-- event is counted once, across restarts and daemons.
CREATE TABLE demand_daily (
    brand TEXT NOT NULL,
    sku TEXT NOT NULL,
    factory TEXT NOT NULL,
    day TEXT NOT NULL,
    units BIGINT NOT NULL,
    produced BIGINT NOT NULL,
    PRIMARY KEY (brand, sku, factory, day)
);
INSERT INTO counters (name, value) VALUES ('demand_cursor', 0);
