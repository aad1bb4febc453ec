//! JD Open Platform (JOS, 宙斯) connector: signs and sends `routerjson` calls, opens JD's
//! envelopes, pages orders without missing any, pushes stock and shipments, and maps it
//! all to the platform-neutral types of `flagsync-market`. Wire JSON never leaves here.

// `ConnectorError` is the contract's error type, fixed by flagsync-market; boxing it here
// would only add conversions at every trait boundary.
#![allow(clippy::result_large_err)]

pub mod envelope;
pub mod parse;
pub mod sign;

mod client;
mod ops;
mod pull;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flagsync_market::retry::RetryPolicy;
use flagsync_market::transport::Transport;
use flagsync_market::{
    Clock, ConnectorError, Fetched, Limits, ListingQty, ListingRef, Marketplace, OrderSink, PullError,
    PullStats, Shipment, ShipmentOutcome, StockResult, StockUpdate, TimeWindow,
};
use governor::DefaultDirectRateLimiter;

/// SKUs per `jingdong.ware.stock.sku.set` call. JD publishes no maximum for `skuStocks`;
/// 20 keeps one failed call small and stays well under any body-size limit.
pub const STOCK_BATCH: usize = 20;

/// The widest `start_date`..`end_date` span JD accepts (it silently clamps wider ones).
pub const MAX_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

/// How far back modified-time order searches reach.
pub const MAX_LOOKBACK: Duration = Duration::from_secs(90 * 24 * 3600);

/// The order states pulled by default: every state the domain maps. `RECEIPT_CONFIRM`,
/// `TRADE_CLOSED` and `TRADE_REFUNDED` are parsed if they appear but not asked for, since
/// only one integrator reports them.
pub const DEFAULT_ORDER_STATES: &[&str] = &[
    "WAIT_SELLER_STOCK_OUT",
    "WAIT_SELLER_DELIVERY",
    "POP_ORDER_PAUSE",
    "PAUSE",
    "LOCKED",
    "WAIT_GOODS_RECEIVE_CONFIRM",
    "FINISHED_L",
    "TRADE_CANCELED",
];

/// How to reach one JD store.
#[derive(Clone)]
pub struct JdConfig {
    /// e.g. `https://api.jd.com/routerjson`.
    pub gateway: String,
    pub app_key: String,
    /// Secret: never logged.
    pub app_secret: String,
    /// Secret: never logged.
    pub access_token: String,
    /// Orders per search page (JD documents 50 as the safe maximum).
    pub page_size: u32,
    /// The highest page number the gateway serves (300).
    pub page_cap: u32,
    /// Calls per second, shared by every connector in the process with the same app key.
    pub calls_per_second: u32,
    /// `order_state` names for searches and order reads.
    pub order_states: Vec<String>,
    pub retry: RetryPolicy,
}

impl Default for JdConfig {
    fn default() -> Self {
        Self {
            gateway: "https://api.jd.com/routerjson".into(),
            app_key: String::new(),
            app_secret: String::new(),
            access_token: String::new(),
            page_size: 50,
            page_cap: 300,
            calls_per_second: 10,
            order_states: DEFAULT_ORDER_STATES.iter().map(|s| s.to_string()).collect(),
            retry: RetryPolicy::default(),
        }
    }
}

impl JdConfig {
    /// Every problem with this configuration, each naming its field; empty when usable.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.gateway.starts_with("http://") && !self.gateway.starts_with("https://") {
            problems.push("gateway: must be an http(s) url".to_string());
        }
        for (name, value) in [
            ("app_key", &self.app_key),
            ("app_secret", &self.app_secret),
            ("access_token", &self.access_token),
        ] {
            if value.trim().is_empty() {
                problems.push(format!("{name}: must not be empty"));
            }
        }
        if !(1..=100).contains(&self.page_size) {
            problems.push(format!("page_size: {} is outside 1..=100", self.page_size));
        }
        if self.page_cap == 0 {
            problems.push("page_cap: must be at least 1".into());
        }
        if self.calls_per_second == 0 {
            problems.push("calls_per_second: must be at least 1".into());
        }
        if self.order_states.iter().all(|s| s.trim().is_empty()) {
            problems.push("order_states: must name at least one state".into());
        }
        problems
    }
}

impl std::fmt::Debug for JdConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JdConfig")
            .field("gateway", &self.gateway)
            .field("app_key", &self.app_key)
            .field("app_secret", &"***")
            .field("access_token", &"***")
            .field("page_size", &self.page_size)
            .field("page_cap", &self.page_cap)
            .field("calls_per_second", &self.calls_per_second)
            .field("order_states", &self.order_states)
            .field("retry", &self.retry)
            .finish()
    }
}

/// A JD store, as a [`Marketplace`].
pub struct JdConnector {
    config: JdConfig,
    transport: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
    limiter: Arc<DefaultDirectRateLimiter>,
}

impl JdConnector {
    /// Builds the connector. Out-of-range numbers are clamped (page size to 1..=100, page cap
    /// and rate to at least 1); check [`JdConfig::problems`] first to report them instead.
    pub fn new(mut config: JdConfig, transport: Arc<dyn Transport>, clock: Arc<dyn Clock>) -> Self {
        config.page_size = config.page_size.clamp(1, 100);
        config.page_cap = config.page_cap.max(1);
        config.calls_per_second = config.calls_per_second.max(1);
        let limiter = client::limiter_for(&config.app_key, config.calls_per_second);
        Self { config, transport, clock, limiter }
    }

    fn order_states(&self) -> String {
        let states: Vec<&str> =
            self.config.order_states.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect();
        states.join(",")
    }
}

impl std::fmt::Debug for JdConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JdConnector").field("config", &self.config).finish_non_exhaustive()
    }
}

#[async_trait]
impl Marketplace for JdConnector {
    fn platform(&self) -> &'static str {
        envelope::PLATFORM
    }

    fn limits(&self) -> Limits {
        Limits {
            max_window: MAX_WINDOW,
            max_lookback: MAX_LOOKBACK,
            stock_batch: STOCK_BATCH,
            list_page: self.config.page_size as usize,
        }
    }

    async fn check_credentials(&self) -> Result<(), ConnectorError> {
        self.with_retry(parse::LOGISTICS, &serde_json::json!({}), parse::logistics, &mut 0).await
    }

    async fn pull_orders(
        &self,
        window: TimeWindow,
        sink: &mut dyn OrderSink,
    ) -> Result<PullStats, PullError> {
        self.pull(window, sink).await
    }

    async fn fetch_order(&self, order_id: &str) -> Result<Fetched, ConnectorError> {
        self.fetch(order_id).await
    }

    async fn push_stock(&self, updates: &[StockUpdate]) -> Result<Vec<StockResult>, ConnectorError> {
        self.set_stock(updates, false).await
    }

    async fn push_stock_deltas(&self, updates: &[StockUpdate]) -> Result<Vec<StockResult>, ConnectorError> {
        self.set_stock(updates, true).await
    }

    async fn read_stock(&self, listings: &[ListingRef]) -> Result<Vec<ListingQty>, ConnectorError> {
        self.query_stock(listings).await
    }

    async fn push_shipment(&self, shipment: &Shipment) -> Result<ShipmentOutcome, ConnectorError> {
        self.ship(shipment).await
    }
}
