//! The inventory ledger's tables: operator stock and resources with their watermark,
//! reservations (opened, released and consumed exactly once), and listings with what was
//! pushed to them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError, with_pool};
use crate::inventory::planner::{ComponentLevel, ListingState};
use crate::inventory::{Catalog, Component, ComponentKind};

/// A listing row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListingRow {
    pub store_id: String,
    pub item_id: String,
    /// Empty for an item without SKUs.
    pub sku_id: String,
    pub outer_id: Option<String>,
    pub title: Option<String>,
    pub state: ListingState,
    pub last_pushed_at: Option<DateTime<Utc>>,
    pub live: Option<i64>,
    pub live_at: Option<DateTime<Utc>>,
}

impl ListingRow {
    pub fn sku(&self) -> Option<&str> {
        (!self.sku_id.is_empty()).then_some(self.sku_id.as_str())
    }
}

/// A listing seen on a marketplace: item id, SKU id, merchant code, live quantity.
pub type SeenListing = (String, Option<String>, Option<String>, Option<i64>);

/// An open reservation, for flagging and explanations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenReservation {
    pub store_id: String,
    pub order_id: String,
    pub line_id: String,
    pub component: String,
    pub quantity: i64,
    pub ordered_at: DateTime<Utc>,
    pub flagged: Option<String>,
}

/// What applying an operator snapshot did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SnapshotStats {
    pub levels: u64,
    pub resources: u64,
    /// True when the snapshot was older than what the ledger has (ignored).
    pub stale: bool,
    pub watermark: i64,
}

fn resource_kind(kind: ComponentKind) -> &'static str {
    match kind {
        ComponentKind::Stock => "stock",
        ComponentKind::PlanQuota => "plan_quota",
        ComponentKind::NumberPool => "number_pool",
    }
}

impl Store {
    pub async fn watermark(&self, name: &str) -> Result<Option<i64>, StoreError> {
        let value: Option<i64> = with_pool!(self, read, pool => {
            sqlx::query_scalar("SELECT value FROM watermarks WHERE name = $1").bind(name).fetch_optional(pool).await?
        });
        Ok(value)
    }

    /// Applies an operator stock answer in one transaction. `full` replaces every level and
    /// resource (absent ones become 0); otherwise only the given rows change. A snapshot
    /// older than the stored watermark changes nothing.
    pub async fn apply_stock_snapshot(
        &self,
        watermark: i64,
        full: bool,
        levels: &[(String, String, i64)],
        resources: &[(ComponentKind, String, i64)],
    ) -> Result<SnapshotStats, StoreError> {
        let now = Utc::now();
        let mut stats = SnapshotStats { watermark, ..SnapshotStats::default() };
        with_pool!(self, write, pool => {
            let mut tx = pool.begin().await?;
            let current: Option<i64> = sqlx::query_scalar("SELECT value FROM watermarks WHERE name = 'stock'")
                .fetch_optional(&mut *tx)
                .await?;
            if current.is_some_and(|c| watermark < c) {
                stats.stale = true;
                return Ok(stats);
            }
            if full {
                sqlx::query("DELETE FROM operator_stock").execute(&mut *tx).await?;
                sqlx::query("DELETE FROM operator_resources").execute(&mut *tx).await?;
            }
            for (sku, warehouse, on_hand) in levels {
                sqlx::query(
                    "INSERT INTO operator_stock (sku, warehouse, on_hand, watermark, updated_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (sku, warehouse) DO UPDATE SET on_hand = excluded.on_hand, \
                     watermark = excluded.watermark, updated_at = excluded.updated_at",
                )
                .bind(sku)
                .bind(warehouse)
                .bind(on_hand)
                .bind(watermark)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                stats.levels += 1;
            }
            for (kind, code, available) in resources {
                sqlx::query(
                    "INSERT INTO operator_resources (kind, code, available, watermark, updated_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (kind, code) DO UPDATE SET available = excluded.available, \
                     watermark = excluded.watermark, updated_at = excluded.updated_at",
                )
                .bind(resource_kind(*kind))
                .bind(code)
                .bind(available)
                .bind(watermark)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                stats.resources += 1;
            }
            sqlx::query(
                "INSERT INTO watermarks (name, value, updated_at) VALUES ('stock', $1, $2) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )
            .bind(watermark)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(stats)
    }

    /// Sets levels from a manual import (a CSV export), all or nothing, at the current
    /// watermark: the named (SKU, warehouse) rows change, others stay.
    pub async fn import_stock_levels(
        &self,
        levels: &[(String, String, i64)],
    ) -> Result<SnapshotStats, StoreError> {
        let watermark = self.watermark("stock").await?.unwrap_or(0);
        self.apply_stock_snapshot(watermark, false, levels, &[]).await
    }

    /// The ledger's numbers for every component the catalogue knows.
    pub async fn component_levels(
        &self,
        catalog: &Catalog,
    ) -> Result<BTreeMap<Component, ComponentLevel>, StoreError> {
        let watermark = self.watermark("stock").await?.unwrap_or(0);
        let mut on_hand: BTreeMap<String, i64> = BTreeMap::new();
        let mut reserved: BTreeMap<String, i64> = BTreeMap::new();
        let mut consumed_in: BTreeMap<String, i64> = BTreeMap::new();
        let mut consumed_after: BTreeMap<String, i64> = BTreeMap::new();
        with_pool!(self, read, pool => {
            for row in sqlx::query("SELECT sku, CAST(SUM(on_hand) AS BIGINT) AS units FROM operator_stock GROUP BY sku").fetch_all(pool).await? {
                let sku: String = row.try_get("sku")?;
                on_hand.insert(format!("sku:{sku}"), row.try_get::<i64, _>("units")?);
            }
            for row in sqlx::query("SELECT kind, code, available FROM operator_resources").fetch_all(pool).await? {
                let kind: String = row.try_get("kind")?;
                let code: String = row.try_get("code")?;
                let prefix = if kind == "plan_quota" { "plan" } else { "pool" };
                on_hand.insert(format!("{prefix}:{code}"), row.try_get::<i64, _>("available")?);
            }
            let rows = sqlx::query(
                "SELECT component, state, CAST(CASE WHEN consumed_watermark <= $1 THEN 1 ELSE 0 END AS BIGINT) AS deducted, \
                 CAST(SUM(quantity) AS BIGINT) AS units FROM reservations WHERE state <> 'released' \
                 GROUP BY component, state, CASE WHEN consumed_watermark <= $1 THEN 1 ELSE 0 END",
            )
            .bind(watermark)
            .fetch_all(pool)
            .await?;
            for row in rows {
                let component: String = row.try_get("component")?;
                let state: String = row.try_get("state")?;
                let deducted: i64 = row.try_get::<Option<i64>, _>("deducted")?.unwrap_or(0);
                let units: i64 = row.try_get("units")?;
                let map = match (state.as_str(), deducted) {
                    ("open", _) => &mut reserved,
                    (_, 1) => &mut consumed_in,
                    _ => &mut consumed_after,
                };
                *map.entry(component).or_default() += units;
            }
        });
        let mut out = BTreeMap::new();
        let mut components: Vec<Component> =
            catalog.skus.values().map(|sku| Component { kind: sku.kind, code: sku.code.clone() }).collect();
        components.sort();
        for component in components {
            let key = component.key();
            let level = ComponentLevel {
                on_hand: on_hand.get(&key).copied().unwrap_or(0),
                consumed_in_snapshot: consumed_in.get(&key).copied().unwrap_or(0),
                consumed_pending: consumed_after.get(&key).copied().unwrap_or(0),
                reserved: reserved.get(&key).copied().unwrap_or(0),
                safety: catalog.safety(&component),
            };
            out.insert(component, level);
        }
        Ok(out)
    }

    /// Every listing of a store.
    pub async fn listings(&self, store_id: &str) -> Result<Vec<ListingRow>, StoreError> {
        let mut out = Vec::new();
        with_pool!(self, read, pool => {
            let rows = sqlx::query(
                "SELECT store_id, item_id, sku_id, outer_id, title, grant_units, allowance, last_pushed, last_pushed_at, \
                 pending, live, live_at FROM listings WHERE store_id = $1 ORDER BY item_id, sku_id",
            )
            .bind(store_id)
            .fetch_all(pool)
            .await?;
            for row in rows {
                let pending: Option<String> = row.try_get("pending")?;
                let pending = pending.and_then(|p| serde_json::from_str::<(i64, i64, i64)>(&p).ok());
                out.push(ListingRow {
                    store_id: row.try_get("store_id")?,
                    item_id: row.try_get("item_id")?,
                    sku_id: row.try_get("sku_id")?,
                    outer_id: row.try_get("outer_id")?,
                    title: row.try_get("title")?,
                    state: ListingState {
                        grant: row.try_get("grant_units")?,
                        allowance: row.try_get("allowance")?,
                        last_pushed: row.try_get("last_pushed")?,
                        pending,
                    },
                    last_pushed_at: row.try_get("last_pushed_at")?,
                    live: row.try_get("live")?,
                    live_at: row.try_get("live_at")?,
                });
            }
        });
        Ok(out)
    }

    /// Records listings seen on the marketplace (catalogue reads), keeping push state.
    pub async fn upsert_listings(&self, store_id: &str, seen: &[SeenListing]) -> Result<(), StoreError> {
        let now = Utc::now();
        with_pool!(self, write, pool => {
            let mut tx = pool.begin().await?;
            for (item, sku, outer, live) in seen {
                sqlx::query(
                    "INSERT INTO listings (store_id, item_id, sku_id, outer_id, live, live_at, discovered_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (store_id, item_id, sku_id) DO UPDATE SET \
                     outer_id = COALESCE(excluded.outer_id, listings.outer_id), \
                     live = COALESCE(excluded.live, listings.live), live_at = excluded.live_at",
                )
                .bind(store_id)
                .bind(item)
                .bind(sku.clone().unwrap_or_default())
                .bind(outer)
                .bind(live)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Marks a push as in flight before it is sent, so an unknown outcome is accounted for.
    pub async fn set_listing_pending(
        &self,
        store_id: &str,
        item_id: &str,
        sku_id: &str,
        pending: Option<(i64, i64, i64)>,
    ) -> Result<(), StoreError> {
        let text = pending.map(|p| serde_json::json!([p.0, p.1, p.2]).to_string());
        with_pool!(self, write, pool => {
            sqlx::query("UPDATE listings SET pending = $1 WHERE store_id = $2 AND item_id = $3 AND sku_id = $4")
                .bind(text)
                .bind(store_id)
                .bind(item_id)
                .bind(sku_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Records a listing's new state after a push landed (or was not needed).
    pub async fn save_listing_state(
        &self,
        store_id: &str,
        item_id: &str,
        sku_id: &str,
        state: &ListingState,
        pushed: bool,
        live: Option<i64>,
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        with_pool!(self, write, pool => {
            sqlx::query(
                "UPDATE listings SET grant_units = $1, allowance = $2, last_pushed = $3, pending = NULL, \
                 last_pushed_at = CASE WHEN $4 THEN $5 ELSE last_pushed_at END, \
                 live = COALESCE($6, live), live_at = CASE WHEN $6 IS NULL THEN live_at ELSE $5 END \
                 WHERE store_id = $7 AND item_id = $8 AND sku_id = $9",
            )
            .bind(state.grant)
            .bind(state.allowance)
            .bind(state.last_pushed)
            .bind(pushed)
            .bind(now)
            .bind(live)
            .bind(store_id)
            .bind(item_id)
            .bind(sku_id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Units of a listing in paid orders (open or shipped reservations), for the first push.
    pub async fn sold_units(&self, store_id: &str, item_id: &str, sku_id: &str) -> Result<i64, StoreError> {
        let units: Option<i64> = with_pool!(self, read, pool => {
            sqlx::query_scalar(
                "SELECT CAST(SUM(l.quantity) AS BIGINT) FROM order_lines l JOIN orders o ON o.store_id = l.store_id AND o.order_id = l.order_id \
                 WHERE l.store_id = $1 AND l.item_id = $2 AND COALESCE(l.sku_id, '') = $3 AND l.refund <> 'refunded' \
                 AND o.status IN ('paid', 'held', 'partially_shipped', 'shipped', 'completed')",
            )
            .bind(store_id)
            .bind(item_id)
            .bind(sku_id)
            .fetch_one(pool)
            .await?
        });
        Ok(units.unwrap_or(0))
    }

    /// Units of a listing in paid orders paid after `since` (sales since a push).
    pub async fn sold_units_since(
        &self,
        store_id: &str,
        item_id: &str,
        sku_id: &str,
        since: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let units: Option<i64> = with_pool!(self, read, pool => {
            sqlx::query_scalar(
                "SELECT CAST(SUM(l.quantity) AS BIGINT) FROM order_lines l JOIN orders o ON o.store_id = l.store_id AND o.order_id = l.order_id \
                 WHERE l.store_id = $1 AND l.item_id = $2 AND COALESCE(l.sku_id, '') = $3 AND l.refund <> 'refunded' \
                 AND o.status IN ('paid', 'held', 'partially_shipped', 'shipped', 'completed') AND o.paid_at > $4",
            )
            .bind(store_id)
            .bind(item_id)
            .bind(sku_id)
            .bind(since)
            .fetch_one(pool)
            .await?
        });
        Ok(units.unwrap_or(0))
    }

    /// Open reservations of a component, oldest first.
    pub async fn open_reservations(&self, component: &str) -> Result<Vec<OpenReservation>, StoreError> {
        let mut out = Vec::new();
        with_pool!(self, read, pool => {
            let rows = sqlx::query(
                "SELECT store_id, order_id, line_id, component, quantity, ordered_at, flagged FROM reservations \
                 WHERE component = $1 AND state = 'open' ORDER BY ordered_at, order_id",
            )
            .bind(component)
            .fetch_all(pool)
            .await?;
            for row in rows {
                out.push(OpenReservation {
                    store_id: row.try_get("store_id")?,
                    order_id: row.try_get("order_id")?,
                    line_id: row.try_get("line_id")?,
                    component: row.try_get("component")?,
                    quantity: row.try_get("quantity")?,
                    ordered_at: row.try_get("ordered_at")?,
                    flagged: row.try_get("flagged")?,
                });
            }
        });
        Ok(out)
    }

    /// Flags an order's open reservations of a component as not servable (or clears the
    /// flag with `None`).
    pub async fn flag_reservations(
        &self,
        store_id: &str,
        order_id: &str,
        component: &str,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        with_pool!(self, write, pool => {
            sqlx::query(
                "UPDATE reservations SET flagged = $1 WHERE store_id = $2 AND order_id = $3 AND component = $4 AND state = 'open'",
            )
            .bind(reason)
            .bind(store_id)
            .bind(order_id)
            .bind(component)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Orders flagged as not servable, newest first: (store, order, component, reason).
    pub async fn flagged_orders(&self) -> Result<Vec<(String, String, String, String)>, StoreError> {
        let mut out = Vec::new();
        with_pool!(self, read, pool => {
            let rows = sqlx::query(
                "SELECT DISTINCT store_id, order_id, component, flagged, ordered_at FROM reservations \
                 WHERE state = 'open' AND flagged IS NOT NULL ORDER BY ordered_at DESC, order_id DESC",
            )
            .fetch_all(pool)
            .await?;
            for row in rows {
                out.push((row.try_get("store_id")?, row.try_get("order_id")?, row.try_get("component")?, row.try_get("flagged")?));
            }
        });
        Ok(out)
    }

    /// Consumes an order's open reservations (all lines, or the given ones) because the
    /// operator shipped them at `watermark`. Returns how many rows moved; a repeat moves 0.
    pub async fn consume_reservations(
        &self,
        store_id: &str,
        order_id: &str,
        line_ids: &[String],
        watermark: i64,
    ) -> Result<u64, StoreError> {
        let now = Utc::now();
        let mut moved = 0;
        with_pool!(self, write, pool => {
            let mut tx = pool.begin().await?;
            let rows = sqlx::query(
                "SELECT line_id FROM reservations WHERE store_id = $1 AND order_id = $2 AND state = 'open'",
            )
            .bind(store_id)
            .bind(order_id)
            .fetch_all(&mut *tx)
            .await?;
            for row in rows {
                let line: String = row.try_get("line_id")?;
                if !line_ids.is_empty() && !line_ids.contains(&line) {
                    continue;
                }
                let done = sqlx::query(
                    "UPDATE reservations SET state = 'consumed', consumed_watermark = $1, closed_at = $2 \
                     WHERE store_id = $3 AND order_id = $4 AND line_id = $5 AND state = 'open'",
                )
                .bind(watermark)
                .bind(now)
                .bind(store_id)
                .bind(order_id)
                .bind(&line)
                .execute(&mut *tx)
                .await?;
                moved += done.rows_affected();
            }
            tx.commit().await?;
        });
        Ok(moved)
    }

    /// Reservation counts by state, for checks and status: (open, released, consumed).
    pub async fn reservation_counts(
        &self,
        store_id: &str,
        order_id: &str,
    ) -> Result<(i64, i64, i64), StoreError> {
        let mut counts = (0, 0, 0);
        with_pool!(self, read, pool => {
            let rows = sqlx::query(
                "SELECT state, COUNT(*) AS n FROM reservations WHERE store_id = $1 AND order_id = $2 GROUP BY state",
            )
            .bind(store_id)
            .bind(order_id)
            .fetch_all(pool)
            .await?;
            for row in rows {
                let state: String = row.try_get("state")?;
                let n: i64 = row.try_get("n")?;
                match state.as_str() {
                    "open" => counts.0 = n,
                    "released" => counts.1 = n,
                    _ => counts.2 = n,
                }
            }
        });
        Ok(counts)
    }
}
