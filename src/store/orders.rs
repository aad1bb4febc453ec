//! Orders, their lines, quarantined payloads and sync cursors.
//!
//! An order is keyed by (store, order id) and versioned by the platform's `modified`: an
//! incoming copy replaces the stored one only when it is newer (or, at the same
//! `modified` and status, carries details the stored copy lacked, such as contract data
//! fetched by a second call). A stale copy is counted and ignored, so orders never move
//! backwards and re-pulls are harmless.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use flagsync_market::{ContractInfo, Fetched, Order, OrderLine, OrderStatus, Receiver, RefundState};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{Store, StoreError, with_pool};
use crate::inventory::ReservationRules;
use crate::jobs::Fence;

/// What one ingest did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IngestStats {
    pub inserted: u64,
    pub updated: u64,
    /// Copies no newer than what was stored.
    pub unchanged: u64,
    pub quarantined: u64,
    /// Reservations opened or released.
    pub reservation_changes: u64,
}

impl IngestStats {
    pub fn add(&mut self, other: IngestStats) {
        self.inserted += other.inserted;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.quarantined += other.quarantined;
        self.reservation_changes += other.reservation_changes;
    }
}

/// The parts of an order kept as JSON beside the columns.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Detail {
    buyer: flagsync_market::pii::Pii,
    receiver: Option<Receiver>,
    contract: Option<ContractInfo>,
}

/// A quarantined payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuarantineRow {
    pub id: i64,
    pub store_id: String,
    pub api: String,
    pub order_id: Option<String>,
    pub reason: String,
    pub payload: String,
    pub received_at: DateTime<Utc>,
}

/// An order's headline, for lists and checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredOrderSummary {
    pub order_id: String,
    pub status: String,
    pub platform_status: String,
    pub modified_at: DateTime<Utc>,
    pub revisions: i64,
}

/// An order as stored, with its lines.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredOrder {
    pub store_id: String,
    pub order: Order,
    pub revisions: i64,
}

/// Rows a multi-row statement carries (17 parameters an order: well under SQLite's 32,766
/// and PostgreSQL's 65,535).
const ROWS_PER_STATEMENT: usize = 500;

/// An order ready to write, with what is computed from it.
struct Prepared<'a> {
    order: &'a Order,
    detail: String,
    fingerprint: String,
}

/// Newer `modified` wins. Platforms stamp `modified` to the second, so two changes in one
/// second (paid, then held) carry the same value: then the copy that differs and is no
/// earlier in the lifecycle wins, so the order still never moves backwards.
const UPSERT_ORDERS_HEAD: &str = "INSERT INTO orders (store_id, order_id, status, status_rank, platform_status, \
     created_at, modified_at, paid_at, total_fen, payment_fen, post_fee_fen, detail, raw, fingerprint, revisions, \
     ingested_at, updated_at) ";

const UPSERT_ORDERS_TAIL: &str = " ON CONFLICT (store_id, order_id) DO UPDATE SET status = excluded.status, \
     status_rank = excluded.status_rank, \
     platform_status = excluded.platform_status, created_at = excluded.created_at, \
     modified_at = excluded.modified_at, paid_at = excluded.paid_at, total_fen = excluded.total_fen, \
     payment_fen = excluded.payment_fen, post_fee_fen = excluded.post_fee_fen, detail = excluded.detail, \
     raw = excluded.raw, fingerprint = excluded.fingerprint, revisions = orders.revisions + 1, \
     updated_at = excluded.updated_at \
     WHERE excluded.modified_at > orders.modified_at \
     OR (excluded.modified_at = orders.modified_at AND excluded.fingerprint <> orders.fingerprint \
         AND excluded.status_rank >= orders.status_rank) \
     RETURNING order_id, revisions";

/// Lifecycle order of statuses, for same-second ties.
fn status_rank(status: OrderStatus) -> i64 {
    match status {
        OrderStatus::AwaitingPayment => 0,
        OrderStatus::Paid => 1,
        OrderStatus::Held => 2,
        OrderStatus::PartiallyShipped => 3,
        OrderStatus::Shipped => 4,
        OrderStatus::Completed => 5,
        OrderStatus::Cancelled => 6,
        OrderStatus::Refunded => 6,
    }
}

/// A stable hash of what was mapped from the payload (not the raw bytes, which may differ
/// in field order between calls).
fn fingerprint(order: &Order, detail: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    order.status.as_str().hash(&mut hasher);
    order.platform_status.hash(&mut hasher);
    order.paid_at.map(|t| t.timestamp()).hash(&mut hasher);
    (order.total_fen, order.payment_fen, order.post_fee_fen).hash(&mut hasher);
    detail.hash(&mut hasher);
    for line in &order.lines {
        (&line.line_id, &line.item_id, &line.sku_id, &line.outer_sku_id, line.quantity).hash(&mut hasher);
        (line.price_fen, line.payment_fen, refund_str(line.refund), &line.platform_status).hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}

const INSERT_LINES_HEAD: &str = "INSERT INTO order_lines (store_id, order_id, line_id, item_id, sku_id, outer_sku_id, \
     title, quantity, price_fen, payment_fen, refund, platform_status) ";

const UPSERT_LISTINGS_HEAD: &str =
    "INSERT INTO listings (store_id, item_id, sku_id, outer_id, title, discovered_at) ";

const UPSERT_LISTINGS_TAIL: &str = " ON CONFLICT (store_id, item_id, sku_id) DO UPDATE SET \
     outer_id = COALESCE(excluded.outer_id, listings.outer_id), title = excluded.title";

/// Opens once: a second open of the same (order line, component) does nothing, and a
/// released or consumed row is never reopened. Only the rows opened come back.
const OPEN_RESERVATIONS_HEAD: &str = "INSERT INTO reservations (store_id, order_id, line_id, component, listing, \
     quantity, state, ordered_at, created_at) ";

const OPEN_RESERVATIONS_TAIL: &str =
    " ON CONFLICT (store_id, order_id, line_id, component) DO NOTHING RETURNING component";

/// Releases once: only open rows move.
const RELEASE_LINE_RESERVATIONS: &str = "UPDATE reservations SET state = 'released', closed_at = $1 \
     WHERE store_id = $2 AND order_id = $3 AND line_id = $4 AND state = 'open' RETURNING component";

/// The outbox's columns (see `outbox::INSERT_ROW`), for a multi-row insert.
const INSERT_OUTBOX_HEAD: &str = "INSERT INTO outbox (kind, store_id, order_id, dedupe_key, payload, state, \
     attempts, next_attempt_at, created_at, dead_reason) ";

/// A reservation transition an order's new state asks for.
enum ReservationChange<'a> {
    Open {
        line_id: &'a str,
        component: String,
        listing: String,
        quantity: i64,
    },
    /// `None` = every line of the order.
    Release {
        line_id: Option<&'a str>,
    },
}

/// What an order's state means for its reservations: paid (or placed, when the store holds
/// stock on order) and open orders hold their lines' components; cancelled or refunded
/// orders, and refunded lines, release what they held. Shipped orders keep theirs until the
/// operator's shipment consumes them.
fn reservation_changes<'a>(order: &'a Order, rules: &ReservationRules) -> Vec<ReservationChange<'a>> {
    let mut changes = Vec::new();
    if matches!(order.status, OrderStatus::Cancelled | OrderStatus::Refunded) {
        changes.push(ReservationChange::Release { line_id: None });
        return changes;
    }
    let holds = order.status.is_open_paid()
        || matches!(order.status, OrderStatus::Shipped | OrderStatus::Completed)
        || (rules.reserve_on_order && order.status == OrderStatus::AwaitingPayment);
    for line in &order.lines {
        if line.refund == RefundState::Refunded {
            changes.push(ReservationChange::Release { line_id: Some(&line.line_id) });
            continue;
        }
        if !holds {
            continue;
        }
        let Some(resolved) =
            rules.target_of(&line.item_id, line.sku_id.as_deref(), line.outer_sku_id.as_deref())
        else {
            continue;
        };
        let listing = crate::inventory::listing_key(&line.item_id, line.sku_id.as_deref());
        for (component, per) in resolved.components {
            changes.push(ReservationChange::Open {
                line_id: &line.line_id,
                component: component.key(),
                listing: listing.clone(),
                quantity: line.quantity * per,
            });
        }
    }
    changes
}

/// Touches the lease row only while its epoch is still ours.
const HOLD_FENCE: &str = "UPDATE leases SET epoch = epoch WHERE key = $1 AND epoch = $2";

const INSERT_QUARANTINE: &str = "INSERT INTO quarantine (store_id, api, order_id, reason, payload, received_at) VALUES ($1, $2, $3, $4, $5, $6)";

const ADVANCE_CURSOR: &str = "INSERT INTO sync_cursors (store_id, job, position, updated_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (store_id, job) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at \
     WHERE excluded.position > sync_cursors.position";

fn refund_str(refund: RefundState) -> &'static str {
    match refund {
        RefundState::None => "none",
        RefundState::Requested => "requested",
        RefundState::Refunded => "refunded",
    }
}

fn parse_refund(text: &str) -> RefundState {
    match text {
        "requested" => RefundState::Requested,
        "refunded" => RefundState::Refunded,
        _ => RefundState::None,
    }
}

impl Store {
    /// Stores a batch of pulled orders (and quarantines what could not be parsed) in one
    /// transaction. When `cursor` is given, the job's cursor moves forward to it in the
    /// same transaction, so a cursor never points past orders that are not committed.
    pub async fn ingest(
        &self,
        store_id: &str,
        batch: &[Fetched],
        cursor: Option<(&str, DateTime<Utc>)>,
        rules: Option<&ReservationRules>,
    ) -> Result<IngestStats, StoreError> {
        self.ingest_fenced(store_id, batch, cursor, rules, None).await
    }

    /// [`Store::ingest`] made under a job lease: the transaction first touches the lease
    /// row with its epoch (a row lock on PostgreSQL until commit), and writes nothing when
    /// another instance has taken the lease over since.
    ///
    /// A batch is written with a handful of multi-row statements (the upsert of its orders,
    /// then their lines, listings, reservations and outbox rows), not several statements an
    /// order: each statement is a round trip to SQLite's worker thread or to PostgreSQL.
    pub async fn ingest_fenced(
        &self,
        store_id: &str,
        batch: &[Fetched],
        cursor: Option<(&str, DateTime<Utc>)>,
        rules: Option<&ReservationRules>,
        fence: Option<&Fence>,
    ) -> Result<IngestStats, StoreError> {
        let now = Utc::now();
        let mut stats = IngestStats::default();
        // Runs of orders with distinct ids: one multi-row upsert may not touch a row twice,
        // and a repeated id must see the first copy stored before it is compared.
        let mut groups: Vec<Vec<Prepared<'_>>> = vec![Vec::new()];
        let mut ids_in_group: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for item in batch {
            let Fetched::Order(order) = item else { continue };
            if !ids_in_group.insert(order.order_id.as_str()) {
                groups.push(Vec::new());
                ids_in_group.clear();
                ids_in_group.insert(order.order_id.as_str());
            }
            let detail = serde_json::to_string(&Detail {
                buyer: order.buyer.clone(),
                receiver: order.receiver.clone(),
                contract: order.contract.clone(),
            })
            .map_err(|e| StoreError::Corrupt(format!("order {}: {e}", order.order_id)))?;
            let fingerprint = fingerprint(order, &detail);
            if let Some(group) = groups.last_mut() {
                group.push(Prepared { order, detail, fingerprint });
            }
        }
        with_pool!(self, write, pool => {
            let mut tx = pool.begin().await?;
            if let Some(fence) = fence {
                let held = sqlx::query(HOLD_FENCE).bind(&fence.key).bind(fence.epoch).execute(&mut *tx).await?;
                if held.rows_affected() == 0 {
                    return Err(StoreError::FenceLost(format!("{} (epoch {})", fence.key, fence.epoch)));
                }
            }
            let mut touched: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
            for group in groups.iter().filter(|g| !g.is_empty()) {
                // 1. The upsert: only copies that win come back.
                let mut changed: HashMap<String, i64> = HashMap::with_capacity(group.len());
                for chunk in group.chunks(ROWS_PER_STATEMENT) {
                    let mut query = sqlx::QueryBuilder::new(UPSERT_ORDERS_HEAD);
                    query.push_values(chunk, |mut row, p| {
                        let order = p.order;
                        row.push_bind(store_id)
                            .push_bind(&order.order_id)
                            .push_bind(order.status.as_str())
                            .push_bind(status_rank(order.status))
                            .push_bind(&order.platform_status)
                            .push_bind(order.created_at)
                            .push_bind(order.modified_at)
                            .push_bind(order.paid_at)
                            .push_bind(order.total_fen)
                            .push_bind(order.payment_fen)
                            .push_bind(order.post_fee_fen)
                            .push_bind(&p.detail)
                            .push_bind(&order.raw)
                            .push_bind(&p.fingerprint)
                            .push_bind(1_i64)
                            .push_bind(now)
                            .push_bind(now);
                    });
                    query.push(UPSERT_ORDERS_TAIL);
                    for row in query.build().fetch_all(&mut *tx).await? {
                        changed.insert(row.try_get("order_id")?, row.try_get("revisions")?);
                    }
                }
                let winners: Vec<&Order> =
                    group.iter().map(|p| p.order).filter(|o| changed.contains_key(o.order_id.as_str())).collect();
                for order in group.iter().map(|p| p.order) {
                    match changed.get(order.order_id.as_str()) {
                        None => stats.unchanged += 1,
                        Some(1) => stats.inserted += 1,
                        Some(_) => stats.updated += 1,
                    }
                }
                if winners.is_empty() {
                    continue;
                }
                // 2. Their lines, replaced. An order inserted just now (revision 1) has none
                // to delete, which spares an index probe per new order.
                let replaced: Vec<&Order> = winners
                    .iter()
                    .copied()
                    .filter(|o| changed.get(o.order_id.as_str()).is_some_and(|revision| *revision > 1))
                    .collect();
                for chunk in replaced.chunks(ROWS_PER_STATEMENT) {
                    let mut query = sqlx::QueryBuilder::new("DELETE FROM order_lines WHERE store_id = ");
                    query.push_bind(store_id).push(" AND order_id IN (");
                    let mut list = query.separated(", ");
                    for order in chunk {
                        list.push_bind(&order.order_id);
                    }
                    query.push(")");
                    query.build().execute(&mut *tx).await?;
                }
                let lines: Vec<(&Order, &OrderLine)> =
                    winners.iter().flat_map(|o| o.lines.iter().map(move |l| (*o, l))).collect();
                for chunk in lines.chunks(ROWS_PER_STATEMENT) {
                    let mut query = sqlx::QueryBuilder::new(INSERT_LINES_HEAD);
                    query.push_values(chunk, |mut row, (order, line)| {
                        row.push_bind(store_id)
                            .push_bind(&order.order_id)
                            .push_bind(&line.line_id)
                            .push_bind(&line.item_id)
                            .push_bind(&line.sku_id)
                            .push_bind(&line.outer_sku_id)
                            .push_bind(&line.title)
                            .push_bind(line.quantity)
                            .push_bind(line.price_fen)
                            .push_bind(line.payment_fen)
                            .push_bind(refund_str(line.refund))
                            .push_bind(&line.platform_status);
                    });
                    query.build().execute(&mut *tx).await?;
                }
                // 3. The listings they name, once each (the last line's title, the last
                // merchant code given).
                let mut listings: std::collections::BTreeMap<(&str, &str), (Option<&str>, &str)> =
                    std::collections::BTreeMap::new();
                for (_, line) in &lines {
                    let key = (line.item_id.as_str(), line.sku_id.as_deref().unwrap_or(""));
                    let entry = listings.entry(key).or_insert((None, line.title.as_str()));
                    entry.1 = line.title.as_str();
                    if let Some(outer) = line.outer_sku_id.as_deref() {
                        entry.0 = Some(outer);
                    }
                }
                let listings: Vec<_> = listings.into_iter().collect();
                for chunk in listings.chunks(ROWS_PER_STATEMENT) {
                    let mut query = sqlx::QueryBuilder::new(UPSERT_LISTINGS_HEAD);
                    query.push_values(chunk, |mut row, ((item, sku), (outer, title))| {
                        row.push_bind(store_id)
                            .push_bind(*item)
                            .push_bind(*sku)
                            .push_bind(*outer)
                            .push_bind(*title)
                            .push_bind(now);
                    });
                    query.push(UPSERT_LISTINGS_TAIL);
                    query.build().execute(&mut *tx).await?;
                }
                // 4. Reservations: opened once, released once.
                if let Some(rules) = rules {
                    let mut opens = Vec::new();
                    let mut whole_releases = Vec::new();
                    let mut line_releases = Vec::new();
                    for order in &winners {
                        for change in reservation_changes(order, rules) {
                            match change {
                                ReservationChange::Open { line_id, component, listing, quantity } => {
                                    opens.push((*order, line_id, component, listing, quantity))
                                }
                                ReservationChange::Release { line_id: None } => whole_releases.push(*order),
                                ReservationChange::Release { line_id: Some(line) } => {
                                    line_releases.push((*order, line))
                                }
                            }
                        }
                    }
                    for chunk in opens.chunks(ROWS_PER_STATEMENT) {
                        let mut query = sqlx::QueryBuilder::new(OPEN_RESERVATIONS_HEAD);
                        query.push_values(chunk, |mut row, (order, line_id, component, listing, quantity)| {
                            row.push_bind(store_id)
                                .push_bind(&order.order_id)
                                .push_bind(*line_id)
                                .push_bind(component)
                                .push_bind(listing)
                                .push_bind(*quantity)
                                .push_bind("open")
                                .push_bind(order.paid_at.unwrap_or(order.created_at))
                                .push_bind(now);
                        });
                        query.push(OPEN_RESERVATIONS_TAIL);
                        for row in query.build().fetch_all(&mut *tx).await? {
                            touched.insert(row.try_get("component")?);
                            stats.reservation_changes += 1;
                        }
                    }
                    for chunk in whole_releases.chunks(ROWS_PER_STATEMENT) {
                        let mut query = sqlx::QueryBuilder::new(
                            "UPDATE reservations SET state = 'released', closed_at = ",
                        );
                        query.push_bind(now).push(" WHERE store_id = ").push_bind(store_id);
                        query.push(" AND state = 'open' AND order_id IN (");
                        let mut list = query.separated(", ");
                        for order in chunk {
                            list.push_bind(&order.order_id);
                        }
                        query.push(") RETURNING component");
                        for row in query.build().fetch_all(&mut *tx).await? {
                            touched.insert(row.try_get("component")?);
                            stats.reservation_changes += 1;
                        }
                    }
                    for (order, line_id) in line_releases {
                        let rows = sqlx::query(RELEASE_LINE_RESERVATIONS)
                            .bind(now)
                            .bind(store_id)
                            .bind(&order.order_id)
                            .bind(line_id)
                            .fetch_all(&mut *tx)
                            .await?;
                        for row in rows {
                            touched.insert(row.try_get("component")?);
                            stats.reservation_changes += 1;
                        }
                    }
                }
                // 5. The effects each state asks for commit with it (outbox): a paid order's
                // fulfilment in one statement, the rarer withdrawals one order at a time.
                let paid: Vec<&Order> =
                    winners.iter().copied().filter(|o| o.status == OrderStatus::Paid).collect();
                for chunk in paid.chunks(ROWS_PER_STATEMENT) {
                    let mut query = sqlx::QueryBuilder::new(INSERT_OUTBOX_HEAD);
                    query.push_values(chunk, |mut row, order| {
                        row.push_bind("fulfil")
                            .push_bind(store_id)
                            .push_bind(&order.order_id)
                            .push_bind(super::outbox::fulfil_key(store_id, &order.order_id))
                            .push_bind("{}")
                            .push_bind("pending")
                            .push_bind(0_i64)
                            .push_bind(order.modified_at)
                            .push_bind(now)
                            .push_bind(None::<String>);
                    });
                    query.push(" ON CONFLICT (dedupe_key) DO NOTHING");
                    query.build().execute(&mut *tx).await?;
                }
                // Only a closed order with a fulfilment row has anything to withdraw (most
                // closed orders never paid): one lookup a chunk instead of two round trips
                // an order.
                let closed: Vec<&Order> = winners
                    .iter()
                    .copied()
                    .filter(|o| matches!(o.status, OrderStatus::Cancelled | OrderStatus::Refunded))
                    .collect();
                let mut with_fulfil: std::collections::HashSet<String> = std::collections::HashSet::new();
                for chunk in closed.chunks(ROWS_PER_STATEMENT) {
                    let mut query = sqlx::QueryBuilder::new("SELECT dedupe_key FROM outbox WHERE dedupe_key IN (");
                    let mut list = query.separated(", ");
                    for order in chunk {
                        list.push_bind(super::outbox::fulfil_key(store_id, &order.order_id));
                    }
                    query.push(")");
                    for row in query.build().fetch_all(&mut *tx).await? {
                        with_fulfil.insert(row.try_get("dedupe_key")?);
                    }
                }
                for order in closed {
                    if with_fulfil.contains(&super::outbox::fulfil_key(store_id, &order.order_id)) {
                        super::outbox::write_order_effects!(tx, store_id, order, now);
                    }
                }
            }
            for item in batch {
                if let Fetched::Unparsed(unparsed) = item {
                    sqlx::query(INSERT_QUARANTINE)
                        .bind(store_id)
                        .bind(&unparsed.api)
                        .bind(&unparsed.order_id)
                        .bind(&unparsed.reason)
                        .bind(&unparsed.raw)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    stats.quarantined += 1;
                }
            }
            super::mark_components!(tx, &touched);
            if let Some((job, position)) = cursor {
                sqlx::query(ADVANCE_CURSOR).bind(store_id).bind(job).bind(position).bind(now).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(stats)
    }

    /// The stored `modified` of each of these orders that is stored at all.
    pub async fn stored_versions(
        &self,
        store_id: &str,
        order_ids: &[String],
    ) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
        let mut found = HashMap::with_capacity(order_ids.len());
        for chunk in order_ids.chunks(500) {
            with_pool!(self, read, pool => {
                let mut query = sqlx::QueryBuilder::new("SELECT order_id, modified_at FROM orders WHERE store_id = ");
                query.push_bind(store_id).push(" AND order_id IN (");
                let mut list = query.separated(", ");
                for id in chunk {
                    list.push_bind(id);
                }
                query.push(")");
                for row in query.build().fetch_all(pool).await? {
                    found.insert(row.try_get::<String, _>("order_id")?, row.try_get::<DateTime<Utc>, _>("modified_at")?);
                }
            });
        }
        Ok(found)
    }

    /// Every stored order's headline for a store, by order id.
    pub async fn order_summaries(&self, store_id: &str) -> Result<Vec<StoredOrderSummary>, StoreError> {
        let mut out = Vec::new();
        with_pool!(self, read, pool => {
            let rows = sqlx::query(
                "SELECT order_id, status, platform_status, modified_at, revisions FROM orders \
                 WHERE store_id = $1 ORDER BY order_id",
            )
            .bind(store_id)
            .fetch_all(pool)
            .await?;
            for row in rows {
                out.push(StoredOrderSummary {
                    order_id: row.try_get("order_id")?,
                    status: row.try_get("status")?,
                    platform_status: row.try_get("platform_status")?,
                    modified_at: row.try_get("modified_at")?,
                    revisions: row.try_get("revisions")?,
                });
            }
        });
        Ok(out)
    }

    /// Orders held whose latest `modified` lies in `[from, to)`.
    pub async fn count_orders_modified(
        &self,
        store_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let count: i64 = with_pool!(self, read, pool => {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM orders WHERE store_id = $1 AND modified_at >= $2 AND modified_at < $3",
            )
            .bind(store_id)
            .bind(from)
            .bind(to)
            .fetch_one(pool)
            .await?
        });
        Ok(count)
    }

    pub async fn count_orders(&self, store_id: &str) -> Result<i64, StoreError> {
        let count: i64 = with_pool!(self, read, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE store_id = $1").bind(store_id).fetch_one(pool).await?
        });
        Ok(count)
    }

    /// One stored order with its lines.
    pub async fn order(&self, store_id: &str, order_id: &str) -> Result<Option<StoredOrder>, StoreError> {
        with_pool!(self, read, pool => {
            let Some(row) = sqlx::query(
                "SELECT order_id, status, platform_status, created_at, modified_at, paid_at, total_fen, \
                 payment_fen, post_fee_fen, detail, raw, revisions FROM orders WHERE store_id = $1 AND order_id = $2",
            )
            .bind(store_id)
            .bind(order_id)
            .fetch_optional(pool)
            .await?
            else {
                return Ok(None);
            };
            let status_text: String = row.try_get("status")?;
            let status = OrderStatus::parse(&status_text)
                .ok_or_else(|| StoreError::Corrupt(format!("order {order_id}: unknown status {status_text:?}")))?;
            let detail_text: String = row.try_get("detail")?;
            let detail: Detail = serde_json::from_str(&detail_text)
                .map_err(|e| StoreError::Corrupt(format!("order {order_id}: detail: {e}")))?;
            let line_rows = sqlx::query(
                "SELECT line_id, item_id, sku_id, outer_sku_id, title, quantity, price_fen, payment_fen, refund, \
                 platform_status FROM order_lines WHERE store_id = $1 AND order_id = $2 ORDER BY line_id",
            )
            .bind(store_id)
            .bind(order_id)
            .fetch_all(pool)
            .await?;
            let mut lines = Vec::with_capacity(line_rows.len());
            for line in line_rows {
                let refund: String = line.try_get("refund")?;
                lines.push(OrderLine {
                    line_id: line.try_get("line_id")?,
                    item_id: line.try_get("item_id")?,
                    sku_id: line.try_get("sku_id")?,
                    outer_sku_id: line.try_get("outer_sku_id")?,
                    title: line.try_get("title")?,
                    quantity: line.try_get("quantity")?,
                    price_fen: line.try_get("price_fen")?,
                    payment_fen: line.try_get("payment_fen")?,
                    refund: parse_refund(&refund),
                    platform_status: line.try_get("platform_status")?,
                });
            }
            let order = Order {
                order_id: row.try_get("order_id")?,
                status,
                platform_status: row.try_get("platform_status")?,
                created_at: row.try_get("created_at")?,
                modified_at: row.try_get("modified_at")?,
                paid_at: row.try_get("paid_at")?,
                total_fen: row.try_get("total_fen")?,
                payment_fen: row.try_get("payment_fen")?,
                post_fee_fen: row.try_get("post_fee_fen")?,
                buyer: detail.buyer,
                receiver: detail.receiver,
                lines,
                contract: detail.contract,
                raw: row.try_get("raw")?,
            };
            Ok(Some(StoredOrder { store_id: store_id.to_string(), order, revisions: row.try_get("revisions")? }))
        })
    }

    /// Quarantined payloads not yet resolved, newest first.
    pub async fn quarantine(&self, store_id: Option<&str>) -> Result<Vec<QuarantineRow>, StoreError> {
        let mut out = Vec::new();
        with_pool!(self, read, pool => {
            let rows = sqlx::query(
                "SELECT id, store_id, api, order_id, reason, payload, received_at FROM quarantine \
                 WHERE resolved_at IS NULL AND (CAST($1 AS TEXT) IS NULL OR store_id = $1) ORDER BY id DESC",
            )
            .bind(store_id)
            .fetch_all(pool)
            .await?;
            for row in rows {
                out.push(QuarantineRow {
                    id: row.try_get("id")?,
                    store_id: row.try_get("store_id")?,
                    api: row.try_get("api")?,
                    order_id: row.try_get("order_id")?,
                    reason: row.try_get("reason")?,
                    payload: row.try_get("payload")?,
                    received_at: row.try_get("received_at")?,
                });
            }
        });
        Ok(out)
    }
}
