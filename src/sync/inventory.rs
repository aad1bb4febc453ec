//! The inventory pull: the operator's stock levels and contract-phone resources, as a full
//! snapshot or the changes since the ledger's watermark.

use flagsync_operator::{OperatorApi, ResourceKind, StockSnapshot};
use serde::{Deserialize, Serialize};

use super::SyncError;
use crate::inventory::ComponentKind;
use crate::store::Store;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryReport {
    pub full: bool,
    pub levels: u64,
    pub resources: u64,
    pub watermark: i64,
    /// The answer was older than what the ledger has: nothing changed.
    pub stale: bool,
}

/// Pulls operator stock. `full` asks for everything (and replaces the ledger's levels);
/// otherwise only changes after the stored watermark (a full pull when there is none).
///
/// Between reading the snapshot and applying it, the operator's shipment notices are
/// pulled: every unit the snapshot no longer counts because it shipped is then already
/// consumed in the ledger, so supply never dips while a notice is on its way.
pub async fn sync_inventory(
    store: &Store,
    operator: &dyn OperatorApi,
    full: bool,
    known_stores: &std::collections::BTreeSet<String>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<InventoryReport, SyncError> {
    let since = if full { None } else { store.watermark("stock").await? };
    let snapshot = operator.stock(since).await?;
    // The app's clock (not the host's): queued shipment pushes come due on it.
    crate::sync::shipments::pull_notices(store, operator, known_stores, now).await?;
    if let Some(since) = since
        && !snapshot.full
        && snapshot.watermark < since
    {
        return Err(SyncError::Invalid(format!(
            "operator answered watermark {} for changes since {since}: it went backwards",
            snapshot.watermark
        )));
    }
    apply_snapshot(store, &snapshot).await
}

/// Stock the operator pushed to the admin API (`POST /api/v1/operator/stock`), in the same
/// shape as its pull answer. With an operator API configured, its shipment notices are
/// pulled first, as for a pull. Without one the operator is expected to push a shipment's
/// notice before the snapshot that deducts it; if it does not, the units count as both
/// reserved and gone until the notice comes: the ledger undersells, never oversells.
/// `now` is the app's clock (queued shipment pushes come due from it).
pub async fn receive_snapshot(
    store: &Store,
    operator: Option<&dyn OperatorApi>,
    known_stores: &std::collections::BTreeSet<String>,
    snapshot: &StockSnapshot,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<InventoryReport, SyncError> {
    validate_snapshot(snapshot).map_err(SyncError::Invalid)?;
    if let Some(operator) = operator {
        crate::sync::shipments::pull_notices(store, operator, known_stores, now).await?;
    }
    apply_snapshot(store, snapshot).await
}

/// What a pushed snapshot must satisfy before anything is written: each problem names
/// the entry.
pub fn validate_snapshot(snapshot: &StockSnapshot) -> Result<(), String> {
    let mut problems = Vec::new();
    if snapshot.watermark < 0 {
        problems.push(format!("watermark: {} is negative", snapshot.watermark));
    }
    for (i, level) in snapshot.levels.iter().enumerate() {
        if level.sku.trim().is_empty() {
            problems.push(format!("levels[{i}].sku: empty"));
        }
        if level.warehouse.trim().is_empty() {
            problems.push(format!("levels[{i}].warehouse: empty"));
        }
        if level.on_hand < 0 {
            problems.push(format!("levels[{i}].on_hand: {} is negative", level.on_hand));
        }
    }
    for (i, resource) in snapshot.resources.iter().enumerate() {
        if resource.code.trim().is_empty() {
            problems.push(format!("resources[{i}].code: empty"));
        }
        if resource.available < 0 {
            problems.push(format!("resources[{i}].available: {} is negative", resource.available));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
}

async fn apply_snapshot(store: &Store, snapshot: &StockSnapshot) -> Result<InventoryReport, SyncError> {
    let levels: Vec<(String, String, i64)> =
        snapshot.levels.iter().map(|l| (l.sku.clone(), l.warehouse.clone(), l.on_hand)).collect();
    let resources: Vec<(ComponentKind, String, i64)> = snapshot
        .resources
        .iter()
        .map(|r| {
            let kind = match r.kind {
                ResourceKind::PlanQuota => ComponentKind::PlanQuota,
                ResourceKind::NumberPool => ComponentKind::NumberPool,
            };
            (kind, r.code.clone(), r.available)
        })
        .collect();
    let stats = store.apply_stock_snapshot(snapshot.watermark, snapshot.full, &levels, &resources).await?;
    Ok(InventoryReport {
        full: snapshot.full,
        levels: stats.levels,
        resources: stats.resources,
        watermark: snapshot.watermark,
        stale: stats.stale,
    })
}
