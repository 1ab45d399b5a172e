-- Returns: a brand asks for delivered units back; a courier picks them up
-- from the customer and drops them at the order's factory (a handoff pair
-- carrying the return's id); the operator restocks or scraps each unit.
CREATE TABLE returns (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES orders (id),
    brand TEXT NOT NULL,
    factory TEXT NOT NULL,
    zone TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL,
    -- JSON: [{"line", "sku", "quantity"}]
    lines TEXT NOT NULL,
    -- JSON once inspected: [{"line", "sku", "restocked", "scrapped"}]
    inspection TEXT,
    requested_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE INDEX returns_order ON returns (order_id);
CREATE INDEX returns_state_zone ON returns (state, zone);
CREATE INDEX returns_brand_id ON returns (brand, id);

-- The stops of a return's pickup and drop-off are handoffs like any other,
-- marked with the return they move (NULL: the order's own delivery).
ALTER TABLE handoffs ADD COLUMN return_id TEXT;

-- Restocked units per factory and SKU, taken by later orders at acceptance.
CREATE TABLE stock (
    factory TEXT NOT NULL,
    sku TEXT NOT NULL,
    units BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (factory, sku)
);
