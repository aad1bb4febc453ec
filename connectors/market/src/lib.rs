//! The connector contract: what every marketplace connector offers the sync jobs, in
//! platform-neutral domain types. Nothing here knows a database, a daemon or a platform.
//!
//! A connector crate (Taobao, JD, ...) implements [`Marketplace`]; the sync jobs in the
//! `flagsync` crate only ever see `dyn Marketplace`. Wire (JSON) types stay private to
//! their connector crate.

pub mod clock;
pub mod domain;
pub mod error;
pub mod money;
pub mod pii;
pub mod retry;
pub mod time;
pub mod transport;

mod connector;

pub use clock::{Clock, ManualClock, SystemClock};
pub use connector::{
    Fetched, Limits, Marketplace, OrderSink, PullError, PullStats, SinkError, TimeWindow, Unparsed,
};
pub use domain::{
    ContractInfo, LineSerials, ListingQty, ListingRef, Order, OrderLine, OrderStatus, Receiver, RefundState,
    Shipment, ShipmentOutcome, StockResult, StockUpdate,
};
pub use error::{Action, ConnectorError, ErrorKind};
