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

/// A listing write of the stock job, batched per run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListingWrite {
    /// A push in flight (grant, allowance, shown), or `None` to clear it.
    Pending { item_id: String, sku_id: String, pending: Option<(i64, i64, i64)> },
    /// A listing's new state after a push landed (`pushed`) or was not needed. The state
    /// is as of now when it was pushed or rebased on a live reading (`live`): its time
    /// (`last_pushed_at`) moves then, so sales the reading already counted are not
    /// counted again by reconcile.
    Saved { item_id: String, sku_id: String, state: ListingState, pushed: bool, live: Option<i64> },
}

const SET_PENDING: &str =
    "UPDATE listings SET pending = $1 WHERE store_id = $2 AND item_id = $3 AND sku_id = $4";

const SAVE_STATE: &str = "UPDATE listings SET grant_units = $1, allowance = $2, last_pushed = $3, pending = NULL, \
     last_pushed_at = CASE WHEN $4 OR $6 IS NOT NULL THEN $5 ELSE last_pushed_at END, \
     live = COALESCE($6, live), live_at = CASE WHEN $6 IS NULL THEN live_at ELSE $5 END \
     WHERE store_id = $7 AND item_id = $8 AND sku_id = $9";

const LISTING_COLUMNS: &str = "store_id, item_id, sku_id, outer_id, title, grant_units, allowance, last_pushed, \
     last_pushed_at, pending, live, live_at";

fn listing_from<R>(row: &R) -> Result<ListingRow, StoreError>
where
    R: Row,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<DateTime<Utc>>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let pending: Option<String> = row.try_get("pending")?;
    let pending = pending.and_then(|p| serde_json::from_str::<(i64, i64, i64)>(&p).ok());
    Ok(ListingRow {
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
    })
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
/// Which listings `Store::select_listings` reads.
enum ListingFilter<'a> {
    All,
    /// In key order, after (item, SKU), at most `limit`.
    Page {
        after: Option<(&'a str, &'a str)>,
        limit: i64,
    },
    Unsettled {
        shared_pool: bool,
    },
}

/// Units a listing's marketplace counter lost to sales (`sold_*`) and got back from refunds
/// (`back_*`) after a reading, as bounds: see `Store::units_moved_since`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnitsMoved {
    pub sold_min: i64,
    pub sold_max: i64,
    pub back_min: i64,
    pub back_max: i64,
}

impl UnitsMoved {
    /// The fewest and the most units the counter can have lost in all.
    pub fn net_range(&self) -> (i64, i64) {
        (self.sold_min - self.back_max, self.sold_max - self.back_min)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SnapshotStats {
    pub levels: u64,
    pub resources: u64,
    /// True when the snapshot was older than what the ledger has (ignored).
    pub stale: bool,
    pub watermark: i64,
}

/// The component prefix of a stored resource kind.
fn resource_prefix(kind: &str) -> &'static str {
    if kind == "plan_quota" { "plan" } else { "pool" }
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
            // What the snapshot changes, for the stock job: the components whose numbers move
            // (compared with what is stored, so an unchanged row costs no planning), and
            // those whose shipped units the new watermark passes.
            let mut touched: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
            let mut old_levels: BTreeMap<(String, String), i64> = BTreeMap::new();
            let mut old_resources: BTreeMap<(String, String), i64> = BTreeMap::new();
            if full {
                for row in sqlx::query("SELECT sku, warehouse, on_hand FROM operator_stock").fetch_all(&mut *tx).await? {
                    old_levels.insert((row.try_get("sku")?, row.try_get("warehouse")?), row.try_get("on_hand")?);
                }
                for row in sqlx::query("SELECT kind, code, available FROM operator_resources").fetch_all(&mut *tx).await? {
                    old_resources.insert((row.try_get("kind")?, row.try_get("code")?), row.try_get("available")?);
                }
                sqlx::query("DELETE FROM operator_stock").execute(&mut *tx).await?;
                sqlx::query("DELETE FROM operator_resources").execute(&mut *tx).await?;
                let new_levels: std::collections::BTreeSet<(&str, &str)> =
                    levels.iter().map(|(sku, warehouse, _)| (sku.as_str(), warehouse.as_str())).collect();
                for ((sku, warehouse), on_hand) in &old_levels {
                    if *on_hand != 0 && !new_levels.contains(&(sku.as_str(), warehouse.as_str())) {
                        touched.insert(format!("sku:{sku}"));
                    }
                }
                let new_resources: std::collections::BTreeSet<(&str, &str)> =
                    resources.iter().map(|(kind, code, _)| (resource_kind(*kind), code.as_str())).collect();
                for ((kind, code), available) in &old_resources {
                    if *available != 0 && !new_resources.contains(&(kind.as_str(), code.as_str())) {
                        touched.insert(format!("{}:{code}", resource_prefix(kind)));
                    }
                }
            } else {
                let skus: Vec<&String> = levels.iter().map(|(sku, _, _)| sku).collect();
                for chunk in skus.chunks(1_000) {
                    let mut query = sqlx::QueryBuilder::new("SELECT sku, warehouse, on_hand FROM operator_stock WHERE sku IN (");
                    let mut list = query.separated(", ");
                    for sku in chunk {
                        list.push_bind(*sku);
                    }
                    query.push(")");
                    for row in query.build().fetch_all(&mut *tx).await? {
                        old_levels.insert((row.try_get("sku")?, row.try_get("warehouse")?), row.try_get("on_hand")?);
                    }
                }
                for (kind, code, _) in resources {
                    let available: Option<i64> = sqlx::query_scalar(
                        "SELECT available FROM operator_resources WHERE kind = $1 AND code = $2",
                    )
                    .bind(resource_kind(*kind))
                    .bind(code)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some(available) = available {
                        old_resources.insert((resource_kind(*kind).to_string(), code.clone()), available);
                    }
                }
            }
            for (sku, warehouse, on_hand) in levels {
                if old_levels.get(&(sku.clone(), warehouse.clone())) != Some(on_hand) {
                    touched.insert(format!("sku:{sku}"));
                }
            }
            for (kind, code, available) in resources {
                if old_resources.get(&(resource_kind(*kind).to_string(), code.clone())) != Some(available) {
                    touched.insert(format!("{}:{code}", kind.prefix()));
                }
            }
            let passed = sqlx::query(
                "SELECT DISTINCT component FROM reservations WHERE state = 'consumed' \
                 AND consumed_watermark > $1 AND consumed_watermark <= $2",
            )
            .bind(current.unwrap_or(i64::MIN))
            .bind(watermark)
            .fetch_all(&mut *tx)
            .await?;
            for row in passed {
                touched.insert(row.try_get("component")?);
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
            super::mark_components!(tx, &touched);
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
        self.component_levels_of(catalog, None).await
    }

    /// The ledger's numbers for the catalogue's components, or only for `only` (keys such
    /// as `sku:X`) when given: the stock job reads just what changed.
    pub async fn component_levels_of(
        &self,
        catalog: &Catalog,
        only: Option<&std::collections::BTreeSet<String>>,
    ) -> Result<BTreeMap<Component, ComponentLevel>, StoreError> {
        let watermark = self.watermark("stock").await?.unwrap_or(0);
        let mut on_hand: BTreeMap<String, i64> = BTreeMap::new();
        let mut reserved: BTreeMap<String, i64> = BTreeMap::new();
        let mut consumed_in: BTreeMap<String, i64> = BTreeMap::new();
        let mut consumed_after: BTreeMap<String, i64> = BTreeMap::new();
        // Filters: `None` reads everything in one pass; otherwise chunks of the keys.
        let keys: Vec<&String> = only.map(|o| o.iter().collect()).unwrap_or_default();
        let chunks: Vec<Option<&[&String]>> = match only {
            None => vec![None],
            Some(_) => keys.chunks(500).map(Some).collect(),
        };
        for chunk in chunks {
            with_pool!(self, read, pool => {
                let mut query = sqlx::QueryBuilder::new("SELECT sku, CAST(SUM(on_hand) AS BIGINT) AS units FROM operator_stock");
                if let Some(chunk) = chunk {
                    query.push(" WHERE sku IN (");
                    let mut list = query.separated(", ");
                    for key in chunk {
                        list.push_bind(key.strip_prefix("sku:").unwrap_or(key.as_str()));
                    }
                    query.push(")");
                }
                query.push(" GROUP BY sku");
                for row in query.build().fetch_all(pool).await? {
                    let sku: String = row.try_get("sku")?;
                    on_hand.insert(format!("sku:{sku}"), row.try_get::<i64, _>("units")?);
                }
                let mut query = sqlx::QueryBuilder::new("SELECT kind, code, available FROM operator_resources");
                if let Some(chunk) = chunk {
                    query.push(" WHERE code IN (");
                    let mut list = query.separated(", ");
                    for key in chunk {
                        list.push_bind(key.split_once(':').map_or(key.as_str(), |(_, code)| code));
                    }
                    query.push(")");
                }
                for row in query.build().fetch_all(pool).await? {
                    let kind: String = row.try_get("kind")?;
                    let code: String = row.try_get("code")?;
                    on_hand.insert(format!("{}:{code}", resource_prefix(&kind)), row.try_get::<i64, _>("available")?);
                }
                let mut query = sqlx::QueryBuilder::new(
                    "SELECT component, state, CAST(CASE WHEN consumed_watermark <= ",
                );
                query.push_bind(watermark);
                query.push(
                    " THEN 1 ELSE 0 END AS BIGINT) AS deducted, CAST(SUM(quantity) AS BIGINT) AS units \
                     FROM reservations WHERE state <> 'released'",
                );
                if let Some(chunk) = chunk {
                    query.push(" AND component IN (");
                    let mut list = query.separated(", ");
                    for key in chunk {
                        list.push_bind(key.as_str());
                    }
                    query.push(")");
                }
                query.push(" GROUP BY component, state, deducted");
                for row in query.build().fetch_all(pool).await? {
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
        }
        let mut out = BTreeMap::new();
        let components: Vec<Component> = match only {
            None => catalog
                .skus
                .values()
                .map(|sku| Component { kind: sku.kind, code: sku.code.clone() })
                .collect(),
            Some(keys) => keys
                .iter()
                .filter_map(|key| Component::parse(key))
                .filter(|c| catalog.skus.get(&c.code).is_some_and(|sku| sku.kind == c.kind))
                .collect(),
        };
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
        self.select_listings(store_id, ListingFilter::All).await
    }

    /// One page of a store's listings in key order, after `after` (item, SKU): the stock
    /// and reconcile jobs walk a large catalogue a page at a time.
    pub async fn listings_page(
        &self,
        store_id: &str,
        after: Option<(&str, &str)>,
        limit: i64,
    ) -> Result<Vec<ListingRow>, StoreError> {
        self.select_listings(store_id, ListingFilter::Page { after, limit }).await
    }

    /// Listings whose merchant code is one of `codes`.
    pub async fn listings_by_codes(
        &self,
        store_id: &str,
        codes: &[&str],
    ) -> Result<Vec<ListingRow>, StoreError> {
        self.listings_where(store_id, "outer_id", codes).await
    }

    /// Listings of these items (every SKU).
    pub async fn listings_of_items(
        &self,
        store_id: &str,
        items: &[&str],
    ) -> Result<Vec<ListingRow>, StoreError> {
        self.listings_where(store_id, "item_id", items).await
    }

    async fn listings_where(
        &self,
        store_id: &str,
        column: &'static str,
        values: &[&str],
    ) -> Result<Vec<ListingRow>, StoreError> {
        let mut out = Vec::new();
        for chunk in values.chunks(500) {
            with_pool!(self, read, pool => {
                let mut query = sqlx::QueryBuilder::new(format!("SELECT {LISTING_COLUMNS} FROM listings WHERE store_id = "));
                query.push_bind(store_id).push(format!(" AND {column} IN ("));
                let mut list = query.separated(", ");
                for value in chunk {
                    list.push_bind(*value);
                }
                query.push(")");
                for row in query.build().fetch_all(pool).await? {
                    out.push(listing_from(&row)?);
                }
            });
        }
        Ok(out)
    }

    /// Listings the planner looks at whatever changed: a push of unknown outcome, or not
    /// settled yet (allocated: no allowance; shared pool: never pushed). Each condition
    /// matches a partial index.
    pub async fn unsettled_listings(
        &self,
        store_id: &str,
        shared_pool: bool,
    ) -> Result<Vec<ListingRow>, StoreError> {
        self.select_listings(store_id, ListingFilter::Unsettled { shared_pool }).await
    }

    async fn select_listings(
        &self,
        store_id: &str,
        filter: ListingFilter<'_>,
    ) -> Result<Vec<ListingRow>, StoreError> {
        let mut out = Vec::new();
        with_pool!(self, read, pool => {
            let mut query = sqlx::QueryBuilder::new(format!("SELECT {LISTING_COLUMNS} FROM listings WHERE store_id = "));
            query.push_bind(store_id);
            match filter {
                ListingFilter::All => {
                    query.push(" ORDER BY item_id, sku_id");
                }
                ListingFilter::Page { after, limit } => {
                    if let Some((item, sku)) = after {
                        query.push(" AND (item_id > ").push_bind(item).push(" OR (item_id = ").push_bind(item);
                        query.push(" AND sku_id > ").push_bind(sku).push("))");
                    }
                    query.push(" ORDER BY item_id, sku_id LIMIT ").push_bind(limit);
                }
                ListingFilter::Unsettled { shared_pool: true } => {
                    query.push(" AND (pending IS NOT NULL OR last_pushed IS NULL)");
                }
                ListingFilter::Unsettled { shared_pool: false } => {
                    query.push(" AND (pending IS NOT NULL OR allowance IS NULL)");
                }
            }
            for row in query.build().fetch_all(pool).await? {
                out.push(listing_from(&row)?);
            }
        });
        Ok(out)
    }

    /// How many listings of a store carry each merchant code (all codes, or these).
    pub async fn listing_code_counts(
        &self,
        store_id: &str,
        codes: Option<&[&str]>,
    ) -> Result<Vec<(Option<String>, i64)>, StoreError> {
        let mut out = Vec::new();
        let chunks: Vec<Option<&[&str]>> = match codes {
            None => vec![None],
            Some(codes) => codes.chunks(500).map(Some).collect(),
        };
        for chunk in chunks {
            with_pool!(self, read, pool => {
                let mut query = sqlx::QueryBuilder::new("SELECT outer_id, COUNT(*) AS n FROM listings WHERE store_id = ");
                query.push_bind(store_id);
                if let Some(chunk) = chunk {
                    query.push(" AND outer_id IN (");
                    let mut list = query.separated(", ");
                    for code in chunk {
                        list.push_bind(*code);
                    }
                    query.push(")");
                }
                query.push(" GROUP BY outer_id");
                for row in query.build().fetch_all(pool).await? {
                    out.push((row.try_get("outer_id")?, row.try_get("n")?));
                }
            });
        }
        Ok(out)
    }

    /// Components changed since the store's stock job last planned them: (component, gen).
    pub async fn stock_dirty(&self, store_id: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let mut out = Vec::new();
        with_pool!(self, read, pool => {
            for row in sqlx::query("SELECT component, gen FROM stock_dirty WHERE store_id = $1")
                .bind(store_id)
                .fetch_all(pool)
                .await?
            {
                out.push((row.try_get("component")?, row.try_get("gen")?));
            }
        });
        Ok(out)
    }

    /// Marks these components as planned, each only if no change came since it was read.
    pub async fn clear_stock_dirty(&self, store_id: &str, seen: &[(String, i64)]) -> Result<(), StoreError> {
        with_pool!(self, write, pool => {
            let mut tx = pool.begin().await?;
            for (component, generation) in seen {
                sqlx::query("DELETE FROM stock_dirty WHERE store_id = $1 AND component = $2 AND gen = $3")
                    .bind(store_id)
                    .bind(component)
                    .bind(generation)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Marks components for this store's next stock run (listings that failed to push).
    pub async fn mark_stock_dirty(
        &self,
        store_id: &str,
        components: &std::collections::BTreeSet<String>,
    ) -> Result<(), StoreError> {
        with_pool!(self, write, pool => {
            let mut tx = pool.begin().await?;
            for component in components {
                sqlx::query(
                    "INSERT INTO stock_dirty (store_id, component, gen) VALUES ($1, $2, 1) \
                     ON CONFLICT (store_id, component) DO UPDATE SET gen = stock_dirty.gen + 1",
                )
                .bind(store_id)
                .bind(component)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Sets a named watermark.
    pub async fn set_watermark(&self, name: &str, value: i64) -> Result<(), StoreError> {
        with_pool!(self, write, pool => {
            sqlx::query(
                "INSERT INTO watermarks (name, value, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )
            .bind(name)
            .bind(value)
            .bind(Utc::now())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Units in paid orders of each of these listings (item, SKU), in one grouped query a
    /// few hundred items at a time.
    pub async fn sold_units_many(
        &self,
        store_id: &str,
        listings: &[(&str, &str)],
    ) -> Result<std::collections::HashMap<(String, String), i64>, StoreError> {
        let mut out = std::collections::HashMap::new();
        let wanted: std::collections::HashSet<(&str, &str)> = listings.iter().copied().collect();
        let mut items: Vec<&str> = listings.iter().map(|(item, _)| *item).collect();
        items.sort_unstable();
        items.dedup();
        for chunk in items.chunks(500) {
            with_pool!(self, read, pool => {
                let mut query = sqlx::QueryBuilder::new(
                    "SELECT l.item_id, COALESCE(l.sku_id, '') AS sku, CAST(SUM(l.quantity) AS BIGINT) AS units \
                     FROM order_lines l JOIN orders o ON o.store_id = l.store_id AND o.order_id = l.order_id \
                     WHERE l.store_id = ",
                );
                query.push_bind(store_id).push(" AND l.item_id IN (");
                let mut list = query.separated(", ");
                for item in chunk {
                    list.push_bind(*item);
                }
                query.push(
                    ") AND l.refund <> 'refunded' AND o.status IN ('paid', 'held', 'partially_shipped', 'shipped', 'completed') \
                     GROUP BY l.item_id, COALESCE(l.sku_id, '')",
                );
                for row in query.build().fetch_all(pool).await? {
                    let item: String = row.try_get("item_id")?;
                    let sku: String = row.try_get("sku")?;
                    if wanted.contains(&(item.as_str(), sku.as_str())) {
                        out.insert((item, sku), row.try_get::<Option<i64>, _>("units")?.unwrap_or(0));
                    }
                }
            });
        }
        Ok(out)
    }

    /// Components with open reservations flagged as not servable.
    pub async fn flagged_components(&self) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        with_pool!(self, read, pool => {
            for row in sqlx::query(
                "SELECT DISTINCT component FROM reservations WHERE state = 'open' AND flagged IS NOT NULL",
            )
            .fetch_all(pool)
            .await?
            {
                out.push(row.try_get("component")?);
            }
        });
        Ok(out)
    }

    /// Open reservations of these components (only the flagged ones when `flagged_only`),
    /// oldest first.
    pub async fn open_reservations_of(
        &self,
        components: &[&str],
        flagged_only: bool,
    ) -> Result<Vec<OpenReservation>, StoreError> {
        let mut out = Vec::new();
        for chunk in components.chunks(500) {
            with_pool!(self, read, pool => {
                let mut query = sqlx::QueryBuilder::new(
                    "SELECT store_id, order_id, line_id, component, quantity, ordered_at, flagged FROM reservations \
                     WHERE state = 'open'",
                );
                if flagged_only {
                    query.push(" AND flagged IS NOT NULL");
                }
                query.push(" AND component IN (");
                let mut list = query.separated(", ");
                for component in chunk {
                    list.push_bind(*component);
                }
                query.push(")");
                for row in query.build().fetch_all(pool).await? {
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
        }
        out.sort_by(|a, b| a.ordered_at.cmp(&b.ordered_at).then_with(|| a.order_id.cmp(&b.order_id)));
        Ok(out)
    }

    /// Sets or clears the not-servable flag of orders' open reservations, in one
    /// transaction: (store, order, component, reason).
    pub async fn flag_reservations_many(
        &self,
        flags: &[(String, String, String, Option<String>)],
    ) -> Result<(), StoreError> {
        if flags.is_empty() {
            return Ok(());
        }
        with_pool!(self, write, pool => {
            let mut tx = pool.begin().await?;
            for (store_id, order_id, component, reason) in flags {
                sqlx::query(
                    "UPDATE reservations SET flagged = $1 WHERE store_id = $2 AND order_id = $3 AND component = $4 AND state = 'open'",
                )
                .bind(reason)
                .bind(store_id)
                .bind(order_id)
                .bind(component)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Records the outcome of a stock run's listings in one transaction (one disk sync):
    /// `Pending` marks pushes in flight, `Saved` records a new state.
    pub async fn write_listing_states(
        &self,
        store_id: &str,
        writes: &[ListingWrite],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        with_pool!(self, write, pool => {
            let mut tx = pool.begin().await?;
            for write in writes {
                match write {
                    ListingWrite::Pending { item_id, sku_id, pending } => {
                        let text = pending.map(|p| serde_json::json!([p.0, p.1, p.2]).to_string());
                        sqlx::query(SET_PENDING)
                            .bind(text)
                            .bind(store_id)
                            .bind(item_id)
                            .bind(sku_id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    ListingWrite::Saved { item_id, sku_id, state, pushed, live } => {
                        sqlx::query(SAVE_STATE)
                            .bind(state.grant)
                            .bind(state.allowance)
                            .bind(state.last_pushed)
                            .bind(*pushed)
                            .bind(now)
                            .bind(*live)
                            .bind(store_id)
                            .bind(item_id)
                            .bind(sku_id)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
            }
            tx.commit().await?;
        });
        Ok(())
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
            sqlx::query(SET_PENDING)
                .bind(text)
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

    /// How many units of a listing went and came back on the marketplace's own counter
    /// after a reading taken at an instant known only to lie in `[early, late]` (the
    /// platforms stamp orders to the second, and their clocks are not ours). Sales are
    /// lines of paid orders paid after the reading; give-backs are lines of orders paid
    /// at or before it (their sale was in the reading) that were refunded or closed after
    /// it, before the marketplace was told of a shipment (both platforms return a paid
    /// order's units to the listing when it is refunded before shipment). Lines whose times
    /// fall inside the interval count toward the bounds only.
    pub async fn units_moved_since(
        &self,
        store_id: &str,
        item_id: &str,
        sku_id: &str,
        early: DateTime<Utc>,
        late: DateTime<Utc>,
    ) -> Result<UnitsMoved, StoreError> {
        let moved = with_pool!(self, read, pool => {
            let row = sqlx::query(
                "SELECT \
                 CAST(COALESCE(SUM(CASE WHEN sold AND m.paid_at > $5 THEN m.quantity END), 0) AS BIGINT) AS sold_min, \
                 CAST(COALESCE(SUM(CASE WHEN sold THEN m.quantity END), 0) AS BIGINT) AS sold_max, \
                 CAST(COALESCE(SUM(CASE WHEN back AND m.paid_at <= $4 AND m.modified_at > $5 THEN m.quantity END), 0) AS BIGINT) AS back_min, \
                 CAST(COALESCE(SUM(CASE WHEN back THEN m.quantity END), 0) AS BIGINT) AS back_max \
                 FROM (SELECT l.quantity, o.paid_at, o.modified_at, \
                   (l.refund <> 'refunded' AND o.status IN ('paid', 'held', 'partially_shipped', 'shipped', 'completed') \
                    AND o.paid_at > $4) AS sold, \
                   (o.paid_at IS NOT NULL AND o.paid_at <= $5 AND o.modified_at > $4 \
                    AND (l.refund = 'refunded' OR o.status IN ('cancelled', 'refunded')) \
                    AND NOT EXISTS (SELECT 1 FROM outbox x WHERE x.store_id = l.store_id AND x.order_id = l.order_id \
                      AND x.kind = 'ship' AND x.state = 'done' AND x.done_at < o.modified_at)) AS back \
                   FROM order_lines l JOIN orders o ON o.store_id = l.store_id AND o.order_id = l.order_id \
                   WHERE l.store_id = $1 AND l.item_id = $2 AND COALESCE(l.sku_id, '') = $3 \
                   AND (o.paid_at > $4 OR o.modified_at > $4)) m",
            )
            .bind(store_id)
            .bind(item_id)
            .bind(sku_id)
            .bind(early)
            .bind(late)
            .fetch_one(pool)
            .await?;
            UnitsMoved {
                sold_min: row.try_get("sold_min")?,
                sold_max: row.try_get("sold_max")?,
                back_min: row.try_get("back_min")?,
                back_max: row.try_get("back_max")?,
            }
        });
        Ok(moved)
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
