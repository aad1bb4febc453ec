//! The inventory ledger: the operator's catalogue (SKUs, bundles), how marketplace listings
//! map to it, what each listing is allowed to sell, and the pure stock planner.
//!
//! Two allocation modes, per store:
//! - **allocated** (default; shares of one component sum to at most 1): each listing holds a
//!   *grant*, its share of the component's supply (on hand at the operator plus units already
//!   shipped against that snapshot, minus safety stock). The listing may sell at most its
//!   grant in total; what it has left (its *allowance*) is tracked from the marketplace's own
//!   counter, which buyers decrement themselves. Pushes only move a listing by the change in
//!   its grant, so sales that flagsync has not pulled yet can never be sold twice: units sold
//!   across all stores never exceed supply (proved by the property tests in `planner`).
//! - **shared pool** (a store opts in; shares may sum past 1): every listing shows its share
//!   of what is available now (on hand − open reservations − safety stock). Sales on one store
//!   propagate to the others at the next push; the units oversold in between are reported and
//!   the orders that cannot be served are flagged for ops, newest first.

pub mod catalog;
pub mod planner;

pub use catalog::{
    Allocation, Catalog, Component, ComponentKind, ReservationRules, Resolved, SkuDef, listing_key,
};
