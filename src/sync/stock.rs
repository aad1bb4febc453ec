//! The stock push: plan every listing of a store from the ledger and push what changed, in
//! the platform's batch sizes. A push is marked pending before it is sent, so a push whose
//! outcome is unknown is accounted for conservatively on the next run.

use std::collections::BTreeMap;

use flagsync_market::{ListingRef, Marketplace, StockUpdate};
use serde::{Deserialize, Serialize};

use super::SyncError;
use crate::inventory::planner::{self, Decision, ListingPlanInput, ListingState, Target};
use crate::inventory::{Allocation, Catalog, ReservationRules, listing_key};
use crate::store::{ListingRow, Store};

/// A store's stock policy.
#[derive(Debug, Clone)]
pub struct StockPolicy {
    pub rules: ReservationRules,
    pub shared_pool: bool,
    /// Per target: this store's allocation (explicit, or the default share).
    pub allocation: BTreeMap<String, Allocation>,
    /// Share for targets with no entry in `allocation`.
    pub default_share: BTreeMap<String, f64>,
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

/// Resolves and plans every listing of a store (no I/O beyond the store).
pub async fn plan_listings(
    store: &Store,
    store_id: &str,
    policy: &StockPolicy,
    levels: &BTreeMap<crate::inventory::Component, planner::ComponentLevel>,
) -> Result<(Vec<ListingPlan>, Vec<String>), SyncError> {
    let rows = store.listings(store_id).await?;
    let mut resolved = Vec::new();
    let mut unmapped = Vec::new();
    for row in rows {
        match policy.rules.target_of(&row.item_id, row.sku(), row.outer_id.as_deref()) {
            Some(target) => resolved.push((row, target)),
            None => unmapped.push(listing_key(&row.item_id, row.sku())),
        }
    }
    // Several listings of one store with the same target split the store's share.
    let mut per_target: BTreeMap<String, usize> = BTreeMap::new();
    for (_, target) in &resolved {
        *per_target.entry(target.target.clone()).or_default() += 1;
    }
    let mut plans = Vec::with_capacity(resolved.len());
    for (row, target) in resolved {
        let mut allocation = policy.allocation_for(&target.target);
        allocation.share /= per_target.get(&target.target).copied().unwrap_or(1).max(1) as f64;
        let sold_known = if row.state.allowance.is_none() {
            store.sold_units(store_id, &row.item_id, &row.sku_id).await?
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
    Ok((plans, unmapped))
}

fn listing_ref(row: &ListingRow) -> ListingRef {
    ListingRef { item_id: row.item_id.clone(), sku_id: row.sku().map(str::to_string) }
}

/// Plans and pushes a store's listings.
pub async fn sync_stock(
    store: &Store,
    store_id: &str,
    market: &dyn Marketplace,
    policy: &StockPolicy,
    catalog: &Catalog,
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
    let levels = store.component_levels(catalog).await?;
    let (plans, unmapped) = plan_listings(store, store_id, policy, &levels).await?;
    let mut report = StockReport { listings: plans.len() as u64, unmapped, ..StockReport::default() };

    // Live quantities for allocated listings whose grant moved (or that have no state).
    let needs_live: Vec<ListingRef> =
        plans.iter().filter(|p| p.target.needs_live).map(|p| listing_ref(&p.row)).collect();
    let mut live: BTreeMap<ListingRef, i64> = BTreeMap::new();
    for chunk in needs_live.chunks(market.limits().stock_batch.max(1) * 5) {
        for quantity in market.read_stock(chunk).await? {
            live.insert(quantity.listing, quantity.quantity);
        }
    }

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
            report.failed += 1;
            report.errors.push(format!("{}: the marketplace did not return its quantity", plan.input.key));
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
            store
                .save_listing_state(
                    store_id,
                    &plan.row.item_id,
                    &plan.row.sku_id,
                    &state,
                    false,
                    Some(current),
                )
                .await?;
            report.unchanged += 1;
        }
    }

    // Mark every push pending first: if we die or the outcome is unknown, the next run
    // takes the smaller of "it landed" and "it did not".
    for (index, _, state, _) in &updates {
        let row = &plans[*index].row;
        let pending =
            (state.grant.unwrap_or(0), state.allowance.unwrap_or(0), state.last_pushed.unwrap_or(0));
        if !plans[*index].input.shared_pool {
            store.set_listing_pending(store_id, &row.item_id, &row.sku_id, Some(pending)).await?;
        }
    }
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
        let row = &plans[*index].row;
        match result.outcome {
            Ok(now_live) => {
                // After a delta the platform's figure may already include new sales; the
                // next run reads it back.
                let live = if current.is_some() { None } else { Some(now_live) };
                store.save_listing_state(store_id, &row.item_id, &row.sku_id, state, true, live).await?;
                report.pushed += 1;
            }
            Err(error) => {
                report.failed += 1;
                report.errors.push(format!("{}: {error}", plans[*index].input.key));
                if !error.is_retryable() || error.kind == flagsync_market::ErrorKind::Rejected {
                    // Refused outright: nothing landed.
                    store.set_listing_pending(store_id, &row.item_id, &row.sku_id, None).await?;
                }
            }
        }
    }

    // Orders that cannot be served: units promised beyond what is on hand, newest first.
    for (component, level) in &levels {
        let deficit = level.deficit();
        let key = component.key();
        let open = store.open_reservations(&key).await?;
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
        for reservation in &open {
            let id = format!("{}/{}", reservation.store_id, reservation.order_id);
            let reason =
                flagged.contains(&id).then(|| format!("{key}: {deficit} unit(s) short at the operator"));
            if reservation.flagged != reason {
                store
                    .flag_reservations(&reservation.store_id, &reservation.order_id, &key, reason.as_deref())
                    .await?;
            }
        }
        for id in flagged {
            if !report.flagged.contains(&id) {
                report.flagged.push(id);
            }
        }
    }
    Ok(report)
}
