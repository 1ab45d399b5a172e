-- Tokens: a public id (the first 12 hex digits of the hash, shown by
-- `fabflow tokens list` and taken by `revoke`), an optional expiry and a
-- revocation time. A revocation bumps the `token_epoch` counter, which every
-- daemon polls to drop its cached tokens at once.
ALTER TABLE api_tokens ADD COLUMN id TEXT;
ALTER TABLE api_tokens ADD COLUMN expires_ms BIGINT;
ALTER TABLE api_tokens ADD COLUMN revoked_ms BIGINT;
UPDATE api_tokens SET id = SUBSTR(hash, 1, 12);
CREATE UNIQUE INDEX api_tokens_id ON api_tokens (id);
INSERT INTO counters (name, value) VALUES ('token_epoch', 0);

-- Operator and admin decisions: who, what, when. Written in the transaction
-- of the decision itself; read by admins at GET /v1/audit.
CREATE TABLE audit (
    seq BIGINT PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('audit_seq', 0);
