//! The stock planner: pure functions from the ledger to the quantities each listing should
//! show. No I/O; the stock job reads the inputs, asks the marketplace for live quantities
//! where the planner needs them, pushes, and stores the new listing states.
//!
//! Allocated listings (see the module docs of `inventory`) follow this arithmetic, where
//! `G(c)` is a component's supply (on hand + units shipped that the snapshot already
//! deducted − safety stock):
//! - grant(L)     = min over components c of floor(share(L) × G(c) / units(c))
//! - allowance(L) = what L may still sell: the previous allowance, minus what the
//!   marketplace counter dropped since the last push (sales; a refund raises it), plus the
//!   change in grant
//! - shown(L)     = min(cap, allowance), or 0 when below the floor
//!
//! Since buyers decrement the marketplace counter themselves, a listing sells at most its
//! grant however late flagsync pulls its orders, and grants of one component sum to at most
//! its supply when shares sum to at most 1.

use std::collections::BTreeMap;

use serde::Serialize;

use super::catalog::{Allocation, Catalog, Component, Resolved};

/// A component's numbers from the ledger.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ComponentLevel {
    /// On hand in the operator's latest snapshot (resources: what it reports available).
    pub on_hand: i64,
    /// Units of consumed reservations the snapshot already deducted.
    pub consumed_in_snapshot: i64,
    /// Units of consumed reservations shipped after the snapshot (still in `on_hand`).
    pub consumed_pending: i64,
    /// Units of open reservations (paid orders not shipped).
    pub reserved: i64,
    pub safety: i64,
}

impl ComponentLevel {
    /// Supply for grants: everything the operator ever had for sale, net of safety stock.
    pub fn supply(&self) -> i64 {
        (self.on_hand + self.consumed_in_snapshot - self.safety).max(0)
    }

    /// Available now: on hand − reserved − shipped-not-yet-deducted − safety, never negative.
    pub fn available(&self) -> i64 {
        (self.on_hand - self.reserved - self.consumed_pending - self.safety).max(0)
    }

    /// Units promised to open orders beyond what is physically there (0 when none).
    pub fn deficit(&self) -> i64 {
        (self.reserved + self.consumed_pending - self.on_hand).max(0)
    }
}

/// What a listing showed and held after its last successful push.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ListingState {
    pub grant: Option<i64>,
    pub allowance: Option<i64>,
    pub last_pushed: Option<i64>,
    /// A push whose outcome is unknown: (grant, allowance, shown) it tried to set.
    pub pending: Option<(i64, i64, i64)>,
}

/// A listing as the planner sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListingPlanInput {
    pub key: String,
    pub target: Resolved,
    pub allocation: Allocation,
    pub shared_pool: bool,
    pub state: ListingState,
    /// Units of this listing in paid orders flagsync knows (open or shipped), for the first
    /// push of a listing that has no state yet.
    pub sold_known: i64,
}

/// What a listing should show, before looking at the marketplace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// Allocated: the grant. Shared pool: the quantity to show.
    pub value: i64,
    /// The component that binds (gives the minimum).
    pub binding: String,
    /// True when the marketplace's live quantity is needed to decide (allocated listings
    /// whose grant changed, or with no state, or with a push of unknown outcome, or whose
    /// cap or floor shapes what they show).
    pub needs_live: bool,
    /// True when a push is due without a live read (shared pool, changed value).
    pub push_now: bool,
}

fn floor_share(share: f64, units: i64) -> i64 {
    if units <= 0 || share <= 0.0 {
        return 0;
    }
    // A tiny epsilon keeps 0.5 × 400 at 200 despite binary fractions.
    ((share * units as f64) + 1e-9).floor() as i64
}

/// The listing's target value and the binding component.
pub fn target(listing: &ListingPlanInput, levels: &BTreeMap<Component, ComponentLevel>) -> Target {
    let mut best: Option<(i64, String)> = None;
    for (component, per) in &listing.target.components {
        let level = levels.get(component).copied().unwrap_or_default();
        let base = if listing.shared_pool { level.available() } else { level.supply() };
        let value = floor_share(listing.allocation.share, base) / (*per).max(1);
        if best.as_ref().is_none_or(|(v, _)| value < *v) {
            best = Some((value, component.key()));
        }
    }
    let (value, binding) = best.unwrap_or((0, String::new()));
    if listing.shared_pool {
        let shown = show(value, &listing.allocation);
        Target {
            value: shown,
            binding,
            needs_live: false,
            push_now: listing.state.last_pushed != Some(shown),
        }
    } else {
        let state = &listing.state;
        // The platform counts sales off what it shows. Where the cap or the floor shapes
        // what is shown (shown is not the allowance, or a floor may hide it), that is not
        // what the listing should show after a sale, so a listing planned because its
        // components moved is read and decided again even when its grant did not move.
        let shaped =
            listing.allocation.floor > 0 || state.allowance.is_some_and(|a| state.last_pushed != Some(a));
        let needs_live =
            state.grant != Some(value) || state.allowance.is_none() || state.pending.is_some() || shaped;
        Target { value, binding, needs_live, push_now: false }
    }
}

/// Applies cap and floor to what a listing may sell.
pub fn show(allowance: i64, allocation: &Allocation) -> i64 {
    let capped = allocation.cap.map_or(allowance, |cap| allowance.min(cap)).max(0);
    if capped < allocation.floor { 0 } else { capped }
}

/// The decision for an allocated listing once its live quantity is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub grant: i64,
    pub allowance: i64,
    pub shown: i64,
    /// Whether the marketplace must be told (shown differs from live).
    pub push: bool,
}

/// Decides an allocated listing's new allowance and shown quantity from its grant and the
/// marketplace's live counter.
pub fn decide(listing: &ListingPlanInput, grant: i64, live: i64) -> Decision {
    let state = &listing.state;
    let carried = |allowance: i64, last_pushed: i64, old_grant: i64| {
        allowance - (last_pushed - live) + (grant - old_grant)
    };
    let allowance = match (state.allowance, state.last_pushed, state.grant) {
        (Some(allowance), Some(last), Some(old_grant)) => {
            let settled = carried(allowance, last, old_grant);
            match state.pending {
                // Unknown outcome: take the smaller of "it landed" and "it did not".
                Some((p_grant, p_allowance, p_shown)) => settled.min(carried(p_allowance, p_shown, p_grant)),
                None => settled,
            }
        }
        _ => match state.pending {
            Some((p_grant, p_allowance, p_shown)) => {
                (grant - listing.sold_known).min(carried(p_allowance, p_shown, p_grant))
            }
            None => grant - listing.sold_known,
        },
    };
    let shown = show(allowance, &listing.allocation);
    Decision { grant, allowance, shown, push: shown != live }
}

/// Of open reservations (order id, units, paid-at rank: larger = newer), the orders that
/// cannot be served when `deficit` units are missing: newest first.
pub fn unservable(mut open: Vec<(String, i64, i64)>, deficit: i64) -> Vec<String> {
    open.sort_by(|a, b| b.2.cmp(&a.2).then(b.0.cmp(&a.0)));
    let mut left = deficit;
    let mut out = Vec::new();
    for (order, units, _) in open {
        if left <= 0 {
            break;
        }
        left -= units;
        if !out.contains(&order) {
            out.push(order);
        }
    }
    out
}

/// Checks that shares of each component sum to at most 1 across allocated listings;
/// returns the components that are over-allocated with their share sum.
pub fn over_allocated(listings: &[ListingPlanInput], catalog: &Catalog) -> Vec<(String, f64)> {
    let _ = catalog;
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    for listing in listings.iter().filter(|l| !l.shared_pool) {
        for (component, _) in &listing.target.components {
            *sums.entry(component.key()).or_default() += listing.allocation.share;
        }
    }
    sums.into_iter().filter(|(_, sum)| *sum > 1.0 + 1e-9).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::inventory::catalog::ComponentKind;

    fn stock(code: &str) -> Component {
        Component { kind: ComponentKind::Stock, code: code.into() }
    }

    fn listing(
        key: &str,
        components: Vec<(Component, i64)>,
        share: f64,
        cap: Option<i64>,
        floor: i64,
    ) -> ListingPlanInput {
        ListingPlanInput {
            key: key.into(),
            target: Resolved { target: "T".into(), components },
            allocation: Allocation { share, cap, floor },
            shared_pool: false,
            state: ListingState::default(),
            sold_known: 0,
        }
    }

    #[test]
    fn bundles_are_bound_by_their_scarcest_component() {
        let handset = stock("H");
        let plan = Component { kind: ComponentKind::PlanQuota, code: "P".into() };
        let pool = Component { kind: ComponentKind::NumberPool, code: "N".into() };
        let mut levels = BTreeMap::new();
        levels.insert(handset.clone(), ComponentLevel { on_hand: 100, ..Default::default() });
        levels.insert(plan.clone(), ComponentLevel { on_hand: 40, ..Default::default() });
        levels.insert(pool.clone(), ComponentLevel { on_hand: 7, ..Default::default() });
        let contract = listing("c", vec![(handset.clone(), 1), (plan, 1), (pool.clone(), 1)], 1.0, None, 0);
        let t = target(&contract, &levels);
        assert_eq!((t.value, t.binding.as_str()), (7, "pool:N"));
        levels.insert(pool, ComponentLevel { on_hand: 0, ..Default::default() });
        assert_eq!(target(&contract, &levels).value, 0, "no numbers left: the contract phone shows 0");
        let alone = listing("h", vec![(handset, 1)], 1.0, None, 0);
        assert_eq!(target(&alone, &levels).value, 100, "the handset still sells alone");
    }

    #[test]
    fn caps_and_floors_shape_what_is_shown() {
        let a = Allocation { share: 1.0, cap: Some(50), floor: 3 };
        assert_eq!(show(80, &a), 50);
        assert_eq!(show(3, &a), 3);
        assert_eq!(show(2, &a), 0);
        assert_eq!(show(-4, &a), 0);
    }

    #[test]
    fn newest_orders_are_flagged_first() {
        let open = vec![("old".into(), 2, 1), ("mid".into(), 1, 2), ("new".into(), 1, 3)];
        assert_eq!(unservable(open.clone(), 2), vec!["new".to_string(), "mid".to_string()]);
        assert_eq!(unservable(open, 0), Vec::<String>::new());
    }

    #[test]
    fn allowance_follows_sales_refunds_and_grant_changes() {
        let mut l = listing("l", vec![(stock("H"), 1)], 0.5, None, 0);
        // First push: grant 200, nothing sold yet.
        let d = decide(&l, 200, 0);
        assert_eq!((d.allowance, d.shown, d.push), (200, 200, true));
        l.state =
            ListingState { grant: Some(200), allowance: Some(200), last_pushed: Some(200), pending: None };
        // 150 sold on the marketplace; the operator restocks: grant 250.
        let d = decide(&l, 250, 50);
        assert_eq!((d.allowance, d.shown), (100, 100));
        // An unknown-outcome push: the smaller reading wins.
        l.state.pending = Some((300, 150, 150));
        let d = decide(&l, 200, 40);
        // settled: 200 - (200 - 40) + 0 = 40; landed: 150 - (150 - 40) + (200 - 300) = -60
        assert_eq!((d.allowance, d.shown), (-60, 0));
    }

    /// A small model of the world: one component, three allocated listings whose counters
    /// buyers decrement; the planner runs at random moments knowing only some of the sales,
    /// and the operator restocks. Invariant after every step: units sold plus units still
    /// offered never exceed what the operator has (nothing ships in this model, so sold
    /// units stay on hand), and nothing shown is negative or above its cap.
    #[derive(Debug, Clone)]
    enum Step {
        Sell { listing: usize, units: i64 },
        Restock(i64),
        Plan { learned: Vec<bool> },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0usize..3, 1i64..5).prop_map(|(listing, units)| Step::Sell { listing, units }),
            1 => (0i64..40).prop_map(Step::Restock),
            2 => proptest::collection::vec(any::<bool>(), 3).prop_map(|learned| Step::Plan { learned }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn allocated_listings_never_oversell(
            start in 0i64..200,
            safety in 0i64..5,
            shares in proptest::collection::vec(0.0f64..1.0, 3),
            caps in proptest::collection::vec(proptest::option::of(0i64..100), 3),
            floors in proptest::collection::vec(0i64..4, 3),
            steps in proptest::collection::vec(step(), 1..80),
        ) {
            let total: f64 = shares.iter().sum();
            let shares: Vec<f64> = shares.iter().map(|s| if total > 1.0 { s / total } else { *s }).collect();
            let h = stock("H");
            let mut listings: Vec<ListingPlanInput> = (0..3)
                .map(|i| listing(&format!("l{i}"), vec![(h.clone(), 1)], shares[i], caps[i], floors[i]))
                .collect();
            let mut counters = [0i64; 3];
            let mut sold = [0i64; 3];
            let mut known = [0i64; 3];
            let mut on_hand = start;
            for step in steps {
                match step {
                    Step::Sell { listing, units } => {
                        let units = units.min(counters[listing]);
                        counters[listing] -= units;
                        sold[listing] += units;
                    }
                    Step::Restock(n) => on_hand += n,
                    Step::Plan { learned } => {
                        for i in 0..3 {
                            if learned[i] { known[i] = sold[i]; }
                        }
                        let reserved: i64 = known.iter().sum();
                        let mut levels = BTreeMap::new();
                        levels.insert(h.clone(), ComponentLevel { on_hand, reserved, safety, ..Default::default() });
                        for i in 0..3 {
                            listings[i].sold_known = known[i];
                            let t = target(&listings[i], &levels);
                            if !t.needs_live { continue; }
                            let d = decide(&listings[i], t.value, counters[i]);
                            prop_assert!(d.shown >= 0);
                            if let Some(cap) = caps[i] { prop_assert!(d.shown <= cap); }
                            prop_assert!(d.shown == 0 || d.shown >= floors[i]);
                            counters[i] = d.shown;
                            listings[i].state = ListingState {
                                grant: Some(d.grant), allowance: Some(d.allowance), last_pushed: Some(d.shown), pending: None,
                            };
                        }
                    }
                }
                let offered: i64 = counters.iter().sum();
                let sold_total: i64 = sold.iter().sum();
                prop_assert!(sold_total + offered <= (on_hand - safety).max(0),
                    "sold {sold_total} + offered {offered} > on hand {on_hand} - safety {safety}");
            }
        }
    }
}
