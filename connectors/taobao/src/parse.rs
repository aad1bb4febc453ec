//! Pure functions from TOP replies to domain types: the envelope (simplified or wrapped,
//! errors always under `error_response`), trades and their lines, contract data, item
//! quantities and shipping results. No I/O; the replay tests drive these directly.
//!
//! Ids are read from `*_str` or from JSON integers (exact up to 2^64), never through f64;
//! money goes through [`yuan_to_fen`]; times through [`parse_beijing`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use flagsync_market::money::yuan_to_fen;
use flagsync_market::pii::Pii;
use flagsync_market::time::parse_beijing;
use flagsync_market::transport::HttpReply;
use flagsync_market::{
    ConnectorError, ContractInfo, ErrorKind, Order, OrderLine, OrderStatus, Receiver, RefundState, Unparsed,
};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::{PLATFORM, TopError, classify, malformed};

/// The key of a wrapped (`simplify=false`) reply: the method without a leading `taobao.`,
/// dots as underscores, plus `_response`.
pub fn response_root(api: &str) -> String {
    let name = api.strip_prefix("taobao.").unwrap_or(api);
    format!("{}_response", name.replace('.', "_"))
}

type RawObject<'a> = BTreeMap<String, &'a RawValue>;

fn raw_object(raw: &RawValue) -> Option<RawObject<'_>> {
    serde_json::from_str(raw.get()).ok()
}

/// The payload of a reply: the object under `<root>_response` when wrapped, the body
/// itself when simplified. Gateway errors, non-JSON bodies and HTTP failures become
/// classified [`ConnectorError`]s.
pub fn payload<'a>(api: &str, reply: &'a HttpReply) -> Result<&'a RawValue, ConnectorError> {
    let body = reply.body.trim();
    let top: RawObject<'a> = match serde_json::from_str(body) {
        Ok(top) => top,
        Err(error) if reply.status != 200 => {
            // A proxy or load balancer page, not the gateway: worth another try.
            return Err(ConnectorError::new(
                PLATFORM,
                api,
                ErrorKind::Transient,
                format!(
                    "http status {} with a body that is not json ({} bytes): {error}",
                    reply.status,
                    body.len()
                ),
            ));
        }
        Err(error) => {
            return Err(malformed(api, format!("not json or truncated ({} bytes): {error}", body.len())));
        }
    };
    if let Some(raw) = top.get("error_response") {
        return Err(classify(api, &top_error(api, raw)?));
    }
    if reply.status != 200 {
        return Err(ConnectorError::new(
            PLATFORM,
            api,
            ErrorKind::Transient,
            format!("http status {} without an error_response", reply.status),
        ));
    }
    if let Some(inner) = top.get(&response_root(api)) {
        return Ok(inner);
    }
    serde_json::from_str(body).map_err(|error| malformed(api, error))
}

fn top_error(api: &str, raw: &RawValue) -> Result<TopError, ConnectorError> {
    let value: Value = serde_json::from_str(raw.get()).map_err(|e| malformed(api, e))?;
    if !value.is_object() {
        return Err(malformed(api, "error_response is not an object"));
    }
    let text = |key: &str| match get(&value, key) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    Ok(TopError {
        code: text("code").unwrap_or_default(),
        msg: text("msg").unwrap_or_default(),
        sub_code: text("sub_code"),
        sub_msg: text("sub_msg"),
    })
}

fn payload_object<'a>(api: &str, reply: &'a HttpReply) -> Result<RawObject<'a>, ConnectorError> {
    raw_object(payload(api, reply)?).ok_or_else(|| malformed(api, "the reply is not a json object"))
}

/// A list as TOP sends it: a plain array (simplified), or an object with one key holding
/// the array (`{"trade":[...]}`, wrapped). Absent or empty means no items.
fn raw_list(raw: Option<&RawValue>) -> Result<Vec<&RawValue>, String> {
    let Some(raw) = raw else { return Ok(Vec::new()) };
    if let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) {
        return Ok(items);
    }
    match raw_object(raw) {
        Some(object) if object.is_empty() => Ok(Vec::new()),
        Some(object) if object.len() == 1 => {
            let inner = object.into_values().next();
            serde_json::from_str::<Vec<&RawValue>>(inner.map(RawValue::get).unwrap_or("[]"))
                .map_err(|_| "expected a list".to_string())
        }
        _ if raw.get() == "null" => Ok(Vec::new()),
        _ => Err("expected a list".to_string()),
    }
}

/// The same list rule for an already parsed value (`orders`, `skus`).
fn value_list(value: Option<&Value>) -> Result<Vec<&Value>, String> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items.iter().collect()),
        Some(Value::Object(map)) if map.is_empty() => Ok(Vec::new()),
        Some(Value::Object(map)) if map.len() == 1 => match map.values().next() {
            Some(Value::Array(items)) => Ok(items.iter().collect()),
            _ => Err("expected a list".to_string()),
        },
        Some(other) => Err(format!("expected a list, got {}", kind_of(other))),
    }
}

// ---- field readers: each error names the field and, for non-personal fields, the value ----

fn get<'v>(value: &'v Value, key: &str) -> Option<&'v Value> {
    value.get(key).filter(|v| !v.is_null())
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Shows a non-personal value in an error, shortened.
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) if s.chars().count() > 40 => {
            format!("{:?}...", s.chars().take(40).collect::<String>())
        }
        Value::String(s) => format!("{s:?}"),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => kind_of(other).to_string(),
    }
}

fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit())
}

/// A TOP id (tid, oid, num_iid, sku_id) as decimal text, from `<key>_str` when present.
fn id(value: &Value, key: &str) -> Result<String, String> {
    if let Some(Value::String(text)) = get(value, &format!("{key}_str"))
        && is_digits(text)
    {
        return Ok(text.clone());
    }
    match get(value, key) {
        None => Err(format!("{key}: missing")),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Ok(u.to_string()),
            (None, Some(_)) => Err(format!("{key}: expected a positive integer id, got {n}")),
            // An id that only fits a float has already lost digits.
            (None, None) => Err(format!("{key}: expected an integer id, got {n}")),
        },
        Some(Value::String(text)) if is_digits(text) => Ok(text.clone()),
        Some(other) => Err(format!("{key}: expected an integer id, got {}", shown(other))),
    }
}

fn opt_id(value: &Value, key: &str) -> Result<Option<String>, String> {
    match get(value, key) {
        None => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(_) => id(value, key).map(Some),
    }
}

/// Plain text. Values here may be personal data, so an error shows only the kind.
fn opt_text(value: &Value, key: &str) -> Result<Option<String>, String> {
    match get(value, key) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(format!("{key}: expected text, got {}", kind_of(other))),
    }
}

fn req_text(value: &Value, key: &str) -> Result<String, String> {
    match opt_text(value, key)? {
        Some(text) if !text.is_empty() => Ok(text),
        _ => Err(format!("{key}: missing")),
    }
}

fn opt_time(value: &Value, key: &str) -> Result<Option<DateTime<Utc>>, String> {
    match get(value, key) {
        None => Ok(None),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
        Some(Value::String(text)) => match parse_beijing(text) {
            Some(at) => Ok(Some(at)),
            // parse_beijing also answers None for the "not set" placeholders.
            None if text.starts_with("0001-01-01") || text.starts_with("1970-01-01 00:00:00") => Ok(None),
            None => Err(format!("{key}: expected a time, got {}", shown(&Value::String(text.clone())))),
        },
        Some(other) => Err(format!("{key}: expected a time, got {}", shown(other))),
    }
}

fn req_time(value: &Value, key: &str) -> Result<DateTime<Utc>, String> {
    opt_time(value, key)?.ok_or_else(|| format!("{key}: missing"))
}

fn opt_money(value: &Value, key: &str) -> Result<Option<i64>, String> {
    let text = match get(value, key) {
        None => return Ok(None),
        Some(Value::String(text)) if text.trim().is_empty() => return Ok(None),
        Some(Value::String(text)) => text.clone(),
        // Some proxies send numbers; still yuan, still exact through the decimal parser.
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => return Err(format!("{key}: expected a yuan amount, got {}", shown(other))),
    };
    yuan_to_fen(&text).map(Some).map_err(|e| format!("{key}: {e}"))
}

fn req_money(value: &Value, key: &str) -> Result<i64, String> {
    opt_money(value, key)?.ok_or_else(|| format!("{key}: missing"))
}

fn opt_int(value: &Value, key: &str) -> Result<Option<i64>, String> {
    match get(value, key) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            n.as_i64().map(Some).ok_or_else(|| format!("{key}: expected an integer, got {n}"))
        }
        Some(Value::String(text)) => {
            text.trim().parse().map(Some).map_err(|_| {
                format!("{key}: expected an integer, got {}", shown(&Value::String(text.clone())))
            })
        }
        Some(other) => Err(format!("{key}: expected an integer, got {}", shown(other))),
    }
}

fn req_int(value: &Value, key: &str) -> Result<i64, String> {
    opt_int(value, key)?.ok_or_else(|| format!("{key}: missing"))
}

fn flag(value: &Value, key: &str) -> Result<bool, String> {
    match get(value, key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(text)) if text == "true" => Ok(true),
        Some(Value::String(text)) if text == "false" || text.is_empty() => Ok(false),
        Some(other) => Err(format!("{key}: expected true or false, got {}", shown(other))),
    }
}

// ---- statuses ----

/// TOP trade status to domain status. `is_sh_ship` (shipping blocked) holds a paid trade.
pub fn order_status(status: &str, is_sh_ship: bool) -> Option<OrderStatus> {
    Some(match status {
        "WAIT_BUYER_PAY" | "TRADE_NO_CREATE_PAY" | "PAY_PENDING" => OrderStatus::AwaitingPayment,
        "WAIT_SELLER_SEND_GOODS" if is_sh_ship => OrderStatus::Held,
        "WAIT_SELLER_SEND_GOODS" => OrderStatus::Paid,
        "PAID_FORBID_CONSIGN" | "WAIT_PRE_AUTH_CONFIRM" => OrderStatus::Held,
        "SELLER_CONSIGNED_PART" => OrderStatus::PartiallyShipped,
        "WAIT_BUYER_CONFIRM_GOODS" | "TRADE_BUYER_SIGNED" => OrderStatus::Shipped,
        "TRADE_FINISHED" => OrderStatus::Completed,
        "TRADE_CLOSED" => OrderStatus::Refunded,
        "TRADE_CLOSED_BY_TAOBAO" => OrderStatus::Cancelled,
        _ => return None,
    })
}

/// An order line's `refund_status` to domain terms; refusals and closed refunds are none.
pub fn refund_state(refund_status: Option<&str>) -> RefundState {
    match refund_status {
        Some("WAIT_SELLER_AGREE" | "WAIT_BUYER_RETURN_GOODS" | "WAIT_SELLER_CONFIRM_GOODS") => {
            RefundState::Requested
        }
        Some("SUCCESS") => RefundState::Refunded,
        _ => RefundState::None,
    }
}

/// Statuses in which a trade or line has left the seller.
pub fn is_shipped_status(status: &str) -> bool {
    matches!(status, "WAIT_BUYER_CONFIRM_GOODS" | "TRADE_BUYER_SIGNED" | "TRADE_FINISHED")
}

pub fn is_closed_status(status: &str) -> bool {
    matches!(status, "TRADE_CLOSED" | "TRADE_CLOSED_BY_TAOBAO")
}

// ---- trades ----

/// One row of `taobao.trades.sold.increment.get` (fields tid, modified, status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRow {
    pub tid: String,
    pub modified: DateTime<Utc>,
    pub status: Option<String>,
}

/// One page of the increment list. Rows that cannot be read are kept raw.
#[derive(Debug, Clone)]
pub struct ListPage {
    pub total_results: Option<u64>,
    pub has_next: Option<bool>,
    pub rows: Vec<Result<ListRow, Unparsed>>,
}

pub fn increment_page(api: &str, reply: &HttpReply) -> Result<ListPage, ConnectorError> {
    let object = payload_object(api, reply)?;
    let scalar = |key: &str| -> Result<Option<Value>, ConnectorError> {
        object
            .get(key)
            .map(|raw| serde_json::from_str::<Value>(raw.get()))
            .transpose()
            .map_err(|e| malformed(api, e))
    };
    let total_results = match scalar("total_results")? {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            match &value {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            }
            .ok_or_else(|| {
                malformed(api, format!("total_results: expected a count, got {}", shown(&value)))
            })?,
        ),
    };
    let has_next = match scalar("has_next")? {
        None | Some(Value::Null) => None,
        Some(value) => {
            Some(flag(&serde_json::json!({ "has_next": value }), "has_next").map_err(|e| malformed(api, e))?)
        }
    };
    let trades =
        raw_list(object.get("trades").copied()).map_err(|e| malformed(api, format!("trades: {e}")))?;
    let rows = trades.into_iter().map(|raw| list_row(api, raw)).collect();
    Ok(ListPage { total_results, has_next, rows })
}

fn list_row(api: &str, raw: &RawValue) -> Result<ListRow, Unparsed> {
    let value: Value = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
    let tid = id(&value, "tid");
    let row = tid.clone().and_then(|tid| {
        Ok(ListRow { tid, modified: req_time(&value, "modified")?, status: opt_text(&value, "status")? })
    });
    row.map_err(|reason| unparsed(api, tid.ok(), raw.get(), reason))
}

fn unparsed(api: &str, tid: Option<String>, raw: &str, reason: String) -> Unparsed {
    let label = tid.as_deref().unwrap_or("?");
    Unparsed {
        api: api.to_string(),
        order_id: tid.clone(),
        raw: raw.to_string(),
        reason: format!("trade {label}: {reason}"),
    }
}

/// A trade from `taobao.trade.fullinfo.get`, mapped, with the flag saying it needs
/// contract data from `taobao.trade.wtvertical.get`.
#[derive(Debug, Clone)]
pub struct ParsedTrade {
    pub order: Order,
    pub is_wt: bool,
}

/// The `trade` of a fullinfo reply. The outer error is for a reply that cannot be read
/// at all; the inner one is a trade that is kept raw, naming the field that failed.
pub fn fullinfo(api: &str, reply: &HttpReply) -> Result<Result<ParsedTrade, Unparsed>, ConnectorError> {
    let object = payload_object(api, reply)?;
    let raw = object.get("trade").ok_or_else(|| malformed(api, "no trade in the reply"))?;
    Ok(trade(api, raw.get()))
}

/// Maps one trade object (raw JSON text) to an [`Order`].
pub fn trade(api: &str, raw: &str) -> Result<ParsedTrade, Unparsed> {
    let value: Value = match serde_json::from_str(raw) {
        Ok(value @ Value::Object(_)) => value,
        Ok(other) => {
            return Err(unparsed(api, None, raw, format!("expected an object, got {}", kind_of(&other))));
        }
        Err(e) => return Err(unparsed(api, None, raw, format!("not json: {e}"))),
    };
    let tid = id(&value, "tid").ok();
    trade_fields(&value, raw).map_err(|reason| unparsed(api, tid, raw, reason))
}

fn trade_fields(value: &Value, raw: &str) -> Result<ParsedTrade, String> {
    let order_id = id(value, "tid")?;
    let platform_status = req_text(value, "status")?;
    let is_sh_ship = flag(value, "is_sh_ship")?;
    let status = order_status(&platform_status, is_sh_ship)
        .ok_or_else(|| format!("status: unknown status {platform_status:?}"))?;
    let created_at = req_time(value, "created")?;
    let modified_at = req_time(value, "modified")?;
    let paid_at = opt_time(value, "pay_time")?;
    let payment_fen = req_money(value, "payment")?;
    let total_fen = req_money(value, "total_fee")?;
    let post_fee_fen = opt_money(value, "post_fee")?.unwrap_or(0);
    let buyer = match opt_text(value, "buyer_nick")? {
        Some(nick) if !nick.is_empty() => nick,
        _ => opt_text(value, "buyer_open_uid")?.unwrap_or_default(),
    };
    let receiver = receiver(value)?;
    let orders = value_list(get(value, "orders")).map_err(|e| format!("orders: {e}"))?;
    if orders.is_empty() {
        return Err("orders: missing".into());
    }
    let lines = orders
        .into_iter()
        .enumerate()
        .map(|(i, line)| order_line(line).map_err(|e| format!("orders[{i}].{e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let is_wt = flag(value, "is_wt")?;
    Ok(ParsedTrade {
        order: Order {
            order_id,
            status,
            platform_status,
            created_at,
            modified_at,
            paid_at,
            total_fen,
            payment_fen,
            post_fee_fen,
            buyer: Pii::new(buyer),
            receiver,
            lines,
            contract: None,
            raw: raw.to_string(),
        },
        is_wt,
    })
}

fn receiver(value: &Value) -> Result<Option<Receiver>, String> {
    const KEYS: [&str; 8] = [
        "receiver_name",
        "receiver_mobile",
        "receiver_phone",
        "receiver_state",
        "receiver_city",
        "receiver_district",
        "receiver_address",
        "receiver_zip",
    ];
    if KEYS.iter().all(|key| get(value, key).is_none()) {
        return Ok(None);
    }
    let text = |key: &str| opt_text(value, key).map(Option::unwrap_or_default);
    Ok(Some(Receiver {
        name: Pii::new(text("receiver_name")?),
        mobile: Pii::new(text("receiver_mobile")?),
        phone: Pii::new(text("receiver_phone")?),
        province: text("receiver_state")?,
        city: text("receiver_city")?,
        district: text("receiver_district")?,
        address: Pii::new(text("receiver_address")?),
        zip: text("receiver_zip")?,
    }))
}

/// One sub-order (`orders[]` entry).
pub fn order_line(value: &Value) -> Result<OrderLine, String> {
    Ok(OrderLine {
        line_id: id(value, "oid")?,
        item_id: id(value, "num_iid")?,
        sku_id: opt_id(value, "sku_id")?,
        outer_sku_id: opt_text(value, "outer_sku_id")?.filter(|s| !s.is_empty()),
        title: opt_text(value, "title")?.unwrap_or_default(),
        quantity: req_int(value, "num")?,
        price_fen: req_money(value, "price")?,
        payment_fen: req_money(value, "payment")?,
        refund: refund_state(opt_text(value, "refund_status")?.as_deref()),
        platform_status: opt_text(value, "status")?.filter(|s| !s.is_empty()),
    })
}

// ---- contract phones ----

/// One `wtext_results` entry: (tid, contract), or why it could not be read.
pub type ContractEntry = Result<(String, ContractInfo), String>;

/// `taobao.trade.wtvertical.get`: contract data per tid. Entries without a readable tid
/// are returned as errors beside the good ones.
pub fn wtvertical(api: &str, reply: &HttpReply) -> Result<Vec<ContractEntry>, ConnectorError> {
    let object = payload_object(api, reply)?;
    let items = raw_list(object.get("wtext_results").copied())
        .map_err(|e| malformed(api, format!("wtext_results: {e}")))?;
    Ok(items
        .into_iter()
        .map(|raw| {
            let value: Value = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
            contract(&value)
        })
        .collect())
}

fn contract(value: &Value) -> Result<(String, ContractInfo), String> {
    let tid = id(value, "tid")?;
    let wrap = |e: String| format!("contract for trade {tid}: {e}");
    let text = |key: &str| opt_text(value, key).map(Option::unwrap_or_default).map_err(wrap);
    let info = ContractInfo {
        phone_number: Pii::new(text("phone_num")?),
        plan_code: text("out_plan_id")?,
        package_code: text("out_package_id")?,
        plan_title: text("plan_title")?,
        user_type: opt_text(value, "user_type").map_err(wrap)?,
        contract_type: opt_text(value, "contract_type").map_err(wrap)?,
        // Deposits come in fen already.
        deposit_fen: opt_int(value, "phone_deposit").map_err(wrap)?,
        cert_number: Pii::new(text("cert_card_num")?),
        owner_name: Pii::new(text("phone_owner_name")?),
    };
    Ok((tid, info))
}

// ---- items and stock ----

/// An item's live quantities as the gateway shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemQuantities {
    pub num_iid: Option<String>,
    /// The item-level quantity (`num`).
    pub num: Option<i64>,
    pub outer_id: Option<String>,
    pub skus: Vec<SkuQuantity>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkuQuantity {
    pub sku_id: String,
    pub quantity: i64,
    pub outer_id: Option<String>,
}

/// The `item` object of `item.seller.get`, `item.quantity.update` and
/// `skus.quantity.update` replies.
pub fn item(api: &str, reply: &HttpReply) -> Result<ItemQuantities, ConnectorError> {
    let object = payload_object(api, reply)?;
    let raw = object.get("item").ok_or_else(|| malformed(api, "no item in the reply"))?;
    let value: Value = serde_json::from_str(raw.get()).map_err(|e| malformed(api, e))?;
    let fields = || -> Result<ItemQuantities, String> {
        let skus = value_list(get(&value, "skus"))
            .map_err(|e| format!("skus: {e}"))?
            .into_iter()
            .enumerate()
            .map(|(i, sku)| {
                let read = || -> Result<SkuQuantity, String> {
                    Ok(SkuQuantity {
                        sku_id: id(sku, "sku_id")?,
                        quantity: req_int(sku, "quantity")?,
                        outer_id: opt_text(sku, "outer_id")?.filter(|s| !s.is_empty()),
                    })
                };
                read().map_err(|e| format!("skus[{i}].{e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ItemQuantities {
            num_iid: opt_id(&value, "num_iid")?,
            num: opt_int(&value, "num")?,
            outer_id: opt_text(&value, "outer_id")?.filter(|s| !s.is_empty()),
            skus,
        })
    };
    fields().map_err(|e| malformed(api, format!("item: {e}")))
}

// ---- shipping ----

/// `taobao.logistics.offline.send`: `shipping.is_success`.
pub fn shipping(api: &str, reply: &HttpReply) -> Result<bool, ConnectorError> {
    let object = payload_object(api, reply)?;
    let raw = object.get("shipping").ok_or_else(|| malformed(api, "no shipping in the reply"))?;
    let value: Value = serde_json::from_str(raw.get()).map_err(|e| malformed(api, e))?;
    flag(&value, "is_success").map_err(|e| malformed(api, format!("shipping: {e}")))
}

/// What a re-read shows about a trade's shipping, read leniently: only ids and statuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeState {
    pub tid: String,
    pub status: String,
    pub lines: Vec<LineState>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineState {
    pub oid: String,
    pub status: Option<String>,
    /// A `consign_time` is set: this line left the seller.
    pub consigned: bool,
}

impl LineState {
    pub fn is_shipped(&self) -> bool {
        self.consigned || self.status.as_deref().is_some_and(is_shipped_status)
    }
}

pub fn trade_state(api: &str, reply: &HttpReply) -> Result<TradeState, ConnectorError> {
    let object = payload_object(api, reply)?;
    let raw = object.get("trade").ok_or_else(|| malformed(api, "no trade in the reply"))?;
    let value: Value = serde_json::from_str(raw.get()).map_err(|e| malformed(api, e))?;
    let read = || -> Result<TradeState, String> {
        let lines = value_list(get(&value, "orders"))
            .map_err(|e| format!("orders: {e}"))?
            .into_iter()
            .map(|line| {
                Ok(LineState {
                    oid: id(line, "oid")?,
                    status: opt_text(line, "status")?,
                    consigned: opt_time(line, "consign_time")?.is_some(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(TradeState { tid: id(&value, "tid")?, status: req_text(&value, "status")?, lines })
    };
    read().map_err(|e| malformed(api, format!("trade: {e}")))
}

/// `taobao.user.seller.get`: any `user` object proves the session works.
pub fn seller(api: &str, reply: &HttpReply) -> Result<(), ConnectorError> {
    let object = payload_object(api, reply)?;
    object.get("user").map(|_| ()).ok_or_else(|| malformed(api, "no user in the reply"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ok(body: &str) -> HttpReply {
        HttpReply { status: 200, body: body.into() }
    }

    #[test]
    fn root_names_follow_the_method() {
        assert_eq!(response_root("taobao.trades.sold.increment.get"), "trades_sold_increment_get_response");
        assert_eq!(response_root("tmall.item.quantity.update"), "tmall_item_quantity_update_response");
    }

    #[test]
    fn every_documented_status_maps() {
        let table = [
            ("WAIT_BUYER_PAY", false, OrderStatus::AwaitingPayment),
            ("TRADE_NO_CREATE_PAY", false, OrderStatus::AwaitingPayment),
            ("PAY_PENDING", false, OrderStatus::AwaitingPayment),
            ("WAIT_SELLER_SEND_GOODS", false, OrderStatus::Paid),
            ("WAIT_SELLER_SEND_GOODS", true, OrderStatus::Held),
            ("PAID_FORBID_CONSIGN", false, OrderStatus::Held),
            ("WAIT_PRE_AUTH_CONFIRM", false, OrderStatus::Held),
            ("SELLER_CONSIGNED_PART", false, OrderStatus::PartiallyShipped),
            ("WAIT_BUYER_CONFIRM_GOODS", false, OrderStatus::Shipped),
            ("TRADE_BUYER_SIGNED", false, OrderStatus::Shipped),
            ("TRADE_FINISHED", false, OrderStatus::Completed),
            ("TRADE_CLOSED", false, OrderStatus::Refunded),
            ("TRADE_CLOSED_BY_TAOBAO", false, OrderStatus::Cancelled),
        ];
        for (status, held, expected) in table {
            assert_eq!(order_status(status, held), Some(expected), "{status}");
        }
        assert_eq!(order_status("SOMETHING_NEW", false), None);
        assert_eq!(refund_state(Some("WAIT_BUYER_RETURN_GOODS")), RefundState::Requested);
        assert_eq!(refund_state(Some("SUCCESS")), RefundState::Refunded);
        assert_eq!(refund_state(Some("SELLER_REFUSE_BUYER")), RefundState::None);
        assert_eq!(refund_state(None), RefundState::None);
    }

    #[test]
    fn ids_are_exact_and_never_floats() {
        assert_eq!(id(&json!({"tid": 7091800003790954036u64}), "tid").unwrap(), "7091800003790954036");
        let both = serde_json::from_str::<Value>(r#"{"tid":1,"tid_str":"612055618715866263"}"#).unwrap();
        assert_eq!(id(&both, "tid").unwrap(), "612055618715866263");
        let float = serde_json::from_str::<Value>(r#"{"tid":7.091800003790954e18}"#).unwrap();
        assert!(id(&float, "tid").unwrap_err().starts_with("tid: expected an integer id"));
        assert_eq!(id(&json!({}), "tid").unwrap_err(), "tid: missing");
    }

    #[test]
    fn unknown_status_and_bad_money_are_quarantined_naming_the_field() {
        let trade = r#"{"tid":5,"status":"NEW_THING","created":"2026-11-11 00:00:00","modified":"2026-11-11 00:00:00","payment":"1.00","total_fee":"1.00","orders":[]}"#;
        assert_eq!(trade_reason(trade), "trade 5: status: unknown status \"NEW_THING\"");
        let trade = r#"{"tid":5,"status":"WAIT_BUYER_PAY","created":"2026-11-11 00:00:00","modified":"2026-11-11 00:00:00","payment":"1.005","total_fee":"1.00","orders":[{}]}"#;
        assert!(trade_reason(trade).starts_with("trade 5: payment: amount \"1.005\""));
        let trade = r#"{"tid":5,"status":"WAIT_BUYER_PAY","created":"2026-11-11 00:00:00","modified":"2026-11-11 00:00:00","payment":"1.00","total_fee":"1.00","orders":[{"oid":6,"num_iid":7,"num":"x","price":"1.00","payment":"1.00"}]}"#;
        assert_eq!(trade_reason(trade), "trade 5: orders[0].num: expected an integer, got \"x\"");
    }

    fn trade_reason(raw: &str) -> String {
        trade("taobao.trade.fullinfo.get", raw).unwrap_err().reason
    }

    #[test]
    fn personal_fields_never_echo_their_value_in_a_reason() {
        let raw = r#"{"tid":5,"status":"WAIT_BUYER_PAY","created":"2026-11-11 00:00:00","modified":"2026-11-11 00:00:00","payment":"1.00","total_fee":"1.00","receiver_mobile":{"n":"13812345678"},"orders":[]}"#;
        let reason = trade_reason(raw);
        assert_eq!(reason, "trade 5: receiver_mobile: expected text, got an object");
    }

    #[test]
    fn lists_come_flat_or_wrapped() {
        let flat =
            increment_page("taobao.trades.sold.increment.get", &ok(r#"{"total_results":"0"}"#)).unwrap();
        assert_eq!((flat.total_results, flat.rows.len()), (Some(0), 0));
        let wrapped = increment_page(
            "taobao.trades.sold.increment.get",
            &ok(r#"{"trades_sold_increment_get_response":{"has_next":true,"trades":{"trade":[{"tid":1,"modified":"2026-11-11 08:00:00"}]}}}"#),
        )
        .unwrap();
        assert_eq!((wrapped.total_results, wrapped.has_next), (None, Some(true)));
        let row = wrapped.rows[0].as_ref().unwrap();
        assert_eq!(row.modified, DateTime::parse_from_rfc3339("2026-11-11T00:00:00Z").unwrap());
    }

    #[test]
    fn item_quantities_read_skus() {
        let reply = ok(
            r#"{"item":{"num_iid":600000000123,"num":9,"skus":{"sku":[{"sku_id":5000000000042,"quantity":4,"outer_id":"A"},{"sku_id":"5000000000043","quantity":5}]}}}"#,
        );
        let item = item("taobao.item.seller.get", &reply).unwrap();
        assert_eq!(item.num, Some(9));
        assert_eq!(
            item.skus[0],
            SkuQuantity { sku_id: "5000000000042".into(), quantity: 4, outer_id: Some("A".into()) }
        );
        assert_eq!(item.skus[1].sku_id, "5000000000043");
    }
}
