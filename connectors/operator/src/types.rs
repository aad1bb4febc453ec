//! What crosses the operator boundary, in flagsync's terms. These are also the JSON bodies
//! of the operator API (field names as documented in `API.md`).

use chrono::{DateTime, Utc};
use flagsync_market::{ContractInfo, LineSerials, Receiver};
use serde::{Deserialize, Serialize};

/// Units of one operator SKU in one warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuLevel {
    pub sku: String,
    pub warehouse: String,
    pub on_hand: i64,
}

/// What a contract-phone resource is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    /// Remaining subscriptions of a tariff plan (by plan code).
    PlanQuota,
    /// Numbers left in a number pool (by pool code).
    NumberPool,
}

/// Remaining quota of a plan or free numbers of a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceLevel {
    pub kind: ResourceKind,
    pub code: String,
    pub available: i64,
}

/// Stock as the operator saw it at `watermark` (a sequence number that only grows; every
/// change of on-hand, including a shipment's deduction, takes the next one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockSnapshot {
    pub watermark: i64,
    /// True: `levels` and `resources` are everything (absent = 0). False: only what
    /// changed after the requested watermark.
    pub full: bool,
    pub levels: Vec<SkuLevel>,
    pub resources: Vec<ResourceLevel>,
}

/// One line to fulfil.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FulfilmentLine {
    pub line_id: String,
    pub operator_sku: String,
    pub quantity: i64,
}

/// A paid order for the operator to ship.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FulfilmentRequest {
    pub store_id: String,
    pub order_id: String,
    pub platform: String,
    pub paid_at: Option<DateTime<Utc>>,
    pub lines: Vec<FulfilmentLine>,
    pub receiver: Option<Receiver>,
    /// Number, plan and package for contract phones.
    pub contract: Option<ContractInfo>,
    /// The operator's number pool the contract's phone number comes from, when the order
    /// is a contract phone and the listing names one (`ContractInfo` has no pool field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_pool: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FulfilmentAck {
    Accepted,
    /// The operator already had this order: done.
    AlreadyAccepted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WithdrawAck {
    Withdrawn,
    /// Nothing to withdraw (never received, or withdrawn before): done.
    NotFound,
    /// Too late: it has shipped.
    AlreadyShipped,
}

/// A package the operator handed to a carrier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentNotice {
    /// The operator's id for this notice; a corrected waybill comes as a new notice with
    /// `corrects` naming the one it replaces.
    pub notice_id: String,
    pub sequence: i64,
    pub store_id: String,
    pub order_id: String,
    /// Lines in this package; empty = the whole order.
    pub line_ids: Vec<String>,
    /// The operator's carrier name or code (mapped per platform by config).
    pub carrier: String,
    pub waybill: String,
    pub serials: Vec<LineSerials>,
    pub shipped_at: DateTime<Utc>,
    /// The stock watermark at which the operator deducted these units from on-hand.
    pub stock_watermark: i64,
    pub corrects: Option<String>,
}

/// Notices after a watermark, and the watermark to ask from next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentBatch {
    pub notices: Vec<ShipmentNotice>,
    pub watermark: i64,
}
