-- fabflow schema. One file for SQLite and PostgreSQL: only portable types
-- (TEXT, BIGINT, DOUBLE PRECISION), ids as text, times as BIGINT milliseconds
-- on the domain clock, booleans as BIGINT 0/1.

CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Monotonic counters (job tokens). Read and bumped inside the writing transaction.
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('job_token', 1000);

CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    brand TEXT NOT NULL,
    external_ref TEXT,
    state TEXT NOT NULL,
    customer_name TEXT NOT NULL,
    lat DOUBLE PRECISION NOT NULL,
    lon DOUBLE PRECISION NOT NULL,
    zone TEXT NOT NULL,
    factory TEXT NOT NULL,
    lines TEXT NOT NULL,
    deadline_ms BIGINT NOT NULL,
    accepted_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE INDEX orders_brand_id ON orders (brand, id);
CREATE INDEX orders_state ON orders (state);

CREATE TABLE jobs (
    token BIGINT PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES orders (id),
    line_index BIGINT NOT NULL,
    step_index BIGINT NOT NULL,
    process TEXT NOT NULL,
    recipe BIGINT NOT NULL,
    material TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    seconds_per_unit DOUBLE PRECISION NOT NULL,
    due_ms BIGINT NOT NULL,
    factory TEXT NOT NULL,
    machine TEXT,
    state TEXT NOT NULL,
    good BIGINT NOT NULL DEFAULT 0,
    scrap BIGINT NOT NULL DEFAULT 0,
    -- The job this one replaces (scrap or failure), if any.
    replaces BIGINT,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE INDEX jobs_state ON jobs (state, factory);
CREATE INDEX jobs_order ON jobs (order_id);
CREATE INDEX jobs_machine ON jobs (machine, state);

CREATE TABLE machines (
    id TEXT PRIMARY KEY,
    factory TEXT NOT NULL,
    model TEXT NOT NULL,
    address TEXT NOT NULL,
    capabilities TEXT NOT NULL,
    materials TEXT NOT NULL,
    state TEXT NOT NULL,
    mode TEXT NOT NULL,
    job_token BIGINT,
    fault_code BIGINT,
    updated_ms BIGINT NOT NULL
);

CREATE TABLE handoffs (
    id TEXT PRIMARY KEY,
    wave TEXT NOT NULL,
    courier TEXT NOT NULL,
    order_id TEXT NOT NULL REFERENCES orders (id),
    kind TEXT NOT NULL,
    seq BIGINT NOT NULL,
    place TEXT NOT NULL,
    lat DOUBLE PRECISION NOT NULL,
    lon DOUBLE PRECISION NOT NULL,
    eta_ms BIGINT NOT NULL,
    state TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE INDEX handoffs_courier ON handoffs (courier, wave, seq);
CREATE INDEX handoffs_order ON handoffs (order_id, state);

-- Every state change writes its event here in the same transaction; the
-- publisher sends them (at least once) and stamps published_ms.
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    brand TEXT,
    payload TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    published_ms BIGINT
);
CREATE INDEX outbox_unpublished ON outbox (published_ms, id);

-- Idempotency keys: the first response is stored and replayed.
CREATE TABLE idempotency (
    brand TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status BIGINT NOT NULL,
    response TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (brand, key)
);

-- API tokens, stored only as SHA-256 hashes.
CREATE TABLE api_tokens (
    hash TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
