//! Reconcile: read every pushed listing's live quantity back from the marketplace and
//! report those that differ from what flagsync expects (what it last pushed, less the sales
//! it has pulled since, plus the units refunds of earlier sales gave back, as a range where
//! order times are too close to the reading to tell). `fix` lowers a listing that shows
//! more than expected to the low end, by a delta. It never raises one that shows less: the
//! missing units may be sales not pulled yet (orders are always known only up to some time
//! before the reading), and raising would sell them again.

use chrono::{DateTime, Utc};
use flagsync_market::{ListingRef, Marketplace, StockUpdate};
use serde::{Deserialize, Serialize};

use super::SyncError;
use crate::inventory::listing_key;
use crate::inventory::planner::{ListingState, show};
use crate::store::{ListingWrite, Store};
use crate::sync::stock::{ListingPlan, PAGE, StockPolicy, plan_rows, target_counts};

/// One listing that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discrepancy {
    pub store: String,
    pub listing: String,
    pub target: String,
    /// The fewest units the listing can rightly show (what `fix` pushes)...
    pub expected: i64,
    /// ...and the most (sales and refunds stamped near the last reading may fall on
    /// either side of it).
    pub expected_max: i64,
    pub last_pushed: Option<i64>,
    pub live: i64,
    pub fixed: bool,
    /// Why a differing listing was left alone by `fix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileReport {
    pub checked: u64,
    pub differing: Vec<Discrepancy>,
    pub fixed: u64,
    pub errors: Vec<String>,
}

/// How far from the reading behind a listing's state a sale or refund counts as possibly
/// on either side of it: the platforms stamp orders to the second, their clocks are not
/// ours, and a reading takes a moment.
pub const ATTRIBUTION_SLACK: chrono::TimeDelta = chrono::TimeDelta::seconds(3);

/// How a reconcile run goes.
#[derive(Debug, Clone, Copy)]
pub struct ReconcileOptions {
    /// Move the listings that differ to what is expected (see the module doc).
    pub fix: bool,
    /// The app's clock before the readings.
    pub now: DateTime<Utc>,
    /// Every sale modified before this has been pulled (the orders cursor less the
    /// overlap); `None` before the first pull. Shown in the note of a listing lower than
    /// expected.
    pub sales_known_until: Option<DateTime<Utc>>,
}

/// Walks the store's listings a page at a time (memory follows the page, not the
/// catalogue).
pub async fn reconcile(
    store: &Store,
    store_id: &str,
    market: &dyn Marketplace,
    policy: &StockPolicy,
    catalog: &crate::inventory::Catalog,
    options: ReconcileOptions,
) -> Result<ReconcileReport, SyncError> {
    let levels = store.component_levels(catalog).await?;
    let counts = target_counts(store, store_id, policy, None).await?;
    let mut report = ReconcileReport::default();
    let mut after: Option<(String, String)> = None;
    loop {
        let rows = store
            .listings_page(store_id, after.as_ref().map(|(i, s)| (i.as_str(), s.as_str())), PAGE)
            .await?;
        let Some(last) = rows.last() else { break };
        after = Some((last.item_id.clone(), last.sku_id.clone()));
        let rows: Vec<_> = rows.into_iter().filter(|row| row.state.last_pushed.is_some()).collect();
        let mut unmapped = Vec::new();
        let pushed = plan_rows(store, store_id, policy, &levels, &counts, rows, &mut unmapped).await?;
        reconcile_page(store, store_id, market, &pushed, &options, &mut report).await?;
    }
    Ok(report)
}

async fn reconcile_page(
    store: &Store,
    store_id: &str,
    market: &dyn Marketplace,
    pushed: &[ListingPlan],
    fixing: &ReconcileOptions,
    report: &mut ReconcileReport,
) -> Result<(), SyncError> {
    let clock_now = fixing.now;
    report.checked += pushed.len() as u64;
    let refs: Vec<ListingRef> = pushed
        .iter()
        .map(|p| ListingRef { item_id: p.row.item_id.clone(), sku_id: p.row.sku().map(str::to_string) })
        .collect();
    let mut live = std::collections::BTreeMap::new();
    for chunk in refs.chunks(100) {
        for quantity in market.read_stock(chunk).await? {
            live.insert(quantity.listing, quantity.quantity);
        }
    }
    let mut fixes = Vec::new();
    for (plan, reference) in pushed.iter().zip(refs) {
        let row = &plan.row;
        let Some(&now_live) = live.get(&reference) else {
            report
                .errors
                .push(format!("{}: the marketplace did not return it", listing_key(&row.item_id, row.sku())));
            continue;
        };
        let last = row.state.last_pushed.unwrap_or(0);
        // Sales since the reading behind the last push took units off the listing; refunds
        // of sales before it gave units back (the platform does that by itself). Orders
        // are stamped to the second by the platform's clock, so those near the reading may
        // fall on either side: they widen the expectation into a range.
        let (gone_min, gone_max) = match row.last_pushed_at {
            Some(at) => store
                .units_moved_since(
                    store_id,
                    &row.item_id,
                    &row.sku_id,
                    at - ATTRIBUTION_SLACK,
                    at + ATTRIBUTION_SLACK,
                )
                .await?
                .net_range(),
            None => (0, 0),
        };
        let (expected, expected_max, state) = match row.state.allowance {
            Some(allowance) if !plan.input.shared_pool => {
                let left = allowance - gone_max;
                let expected = show(left, &plan.input.allocation);
                (
                    expected,
                    show(allowance - gone_min, &plan.input.allocation),
                    ListingState {
                        allowance: Some(left),
                        last_pushed: Some(expected),
                        pending: None,
                        ..row.state
                    },
                )
            }
            _ => {
                let expected = (last - gone_max).max(0);
                (
                    expected,
                    (last - gone_min).max(0),
                    ListingState { last_pushed: Some(expected), pending: None, ..row.state },
                )
            }
        };
        if !(expected..=expected_max).contains(&now_live) {
            // Fewer units than expected may be sales not pulled yet (orders are known up to
            // the cursor less the overlap, always some way behind the reading): raising the
            // listing would sell them again, so `fix` never raises.
            let note = (now_live < expected).then(|| {
                let known =
                    fixing.sales_known_until.map_or("none pulled yet".to_string(), |t| t.to_rfc3339());
                format!(
                    "lower than expected: sales not pulled yet may explain it (orders known up to {known}); \
                     not raised by fix (the stock job counts the missing units as sold)"
                )
            });
            report.differing.push(Discrepancy {
                store: store_id.to_string(),
                listing: listing_key(&row.item_id, row.sku()),
                target: plan.input.target.target.clone(),
                expected,
                expected_max,
                last_pushed: row.state.last_pushed,
                live: now_live,
                fixed: false,
                note: note.clone(),
            });
            if fixing.fix && note.is_none() {
                // A delta, applied atomically on the platform: a sale landing after the
                // reading is kept (an absolute write would sell it again).
                fixes.push((
                    report.differing.len() - 1,
                    StockUpdate { listing: reference, quantity: expected - now_live },
                    state,
                ));
            }
        }
    }
    if !fixes.is_empty() {
        let batch: Vec<StockUpdate> = fixes.iter().map(|(_, update, _)| update.clone()).collect();
        let results = market.push_stock_deltas(&batch).await?;
        for ((index, update, state), result) in fixes.iter().zip(results) {
            match result.outcome {
                Ok(_) => {
                    let sku = update.listing.sku_id.clone().unwrap_or_default();
                    store
                        .write_listing_states(
                            store_id,
                            &[ListingWrite::Saved {
                                item_id: update.listing.item_id.clone(),
                                sku_id: sku,
                                state: *state,
                                pushed: true,
                                // After a delta the figure may already include new sales.
                                live: None,
                            }],
                            clock_now,
                        )
                        .await?;
                    report.differing[*index].fixed = true;
                    report.fixed += 1;
                }
                Err(error) => report.errors.push(format!("{}: {error}", report.differing[*index].listing)),
            }
        }
    }
    Ok(())
}
