//! The stock push: plan a store's listings from the ledger and push what changed, in the
//! platform's batch sizes. A run costs what changed since the last one, not the size of the
//! catalogue (see [`sync_stock`]). A push is marked pending before it is sent, so a push whose
//! outcome is unknown is accounted for conservatively on the next run.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use flagsync_market::{ListingRef, Marketplace, StockUpdate};
use serde::{Deserialize, Serialize};

use super::SyncError;
use crate::inventory::planner::{self, Decision, ListingPlanInput, ListingState, Target};
use crate::inventory::{Allocation, Catalog, Component, ReservationRules, listing_key};
use crate::store::{ListingRow, ListingWrite, Store};

/// A store's stock policy.
#[derive(Debug, Clone)]
pub struct StockPolicy {
    pub rules: ReservationRules,
    pub shared_pool: bool,
    /// Per target: this store's allocation (explicit, or the default share).
    pub allocation: BTreeMap<String, Allocation>,
    /// Share for targets with no entry in `allocation`.
    pub default_share: BTreeMap<String, f64>,
    /// [`policy_fingerprint`] of this policy and the catalogue it was built from, computed
    /// by the first stock run: hashing a large catalogue every run would make an idle run's
    /// cost follow the catalogue's size. A changed configuration builds a new policy.
    pub fingerprint: std::sync::OnceLock<i64>,
}

impl StockPolicy {
    fn allocation_for(&self, target: &str) -> Allocation {
        self.allocation.get(target).copied().unwrap_or(Allocation {
            share: self.default_share.get(target).copied().unwrap_or(0.0),
            cap: None,
            floor: 0,
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StockReport {
    pub listings: u64,
    pub pushed: u64,
    pub unchanged: u64,
    pub failed: u64,
    /// Listings whose merchant code maps to nothing in the catalogue (never guessed).
    pub unmapped: Vec<String>,
    /// Orders flagged as not servable (store/order), newest first.
    pub flagged: Vec<String>,
    /// Units promised beyond what the operator has, over all components.
    pub oversold_units: i64,
    pub errors: Vec<String>,
}

/// One listing's plan, for pushes and for `stock explain`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListingPlan {
    pub row: ListingRow,
    pub input: ListingPlanInput,
    pub target: Target,
}

/// Listings a stock or reconcile run holds in memory at once.
pub const PAGE: i64 = 2_000;

/// Per target: how many listings of the store map to it (they split the store's share).
/// `targets` limits the count to those targets' merchant codes (an incremental run).
pub async fn target_counts(
    store: &Store,
    store_id: &str,
    policy: &StockPolicy,
    targets: Option<&[&str]>,
) -> Result<BTreeMap<String, usize>, SyncError> {
    let catalog = &policy.rules.catalog;
    let code_target = |code: &str| catalog.resolve(code.trim()).map(|r| r.target);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (outer, n) in store.listing_code_counts(store_id, targets).await? {
        if let Some(target) = outer.as_deref().and_then(code_target) {
            *counts.entry(target).or_default() += usize::try_from(n).unwrap_or(0);
        }
    }
    // Explicit mappings win over merchant codes.
    if !policy.rules.explicit.is_empty() {
        let items: BTreeSet<&str> = policy
            .rules
            .explicit
            .keys()
            .map(|key| key.split_once(':').map_or(key.as_str(), |(item, _)| item))
            .collect();
        let items: Vec<&str> = items.into_iter().collect();
        for row in store.listings_of_items(store_id, &items).await? {
            let key = listing_key(&row.item_id, row.sku());
            let rules = &policy.rules;
            let Some(explicit) = rules.explicit.get(&key).or_else(|| rules.explicit.get(&row.item_id)) else {
                continue;
            };
            let outer = row.outer_id.as_deref();
            if let Some(by_code) = outer.and_then(code_target) {
                let counted = targets.is_none_or(|t| outer.is_some_and(|o| t.contains(&o)));
                if let (true, Some(n)) = (counted, counts.get_mut(&by_code)) {
                    *n = n.saturating_sub(1);
                }
            }
            if let Some(resolved) = catalog.resolve(explicit) {
                *counts.entry(resolved.target).or_default() += 1;
            }
        }
    }
    Ok(counts)
}

/// Resolves and plans these listings (no I/O beyond the store); unmapped ones are added
/// to `unmapped`.
pub(crate) async fn plan_rows(
    store: &Store,
    store_id: &str,
    policy: &StockPolicy,
    levels: &BTreeMap<crate::inventory::Component, planner::ComponentLevel>,
    counts: &BTreeMap<String, usize>,
    rows: Vec<ListingRow>,
    unmapped: &mut Vec<String>,
) -> Result<Vec<ListingPlan>, SyncError> {
    let mut resolved = Vec::with_capacity(rows.len());
    for row in rows {
        match policy.rules.target_of(&row.item_id, row.sku(), row.outer_id.as_deref()) {
            Some(target) => resolved.push((row, target)),
            None => unmapped.push(listing_key(&row.item_id, row.sku())),
        }
    }
    // What never-settled listings already sold, for their first push: one grouped query.
    let fresh: Vec<(&str, &str)> = resolved
        .iter()
        .filter(|(row, _)| row.state.allowance.is_none())
        .map(|(row, _)| (row.item_id.as_str(), row.sku_id.as_str()))
        .collect();
    let sold =
        if fresh.is_empty() { HashMap::new() } else { store.sold_units_many(store_id, &fresh).await? };
    let mut plans = Vec::with_capacity(resolved.len());
    for (row, target) in resolved {
        // Several listings of one store with the same target split the store's share.
        let mut allocation = policy.allocation_for(&target.target);
        allocation.share /= counts.get(&target.target).copied().unwrap_or(1).max(1) as f64;
        let sold_known = if row.state.allowance.is_none() {
            sold.get(&(row.item_id.clone(), row.sku_id.clone())).copied().unwrap_or(0)
        } else {
            0
        };
        let input = ListingPlanInput {
            key: listing_key(&row.item_id, row.sku()),
            target,
            allocation,
            shared_pool: policy.shared_pool,
            state: row.state,
            sold_known,
        };
        let target = planner::target(&input, levels);
        plans.push(ListingPlan { row, input, target });
    }
    Ok(plans)
}

/// Resolves and plans every listing of a store (no I/O beyond the store), for
/// `stock explain`.
pub async fn plan_listings(
    store: &Store,
    store_id: &str,
    policy: &StockPolicy,
    levels: &BTreeMap<crate::inventory::Component, planner::ComponentLevel>,
) -> Result<(Vec<ListingPlan>, Vec<String>), SyncError> {
    let rows = store.listings(store_id).await?;
    let counts = target_counts(store, store_id, policy, None).await?;
    let mut unmapped = Vec::new();
    let plans = plan_rows(store, store_id, policy, levels, &counts, rows, &mut unmapped).await?;
    Ok((plans, unmapped))
}

fn listing_ref(row: &ListingRow) -> ListingRef {
    ListingRef { item_id: row.item_id.clone(), sku_id: row.sku().map(str::to_string) }
}

/// A stable digest of everything in the policy and catalogue that changes what a listing
/// should show: when it differs from the last run's, every listing is planned again.
fn policy_fingerprint(policy: &StockPolicy, catalog: &Catalog) -> i64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let allocation = |hasher: &mut std::collections::hash_map::DefaultHasher, a: &Allocation| {
        (a.share.to_bits(), a.cap, a.floor).hash(hasher);
    };
    policy.shared_pool.hash(&mut hasher);
    policy.rules.reserve_on_order.hash(&mut hasher);
    policy.rules.explicit.hash(&mut hasher);
    for (target, a) in &policy.allocation {
        target.hash(&mut hasher);
        allocation(&mut hasher, a);
    }
    for (target, share) in &policy.default_share {
        (target, share.to_bits()).hash(&mut hasher);
    }
    for catalog in [catalog, &policy.rules.catalog] {
        for (code, sku) in &catalog.skus {
            (code, &sku.code, sku.kind, sku.safety_stock).hash(&mut hasher);
        }
        catalog.bundles.hash(&mut hasher);
    }
    hasher.finish() as i64
}

/// Plans and pushes a store's listings.
///
/// A run plans only what may have changed since the last one: listings whose target uses a
/// component whose ledger numbers moved (`stock_dirty`, written by the transactions that
/// move them), listings with a push of unknown outcome or never settled, and listings
/// mapped explicitly in the config. When the policy or catalogue changed (or on the first
/// run) every listing is planned, a page at a time.
pub async fn sync_stock(
    store: &Store,
    store_id: &str,
    market: &dyn Marketplace,
    policy: &StockPolicy,
    catalog: &Catalog,
    clock: &dyn flagsync_market::Clock,
) -> Result<StockReport, SyncError> {
    // Listings named in the config exist before their first sale.
    let named: Vec<crate::store::SeenListing> = policy
        .rules
        .explicit
        .keys()
        .map(|key| match key.split_once(':') {
            Some((item, sku)) => (item.to_string(), Some(sku.to_string()), None, None),
            None => (key.clone(), None, None, None),
        })
        .collect();
    if !named.is_empty() {
        store.upsert_listings(store_id, &named).await?;
    }
    let fingerprint = *policy.fingerprint.get_or_init(|| policy_fingerprint(policy, catalog));
    let mark = format!("stock_policy:{store_id}");
    // Read before the levels: a change committed after this is planned next run.
    let dirty = store.stock_dirty(store_id).await?;
    let full = store.watermark(&mark).await? != Some(fingerprint);
    let flagged_components = store.flagged_components().await?;
    let mut report = StockReport::default();
    let mut retry: BTreeSet<String> = BTreeSet::new();
    let mut unmapped = Vec::new();

    let levels = if full {
        let levels = store.component_levels(catalog).await?;
        let counts = target_counts(store, store_id, policy, None).await?;
        let mut after: Option<(String, String)> = None;
        loop {
            let rows = store
                .listings_page(store_id, after.as_ref().map(|(i, s)| (i.as_str(), s.as_str())), PAGE)
                .await?;
            let Some(last) = rows.last() else { break };
            after = Some((last.item_id.clone(), last.sku_id.clone()));
            let plans = plan_rows(store, store_id, policy, &levels, &counts, rows, &mut unmapped).await?;
            push_plans(store, store_id, market, &plans, &mut report, &mut retry, clock).await?;
        }
        levels
    } else {
        // Targets that use a changed component.
        let changed: BTreeSet<&str> = dirty.iter().map(|(c, _)| c.as_str()).collect();
        let mut targets: BTreeSet<&str> = BTreeSet::new();
        for key in &changed {
            if let Some(component) = crate::inventory::Component::parse(key)
                && let Some((code, _)) = catalog.skus.get_key_value(&component.code)
            {
                targets.insert(code.as_str());
            }
        }
        for (bundle, parts) in &catalog.bundles {
            if parts.iter().any(|(code, _)| {
                catalog.skus.get(code).is_some_and(|sku| {
                    changed.contains(Component { kind: sku.kind, code: code.clone() }.key().as_str())
                })
            }) {
                targets.insert(bundle.as_str());
            }
        }
        let targets: Vec<&str> = targets.into_iter().collect();
        let mut rows: BTreeMap<(String, String), ListingRow> = BTreeMap::new();
        let explicit_items: BTreeSet<&str> = policy
            .rules
            .explicit
            .keys()
            .map(|key| key.split_once(':').map_or(key.as_str(), |(item, _)| item))
            .collect();
        let explicit_items: Vec<&str> = explicit_items.into_iter().collect();
        for row in store
            .listings_by_codes(store_id, &targets)
            .await?
            .into_iter()
            .chain(store.listings_of_items(store_id, &explicit_items).await?)
            .chain(store.unsettled_listings(store_id, policy.shared_pool).await?)
        {
            rows.insert((row.item_id.clone(), row.sku_id.clone()), row);
        }
        // A listing not settled yet may be new: it splits its target's share with the
        // target's other listings, whose grants move too.
        let mut wanted_targets: BTreeSet<String> = BTreeSet::new();
        for row in rows.values() {
            if let Some(resolved) = policy.rules.target_of(&row.item_id, row.sku(), row.outer_id.as_deref()) {
                wanted_targets.insert(resolved.target);
            }
        }
        let siblings: Vec<&str> =
            wanted_targets.iter().map(String::as_str).filter(|t| !targets.contains(t)).collect();
        for row in store.listings_by_codes(store_id, &siblings).await? {
            rows.entry((row.item_id.clone(), row.sku_id.clone())).or_insert(row);
        }
        // Levels of the changed components, of those with flagged orders, and of every
        // component the selected listings use.
        let mut keys: BTreeSet<String> = changed.iter().map(|c| c.to_string()).collect();
        keys.extend(flagged_components.iter().cloned());
        for row in rows.values() {
            if let Some(resolved) = policy.rules.target_of(&row.item_id, row.sku(), row.outer_id.as_deref()) {
                keys.extend(resolved.components.iter().map(|(c, _)| c.key()));
            }
        }
        let levels = store.component_levels_of(catalog, Some(&keys)).await?;
        let wanted: Vec<&str> = wanted_targets.iter().map(String::as_str).collect();
        let counts = target_counts(store, store_id, policy, Some(&wanted)).await?;
        let rows: Vec<ListingRow> = rows.into_values().collect();
        for page in rows.chunks(usize::try_from(PAGE).unwrap_or(2_000)) {
            let plans =
                plan_rows(store, store_id, policy, &levels, &counts, page.to_vec(), &mut unmapped).await?;
            push_plans(store, store_id, market, &plans, &mut report, &mut retry, clock).await?;
        }
        levels
    };
    report.unmapped = unmapped;

    flag_unservable(store, &levels, &flagged_components, &mut report).await?;

    // This run's changes are planned; what failed is planned again next run.
    store.clear_stock_dirty(store_id, &dirty).await?;
    if !retry.is_empty() {
        store.mark_stock_dirty(store_id, &retry).await?;
    }
    store.set_watermark(&mark, fingerprint).await?;
    Ok(report)
}

/// Reads live quantities where the plans need them, decides, marks pushes pending, pushes
/// and records the outcome, for one page of plans. The components of listings that failed
/// go into `retry`.
async fn push_plans(
    store: &Store,
    store_id: &str,
    market: &dyn Marketplace,
    plans: &[ListingPlan],
    report: &mut StockReport,
    retry: &mut BTreeSet<String>,
    clock: &dyn flagsync_market::Clock,
) -> Result<(), SyncError> {
    report.listings += plans.len() as u64;
    let mut failed = |plan: &ListingPlan, report: &mut StockReport, error: String| {
        report.failed += 1;
        report.errors.push(error);
        retry.extend(plan.input.target.components.iter().map(|(c, _)| c.key()));
    };
    // Live quantities for allocated listings whose grant moved (or that have no state).
    let needs_live: Vec<ListingRef> =
        plans.iter().filter(|p| p.target.needs_live).map(|p| listing_ref(&p.row)).collect();
    // The states below are as of this reading: sales after it are the ones reconcile
    // counts against them (a delta push keeps them on the platform).
    let now = clock.now();
    let mut live: BTreeMap<ListingRef, i64> = BTreeMap::new();
    for chunk in needs_live.chunks(market.limits().stock_batch.max(1) * 5) {
        for quantity in market.read_stock(chunk).await? {
            live.insert(quantity.listing, quantity.quantity);
        }
    }

    let mut writes: Vec<ListingWrite> = Vec::new();
    let mut updates: Vec<(usize, StockUpdate, ListingState, Option<i64>)> = Vec::new();
    for (index, plan) in plans.iter().enumerate() {
        let reference = listing_ref(&plan.row);
        if plan.input.shared_pool {
            if plan.target.push_now {
                let state = ListingState { last_pushed: Some(plan.target.value), ..plan.row.state };
                updates.push((
                    index,
                    StockUpdate { listing: reference, quantity: plan.target.value },
                    state,
                    None,
                ));
            } else {
                report.unchanged += 1;
            }
            continue;
        }
        if !plan.target.needs_live {
            report.unchanged += 1;
            continue;
        }
        let Some(&current) = live.get(&reference) else {
            failed(plan, report, format!("{}: the marketplace did not return its quantity", plan.input.key));
            continue;
        };
        let Decision { grant, allowance, shown, push } =
            planner::decide(&plan.input, plan.target.value, current);
        let state = ListingState {
            grant: Some(grant),
            allowance: Some(allowance),
            last_pushed: Some(shown),
            pending: None,
        };
        if push {
            // Allocated listings move by the difference, atomically on the platform, so a
            // sale landing between our read and the push is kept (an absolute write would
            // sell it again).
            updates.push((
                index,
                StockUpdate { listing: reference, quantity: shown - current },
                state,
                Some(current),
            ));
        } else {
            writes.push(ListingWrite::Saved {
                item_id: plan.row.item_id.clone(),
                sku_id: plan.row.sku_id.clone(),
                state,
                pushed: false,
                live: Some(current),
            });
            report.unchanged += 1;
        }
    }

    // Mark every push pending first (in the same transaction as the states above): if we
    // die or the outcome is unknown, the next run takes the smaller of "it landed" and "it
    // did not".
    for (index, _, state, _) in &updates {
        let plan = &plans[*index];
        if !plan.input.shared_pool {
            let pending =
                (state.grant.unwrap_or(0), state.allowance.unwrap_or(0), state.last_pushed.unwrap_or(0));
            writes.push(ListingWrite::Pending {
                item_id: plan.row.item_id.clone(),
                sku_id: plan.row.sku_id.clone(),
                pending: Some(pending),
            });
        }
    }
    store.write_listing_states(store_id, &writes, now).await?;
    writes.clear();

    // Allocated listings (with a live reading) move by deltas, shared-pool ones are set.
    let (deltas, absolutes): (Vec<_>, Vec<_>) = updates.iter().partition(|update| update.3.is_some());
    let mut results = Vec::new();
    if !deltas.is_empty() {
        let batch: Vec<StockUpdate> = deltas.iter().map(|update| update.1.clone()).collect();
        results.extend(deltas.iter().copied().zip(market.push_stock_deltas(&batch).await?));
    }
    if !absolutes.is_empty() {
        let batch: Vec<StockUpdate> = absolutes.iter().map(|update| update.1.clone()).collect();
        results.extend(absolutes.iter().copied().zip(market.push_stock(&batch).await?));
    }
    for ((index, _, state, current), result) in results {
        let plan = &plans[*index];
        let row = &plan.row;
        match result.outcome {
            Ok(now_live) => {
                // After a delta the platform's figure may already include new sales; the
                // next run reads it back.
                let live = if current.is_some() { None } else { Some(now_live) };
                writes.push(ListingWrite::Saved {
                    item_id: row.item_id.clone(),
                    sku_id: row.sku_id.clone(),
                    state: *state,
                    pushed: true,
                    live,
                });
                report.pushed += 1;
            }
            Err(error) => {
                failed(plan, report, format!("{}: {error}", plan.input.key));
                if !error.is_retryable() || error.kind == flagsync_market::ErrorKind::Rejected {
                    // Refused outright: nothing landed.
                    writes.push(ListingWrite::Pending {
                        item_id: row.item_id.clone(),
                        sku_id: row.sku_id.clone(),
                        pending: None,
                    });
                }
            }
        }
    }
    store.write_listing_states(store_id, &writes, now).await?;
    Ok(())
}

/// Orders that cannot be served: units promised beyond what is on hand, newest first. Looks
/// at the components in `levels` (a full run: all; otherwise what changed, what has flagged
/// orders and what the planned listings use); flags of other components cannot have moved.
async fn flag_unservable(
    store: &Store,
    levels: &BTreeMap<crate::inventory::Component, planner::ComponentLevel>,
    flagged_components: &[String],
    report: &mut StockReport,
) -> Result<(), SyncError> {
    let has_flags: BTreeSet<&str> = flagged_components.iter().map(String::as_str).collect();
    let keys: BTreeMap<&crate::inventory::Component, String> = levels.keys().map(|c| (c, c.key())).collect();
    let short: Vec<&str> =
        levels.iter().filter(|(_, level)| level.deficit() > 0).map(|(c, _)| keys[c].as_str()).collect();
    let clear: Vec<&str> = levels
        .iter()
        .filter(|(c, level)| level.deficit() == 0 && has_flags.contains(keys[c].as_str()))
        .map(|(c, _)| keys[c].as_str())
        .collect();
    let mut open: BTreeMap<String, Vec<crate::store::OpenReservation>> = BTreeMap::new();
    if !short.is_empty() {
        for reservation in store.open_reservations_of(&short, false).await? {
            open.entry(reservation.component.clone()).or_default().push(reservation);
        }
    }
    if !clear.is_empty() {
        for reservation in store.open_reservations_of(&clear, true).await? {
            open.entry(reservation.component.clone()).or_default().push(reservation);
        }
    }
    let mut flags = Vec::new();
    for (component, level) in levels {
        let key = &keys[component];
        let Some(open) = open.get(key) else {
            if level.deficit() > 0 {
                report.oversold_units += level.deficit();
            }
            continue;
        };
        let deficit = level.deficit();
        let flagged = if deficit > 0 {
            let candidates: Vec<(String, i64, i64)> = open
                .iter()
                .map(|r| {
                    (format!("{}/{}", r.store_id, r.order_id), r.quantity, r.ordered_at.timestamp_millis())
                })
                .collect();
            report.oversold_units += deficit;
            planner::unservable(candidates, deficit)
        } else {
            Vec::new()
        };
        for reservation in open {
            let id = format!("{}/{}", reservation.store_id, reservation.order_id);
            let reason =
                flagged.contains(&id).then(|| format!("{key}: {deficit} unit(s) short at the operator"));
            if reservation.flagged != reason {
                flags.push((reservation.store_id.clone(), reservation.order_id.clone(), key.clone(), reason));
            }
        }
        for id in flagged {
            if !report.flagged.contains(&id) {
                report.flagged.push(id);
            }
        }
    }
    store.flag_reservations_many(&flags).await?;
    Ok(())
}
