-- Maintenance planned ahead on a machine (`POST /v1/machines/{id}/maintenance-windows`):
-- the dispatcher starts no job that would run into [start_ms, end_ms)
-- (domain clock milliseconds).
CREATE TABLE maintenance_windows (
    id TEXT PRIMARY KEY,
    machine TEXT NOT NULL,
    start_ms BIGINT NOT NULL,
    end_ms BIGINT NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX maintenance_windows_machine ON maintenance_windows (machine, end_ms);
