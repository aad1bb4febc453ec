//! Operator inventory and fulfilment simulator: the signed JSON API of
//! `connectors/operator/API.md` (stock snapshots and deltas by watermark, fulfilment
//! requests and withdrawals, shipment notices), with its own signature check and replay
//! window, manual or automatic shipping, waybill corrections and injected faults.
//!
//! Written from `API.md`, not from the client: the wire shapes and the signature are
//! implemented here anew, so a mistake in the client cannot be mirrored and hidden.
//!
//! The books: on-hand per (SKU, warehouse) and resources (plan quotas, number pools) each
//! carry the watermark of their last change; every change takes the next watermark. Nothing
//! is reserved: on-hand changes only through [`OperatorSim::set_on_hand`] and shipping (one
//! new watermark per shipment, which the notice carries as `stock_watermark`); a shipped
//! contract order also consumes one quota of its plan and one number of its pool.
//!
//! Faults ([`FaultPlan::next`] with the endpoint names in [`endpoint`]): `Throttle` is 429
//! with `Retry-After` for the ban's length (every call to that endpoint until it ends),
//! `RemoteTimeout` 504, `ServiceRejection`/`TransientBusiness` 503 (not applied),
//! `SessionExpired` 401 `key_revoked`, `Slow` delays the reply, `DropConnection` resets the
//! connection before applying, `ApplyThenDrop` after, `Truncated` applies and cuts the body
//! in half, `Malformed` answers an HTML proxy page without applying, `CorruptRecord`
//! applies and gives one record a field of the wrong type. `ShuffleDuringPaging` has no
//! meaning here and is ignored.

mod http;
mod sign;
mod state;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use chrono::{DateTime, TimeDelta, Utc};

use crate::clock::SimClock;
use crate::faults::FaultPlan;
use crate::server::{RunningServer, serve};

use state::State;

/// Endpoint names, as counted by [`OperatorSim::calls`] and passed to [`FaultPlan::next`].
pub mod endpoint {
    pub const STOCK: &str = "stock";
    pub const FULFILMENTS: &str = "fulfilments";
    pub const WITHDRAW: &str = "withdraw";
    pub const SHIPMENTS: &str = "shipments";
    pub const PING: &str = "ping";
}

/// Seconds a request timestamp may differ from the simulator's clock.
pub const REPLAY_WINDOW_SECS: i64 = 300;

/// Largest `limit` of a shipments page.
pub const MAX_SHIPMENTS_LIMIT: usize = 500;

/// Credentials and warehouses. [`Default`] gives the documented sandbox credentials.
#[derive(Clone)]
pub struct OperatorSimConfig {
    pub key_id: String,
    pub secret: String,
    /// Warehouses in the order shipping draws from them (others holding a SKU come after,
    /// by name).
    pub warehouses: Vec<String>,
    /// SKUs shipped without serials by auto-ship (accessories); every other unit gets an IMEI.
    pub accessories: Vec<String>,
}

impl Default for OperatorSimConfig {
    fn default() -> Self {
        Self {
            key_id: "sandbox-operator".into(),
            secret: "sandbox-operator-secret-0123456789".into(),
            warehouses: vec!["WH-HZ".into(), "WH-SH".into()],
            accessories: Vec::new(),
        }
    }
}

// Written by hand so the secret never reaches a log through `{:?}`.
impl std::fmt::Debug for OperatorSimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorSimConfig")
            .field("key_id", &self.key_id)
            .field("secret", &"<redacted>")
            .field("warehouses", &self.warehouses)
            .field("accessories", &self.accessories)
            .finish()
    }
}

/// A contract-phone resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SimResource {
    PlanQuota,
    NumberPool,
}

impl SimResource {
    /// The wire name (`plan_quota`, `number_pool`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PlanQuota => "plan_quota",
            Self::NumberPool => "number_pool",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "plan_quota" => Some(Self::PlanQuota),
            "number_pool" => Some(Self::NumberPool),
            _ => None,
        }
    }
}

/// One line of an accepted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimLine {
    pub line_id: String,
    pub sku: String,
    pub quantity: i64,
}

/// Where an accepted request stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FulfilmentState {
    Pending,
    Withdrawn {
        reason: String,
    },
    /// The latest notice for it (a correction replaces the original).
    Shipped {
        notice_id: String,
    },
}

/// An accepted fulfilment request, for assertions. Personal data is not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FulfilmentView {
    pub store_id: String,
    pub order_id: String,
    pub platform: String,
    pub lines: Vec<SimLine>,
    /// From the request's `contract.plan_code`, when it had a contract.
    pub plan_code: Option<String>,
    pub number_pool: Option<String>,
    /// Whether the request carried a receiver with a non-empty name.
    pub has_receiver: bool,
    pub accepted_at: DateTime<Utc>,
    /// Times it was submitted (1 + accepted repeats).
    pub submissions: u32,
    pub state: FulfilmentState,
}

/// A shipment notice as the simulator emitted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimNotice {
    pub notice_id: String,
    pub sequence: i64,
    pub store_id: String,
    pub order_id: String,
    pub line_ids: Vec<String>,
    pub carrier: String,
    pub waybill: String,
    /// `(line_id, serials)`.
    pub serials: Vec<(String, Vec<String>)>,
    pub shipped_at: DateTime<Utc>,
    pub stock_watermark: i64,
    pub corrects: Option<String>,
}

/// Why the simulator could not ship or correct.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShipError {
    #[error("no fulfilment request for this order")]
    UnknownOrder,
    #[error("the request was withdrawn")]
    Withdrawn,
    #[error("the order has shipped already")]
    AlreadyShipped,
    #[error("sku {sku}: {wanted} wanted, {on_hand} on hand")]
    ShortOfStock { sku: String, wanted: i64, on_hand: i64 },
    #[error("{} {code}: none left", kind.as_str())]
    ShortOfResource { kind: SimResource, code: String },
    #[error("no such notice")]
    UnknownNotice,
}

struct Inner {
    state: Mutex<State>,
    clock: SimClock,
    faults: FaultPlan,
}

/// The operator system simulator. Clones share state.
#[derive(Clone)]
pub struct OperatorSim {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for OperatorSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorSim").finish_non_exhaustive()
    }
}

impl OperatorSim {
    pub fn new(config: OperatorSimConfig, clock: SimClock, faults: FaultPlan) -> Self {
        Self { inner: Arc::new(Inner { state: Mutex::new(State::new(config)), clock, faults }) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every endpoint of `API.md`, under `/v1`.
    pub fn router(&self) -> Router {
        Router::new().fallback(http::handle).with_state(self.clone())
    }

    /// Serves [`OperatorSim::router`] on a free loopback port.
    pub async fn start(&self) -> std::io::Result<RunningServer> {
        serve(self.router(), SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    /// `(key_id, secret)`.
    pub fn credentials(&self) -> (String, String) {
        let state = self.lock();
        (state.config.key_id.clone(), state.config.secret.clone())
    }

    /// Sets on-hand of `sku` in `warehouse` (a change takes the next watermark). Negative
    /// values are allowed so a test can make the simulator break the contract.
    pub fn set_on_hand(&self, sku: &str, warehouse: &str, n: i64) {
        self.lock().set_on_hand(sku, warehouse, n);
    }

    /// Sets a plan's remaining quota or a pool's free numbers (a change takes the next
    /// watermark).
    pub fn set_resource(&self, kind: SimResource, code: &str, n: i64) {
        self.lock().set_resource(kind, code, n);
    }

    /// On-hand of `sku` summed over warehouses.
    pub fn on_hand(&self, sku: &str) -> i64 {
        self.lock().on_hand(sku)
    }

    /// On-hand of `sku` in one warehouse (0 when never set).
    pub fn on_hand_in(&self, sku: &str, warehouse: &str) -> i64 {
        self.lock().levels.get(&(sku.to_string(), warehouse.to_string())).map_or(0, |l| l.value)
    }

    pub fn resource(&self, kind: SimResource, code: &str) -> i64 {
        self.lock().resource(kind, code)
    }

    /// The watermark of the latest stock or resource change.
    pub fn watermark(&self) -> i64 {
        self.lock().watermark
    }

    /// Every accepted request, in order of acceptance.
    pub fn fulfilments(&self) -> Vec<FulfilmentView> {
        self.lock().fulfilments.clone()
    }

    /// Every notice emitted, in sequence order.
    pub fn notices(&self) -> Vec<SimNotice> {
        self.lock().notices.clone()
    }

    /// Ships an accepted, pending request whole: deducts its lines' units (and a contract's
    /// plan quota and pool number) at one new watermark and emits a notice; its id comes back.
    pub fn ship(
        &self,
        store_id: &str,
        order_id: &str,
        carrier: &str,
        waybill: &str,
        serials_by_line: Vec<(String, Vec<String>)>,
    ) -> Result<String, ShipError> {
        let now = self.inner.clock.now();
        self.lock().ship(now, store_id, order_id, carrier, waybill, serials_by_line)
    }

    /// From now on, ships every accepted, not withdrawn request once the clock passes its
    /// `accepted_at + after` (carrier `SF`, generated waybills, an IMEI per non-accessory
    /// unit). A request short of stock waits. Runs at the start of each request and on
    /// [`OperatorSim::apply_due`].
    pub fn auto_ship(&self, after: Duration) {
        let after = TimeDelta::from_std(after).unwrap_or(TimeDelta::MAX);
        self.lock().auto_ship = Some(after);
    }

    /// Ships what auto-ship has due by the simulator clock's now.
    pub fn apply_due(&self) {
        let now = self.inner.clock.now();
        self.lock().apply_due(now);
    }

    /// Emits a new notice for the same package with `new_waybill` and `corrects` naming
    /// `notice_id`; stock is not deducted again.
    pub fn correct_waybill(&self, notice_id: &str, new_waybill: &str) -> Result<String, ShipError> {
        let now = self.inner.clock.now();
        self.lock().correct_waybill(now, notice_id, new_waybill)
    }

    /// Requests per endpoint name (`"unknown"` for paths the API does not have), whatever
    /// their outcome.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.lock().calls.clone()
    }
}
