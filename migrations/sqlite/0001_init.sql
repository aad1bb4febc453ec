-- flagsync schema, SQLite flavour. Times are UTC (sqlx stores chrono DateTime<Utc> as
-- RFC 3339 text, which sorts correctly); money is integer fen.

CREATE TABLE stores (
    id          TEXT PRIMARY KEY,
    platform    TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE orders (
    store_id        TEXT NOT NULL REFERENCES stores (id),
    order_id        TEXT NOT NULL,
    status          TEXT NOT NULL,
    -- lifecycle rank of status: breaks ties between copies with the same `modified`
    status_rank     INTEGER NOT NULL,
    platform_status TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    modified_at     TEXT NOT NULL,
    paid_at         TEXT,
    total_fen       INTEGER NOT NULL,
    payment_fen     INTEGER NOT NULL,
    post_fee_fen    INTEGER NOT NULL,
    -- the domain order as JSON (receiver and contract data included: personal data at rest)
    detail          TEXT NOT NULL,
    -- the platform's payload exactly as received
    raw             TEXT NOT NULL,
    -- hash of everything mapped from the payload (status, lines, detail)
    fingerprint     TEXT NOT NULL,
    -- how many distinct versions (modified values) were stored
    revisions       INTEGER NOT NULL DEFAULT 1,
    ingested_at     TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
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
    quantity        INTEGER NOT NULL,
    price_fen       INTEGER NOT NULL,
    payment_fen     INTEGER NOT NULL,
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
    position    TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (store_id, job)
);

-- Payloads that could not be parsed: kept with the reason, never dropped.
CREATE TABLE quarantine (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    store_id    TEXT NOT NULL REFERENCES stores (id),
    api         TEXT NOT NULL,
    order_id    TEXT,
    reason      TEXT NOT NULL,
    payload     TEXT NOT NULL,
    received_at TEXT NOT NULL,
    resolved_at TEXT
);
CREATE INDEX quarantine_open ON quarantine (store_id, resolved_at);

-- One row per job run, scheduled or manual.
CREATE TABLE job_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    store_id    TEXT NOT NULL,
    job         TEXT NOT NULL,
    trigger     TEXT NOT NULL,
    params      TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    outcome     TEXT NOT NULL,
    counts      TEXT NOT NULL,
    error       TEXT
);
CREATE INDEX job_runs_by_store ON job_runs (store_id, job, started_at);
