//! The reliability invariants, each counted (every count must be 0), checked from the
//! database plus the sandboxes' own records of every effect they received (orders as the
//! marketplaces show them, stock writes, shipments applied, the operator's notices).
//!
//! Some violations can only be seen while a run goes on (an order that moved backwards, a
//! reservation that changed state after it was closed): [`History`] keeps what was observed
//! at each check, Jepsen-style, and [`History::observe`] compares every new observation with
//! it. [`check`] is the one-shot form for a finished run (the process-kill rig calls it):
//! what must hold once everything has settled.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use crate::config::Config;
use crate::inventory::Catalog;
use crate::sandbox::EmbeddedSandbox;
use crate::store::{OutboxFilter, OutboxState, Store};

/// Each invariant's count of violations; all must be 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Violations {
    /// An order the marketplace shows that is not stored, or not in its latest state, once
    /// everything settled.
    pub orders_lost: u64,
    /// A stored order the marketplace does not show (or shows under one id stored twice).
    pub orders_duplicated: u64,
    /// A stored order whose `modified` went back between two observations.
    pub orders_backwards: u64,
    /// Units buyers paid for (and kept) beyond what the operator ever had of a component.
    pub oversold_units: u64,
    /// A reservation that was released after it had been closed (released or consumed).
    pub reservation_double_release: u64,
    /// A reservation that was consumed after it had been closed.
    pub reservation_double_consume: u64,
    /// A marketplace order line shipped by more than one applied shipment call.
    pub shipment_twice: u64,
    /// An order the operator shipped that never reached its marketplace and is not in the
    /// dead-letter list, once everything settled.
    pub shipment_never: u64,
    /// A listing that, once everything settled, does not show what the ledger says it
    /// should (reconcile: the last push, less sales since, plus what refunds gave back): an
    /// older write landed over a newer one, or a push was lost. Counted by the caller that
    /// can run reconcile (the simulation; the chaos rig runs `flagsync reconcile`).
    pub stale_stock_push: u64,
    /// An order modified before an order cursor (by more than a second) that is not stored
    /// in that version: the cursor passed uncommitted orders.
    pub cursor_past_uncommitted: u64,
    /// A write made under a lease after another instance had taken it over.
    pub write_after_lost_lease: u64,
    /// A negative quantity on a marketplace listing, at the operator, or in the ledger.
    pub negative_stock: u64,
    /// The final phase (faults off) did not settle within its round budget.
    pub not_converged: u64,
}

impl Violations {
    /// `(name, count)` for every invariant, in a fixed order.
    pub fn named(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("orders_lost", self.orders_lost),
            ("orders_duplicated", self.orders_duplicated),
            ("orders_backwards", self.orders_backwards),
            ("oversold_units", self.oversold_units),
            ("reservation_double_release", self.reservation_double_release),
            ("reservation_double_consume", self.reservation_double_consume),
            ("shipment_twice", self.shipment_twice),
            ("shipment_never", self.shipment_never),
            ("stale_stock_push", self.stale_stock_push),
            ("cursor_past_uncommitted", self.cursor_past_uncommitted),
            ("write_after_lost_lease", self.write_after_lost_lease),
            ("negative_stock", self.negative_stock),
            ("not_converged", self.not_converged),
        ]
    }

    pub fn total(&self) -> u64 {
        self.named().iter().map(|(_, n)| n).sum()
    }

    pub fn is_clean(&self) -> bool {
        self.total() == 0
    }

    /// Adds every count of `other`.
    pub fn add(&mut self, other: &Violations) {
        self.orders_lost += other.orders_lost;
        self.orders_duplicated += other.orders_duplicated;
        self.orders_backwards += other.orders_backwards;
        self.oversold_units += other.oversold_units;
        self.reservation_double_release += other.reservation_double_release;
        self.reservation_double_consume += other.reservation_double_consume;
        self.shipment_twice += other.shipment_twice;
        self.shipment_never += other.shipment_never;
        self.stale_stock_push += other.stale_stock_push;
        self.cursor_past_uncommitted += other.cursor_past_uncommitted;
        self.write_after_lost_lease += other.write_after_lost_lease;
        self.negative_stock += other.negative_stock;
        self.not_converged += other.not_converged;
    }

    /// The names of the invariants with a non-zero count, e.g. `orders_lost=3`.
    pub fn summary(&self) -> String {
        let broken: Vec<String> =
            self.named().into_iter().filter(|(_, n)| *n > 0).map(|(name, n)| format!("{name}={n}")).collect();
        if broken.is_empty() { "none".into() } else { broken.join(" ") }
    }
}

/// What a checker needs besides the database and the sandbox.
#[derive(Debug, Clone)]
pub struct CheckContext<'a> {
    /// The stores (ids and types) and the catalogue.
    pub config: &'a Config,
    /// Scenario listing numbers `0..listings` exist on both marketplaces.
    pub listings: usize,
    /// Every unit the operator ever had of each component (`Component::key()`: initial
    /// stock plus restocks, quotas, pool numbers). Oversell is counted against it.
    pub supply: &'a BTreeMap<String, i64>,
}

/// Observations kept between checks of one run.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// (store, order) -> the latest `modified` seen stored.
    orders: BTreeMap<(String, String), DateTime<Utc>>,
    /// (store, order, line, component) -> the latest state seen.
    reservations: BTreeMap<(String, String, String, String), String>,
    /// Checks made.
    pub observations: u64,
}

fn second(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// What a marketplace shows: order id -> (modified to the second, platform status).
pub fn marketplace_orders(
    sandbox: &EmbeddedSandbox,
    store_type: &str,
) -> BTreeMap<String, (DateTime<Utc>, String)> {
    match store_type {
        "taobao" => sandbox
            .top
            .trades()
            .into_iter()
            .map(|t| (t.tid.to_string(), (second(t.modified), t.status)))
            .collect(),
        _ => sandbox
            .jos
            .orders()
            .into_iter()
            .filter(|o| o.visible)
            .map(|o| (o.order_id, (second(o.modified), o.order_state)))
            .collect(),
    }
}

/// Units buyers paid for and kept, per component key, over both marketplaces.
fn sold_by_component(sandbox: &EmbeddedSandbox, catalog: &Catalog, listings: usize) -> BTreeMap<String, i64> {
    let mut by_listing: BTreeMap<usize, i64> = BTreeMap::new();
    let top_ids: Vec<(i64, i64)> = (0..listings)
        .map(|n| {
            let l = sandbox.top.listing(n);
            (l.num_iid, l.sku_id)
        })
        .collect();
    for (n, (num_iid, sku_id)) in top_ids.iter().enumerate() {
        *by_listing.entry(n).or_default() += sandbox.top.sold_units(*num_iid, *sku_id);
    }
    let jd_sku: BTreeMap<i64, usize> = (0..listings).map(|n| (sandbox.jos.listing(n).sku_id, n)).collect();
    for order in sandbox.jos.orders() {
        if !order.visible || order.order_state == "TRADE_CANCELED" {
            continue;
        }
        for (sku_id, quantity) in &order.lines {
            if let Some(n) = jd_sku.get(sku_id) {
                *by_listing.entry(*n).or_default() += quantity;
            }
        }
    }
    let mut sold = BTreeMap::new();
    for (n, units) in by_listing {
        let Some(resolved) = catalog.resolve(&format!("SKU-{n:05}")) else { continue };
        for (component, per_unit) in resolved.components {
            *sold.entry(component.key()).or_default() += units * per_unit;
        }
    }
    sold
}

/// Checks that hold at any moment of a run (after each step).
pub async fn check_step(
    store: &Store,
    sandbox: &EmbeddedSandbox,
    ctx: &CheckContext<'_>,
    history: &mut History,
) -> anyhow::Result<Violations> {
    let mut v = Violations::default();
    history.observations += 1;
    let cursors: BTreeMap<String, DateTime<Utc>> = store
        .cursors()
        .await?
        .into_iter()
        .filter(|(_, job, _)| job == "orders")
        .map(|(store_id, _, at)| (store_id, at))
        .collect();
    for store_config in &ctx.config.stores {
        let store_id = &store_config.id;
        let stored = store.order_summaries(store_id).await?;
        let stored: BTreeMap<String, DateTime<Utc>> =
            stored.into_iter().map(|s| (s.order_id, s.modified_at)).collect();
        for (order_id, modified) in &stored {
            let key = (store_id.clone(), order_id.clone());
            if let Some(before) = history.orders.get(&key)
                && modified < before
            {
                v.orders_backwards += 1;
            }
            history.orders.insert(key, *modified);
        }
        if let Some(cursor) = cursors.get(store_id) {
            let truth = marketplace_orders(sandbox, store_config.kind.type_name());
            // A payload that could not be parsed is quarantined, not waited for.
            let quarantined: BTreeSet<String> =
                store.quarantine(Some(store_id)).await?.into_iter().filter_map(|q| q.order_id).collect();
            // The next pull resumes at the cursor less the overlap: an order before that
            // point and not stored is one no later pull will read. (Inside the overlap it
            // may still be on its way: a lagging index shows it late, by design.)
            let overlap = TimeDelta::from_std(ctx.config.sync.overlap).unwrap_or_default();
            let behind = *cursor - overlap - TimeDelta::seconds(1);
            for (order_id, (modified, _)) in &truth {
                if *modified < behind
                    && stored.get(order_id).is_none_or(|got| got < modified)
                    && !quarantined.contains(order_id)
                {
                    v.cursor_past_uncommitted += 1;
                }
            }
        }
    }
    for row in store.audit_reservations().await? {
        let key = (row.store_id, row.order_id, row.line_id, row.component);
        if let Some(before) = history.reservations.get(&key)
            && before != "open"
            && *before != row.state
        {
            match row.state.as_str() {
                "consumed" => v.reservation_double_consume += 1,
                _ => v.reservation_double_release += 1,
            }
        }
        history.reservations.insert(key, row.state);
    }
    v.add(&check_effects(store, sandbox, ctx).await?);
    Ok(v)
}

/// Checks on the effects the sandboxes received, true at any moment: shipments applied at
/// most once per line, no oversell, no negative stock, no stale stock write.
pub async fn check_effects(
    store: &Store,
    sandbox: &EmbeddedSandbox,
    ctx: &CheckContext<'_>,
) -> anyhow::Result<Violations> {
    let mut v = Violations::default();
    let mut top_lines: BTreeMap<(i64, i64), u64> = BTreeMap::new();
    let mut top_trades: BTreeMap<i64, u64> = BTreeMap::new();
    for record in sandbox.top.shipments() {
        *top_trades.entry(record.tid).or_default() += 1;
        for oid in &record.oids {
            *top_lines.entry((record.tid, *oid)).or_default() += 1;
        }
    }
    v.shipment_twice += top_lines.values().map(|n| n.saturating_sub(1)).sum::<u64>();
    let mut jd_orders: BTreeMap<String, u64> = BTreeMap::new();
    for record in sandbox.jos.shipments() {
        *jd_orders.entry(record.order_id).or_default() += 1;
    }
    v.shipment_twice += jd_orders.values().map(|n| n.saturating_sub(1)).sum::<u64>();

    let catalog = &ctx.config.catalog;
    for (component, sold) in sold_by_component(sandbox, catalog, ctx.listings) {
        let supply = ctx.supply.get(&component).copied().unwrap_or(0);
        v.oversold_units += u64::try_from(sold - supply).unwrap_or(0);
    }

    for n in 0..ctx.listings {
        if sandbox.top.listing(n).quantity < 0 {
            v.negative_stock += 1;
        }
        if sandbox.jos.listing(n).quantity < 0 {
            v.negative_stock += 1;
        }
    }
    for code in catalog.skus.keys() {
        if sandbox.operator.on_hand(code) < 0 {
            v.negative_stock += 1;
        }
    }

    for store_config in &ctx.config.stores {
        for row in store.listings(&store_config.id).await? {
            let state = &row.state;
            if state.last_pushed.is_some_and(|q| q < 0) || state.grant.is_some_and(|q| q < 0) {
                v.negative_stock += 1;
            }
        }
    }
    Ok(v)
}

/// What must hold once everything has settled (faults off, every job run until quiet):
/// every order stored in its latest state and nothing else, every shipment the operator
/// made applied once unless dead-lettered; plus the effect checks.
pub async fn check(
    store: &Store,
    sandbox: &EmbeddedSandbox,
    ctx: &CheckContext<'_>,
) -> anyhow::Result<Violations> {
    let mut v = check_effects(store, sandbox, ctx).await?;
    v.add(&settled_orders(store, sandbox, ctx).await?);
    v.add(&settled_shipments(store, sandbox, ctx).await?);
    Ok(v)
}

/// Orders lost (missing or stale) and duplicated (stored, not shown), once settled.
pub async fn settled_orders(
    store: &Store,
    sandbox: &EmbeddedSandbox,
    ctx: &CheckContext<'_>,
) -> anyhow::Result<Violations> {
    let mut v = Violations::default();
    for store_config in &ctx.config.stores {
        let truth = marketplace_orders(sandbox, store_config.kind.type_name());
        let stored = store.order_summaries(&store_config.id).await?;
        let mut seen = BTreeSet::new();
        for summary in &stored {
            if !seen.insert(summary.order_id.clone()) || !truth.contains_key(&summary.order_id) {
                v.orders_duplicated += 1;
            }
        }
        let stored: BTreeMap<&str, (DateTime<Utc>, &str)> = stored
            .iter()
            .map(|s| (s.order_id.as_str(), (s.modified_at, s.platform_status.as_str())))
            .collect();
        // A payload that could not be parsed is kept in quarantine with its reason: accounted
        // for, not lost (when no later good copy replaced it).
        let quarantined: BTreeSet<String> =
            store.quarantine(Some(&store_config.id)).await?.into_iter().filter_map(|q| q.order_id).collect();
        for (order_id, (modified, status)) in &truth {
            match stored.get(order_id.as_str()) {
                Some((got, got_status)) if got == modified && got_status == status => {}
                _ if quarantined.contains(order_id) => {}
                _ => v.orders_lost += 1,
            }
        }
    }
    Ok(v)
}

/// Shipments the operator made that never reached the marketplace (outside dead letters).
pub async fn settled_shipments(
    store: &Store,
    sandbox: &EmbeddedSandbox,
    ctx: &CheckContext<'_>,
) -> anyhow::Result<Violations> {
    let mut v = Violations::default();
    let dead: BTreeSet<(String, String)> = store
        .outbox_rows(&OutboxFilter { state: Some(OutboxState::Dead), ..OutboxFilter::default() })
        .await?
        .into_iter()
        .map(|r| (r.store_id, r.order_id))
        .collect();
    let types: BTreeMap<&str, &str> =
        ctx.config.stores.iter().map(|s| (s.id.as_str(), s.kind.type_name())).collect();
    let top: BTreeSet<String> = sandbox.top.shipments().into_iter().map(|r| r.tid.to_string()).collect();
    let jd: BTreeSet<String> = sandbox.jos.shipments().into_iter().map(|r| r.order_id).collect();
    let shipped: BTreeSet<(String, String)> =
        sandbox.operator.notices().into_iter().map(|n| (n.store_id, n.order_id)).collect();
    for (store_id, order_id) in shipped {
        if dead.contains(&(store_id.clone(), order_id.clone())) {
            continue;
        }
        let reached = match types.get(store_id.as_str()) {
            Some(&"taobao") => top.contains(&order_id),
            Some(_) => jd.contains(&order_id),
            None => continue,
        };
        if !reached {
            v.shipment_never += 1;
        }
    }
    Ok(v)
}
