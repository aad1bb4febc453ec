-- Job leases: who runs (store, job) until when. `epoch` grows on every change of holder
-- and is the fencing token writes made under the lease are checked against.
CREATE TABLE leases (
    key         TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    epoch       BIGINT NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

-- Daemon instances, for status and hand-over.
CREATE TABLE instances (
    id          TEXT PRIMARY KEY,
    started_at  TIMESTAMPTZ NOT NULL,
    seen_at     TIMESTAMPTZ NOT NULL,
    info        TEXT NOT NULL
);
