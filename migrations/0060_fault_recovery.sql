-- Fault recovery (docs/architecture.md, "Faults are decisions"): a held job
-- keeps why its machine stopped it and the fault code it showed, until the
-- machine resumes it or an operator decides.
ALTER TABLE jobs ADD COLUMN hold_cause TEXT;
ALTER TABLE jobs ADD COLUMN fault_code BIGINT;
-- Tokens that may have reached a machine and ended without it finishing
-- them (start outcome unknown, abandoned, machine removed): never
-- scheduled or dispatched again, whatever the job row says.
CREATE TABLE retired_tokens (
    token BIGINT PRIMARY KEY,
    reason TEXT NOT NULL,
    retired_ms BIGINT NOT NULL
);
