-- Several daemons on one database (docs/architecture.md, "Several daemons").
-- One file for SQLite and PostgreSQL, as every migration here.

-- Live daemons: each renews its row; a row past expires_ms (database clock,
-- wall milliseconds) is a daemon that is gone.
CREATE TABLE daemons (
    id TEXT PRIMARY KEY,
    started_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);

-- Leases: `factory/<id>` (its machines' supervisors and its scheduling) and
-- `zone/<id>` (its planning waves). The epoch rises with every new owner;
-- every write of a fenced store checks owner and epoch, and that the lease
-- has not expired, in its own transaction.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);

-- Outbox rows claimed by a publisher until claimed_until_ms (database
-- clock); another daemon takes them only after that.
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
ALTER TABLE outbox ADD COLUMN claimed_until_ms BIGINT;
