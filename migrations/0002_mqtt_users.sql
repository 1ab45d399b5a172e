-- Users of the embedded MQTT broker (its access gateway). Client passwords
-- are stored only as SHA-256 hashes (they are random, 24 bytes). role is
-- observer, courier, brand or machine; factory is set for machines only.
CREATE TABLE mqtt_users (
    username TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    factory TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    rotated_ms BIGINT NOT NULL
);
