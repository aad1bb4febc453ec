-- The inventory ledger. Quantities are whole units.

-- The operator's on-hand per SKU and warehouse, as of the stock watermark.
CREATE TABLE operator_stock (
    sku         TEXT NOT NULL,
    warehouse   TEXT NOT NULL,
    on_hand     BIGINT NOT NULL CHECK (on_hand >= 0),
    watermark   BIGINT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (sku, warehouse)
);

-- Contract-phone resources: plan quotas and number pools.
CREATE TABLE operator_resources (
    kind        TEXT NOT NULL,
    code        TEXT NOT NULL,
    available   BIGINT NOT NULL CHECK (available >= 0),
    watermark   BIGINT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (kind, code)
);

-- Named watermarks: 'stock' (the operator snapshot the ledger reflects), 'shipments'.
CREATE TABLE watermarks (
    name        TEXT PRIMARY KEY,
    value       BIGINT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

-- Units held for order lines, one row per (order line, component). A row is opened once,
-- then released (cancel/refund before shipment) or consumed (operator shipped) exactly
-- once: every transition is a conditional update on state = 'open'.
CREATE TABLE reservations (
    store_id           TEXT NOT NULL,
    order_id           TEXT NOT NULL,
    line_id            TEXT NOT NULL,
    component          TEXT NOT NULL,
    listing            TEXT NOT NULL,
    quantity           BIGINT NOT NULL CHECK (quantity > 0),
    state              TEXT NOT NULL CHECK (state IN ('open', 'released', 'consumed')),
    ordered_at         TIMESTAMPTZ NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL,
    closed_at          TIMESTAMPTZ,
    consumed_watermark BIGINT,
    flagged            TEXT,
    PRIMARY KEY (store_id, order_id, line_id, component)
);
CREATE INDEX reservations_by_component ON reservations (component, state);

-- Marketplace listings: discovered from order lines and catalogue reads, with what the
-- planner last pushed and what the marketplace last showed.
CREATE TABLE listings (
    store_id       TEXT NOT NULL,
    item_id        TEXT NOT NULL,
    sku_id         TEXT NOT NULL,
    outer_id       TEXT,
    title          TEXT,
    grant_units    BIGINT,
    allowance      BIGINT,
    last_pushed    BIGINT,
    last_pushed_at TIMESTAMPTZ,
    pending        TEXT,
    live           BIGINT,
    live_at        TIMESTAMPTZ,
    discovered_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (store_id, item_id, sku_id)
);
