-- flagsync schema, PostgreSQL flavour. Times are UTC (timestamptz); money is integer fen.

CREATE TABLE stores (
    id          TEXT PRIMARY KEY,
    platform    TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE orders (
    store_id        TEXT NOT NULL REFERENCES stores (id),
    order_id        TEXT NOT NULL,
    status          TEXT NOT NULL,
    -- lifecycle rank of status: breaks ties between copies with the same `modified`
    status_rank     BIGINT NOT NULL,
    platform_status TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    modified_at     TIMESTAMPTZ NOT NULL,
    paid_at         TIMESTAMPTZ,
    total_fen       BIGINT NOT NULL,
    payment_fen     BIGINT NOT NULL,
    post_fee_fen    BIGINT NOT NULL,
    -- the domain order as JSON (receiver and contract data included: personal data at rest)
    detail          TEXT NOT NULL,
    -- the platform's payload exactly as received
    raw             TEXT NOT NULL,
    -- hash of everything mapped from the payload (status, lines, detail)
    fingerprint     TEXT NOT NULL,
    -- how many distinct versions (modified values) were stored
    revisions       BIGINT NOT NULL DEFAULT 1,
    ingested_at     TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (store_id, order_id)
);
CREATE INDEX orders_by_modified ON orders (store_id, modified_at);
CREATE INDEX orders_by_status ON orders (store_id, status);

CREATE TABLE order_lines (
    store_id        TEXT NOT NULL,
    order_id        TEXT NOT NULL,
    line_id         TEXT NOT NULL,
    item_id         TEXT NOT NULL,
    sku_id          TEXT,
    outer_sku_id    TEXT,
    title           TEXT NOT NULL,
    quantity        BIGINT NOT NULL,
    price_fen       BIGINT NOT NULL,
    payment_fen     BIGINT NOT NULL,
    refund          TEXT NOT NULL,
    platform_status TEXT,
    PRIMARY KEY (store_id, order_id, line_id),
    FOREIGN KEY (store_id, order_id) REFERENCES orders (store_id, order_id) ON DELETE CASCADE
);
CREATE INDEX order_lines_by_sku ON order_lines (store_id, outer_sku_id);

-- Where each store's incremental jobs stand: the end of the last window fully committed.
CREATE TABLE sync_cursors (
    store_id    TEXT NOT NULL REFERENCES stores (id),
    job         TEXT NOT NULL,
    position    TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (store_id, job)
);

-- Payloads that could not be parsed: kept with the reason, never dropped.
CREATE TABLE quarantine (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    store_id    TEXT NOT NULL REFERENCES stores (id),
    api         TEXT NOT NULL,
    order_id    TEXT,
    reason      TEXT NOT NULL,
    payload     TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    resolved_at TIMESTAMPTZ
);
CREATE INDEX quarantine_open ON quarantine (store_id, resolved_at);

-- One row per job run, scheduled or manual.
CREATE TABLE job_runs (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    store_id    TEXT NOT NULL,
    job         TEXT NOT NULL,
    trigger     TEXT NOT NULL,
    params      TEXT NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    outcome     TEXT NOT NULL,
    counts      TEXT NOT NULL,
    error       TEXT
);
CREATE INDEX job_runs_by_store ON job_runs (store_id, job, started_at);
