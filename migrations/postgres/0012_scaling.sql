-- Indexes and change tracking so that the stock, reconcile and ingest paths cost what
-- changed, not the size of the catalogue or of the order history (issue #7).

-- Sold units of one listing (first push, reconcile): lines of a listing, not of a store.
CREATE INDEX order_lines_by_listing ON order_lines (store_id, item_id, sku_id);

-- Listings of a target, by merchant code.
CREATE INDEX listings_by_code ON listings (store_id, outer_id);

-- Listings the planner must look at whatever changed: a push of unknown outcome, or never
-- settled (allocated listings without an allowance; shared-pool listings never pushed).
CREATE INDEX listings_unsettled_allocated ON listings (store_id)
    WHERE pending IS NOT NULL OR allowance IS NULL;
CREATE INDEX listings_unsettled_shared ON listings (store_id)
    WHERE pending IS NOT NULL OR last_pushed IS NULL;

-- Open reservations flagged as not servable (few; read every stock run).
CREATE INDEX reservations_flagged ON reservations (component)
    WHERE state = 'open' AND flagged IS NOT NULL;

-- Consumed reservations by the stock watermark they shipped at (a snapshot that passes
-- them moves their units from "pending" to "in the snapshot").
CREATE INDEX reservations_consumed ON reservations (consumed_watermark)
    WHERE state = 'consumed';

-- Components whose ledger numbers changed since a store's stock job last planned them:
-- one row per (store, component), `gen` bumped by every change. The stock job reads the
-- rows, plans the listings that use them, and deletes each row only if `gen` is still
-- what it read, so a change made meanwhile is never lost.
CREATE TABLE stock_dirty (
    store_id   TEXT NOT NULL,
    component  TEXT NOT NULL,
    gen        BIGINT NOT NULL,
    PRIMARY KEY (store_id, component)
);
