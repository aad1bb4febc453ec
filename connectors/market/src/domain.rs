//! Platform-neutral domain types: orders coming in, stock and shipments going out.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::pii::Pii;

/// Where an order stands, mapped from each platform's own status names. The platform's
/// exact status is kept beside it in [`Order::platform_status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Placed, not paid yet.
    AwaitingPayment,
    /// Paid and free to ship.
    Paid,
    /// Paid but must not ship yet (TOP `PAID_FORBID_CONSIGN`, `WAIT_PRE_AUTH_CONFIRM`,
    /// JD `POP_ORDER_PAUSE`, shipping blocked).
    Held,
    /// Some sub-orders shipped.
    PartiallyShipped,
    /// Everything shipped, waiting for the buyer.
    Shipped,
    /// Finished: received by the buyer.
    Completed,
    /// Closed before payment.
    Cancelled,
    /// Closed after payment (refunded).
    Refunded,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwaitingPayment => "awaiting_payment",
            Self::Paid => "paid",
            Self::Held => "held",
            Self::PartiallyShipped => "partially_shipped",
            Self::Shipped => "shipped",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "awaiting_payment" => Self::AwaitingPayment,
            "paid" => Self::Paid,
            "held" => Self::Held,
            "partially_shipped" => Self::PartiallyShipped,
            "shipped" => Self::Shipped,
            "completed" => Self::Completed,
            "cancelled" => Self::Cancelled,
            "refunded" => Self::Refunded,
            _ => return None,
        })
    }

    /// Whether the buyer has paid and the order is still open (holds stock).
    pub fn is_open_paid(self) -> bool {
        matches!(self, Self::Paid | Self::Held | Self::PartiallyShipped)
    }

    /// Whether the order is closed for good.
    pub fn is_closed(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled | Self::Refunded)
    }
}

/// Refund state of one order line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundState {
    #[default]
    None,
    /// The buyer asked; not settled yet.
    Requested,
    /// Money went back; the line is void.
    Refunded,
}

/// The person and address the parcel goes to. Every field is personal data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Receiver {
    pub name: Pii,
    pub mobile: Pii,
    pub phone: Pii,
    pub province: String,
    pub city: String,
    pub district: String,
    pub address: Pii,
    pub zip: String,
}

/// Contract-phone (合约机) data: the number, plan and package the buyer chose.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContractInfo {
    /// The phone number allocated to the buyer.
    pub phone_number: Pii,
    /// The operator's plan code (`out_plan_id`).
    pub plan_code: String,
    /// The operator's contract package code (`out_package_id`).
    pub package_code: String,
    pub plan_title: String,
    pub user_type: Option<String>,
    pub contract_type: Option<String>,
    pub deposit_fen: Option<i64>,
    /// Subscriber's certificate (ID card) number.
    pub cert_number: Pii,
    pub owner_name: Pii,
}

/// One line (sub-order) of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderLine {
    /// The platform's sub-order id (TOP `oid`; JD has none, so the connector makes a
    /// stable one from the SKU id).
    pub line_id: String,
    /// The listing's item id (TOP `num_iid`, JD `wareId`).
    pub item_id: String,
    /// The listing's SKU id, when the item has SKUs.
    pub sku_id: Option<String>,
    /// The merchant code on the SKU (`outer_sku_id` / `outerSkuId`), used to map to the
    /// operator's catalogue.
    pub outer_sku_id: Option<String>,
    pub title: String,
    pub quantity: i64,
    pub price_fen: i64,
    pub payment_fen: i64,
    pub refund: RefundState,
    /// The platform's own status of this line, when it has one.
    pub platform_status: Option<String>,
}

/// An order as the marketplace shows it, mapped to domain terms. `Debug` leaves out the raw
/// payload (it holds personal data in clear); personal fields print masked.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// The platform's order id as a decimal string (TOP tids exceed 2^53).
    pub order_id: String,
    pub status: OrderStatus,
    pub platform_status: String,
    pub created_at: DateTime<Utc>,
    /// The platform's modification time; an update with an older value is stale.
    pub modified_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    pub total_fen: i64,
    pub payment_fen: i64,
    pub post_fee_fen: i64,
    /// Buyer nick or pin; personal data.
    pub buyer: Pii,
    pub receiver: Option<Receiver>,
    pub lines: Vec<OrderLine>,
    pub contract: Option<ContractInfo>,
    /// The platform's payload for this order exactly as received (for TOP the fullinfo
    /// `trade` object, for JD the `orderInfo` object), kept for audits and re-parsing.
    pub raw: String,
}

/// A listing on a marketplace: an item, optionally one of its SKUs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ListingRef {
    pub item_id: String,
    pub sku_id: Option<String>,
}

/// Set a listing's sellable quantity (absolute).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockUpdate {
    pub listing: ListingRef,
    pub quantity: i64,
}

/// The outcome of one listing in a stock batch.
#[derive(Debug)]
pub struct StockResult {
    pub listing: ListingRef,
    /// The quantity the marketplace now shows, or why this listing failed.
    pub outcome: Result<i64, crate::ConnectorError>,
}

/// A listing's live quantity as read back from the marketplace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListingQty {
    pub listing: ListingRef,
    pub quantity: i64,
    pub outer_id: Option<String>,
}

/// IMEIs (or other serials) shipped for one order line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineSerials {
    pub line_id: String,
    pub serials: Vec<String>,
}

/// A package handed to a carrier, to be reported to the marketplace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipment {
    pub order_id: String,
    /// The order lines in this package; empty means the whole order.
    pub line_ids: Vec<String>,
    /// The platform's carrier code (TOP `company_code`, JD numeric `logiCoprId`), already
    /// mapped from the operator's carrier name by the caller.
    pub carrier: String,
    pub waybill: String,
    pub serials: Vec<LineSerials>,
}

/// What a shipment push achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShipmentOutcome {
    /// This call shipped it.
    Shipped,
    /// The marketplace already showed it shipped (an earlier attempt landed): done.
    AlreadyShipped,
}

impl std::fmt::Debug for Order {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Order")
            .field("order_id", &self.order_id)
            .field("status", &self.status)
            .field("platform_status", &self.platform_status)
            .field("created_at", &self.created_at)
            .field("modified_at", &self.modified_at)
            .field("paid_at", &self.paid_at)
            .field("total_fen", &self.total_fen)
            .field("payment_fen", &self.payment_fen)
            .field("post_fee_fen", &self.post_fee_fen)
            .field("buyer", &self.buyer)
            .field("receiver", &self.receiver)
            .field("lines", &self.lines)
            .field("contract", &self.contract)
            .field("raw", &format_args!("<{} bytes>", self.raw.len()))
            .finish()
    }
}
