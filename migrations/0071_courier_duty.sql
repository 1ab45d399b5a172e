-- Couriers taken off duty (a courier dropping out for the day) or back on:
-- waves plan no stops for a courier off duty. A courier with no row is on duty.
CREATE TABLE courier_duty (
    courier TEXT PRIMARY KEY,
    on_duty BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    actor TEXT NOT NULL
);
