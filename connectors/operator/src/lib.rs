//! The operator's side: its inventory (stock per SKU and warehouse, plan quotas, number
//! pools) and its fulfilment (requests in, shipment notices out), spoken as signed JSON
//! over HTTP (see `API.md`), plus the CSV exports ops import by hand.
//!
//! [`OperatorApi`] is what the sync jobs use; [`HttpOperator`] is the real client.

// `ConnectorError` is the contract's error type, returned by value across the workspace.
#![allow(clippy::result_large_err)]

pub mod client;
pub mod csv;
mod sign;
pub mod transport;
pub mod types;

#[cfg(test)]
mod tests;

pub use self::csv::{CsvError, CsvErrors, ShipmentRow, parse_shipments_csv, parse_stock_csv};
pub use client::{HttpOperator, OperatorConfig};
pub use transport::{OperatorReply, OperatorRequest, OperatorTransport, ReqwestOperatorTransport};
pub use types::*;

use async_trait::async_trait;
use flagsync_market::ConnectorError;

/// The operator's system as the sync jobs see it.
#[async_trait]
pub trait OperatorApi: Send + Sync {
    /// Stock levels and contract-phone resources: a full snapshot when `since` is `None`,
    /// else the changes after that watermark. The answer carries the watermark it reflects.
    async fn stock(&self, since: Option<i64>) -> Result<StockSnapshot, ConnectorError>;

    /// Sends a paid order to fulfilment. Idempotent by (store, order): a repeat is
    /// `AlreadyAccepted`.
    async fn submit_fulfilment(&self, request: &FulfilmentRequest) -> Result<FulfilmentAck, ConnectorError>;

    /// Withdraws an order cancelled or refunded before shipment. Idempotent.
    async fn withdraw_fulfilment(
        &self,
        store_id: &str,
        order_id: &str,
        reason: &str,
    ) -> Result<WithdrawAck, ConnectorError>;

    /// Shipment notices after a watermark, oldest first, at most `limit`.
    async fn shipments(&self, since: i64, limit: u32) -> Result<ShipmentBatch, ConnectorError>;

    /// A cheap call proving the credentials work.
    async fn check(&self) -> Result<(), ConnectorError>;
}
