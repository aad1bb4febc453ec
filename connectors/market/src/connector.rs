//! The [`Marketplace`] trait every marketplace connector implements.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{ListingQty, ListingRef, Order, Shipment, ShipmentOutcome, StockResult, StockUpdate};
use crate::error::ConnectorError;

/// A modification-time window, inclusive at both ends (both gateways treat their start and
/// end parameters as inclusive; the sync job overlaps windows and deduplicates anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// A payload the connector received but could not turn into an [`Order`]. It is kept and
/// reported (quarantined), never dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unparsed {
    /// The remote method that returned it.
    pub api: String,
    /// The order id, when it could still be read.
    pub order_id: Option<String>,
    /// The payload exactly as received (the trade object, or the whole body).
    pub raw: String,
    /// Why it could not be parsed, naming the field.
    pub reason: String,
}

/// One order from the marketplace: parsed, or kept raw with the reason it failed.
#[derive(Debug, Clone)]
pub enum Fetched {
    Order(Box<Order>),
    Unparsed(Unparsed),
}

/// The sync job's receiver of pulled orders. The connector hands over one batch at a time
/// (typically a page) so that memory stays flat however big a window is.
#[async_trait]
pub trait OrderSink: Send {
    /// Of these (order id, modified) pairs seen in a listing, which does the sink need in
    /// full? Lets a connector skip detail calls for orders already stored at that version
    /// (window overlaps, re-pulls). The default wants them all.
    async fn select_changed(
        &mut self,
        candidates: &[(String, DateTime<Utc>)],
    ) -> Result<Vec<bool>, SinkError> {
        Ok(vec![true; candidates.len()])
    }

    /// Takes a batch of orders (typically one page). Orders may repeat across batches and
    /// windows; the sink deduplicates by order id and `modified`.
    async fn accept(&mut self, batch: Vec<Fetched>) -> Result<(), SinkError>;
}

/// The sink failed (usually the store); the pull stops and the window is retried later.
#[derive(Debug, thiserror::Error)]
#[error("order sink failed: {0}")]
pub struct SinkError(pub Box<dyn std::error::Error + Send + Sync>);

/// Why a window pull stopped.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// What one window pull did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullStats {
    /// Orders handed to the sink (parsed or not).
    pub orders: u64,
    pub unparsed: u64,
    /// Remote calls made, retries included.
    pub calls: u64,
    /// Pages read.
    pub pages: u64,
}

/// A platform's hard limits, which the sync jobs plan around.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The widest modification-time window one order query may span.
    pub max_window: Duration,
    /// How far back the order query reaches.
    pub max_lookback: Duration,
    /// The most listings one stock call may carry.
    pub stock_batch: usize,
    /// Orders one page of the order list holds, as this store is configured.
    pub list_page: usize,
}

/// A marketplace store, as the sync jobs see it. Implementations own their signing, paging,
/// error codes, rate limits and retries; they never touch the database.
#[async_trait]
pub trait Marketplace: Send + Sync {
    /// A short label for logs and metrics ("taobao", "jd").
    fn platform(&self) -> &'static str;

    fn limits(&self) -> Limits;

    /// A cheap read-only call proving the credentials work.
    async fn check_credentials(&self) -> Result<(), ConnectorError>;

    /// Hands every order modified within `window` to `sink`, in its latest state, each
    /// at least once, however orders move while the connector pages. The window must not
    /// exceed [`Limits::max_window`].
    async fn pull_orders(&self, window: TimeWindow, sink: &mut dyn OrderSink)
    -> Result<PullStats, PullError>;

    /// Reads one order in full.
    async fn fetch_order(&self, order_id: &str) -> Result<Fetched, ConnectorError>;

    /// Sets absolute quantities. At most [`Limits::stock_batch`] updates per call are sent
    /// to the platform; longer slices are split. One result per update, in order.
    async fn push_stock(&self, updates: &[StockUpdate]) -> Result<Vec<StockResult>, ConnectorError>;

    /// Adds `quantity` (negative to take away; the platform stops at 0) to each listing's
    /// counter, atomically on the platform's side, so sales landing meanwhile are kept.
    /// Never sent twice after an ambiguous failure. One result per update; the value is
    /// the platform's new quantity when it says, else the delta sent. The default refuses:
    /// a platform without incremental updates gets absolute ones.
    async fn push_stock_deltas(&self, updates: &[StockUpdate]) -> Result<Vec<StockResult>, ConnectorError> {
        Ok(updates
            .iter()
            .map(|update| StockResult {
                listing: update.listing.clone(),
                outcome: Err(ConnectorError::new(
                    self.platform(),
                    "push_stock_deltas",
                    crate::error::ErrorKind::Rejected,
                    "this marketplace takes absolute quantities only",
                )),
            })
            .collect())
    }

    /// Reads the live quantities of the given listings.
    async fn read_stock(&self, listings: &[ListingRef]) -> Result<Vec<ListingQty>, ConnectorError>;

    /// Reports a shipment. Idempotent: when the marketplace already shows the lines shipped
    /// (an earlier attempt landed), the result is [`ShipmentOutcome::AlreadyShipped`].
    async fn push_shipment(&self, shipment: &Shipment) -> Result<ShipmentOutcome, ConnectorError>;
}
