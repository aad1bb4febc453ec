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

/// Newer `modified` wins. Platforms stamp `modified` to the second, so two changes in one
/// second (paid, then held) carry the same value: then the copy that differs and is no
/// earlier in the lifecycle wins, so the order still never moves backwards.
const UPSERT_ORDER: &str = "INSERT INTO orders (store_id, order_id, status, status_rank, platform_status, \
     created_at, modified_at, paid_at, total_fen, payment_fen, post_fee_fen, detail, raw, fingerprint, revisions, \
     ingested_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 1, $15, $15) \
     ON CONFLICT (store_id, order_id) DO UPDATE SET status = excluded.status, status_rank = excluded.status_rank, \
     platform_status = excluded.platform_status, created_at = excluded.created_at, \
     modified_at = excluded.modified_at, paid_at = excluded.paid_at, total_fen = excluded.total_fen, \
     payment_fen = excluded.payment_fen, post_fee_fen = excluded.post_fee_fen, detail = excluded.detail, \
     raw = excluded.raw, fingerprint = excluded.fingerprint, revisions = orders.revisions + 1, \
     updated_at = excluded.updated_at \
     WHERE excluded.modified_at > orders.modified_at \
     OR (excluded.modified_at = orders.modified_at AND excluded.fingerprint <> orders.fingerprint \
         AND excluded.status_rank >= orders.status_rank) \
     RETURNING revisions";

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

const INSERT_LINE: &str = "INSERT INTO order_lines (store_id, order_id, line_id, item_id, sku_id, outer_sku_id, title, \
     quantity, price_fen, payment_fen, refund, platform_status) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

const UPSERT_LISTING: &str = "INSERT INTO listings (store_id, item_id, sku_id, outer_id, title, discovered_at) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (store_id, item_id, sku_id) DO UPDATE SET \
     outer_id = COALESCE(excluded.outer_id, listings.outer_id), title = excluded.title";

/// Opens once: a second open of the same (order line, component) does nothing, and a
/// released or consumed row is never reopened.
const OPEN_RESERVATION: &str = "INSERT INTO reservations (store_id, order_id, line_id, component, listing, quantity, \
     state, ordered_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $8) \
     ON CONFLICT (store_id, order_id, line_id, component) DO NOTHING";

/// Releases once: only open rows move.
const RELEASE_RESERVATIONS: &str = "UPDATE reservations SET state = 'released', closed_at = $1 \
     WHERE store_id = $2 AND order_id = $3 AND (CAST($4 AS TEXT) IS NULL OR line_id = $4) AND state = 'open'";

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
        with_pool!(self, write, pool => {
            let mut tx = pool.begin().await?;
            if let Some(fence) = fence {
                let held = sqlx::query(HOLD_FENCE).bind(&fence.key).bind(fence.epoch).execute(&mut *tx).await?;
                if held.rows_affected() == 0 {
                    return Err(StoreError::FenceLost(format!("{} (epoch {})", fence.key, fence.epoch)));
                }
            }
            for item in batch {
                match item {
                    Fetched::Order(order) => {
                        let detail = serde_json::to_string(&Detail {
                            buyer: order.buyer.clone(),
                            receiver: order.receiver.clone(),
                            contract: order.contract.clone(),
                        })
                        .map_err(|e| StoreError::Corrupt(format!("order {}: {e}", order.order_id)))?;
                        let revisions: Option<i64> = sqlx::query_scalar(UPSERT_ORDER)
                            .bind(store_id)
                            .bind(&order.order_id)
                            .bind(order.status.as_str())
                            .bind(status_rank(order.status))
                            .bind(&order.platform_status)
                            .bind(order.created_at)
                            .bind(order.modified_at)
                            .bind(order.paid_at)
                            .bind(order.total_fen)
                            .bind(order.payment_fen)
                            .bind(order.post_fee_fen)
                            .bind(&detail)
                            .bind(&order.raw)
                            .bind(fingerprint(order, &detail))
                            .bind(now)
                            .fetch_optional(&mut *tx)
                            .await?;
                        match revisions {
                            None => {
                                stats.unchanged += 1;
                                continue;
                            }
                            Some(1) => stats.inserted += 1,
                            Some(_) => stats.updated += 1,
                        }
                        sqlx::query("DELETE FROM order_lines WHERE store_id = $1 AND order_id = $2")
                            .bind(store_id)
                            .bind(&order.order_id)
                            .execute(&mut *tx)
                            .await?;
                        for line in &order.lines {
                            sqlx::query(INSERT_LINE)
                                .bind(store_id)
                                .bind(&order.order_id)
                                .bind(&line.line_id)
                                .bind(&line.item_id)
                                .bind(&line.sku_id)
                                .bind(&line.outer_sku_id)
                                .bind(&line.title)
                                .bind(line.quantity)
                                .bind(line.price_fen)
                                .bind(line.payment_fen)
                                .bind(refund_str(line.refund))
                                .bind(&line.platform_status)
                                .execute(&mut *tx)
                                .await?;
                            sqlx::query(UPSERT_LISTING)
                                .bind(store_id)
                                .bind(&line.item_id)
                                .bind(line.sku_id.clone().unwrap_or_default())
                                .bind(&line.outer_sku_id)
                                .bind(&line.title)
                                .bind(now)
                                .execute(&mut *tx)
                                .await?;
                        }
                        if let Some(rules) = rules {
                            for change in reservation_changes(order, rules) {
                                let done = match change {
                                    ReservationChange::Open { line_id, component, listing, quantity } => {
                                        sqlx::query(OPEN_RESERVATION)
                                            .bind(store_id)
                                            .bind(&order.order_id)
                                            .bind(line_id)
                                            .bind(component)
                                            .bind(listing)
                                            .bind(quantity)
                                            .bind(order.paid_at.unwrap_or(order.created_at))
                                            .bind(now)
                                            .execute(&mut *tx)
                                            .await?
                                    }
                                    ReservationChange::Release { line_id } => {
                                        sqlx::query(RELEASE_RESERVATIONS)
                                            .bind(now)
                                            .bind(store_id)
                                            .bind(&order.order_id)
                                            .bind(line_id)
                                            .execute(&mut *tx)
                                            .await?
                                    }
                                };
                                stats.reservation_changes += done.rows_affected();
                            }
                        }
                        // The effects this state asks for commit with it (outbox).
                        super::outbox::write_order_effects!(tx, store_id, order, now);
                    }
                    Fetched::Unparsed(unparsed) => {
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
            }
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
