//! JOS (JD open platform) gateway simulator at `/routerjson`: a stateful, faithful fake of
//! JD's 宙斯 gateway for tests, the demo and benchmarks.
//!
//! Everything here is written from `shared/research/marketplace-apis.md` §2–§4, not from
//! the JD client, so a shared misunderstanding cannot hide. What it emulates:
//!
//! - GET query and POST form requests, common parameters `method`, `app_key`,
//!   `access_token`, `timestamp` (Beijing time, both SDK formats, ±6 min), `v=2.0`,
//!   `sign` (MD5, see [`sign`]), optional `format`, and `360buy_param_json` holding every
//!   business parameter; no `sign_method`.
//! - Gateway errors as HTTP 200 `{"error_response":{"code":"<string>",...}}`: "2" (call
//!   limited / [`Fault::Throttle`](crate::faults::Fault) ban), "4"/"5" version, "7"/"8"
//!   timestamp, "11"/"12" signature, "14"/"15" method, "19" token missing, unknown or
//!   expired, "32" too frequent (`calls_per_second`). Codes the notes do not give, chosen
//!   here: "9"/"10" missing/invalid `app_key`, "60" `360buy_param_json` not a JSON object,
//!   "66" back-end timeout ([`Fault::RemoteTimeout`](crate::faults::Fault)), "67" back-end
//!   unavailable ([`Fault::ServiceRejection`](crate::faults::Fault) on reads; writes get
//!   business 999999 instead).
//! - Success as `{"<method_with_underscores>_responce":{"code":"0",...}}` with the inner
//!   business flag (`apiResult.success`, `success`, `returnType.success`).
//!
//! Order model: an order is created unpaid and invisible at `Place`; at `Pay` stock is
//! taken (付款减库存) and the order appears as `WAIT_SELLER_STOCK_OUT`; a payment for
//! which a listing lacks stock fails and the order closes unseen (see
//! [`JosSandbox::sold_out_orders`]). A refund gives the stock back. Orders with a contract
//! listing (合约机) carry `orderSign = "3c号卡"` and, while held, `POP_ORDER_PAUSE` with a
//! `pauseBizInfo` object.

mod gateway;
mod orders;
mod shipment;
mod sign;
mod state;
mod stock;
mod wire;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use chrono::{DateTime, Utc};

use crate::clock::SimClock;
use crate::faults::FaultPlan;
use crate::scenario::BuyerEvent;
use crate::server::{RunningServer, serve, with_round_trip};

use state::State;

/// How the simulated store is set up. [`Default`] gives the documented sandbox
/// credentials.
#[derive(Clone)]
pub struct JosConfig {
    pub app_key: String,
    pub app_secret: String,
    pub access_token: String,
    /// Listings numbered `0..listings`, as the scenario numbers them.
    pub listings: usize,
    /// Listings numbered below this are contract phones (合约机).
    pub contract_listings: usize,
    /// Sellable stock of every listing at start.
    pub initial_quantity: i64,
    /// Merchant code (`outerSkuId`) per listing number; missing entries get `SKU-{n:05}`.
    pub outer_ids: Vec<String>,
    /// Highest page number order search serves (JD: 300).
    pub page_cap: u32,
    /// Largest `page_size` order search accepts (JD: 50).
    pub max_page_size: u32,
    /// Calls admitted per second of the sandbox clock; more get gateway error "32".
    pub calls_per_second: Option<u32>,
    /// From this instant the access token is refused with "19".
    pub token_expires_at: Option<DateTime<Utc>>,
    /// Every HTTP request is held this long before it is served: the round trip to a remote
    /// gateway (zero: none).
    pub round_trip: Duration,
}

impl Default for JosConfig {
    fn default() -> Self {
        Self {
            app_key: "sandbox-jd-app-key".into(),
            app_secret: "sandbox-jd-secret-0123456789".into(),
            access_token: "sandbox-jd-access-token".into(),
            listings: 20,
            contract_listings: 4,
            initial_quantity: 100,
            outer_ids: Vec::new(),
            page_cap: 300,
            max_page_size: 50,
            calls_per_second: None,
            token_expires_at: None,
            round_trip: Duration::ZERO,
        }
    }
}

// Written by hand so the secret and token never reach a log through `{:?}`.
impl std::fmt::Debug for JosConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JosConfig")
            .field("app_key", &self.app_key)
            .field("app_secret", &"<redacted>")
            .field("access_token", &"<redacted>")
            .field("listings", &self.listings)
            .field("contract_listings", &self.contract_listings)
            .field("initial_quantity", &self.initial_quantity)
            .field("page_cap", &self.page_cap)
            .field("max_page_size", &self.max_page_size)
            .field("calls_per_second", &self.calls_per_second)
            .field("token_expires_at", &self.token_expires_at)
            .field("round_trip", &self.round_trip)
            .finish_non_exhaustive()
    }
}

/// One listing as JD numbers it: 4 SKUs per ware.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JosListing {
    pub ware_id: i64,
    pub sku_id: i64,
    pub outer_sku_id: String,
    pub quantity: i64,
}

/// An order as the sandbox holds it, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderView {
    pub scenario_order: u64,
    pub order_id: String,
    /// JD's state name; `WAIT_PAY` for an order not paid yet (never visible).
    pub order_state: String,
    pub modified: DateTime<Utc>,
    /// `(sku_id, quantity)` per line.
    pub lines: Vec<(i64, i64)>,
    /// Whether order search and get can see it (paid at some point).
    pub visible: bool,
}

/// A shipment the gateway applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipmentRecord {
    pub order_id: String,
    pub logi_copr_id: i64,
    pub logi_no: String,
    pub at: DateTime<Utc>,
}

/// A stock change made through a stock API (buyer purchases are not recorded here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockWrite {
    pub sku_id: i64,
    /// The JOS method that made it.
    pub method: String,
    pub before: i64,
    pub after: i64,
    pub at: DateTime<Utc>,
}

struct Inner {
    state: Mutex<State>,
    clock: SimClock,
    faults: FaultPlan,
}

/// The JOS gateway simulator. Clones share state.
#[derive(Clone)]
pub struct JosSandbox {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JosSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JosSandbox").finish_non_exhaustive()
    }
}

impl JosSandbox {
    pub fn new(config: JosConfig, clock: SimClock, faults: FaultPlan) -> Self {
        Self { inner: Arc::new(Inner { state: Mutex::new(State::new(config)), clock, faults }) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// GET and POST at `/routerjson`.
    pub fn router(&self) -> Router {
        let round_trip = self.inner.state.lock().unwrap_or_else(|p| p.into_inner()).config.round_trip;
        let router = Router::new()
            .route("/routerjson", get(gateway::handle).post(gateway::handle))
            .with_state(self.clone());
        with_round_trip(router, round_trip)
    }

    /// Serves [`JosSandbox::router`] on a free loopback port.
    pub async fn start(&self) -> std::io::Result<RunningServer> {
        serve(self.router(), SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    /// Replaces the buyer events still to come; they apply as the clock passes them (on
    /// [`JosSandbox::apply_due`] or at the start of any request).
    pub fn load_scenario(&self, events: Vec<BuyerEvent>) {
        self.lock().load(events);
    }

    /// Applies every loaded event due by the sandbox clock's now.
    pub fn apply_due(&self) {
        let now = self.inner.clock.now();
        self.lock().apply_due(now);
    }

    pub fn listing(&self, n: usize) -> JosListing {
        self.lock().listing(n)
    }

    pub fn quantity(&self, sku_id: i64) -> Option<i64> {
        self.lock().stock.get(&sku_id).copied()
    }

    /// Sets stock behind the API's back (not recorded as a stock write).
    pub fn set_quantity(&self, sku_id: i64, quantity: i64) {
        self.lock().stock.insert(sku_id, quantity);
    }

    /// Every order created so far, by scenario order number.
    pub fn orders(&self) -> Vec<OrderView> {
        self.lock().order_views()
    }

    /// The JD order id the scenario's order got, once it has been placed.
    pub fn order_id_of(&self, scenario_order: u64) -> Option<String> {
        self.lock().orders.get(&scenario_order).map(|o| o.order_id.clone())
    }

    /// Scenario orders whose payment failed because a listing had too little stock; they
    /// never became visible.
    pub fn sold_out_orders(&self) -> Vec<u64> {
        self.lock().sold_out.clone()
    }

    /// Every applied shipment, in order.
    pub fn shipments(&self) -> Vec<ShipmentRecord> {
        self.lock().shipments.clone()
    }

    /// Every stock change made through the API, in order.
    pub fn stock_writes(&self) -> Vec<StockWrite> {
        self.lock().stock_writes.clone()
    }

    /// Requests per `method` parameter (`""` when missing), whatever their outcome.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.lock().calls.clone()
    }

    /// `(app_key, app_secret, access_token)`.
    pub fn credentials(&self) -> (String, String, String) {
        let state = self.lock();
        (state.config.app_key.clone(), state.config.app_secret.clone(), state.config.access_token.clone())
    }
}
