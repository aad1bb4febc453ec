-- Manual run requests: queued by the admin API of any instance, claimed and run by the
-- instance that holds the (store, job) lease, so a manual run never overlaps a scheduled one.
CREATE TABLE run_requests (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    store_id      TEXT NOT NULL,
    job           TEXT NOT NULL,
    params        TEXT NOT NULL,
    requested_by  TEXT NOT NULL,
    -- queued, running, succeeded, failed
    state         TEXT NOT NULL,
    holder        TEXT,
    -- the lease epoch the run held: finds its job_runs row while it runs
    epoch         BIGINT,
    result        TEXT,
    error         TEXT,
    requested_at  TIMESTAMPTZ NOT NULL,
    started_at    TIMESTAMPTZ,
    finished_at   TIMESTAMPTZ
);
CREATE INDEX run_requests_by_state ON run_requests (state, store_id, job);

-- Pauses set from the CLI or the admin API; `job` is '*' for the whole store. Combined with
-- the config's `paused` and `paused_jobs`.
CREATE TABLE job_pauses (
    store_id   TEXT NOT NULL,
    job        TEXT NOT NULL,
    paused_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (store_id, job)
);
