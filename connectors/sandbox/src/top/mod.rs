//! TOP (Taobao Open Platform) gateway simulator at `/router/rest` and its batch endpoint
//! `/router/batch` (several calls in one signed request): signed requests, the
//! platform's envelopes and error codes, a stateful store of trades and SKU stock driven by a
//! buyer scenario, and injected faults.
//!
//! What it serves (see `shared/research/marketplace-apis.md` §1, §4):
//! `taobao.trades.sold.increment.get`, `taobao.trades.sold.get`, `taobao.trade.fullinfo.get`,
//! `taobao.trade.wtvertical.get`, `taobao.refunds.receive.get`, `taobao.item.seller.get`,
//! `taobao.items.onsale.get`, `taobao.item.quantity.update`, `taobao.skus.quantity.update`,
//! `taobao.logistics.offline.send`, `taobao.logistics.companies.get`, `taobao.user.seller.get`.
//!
//! Stock model (付款减库存, as the JOS simulator): a trade is created at `Place` without
//! touching stock; at `Pay` every line's units are taken from its SKU. A payment for which any
//! SKU shows too few units fails as a whole: the trade closes as `TRADE_CLOSED_BY_TAOBAO` at
//! that time, never reaches `WAIT_SELLER_SEND_GOODS`, and is listed by
//! [`TopSandbox::sold_out_orders`]. A refund before shipment gives the units back; a cancel
//! before payment never took any. A seller's absolute write (`type=1`) simply sets the
//! quantity later buyers draw from, with no reservation of units already sold. Buyer changes
//! are recorded apart from API writes: [`TopSandbox::buyer_stock_changes`] versus
//! [`TopSandbox::stock_writes`].

mod gateway;
mod logistics;
pub mod sign;
mod stock;
mod store;
#[cfg(test)]
mod tests;
mod trades;
mod wire;

pub use gateway::{BATCH_COUNTER, MAX_BATCH_CALLS};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use chrono::{DateTime, Utc};

use crate::clock::SimClock;
use crate::faults::FaultPlan;
use crate::scenario::BuyerEvent;
use crate::server::{RunningServer, serve, with_round_trip};

/// The sandbox's app, seller and catalogue. `Default` gives the documented sandbox
/// credentials.
#[derive(Debug, Clone)]
pub struct TopConfig {
    pub app_key: String,
    pub app_secret: String,
    pub session: String,
    /// Catalogue size: scenario listing numbers `0..listings`.
    pub listings: usize,
    /// Listings numbered below this are contract phones (合约机).
    pub contract_listings: usize,
    /// Starting stock of every SKU.
    pub initial_quantity: i64,
    /// Merchant code (`outer_sku_id`) per listing number; missing ones are `SKU-{n:05}`.
    pub outer_ids: Vec<String>,
    /// A real per-app flow limit on the sandbox clock (code 7, 1-second ban) when set.
    pub calls_per_second: Option<u32>,
    /// From this instant on the session is refused with code 27.
    pub session_expires_at: Option<DateTime<Utc>>,
    /// Every HTTP request is held this long before it is served: the round trip to a remote
    /// gateway (zero: none).
    pub round_trip: Duration,
}

impl Default for TopConfig {
    fn default() -> Self {
        Self {
            app_key: "12345678".into(),
            app_secret: "sandbox-top-secret-0123456789abcdef".into(),
            session: "sandbox-top-session".into(),
            listings: 20,
            contract_listings: 4,
            initial_quantity: 100,
            outer_ids: Vec::new(),
            calls_per_second: None,
            session_expires_at: None,
            round_trip: Duration::ZERO,
        }
    }
}

/// One scenario listing as TOP sees it: an item's SKU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopListing {
    pub num_iid: i64,
    pub sku_id: i64,
    pub outer_sku_id: String,
    pub quantity: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderView {
    pub oid: i64,
    pub status: String,
    pub refund_status: String,
    pub num_iid: i64,
    pub sku_id: i64,
    pub num: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeView {
    pub tid: i64,
    /// The scenario order number it was placed for.
    pub scenario_order: u64,
    pub status: String,
    pub created: DateTime<Utc>,
    pub modified: DateTime<Utc>,
    pub is_wt: bool,
    /// The wire field `type`: `fixed` or `pre_auth_type`.
    pub trade_type: String,
    pub orders: Vec<OrderView>,
}

/// One applied `taobao.logistics.offline.send`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipmentRecord {
    pub tid: i64,
    /// The `sub_tid` list as sent (empty unless `is_split=1`).
    pub sub_tids: Vec<i64>,
    /// The sub-orders this call shipped.
    pub oids: Vec<i64>,
    pub company_code: String,
    pub out_sid: String,
    /// `feature=identCode=...`: oid -> IMEIs / serials.
    pub ident_codes: BTreeMap<i64, Vec<String>>,
    pub at: DateTime<Utc>,
}

/// One quantity written through the API (not [`TopSandbox::set_quantity`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockWrite {
    pub num_iid: i64,
    pub sku_id: i64,
    pub quantity: i64,
    pub at: DateTime<Utc>,
}

/// Units a buyer took from a SKU by paying (negative `delta`) or gave back by a refund before
/// shipment (positive), so tests can tell buyers' changes from the seller's writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuyerStockChange {
    pub scenario_order: u64,
    pub tid: i64,
    pub num_iid: i64,
    pub sku_id: i64,
    pub delta: i64,
    /// The SKU's quantity right after the change.
    pub quantity: i64,
    pub at: DateTime<Utc>,
}

struct Inner {
    config: TopConfig,
    clock: SimClock,
    faults: FaultPlan,
    state: Mutex<store::State>,
}

/// The TOP gateway simulator; clones share state.
#[derive(Clone)]
pub struct TopSandbox {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TopSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret and session stay out of debug output.
        f.debug_struct("TopSandbox").field("app_key", &self.inner.config.app_key).finish_non_exhaustive()
    }
}

impl TopSandbox {
    pub fn new(config: TopConfig, clock: SimClock, faults: FaultPlan) -> Self {
        let state = store::State::new(&config, clock.now());
        Self { inner: Arc::new(Inner { config, clock, faults, state: Mutex::new(state) }) }
    }

    fn lock(&self) -> MutexGuard<'_, store::State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// GET and POST at `/router/rest`; POST at `/router/batch` (several calls in one request).
    pub fn router(&self) -> Router {
        with_round_trip(gateway::router(self.clone()), self.inner.config.round_trip)
    }

    /// Serves [`TopSandbox::router`] on `127.0.0.1` at a free port.
    pub async fn start(&self) -> std::io::Result<RunningServer> {
        serve(self.router(), SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Adds buyer events; each is applied once the clock reaches its time.
    pub fn load_scenario(&self, events: Vec<BuyerEvent>) {
        let mut state = self.lock();
        state.load(events);
        state.apply_due(&self.inner.config, self.inner.clock.now());
    }

    /// Applies every loaded event due by the clock's now (every request does this first).
    pub fn apply_due(&self) {
        self.lock().apply_due(&self.inner.config, self.inner.clock.now());
    }

    /// The state with every event due by the clock's now applied, so reads and behind-the-back
    /// writes see (and come after) the purchases that already happened.
    fn current(&self) -> MutexGuard<'_, store::State> {
        let mut state = self.lock();
        state.apply_due(&self.inner.config, self.inner.clock.now());
        state
    }

    /// Listing `n`'s ids and live quantity (0 outside the catalogue), after due events.
    pub fn listing(&self, n: usize) -> TopListing {
        self.current().listing(&self.inner.config, n)
    }

    /// A SKU's live quantity, or with `None` the item's (the sum of its SKUs), after due
    /// events.
    pub fn quantity(&self, num_iid: i64, sku_id: Option<i64>) -> Option<i64> {
        let state = self.current();
        match sku_id {
            Some(sku_id) => state.skus.get(&sku_id).filter(|s| s.num_iid == num_iid).map(|s| s.quantity),
            None => state.item_quantity(num_iid),
        }
    }

    /// Changes stock "behind flagsync's back" (not recorded in [`TopSandbox::stock_writes`]);
    /// with `None`, every SKU of the item gets `quantity`.
    pub fn set_quantity(&self, num_iid: i64, sku_id: Option<i64>, quantity: i64) {
        let now = self.inner.clock.now();
        let mut state = self.current();
        for sku in
            state.skus.values_mut().filter(|s| s.num_iid == num_iid && sku_id.is_none_or(|id| id == s.sku_id))
        {
            sku.quantity = quantity;
            sku.modified = now;
        }
    }

    /// Every trade as of the clock's now (due events are applied first).
    pub fn trades(&self) -> Vec<TradeView> {
        self.current().trade_views()
    }

    /// The tid of a scenario order placed by the clock's now.
    pub fn tid_of(&self, scenario_order: u64) -> Option<i64> {
        self.current().by_order.get(&scenario_order).copied()
    }

    pub fn shipments(&self) -> Vec<ShipmentRecord> {
        self.lock().shipments.clone()
    }

    /// Quantities written through the stock APIs, in order; buyers' purchases and refunds
    /// are not here (see [`TopSandbox::buyer_stock_changes`]).
    pub fn stock_writes(&self) -> Vec<StockWrite> {
        self.lock().stock_writes.clone()
    }

    /// Every unit buyers took by paying or got back by a refund, in order, as of the clock's
    /// now.
    pub fn buyer_stock_changes(&self) -> Vec<BuyerStockChange> {
        self.current().buyer_stock_changes.clone()
    }

    /// Scenario orders whose payment failed because a SKU had too few units, as of the clock's
    /// now; their trades closed as `TRADE_CLOSED_BY_TAOBAO`.
    pub fn sold_out_orders(&self) -> Vec<u64> {
        self.current().sold_out.clone()
    }

    /// Units of a SKU in paid trades not refunded (shipped or not), as of the clock's now:
    /// what buyers actually bought, for counting oversell against what was on offer.
    pub fn sold_units(&self, num_iid: i64, sku_id: i64) -> i64 {
        self.current().sold_units(num_iid, sku_id)
    }

    /// Calls past the signature and session checks per method (on `/router/rest` or inside
    /// a batch), every error reply as `error:<code>` (e.g. `error:7`, `error:15`; inside a
    /// batch, per call), and every `/router/batch` HTTP request once as [`BATCH_COUNTER`]
    /// (`router/batch`).
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.lock().calls.clone()
    }

    /// `(app_key, app_secret, session)`, for printing when the sandbox starts.
    pub fn credentials(&self) -> (String, String, String) {
        let config = &self.inner.config;
        (config.app_key.clone(), config.app_secret.clone(), config.session.clone())
    }
}
