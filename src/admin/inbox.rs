//! The operator's pushes into the running app: stock snapshots and shipment notices sent to
//! the admin API instead of (or besides) being pulled. The bodies are the operator API's
//! own shapes (`connectors/operator/API.md`): a stock push is a `StockSnapshot`, a
//! shipments push is `{"notices": [ShipmentNotice, ...]}`. Both go through the same store
//! paths as a pull, so a push and a pull of the same data change nothing twice.

use async_trait::async_trait;
use flagsync_operator::{ShipmentNotice, StockSnapshot};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::OperatorInbox;
use crate::app::App;
use crate::sync::{inventory, shipments};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoticePush {
    notices: Vec<ShipmentNotice>,
}

/// Decodes a body, naming the path of the first bad field (`body.levels[2].on_hand: ...`).
fn decode<T: DeserializeOwned>(body: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." { "body".to_string() } else { format!("body.{path}") };
        format!("{at}: {}", e.inner())
    })
}

#[async_trait]
impl OperatorInbox for App {
    async fn stock(&self, body: Value) -> Result<Value, String> {
        let snapshot: StockSnapshot = decode(body)?;
        inventory::validate_snapshot(&snapshot).map_err(|e| format!("body: {e}"))?;
        let now = self.clock.now();
        let report = inventory::receive_snapshot(
            &self.store,
            self.operator.as_deref(),
            &self.store_ids(),
            &snapshot,
            now,
        )
        .await
        .map_err(|e| format!("stock push not applied: {e}"))?;
        tracing::info!(
            levels = report.levels,
            resources = report.resources,
            watermark = report.watermark,
            stale = report.stale,
            "operator stock push applied"
        );
        serde_json::to_value(report).map_err(|e| e.to_string())
    }

    async fn shipments(&self, body: Value) -> Result<Value, String> {
        let push: NoticePush = decode(body)?;
        shipments::validate_notices(&push.notices).map_err(|e| format!("body: {e}"))?;
        let known = self.store_ids();
        let unknown = push.notices.iter().filter(|n| !known.contains(&n.store_id)).count();
        let queued = shipments::record_notices(&self.store, &push.notices, None, &known, self.clock.now())
            .await
            .map_err(|e| format!("shipment notices not recorded: {e}"))?;
        tracing::info!(
            notices = push.notices.len(),
            queued,
            unknown_store = unknown,
            "operator shipment notices received"
        );
        Ok(json!({
            "notices": push.notices.len(),
            "queued": queued,
            "already_known": push.notices.len() as u64 - queued,
            "dead_lettered_unknown_store": unknown,
        }))
    }
}
