-- The transactional outbox: every effect flagsync has on another system (a fulfilment
-- request, its withdrawal, a shipment push) is a row written in the same transaction as
-- the state change that causes it. Workers claim due rows, make the call outside any
-- transaction, then record the outcome. `dedupe_key` makes each effect exist once:
-- `fulfil:{store}:{order}`, `withdraw:{store}:{order}`, `ship:{store}:{notice}`.
-- Stock pushes are not here: each listing row's `pending` intent is their (coalesced) outbox.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT NOT NULL CHECK (kind IN ('fulfil', 'withdraw', 'ship')),
    store_id        TEXT NOT NULL,
    order_id        TEXT NOT NULL,
    dedupe_key      TEXT NOT NULL UNIQUE,
    -- JSON: what the worker needs beyond the stored order (a shipment notice, a reason)
    payload         TEXT NOT NULL,
    -- pending (to send), done (delivered), dead (given up: the dead-letter list),
    -- dropped (withdrawn or dropped by ops, with the reason)
    state           TEXT NOT NULL CHECK (state IN ('pending', 'done', 'dead', 'dropped')),
    -- claims so far; a claim counts before the call, so > 0 means it may have been sent
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    done_at         TEXT,
    dead_reason     TEXT,
    dropped_reason  TEXT
);
CREATE INDEX outbox_due ON outbox (store_id, state, next_attempt_at);
CREATE INDEX outbox_by_order ON outbox (store_id, order_id);
