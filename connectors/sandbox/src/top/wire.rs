//! TOP wire conventions: the error envelope, success roots (wrapped or `simplify=true`),
//! Beijing-time strings, yuan strings, request parameters and `fields` selection.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, FixedOffset, NaiveDateTime, Utc};
use serde_json::{Map, Value, json};

/// One `error_response`, before the request id is added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopError {
    pub code: i64,
    pub msg: String,
    pub sub_code: Option<String>,
    pub sub_msg: Option<String>,
}

impl TopError {
    pub fn new(code: i64, msg: &str) -> Self {
        Self { code, msg: msg.to_string(), sub_code: None, sub_msg: None }
    }

    pub fn sub(mut self, sub_code: &str, sub_msg: impl Into<String>) -> Self {
        self.sub_code = Some(sub_code.to_string());
        self.sub_msg = Some(sub_msg.into());
        self
    }

    /// Code 40, naming the argument.
    pub fn missing(param: &str) -> Self {
        Self::new(40, &format!("Missing required arguments:{param}"))
            .sub("isv.missing-parameter", format!("{param} is required"))
    }

    /// Code 41, naming the argument and what is wrong with it.
    pub fn invalid(param: &str, why: impl Into<String>) -> Self {
        Self::new(41, &format!("Invalid arguments:{param}")).sub("isv.invalid-parameter", why)
    }

    /// Code 15, a business error from the service behind the gateway.
    pub fn business(sub_code: &str, sub_msg: impl Into<String>) -> Self {
        Self::new(15, "Remote service error").sub(sub_code, sub_msg)
    }

    /// Code 15 with `isv.logistics-offline-service-error:<code>`.
    pub fn shipping(code: &str, sub_msg: impl Into<String>) -> Self {
        Self::business(&format!("isv.logistics-offline-service-error:{code}"), sub_msg)
    }

    /// Code 7 for a ban with `secs` seconds left.
    pub fn throttled(secs: i64) -> Self {
        Self::new(7, "App Call Limited").sub(
            "accesscontrol.limited-by-api-access-count",
            format!("This ban will last for {secs} more seconds"),
        )
    }

    pub fn invalid_session() -> Self {
        Self::new(27, "Invalid session")
            .sub("invalid-sessionkey", "非法或过期的SessionKey参数，请使用有效的SessionKey参数")
    }

    pub fn body(&self, request_id: &str) -> Value {
        let mut inner = Map::new();
        inner.insert("code".into(), json!(self.code));
        inner.insert("msg".into(), json!(self.msg));
        if let Some(sub_code) = &self.sub_code {
            inner.insert("sub_code".into(), json!(sub_code));
        }
        if let Some(sub_msg) = &self.sub_msg {
            inner.insert("sub_msg".into(), json!(sub_msg));
        }
        inner.insert("request_id".into(), json!(request_id));
        json!({ "error_response": inner })
    }
}

/// `taobao.trades.sold.increment.get` -> `trades_sold_increment_get_response`.
pub fn root_name(method: &str) -> String {
    let bare = method.strip_prefix("taobao.").unwrap_or(method);
    format!("{}_response", bare.replace('.', "_"))
}

/// Whether the reply is flattened (`simplify=true`) or mirrors the XML (lists wrapped twice).
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub simplify: bool,
}

impl Shape {
    /// A list: a plain array when simplified, `{"<item>": [...]}` otherwise.
    pub fn list(&self, item: &str, items: Vec<Value>) -> Value {
        if self.simplify { Value::Array(items) } else { json!({ item: items }) }
    }

    pub fn success(&self, method: &str, mut inner: Map<String, Value>, request_id: &str) -> Value {
        inner.insert("request_id".into(), json!(request_id));
        if self.simplify { Value::Object(inner) } else { json!({ root_name(method): inner }) }
    }
}

const BEIJING: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(offset) => offset,
    None => panic!("+08:00 is a valid offset"),
};

const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// `yyyy-MM-dd HH:mm:ss` in Beijing time.
pub fn fmt_time(at: DateTime<Utc>) -> String {
    at.with_timezone(&BEIJING).format(TIME_FORMAT).to_string()
}

/// Parses `yyyy-MM-dd HH:mm:ss` as Beijing time.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let naive = NaiveDateTime::parse_from_str(text.trim(), TIME_FORMAT).ok()?;
    naive.and_local_timezone(BEIJING).single().map(|t| t.with_timezone(&Utc))
}

/// Fen as a yuan string with two decimals: 199900 -> "1999.00".
pub fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let abs = fen.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// The request's parameters (query and form merged), empty values dropped as the official
/// SDKs drop them before signing.
#[derive(Debug, Clone, Default)]
pub struct Params(pub BTreeMap<String, String>);

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    pub fn required(&self, name: &str) -> Result<&str, TopError> {
        self.get(name).ok_or_else(|| TopError::missing(name))
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, TopError> {
        self.get(name)
            .map(|v| {
                v.trim()
                    .parse::<i64>()
                    .map_err(|_| TopError::invalid(name, format!("{name} must be an integer")))
            })
            .transpose()
    }

    pub fn required_int(&self, name: &str) -> Result<i64, TopError> {
        self.int(name)?.ok_or_else(|| TopError::missing(name))
    }

    pub fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some("true" | "1"))
    }

    pub fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>, TopError> {
        self.get(name)
            .map(|v| {
                parse_time(v)
                    .ok_or_else(|| TopError::invalid(name, format!("{name} must be yyyy-MM-dd HH:mm:ss")))
            })
            .transpose()
    }
}

/// The `fields` parameter: trade (or item) field names, plus `orders` / `orders.<field>`
/// selecting sub-order fields.
#[derive(Debug, Clone, Default)]
pub struct Fields {
    top: BTreeSet<String>,
    orders: Option<BTreeSet<String>>,
}

impl Fields {
    pub fn parse(text: &str) -> Self {
        let mut fields = Self::default();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "orders" {
                fields.orders = Some(BTreeSet::new());
            } else if let Some(order_field) = name.strip_prefix("orders.") {
                fields.orders.get_or_insert_with(BTreeSet::new).insert(order_field.to_string());
            } else {
                fields.top.insert(name.to_string());
            }
        }
        fields
    }

    pub fn wants(&self, name: &str) -> bool {
        self.top.contains(name)
    }

    /// Keeps only the requested keys; `tid_str`/`oid_str`/... ride along with their number.
    pub fn select(&self, full: Map<String, Value>) -> Map<String, Value> {
        select(full, &self.top)
    }

    /// Whether [`Self::select`] keeps a top-level `key`.
    pub fn keeps(&self, key: &str) -> bool {
        keeps(&self.top, key)
    }

    /// Whether a sub-order `key` was requested: every key when only `orders` was named.
    pub fn keeps_order(&self, key: &str) -> bool {
        match &self.orders {
            Some(set) if !set.is_empty() => keeps(set, key),
            Some(_) => true,
            None => false,
        }
    }

    pub fn wants_orders(&self) -> bool {
        self.orders.is_some()
    }
}

fn select(mut full: Map<String, Value>, keep: &BTreeSet<String>) -> Map<String, Value> {
    full.retain(|key, _| keeps(keep, key));
    full
}

fn keeps(keep: &BTreeSet<String>, key: &str) -> bool {
    keep.contains(key) || key.strip_suffix("_str").is_some_and(|number| keep.contains(number))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn times_are_beijing_and_round_trip() {
        let at = parse_time("2026-11-01 08:00:00").unwrap();
        assert_eq!(at.to_rfc3339(), "2026-11-01T00:00:00+00:00");
        assert_eq!(fmt_time(at), "2026-11-01 08:00:00");
        assert!(parse_time("2026-11-01T08:00:00").is_none());
    }

    #[test]
    fn root_names_follow_the_method() {
        assert_eq!(root_name("taobao.trades.sold.increment.get"), "trades_sold_increment_get_response");
        assert_eq!(root_name("tmall.item.quantity.update"), "tmall_item_quantity_update_response");
        assert_eq!(yuan(199_900), "1999.00");
        assert_eq!(yuan(5), "0.05");
    }
}
