-- A brand's sales events (pop-ups, weekend markets): the days it sells and,
-- when counted, its footfall. Orders are attributed to events by day (see
-- docs/forecasting.md); recommended production runs are per event.
CREATE TABLE sales_events (
    brand TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    starts_on TEXT NOT NULL,
    days BIGINT NOT NULL,
    footfall BIGINT,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (brand, id)
);
-- Units customers asked back (the lines of each `return.requested`), beside
-- units ordered and produced.
ALTER TABLE demand_daily ADD COLUMN returned BIGINT NOT NULL DEFAULT 0;
