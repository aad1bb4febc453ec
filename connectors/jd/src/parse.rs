//! Pure functions from JOS reply bodies to flagsync domain types (no I/O, no clock).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use flagsync_market::money::yuan_to_fen;
use flagsync_market::pii::Pii;
use flagsync_market::time::parse_beijing;
use flagsync_market::{
    ConnectorError, ErrorKind, Fetched, Order, OrderLine, OrderStatus, Receiver, RefundState, Unparsed,
};
use serde_json::Value;

use crate::envelope::{PLATFORM, check_business, open, result, text_of};

pub const ORDER_SEARCH: &str = "jingdong.pop.order.search";
pub const ORDER_GET: &str = "jingdong.pop.order.get";
pub const STOCK_SET: &str = "jingdong.ware.stock.sku.set";
pub const STOCK_QUERY: &str = "jingdong.ware.stock.sku.query";
pub const SHIPMENT: &str = "jingdong.pop.order.shipment";
pub const LOGISTICS: &str = "jingdong.delivery.logistics.get";

/// Every OrderInfo field [`order`] reads; sent as `optional_fields` so none is left out.
pub const OPTIONAL_FIELDS: &str = "orderId,orderState,orderStartTime,modified,paymentConfirmTime,\
orderTotalPrice,orderPayment,freightPrice,pin,consigneeInfo,itemInfoList";

/// One page of `jingdong.pop.order.search`.
#[derive(Debug)]
pub struct SearchPage {
    /// `orderTotal`: orders matching the whole query, not this page.
    pub total: u64,
    pub orders: Vec<Fetched>,
}

/// The outcome for one SKU of a `jingdong.ware.stock.sku.set` call.
#[derive(Debug)]
pub struct SkuOutcome {
    /// The SKU id the result names (`skuId`, else `data`), when it names one.
    pub sku_id: Option<String>,
    pub outcome: Result<(), ConnectorError>,
}

/// Maps a JD order state to the domain status. `paid` says whether `paymentConfirmTime` is
/// set, which separates a refund from a cancellation. Unknown states give `None`.
pub fn map_state(state: &str, paid: bool) -> Option<OrderStatus> {
    Some(match state {
        "WAIT_SELLER_STOCK_OUT" | "WAIT_SELLER_DELIVERY" => OrderStatus::Paid,
        "POP_ORDER_PAUSE" | "PAUSE" | "LOCKED" => OrderStatus::Held,
        "WAIT_GOODS_RECEIVE_CONFIRM" => OrderStatus::Shipped,
        "FINISHED_L" | "RECEIPT_CONFIRM" => OrderStatus::Completed,
        "TRADE_CANCELED" | "TRADE_CLOSED" | "TRADE_REFUNDED" if paid => OrderStatus::Refunded,
        "TRADE_CANCELED" | "TRADE_CLOSED" | "TRADE_REFUNDED" => OrderStatus::Cancelled,
        _ => return None,
    })
}

/// Parses a `jingdong.pop.order.search` reply. Orders that fail to parse come back as
/// [`Fetched::Unparsed`]; only a broken envelope or page fails the whole call.
pub fn search_page(status: u16, body: &str) -> Result<SearchPage, ConnectorError> {
    let root = open(ORDER_SEARCH, status, body)?;
    let found = result(ORDER_SEARCH, &root, "searchorderinfo_result")?;
    let api_result = api_result(ORDER_SEARCH, found)?;
    check_business(ORDER_SEARCH, api_result, "searchorderinfo_result.apiResult")?;
    let total = text_of(found.get("orderTotal")).and_then(|t| t.parse::<u64>().ok()).ok_or_else(|| {
        ConnectorError::new(
            PLATFORM,
            ORDER_SEARCH,
            ErrorKind::Malformed,
            "orderTotal is missing or not a count",
        )
    })?;
    let orders = match found.get("orderInfoList") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().map(|item| order(ORDER_SEARCH, item)).collect(),
        Some(_) => {
            return Err(ConnectorError::new(
                PLATFORM,
                ORDER_SEARCH,
                ErrorKind::Malformed,
                "orderInfoList is not an array",
            ));
        }
    };
    Ok(SearchPage { total, orders })
}

/// Parses a `jingdong.pop.order.get` reply; `None` when JD returns no order.
pub fn order_get(status: u16, body: &str) -> Result<Option<Fetched>, ConnectorError> {
    let root = open(ORDER_GET, status, body)?;
    let detail = result(ORDER_GET, &root, "orderDetailInfo")?;
    check_business(ORDER_GET, api_result(ORDER_GET, detail)?, "orderDetailInfo.apiResult")?;
    Ok(match detail.get("orderInfo") {
        None | Some(Value::Null) => None,
        Some(info) => Some(order(ORDER_GET, info)),
    })
}

/// Reads only `orderState` from a `jingdong.pop.order.get` reply (the re-read before a
/// shipment is repeated); `None` when JD returns no order.
pub fn order_state(status: u16, body: &str) -> Result<Option<String>, ConnectorError> {
    let root = open(ORDER_GET, status, body)?;
    let detail = result(ORDER_GET, &root, "orderDetailInfo")?;
    check_business(ORDER_GET, api_result(ORDER_GET, detail)?, "orderDetailInfo.apiResult")?;
    match detail.get("orderInfo") {
        None | Some(Value::Null) => Ok(None),
        Some(info) => text_of(info.get("orderState")).map(Some).ok_or_else(|| {
            ConnectorError::new(PLATFORM, ORDER_GET, ErrorKind::Malformed, "orderInfo has no orderState")
        }),
    }
}

fn api_result<'a>(api: &str, container: &'a Value) -> Result<&'a Value, ConnectorError> {
    match container.get("apiResult") {
        Some(value) if value.is_object() => Ok(value),
        _ => Err(ConnectorError::new(PLATFORM, api, ErrorKind::Malformed, "reply has no apiResult object")),
    }
}

/// Parses a `jingdong.ware.stock.sku.set` reply into per-SKU outcomes, in reply order.
/// A successful call that lists no per-SKU results succeeded for every SKU it carried.
pub fn stock_set(status: u16, body: &str) -> Result<Vec<SkuOutcome>, ConnectorError> {
    let root = open(STOCK_SET, status, body)?;
    let returned = result(STOCK_SET, &root, "returnType")?;
    check_business(STOCK_SET, returned, "returnType")?;
    let items = match returned.get("obj").and_then(|obj| obj.get("updateStockResult")) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(ConnectorError::new(
                PLATFORM,
                STOCK_SET,
                ErrorKind::Malformed,
                "returnType.obj.updateStockResult is not an array",
            ));
        }
    };
    Ok(items
        .iter()
        .map(|item| {
            // `skuId` when present; otherwise `data`, which one fixture uses for the SKU id
            // (its meaning is undocumented: another source treats it as the new quantity).
            let sku_id = text_of(item.get("skuId")).or_else(|| text_of(item.get("data")));
            let outcome = check_business(STOCK_SET, item, "updateStockResult entry");
            SkuOutcome { sku_id, outcome }
        })
        .collect())
}

/// Parses a `jingdong.ware.stock.sku.query` reply into `(skuId, stockNum)` pairs.
pub fn stock_query(status: u16, body: &str) -> Result<Vec<(String, i64)>, ConnectorError> {
    let root = open(STOCK_QUERY, status, body)?;
    let returned = result(STOCK_QUERY, &root, "returnType")?;
    check_business(STOCK_QUERY, returned, "returnType")?;
    let entries: Vec<&Value> = match returned.get("obj") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(object @ Value::Object(_)) => vec![object],
        _ => Vec::new(),
    };
    entries
        .into_iter()
        .map(|entry| {
            let sku = text_of(entry.get("skuId"));
            let stock = text_of(entry.get("stockNum")).and_then(|t| t.parse::<i64>().ok());
            match (sku, stock) {
                (Some(sku), Some(stock)) => Ok((sku, stock)),
                _ => Err(ConnectorError::new(
                    PLATFORM,
                    STOCK_QUERY,
                    ErrorKind::Malformed,
                    "returnType.obj entry lacks skuId or a numeric stockNum",
                )),
            }
        })
        .collect()
}

/// Checks a `jingdong.pop.order.shipment` reply.
pub fn shipment(status: u16, body: &str) -> Result<(), ConnectorError> {
    let root = open(SHIPMENT, status, body)?;
    check_business(SHIPMENT, result(SHIPMENT, &root, "sopjosshipment_result")?, "sopjosshipment_result")
}

/// Checks a `jingdong.delivery.logistics.get` reply (the credentials probe).
pub fn logistics(status: u16, body: &str) -> Result<(), ConnectorError> {
    open(LOGISTICS, status, body).map(|_| ())
}

/// Turns one OrderInfo object into an order, or keeps it raw with the reason.
pub fn order(api: &str, info: &Value) -> Fetched {
    match parse_order(info) {
        Ok(order) => Fetched::Order(Box::new(order)),
        Err(reason) => Fetched::Unparsed(Unparsed {
            api: api.to_string(),
            order_id: text_of(info.get("orderId")),
            raw: info.to_string(),
            reason,
        }),
    }
}

fn parse_order(info: &Value) -> Result<Order, String> {
    if !info.is_object() {
        return Err("order is not a json object".into());
    }
    let order_id = required_text(info, "orderId")?;
    let state = required_text(info, "orderState")?;
    let paid_at = optional_time(info, "paymentConfirmTime")?;
    let status = map_state(&state, paid_at.is_some())
        .ok_or_else(|| format!("orderState {state:?} is not a known jd order state"))?;
    let refund = match (state.as_str(), status) {
        ("LOCKED", _) => RefundState::Requested,
        (_, OrderStatus::Refunded) => RefundState::Refunded,
        _ => RefundState::None,
    };
    let lines = match info.get("itemInfoList") {
        Some(Value::Array(items)) if !items.is_empty() => lines(items, refund)?,
        _ => return Err("itemInfoList is missing or empty".into()),
    };
    Ok(Order {
        order_id,
        status,
        platform_status: state,
        created_at: required_time(info, "orderStartTime")?,
        modified_at: required_time(info, "modified")?,
        paid_at,
        total_fen: amount(info, "orderTotalPrice", "orderTotalPrice")?,
        payment_fen: amount(info, "orderPayment", "orderPayment")?,
        post_fee_fen: match text_of(info.get("freightPrice")) {
            Some(text) if !text.is_empty() => fen(&text, "freightPrice")?,
            _ => 0,
        },
        buyer: Pii::new(text_of(info.get("pin")).unwrap_or_default()),
        receiver: receiver(info.get("consigneeInfo")),
        lines,
        contract: None,
        raw: info.to_string(),
    })
}

fn lines(items: &[Value], refund: RefundState) -> Result<Vec<OrderLine>, String> {
    let mut seen: HashMap<String, u32> = HashMap::new();
    let mut lines = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let at = |field: &str| format!("itemInfoList[{index}].{field}");
        let sku_id = required_text(item, "skuId").map_err(|_| format!("{} is missing", at("skuId")))?;
        let item_id = required_text(item, "wareId").map_err(|_| format!("{} is missing", at("wareId")))?;
        let quantity = text_of(item.get("itemTotal"))
            .and_then(|t| t.trim().parse::<i64>().ok())
            .filter(|q| *q > 0)
            .ok_or_else(|| format!("{} is missing or not a positive count", at("itemTotal")))?;
        let price_fen = amount(item, "jdPrice", &at("jdPrice"))?;
        // JD lines carry no id; the SKU is unique within an order, but a repeated SKU (a
        // gift line) gets a suffix so line ids stay unique and stable.
        let count = seen.entry(sku_id.clone()).or_insert(0);
        *count += 1;
        let line_id = if *count == 1 { sku_id.clone() } else { format!("{sku_id}#{count}") };
        lines.push(OrderLine {
            line_id,
            item_id,
            sku_id: Some(sku_id),
            outer_sku_id: text_of(item.get("outerSkuId")).filter(|s| !s.trim().is_empty()),
            title: text_of(item.get("skuName")).unwrap_or_default(),
            quantity,
            price_fen,
            // JD reports no paid amount per line: list price times quantity; the order's
            // payment_fen is the authoritative paid total.
            payment_fen: price_fen.saturating_mul(quantity),
            refund,
            platform_status: None,
        });
    }
    Ok(lines)
}

fn receiver(consignee: Option<&Value>) -> Option<Receiver> {
    let consignee = consignee.filter(|c| c.is_object())?;
    let field = |name: &str| text_of(consignee.get(name)).unwrap_or_default();
    Some(Receiver {
        name: Pii::new(field("fullname")),
        mobile: Pii::new(field("mobile")),
        phone: Pii::new(field("telephone")),
        province: field("province"),
        city: field("city"),
        district: field("county"),
        address: Pii::new(field("fullAddress")),
        zip: String::new(),
    })
}

fn required_text(object: &Value, field: &str) -> Result<String, String> {
    text_of(object.get(field)).filter(|t| !t.trim().is_empty()).ok_or_else(|| format!("{field} is missing"))
}

fn is_placeholder(text: &str) -> bool {
    let text = text.trim();
    text.is_empty() || text.starts_with("0001-01-01") || text.starts_with("1970-01-01 00:00:00")
}

fn required_time(object: &Value, field: &str) -> Result<DateTime<Utc>, String> {
    optional_time(object, field)?.ok_or_else(|| format!("{field} is missing or not set"))
}

/// A time that may be JD's "not set" placeholder (`None`); anything else unparsable fails.
fn optional_time(object: &Value, field: &str) -> Result<Option<DateTime<Utc>>, String> {
    let Some(text) = text_of(object.get(field)) else { return Ok(None) };
    if is_placeholder(&text) {
        return Ok(None);
    }
    parse_beijing(&text)
        .map(Some)
        .ok_or_else(|| format!("{field} {text:?} is not a yyyy-MM-dd HH:mm:ss time"))
}

fn amount(object: &Value, field: &str, name: &str) -> Result<i64, String> {
    let text = text_of(object.get(field)).ok_or_else(|| format!("{name} is missing"))?;
    fen(&text, name)
}

fn fen(text: &str, name: &str) -> Result<i64, String> {
    yuan_to_fen(text).map_err(|e| format!("{name}: {e}"))
}
