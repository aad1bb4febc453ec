//! The `/routerjson` request pipeline: reading GET/POST parameters, the gateway checks in
//! JD's order and codes, fault injection, dispatch to the API handlers, and how a reply
//! (or a fault) goes out on the wire.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value};

use crate::faults::Fault;

use super::state::State as Store;
use super::wire::{gateway_error, parse_time};
use super::{JosSandbox, orders, shipment, sign, stock};

/// Skew JD tolerates between the request timestamp and its own clock.
const MAX_SKEW: TimeDelta = TimeDelta::minutes(6);

pub(crate) const ORDER_SEARCH: &str = "jingdong.pop.order.search";
pub(crate) const ORDER_GET: &str = "jingdong.pop.order.get";
pub(crate) const STOCK_UPDATE: &str = "jingdong.stock.write.updateSkuStock";
pub(crate) const STOCK_SET: &str = "jingdong.ware.stock.sku.set";
pub(crate) const STOCK_QUERY: &str = "jingdong.ware.stock.sku.query";
pub(crate) const SHIPMENT: &str = "jingdong.pop.order.shipment";
pub(crate) const LOGISTICS: &str = "jingdong.delivery.logistics.get";

const METHODS: &[&str] =
    &[ORDER_SEARCH, ORDER_GET, STOCK_UPDATE, STOCK_SET, STOCK_QUERY, SHIPMENT, LOGISTICS];

/// Mutating methods: back-end trouble shows up as business 999999, not a gateway error.
fn is_write(method: &str) -> bool {
    matches!(method, STOCK_UPDATE | STOCK_SET | SHIPMENT)
}

/// What one call asks of a handler beyond its parameters.
#[derive(Debug)]
pub(crate) struct Call<'a> {
    pub(crate) method: &'a str,
    pub(crate) params: &'a Value,
    pub(crate) now: DateTime<Utc>,
    /// Answer with the method's business "try again" failure; change nothing.
    pub(crate) transient: bool,
    /// Spoil one record's field type in the reply.
    pub(crate) corrupt: bool,
    /// Orders to move to `modified = now` before answering a search page.
    pub(crate) shuffle: usize,
    /// A search page repeats its first record (offset paging over a moving list).
    pub(crate) duplicate: bool,
    /// Orders modified this recently are not in a search reply yet (a lagging index).
    pub(crate) late: Option<Duration>,
}

/// How a reply leaves.
#[derive(Debug)]
enum Wire {
    Normal,
    Slow(Duration),
    Drop,
    Truncate,
    Malformed,
}

pub(crate) async fn handle(
    State(sandbox): State<JosSandbox>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let mut params: Vec<(String, String)> = Vec::new();
    if let Some(query) = query {
        params.extend(form_urlencoded::parse(query.as_bytes()).into_owned());
    }
    if !body.is_empty() {
        params.extend(form_urlencoded::parse(&body).into_owned());
    }
    let (reply, wire) = sandbox.process(&params);
    let text = reply.to_string();
    match wire {
        Wire::Normal => json_response(text),
        Wire::Slow(delay) => {
            tokio::time::sleep(delay).await;
            json_response(text)
        }
        Wire::Drop => {
            let broken = futures::stream::iter([Err::<Bytes, std::io::Error>(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "sandbox dropped the connection",
            ))]);
            (StatusCode::OK, Body::from_stream(broken)).into_response()
        }
        Wire::Truncate => {
            let mut bytes = text.into_bytes();
            bytes.truncate(bytes.len() / 2);
            let mut response = Response::new(Body::from(bytes));
            set_json_type(&mut response);
            response
        }
        Wire::Malformed => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html;charset=utf-8")],
            "<html><head><title>502 Bad Gateway</title></head><body>系统繁忙</body></html>",
        )
            .into_response(),
    }
}

fn set_json_type(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json;charset=utf-8"));
}

fn json_response(text: String) -> Response {
    let mut response = Response::new(Body::from(text));
    set_json_type(&mut response);
    response
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

impl JosSandbox {
    fn process(&self, params: &[(String, String)]) -> (Value, Wire) {
        let now = self.inner.clock.now();
        let mut state = self.lock();
        state.apply_due(now);
        let method = param(params, "method").unwrap_or("");
        *state.calls.entry(method.to_string()).or_default() += 1;
        if let Err(error) = check(&state, params, now) {
            return (error, Wire::Normal);
        }
        let banned = state.bans.get(method).is_some_and(|until| *until > now);
        if banned {
            return (call_limited(), Wire::Normal);
        }
        if let Some(limit) = state.config.calls_per_second {
            let second = now.timestamp();
            if state.rate_window.0 != second {
                state.rate_window = (second, 0);
            }
            if state.rate_window.1 >= limit {
                return (gateway_error("32", "操作太频繁", "Call Too Frequently"), Wire::Normal);
            }
            state.rate_window.1 += 1;
        }
        let business = match param(params, "360buy_param_json").filter(|v| !v.is_empty()) {
            None => Value::Object(Map::new()),
            Some(text) => match serde_json::from_str::<Value>(text) {
                Ok(value @ Value::Object(_)) => value,
                _ => {
                    return (
                        gateway_error(
                            "60",
                            "360buy_param_json参数不是合法的JSON对象",
                            "360buy_param_json is not a JSON object",
                        ),
                        Wire::Normal,
                    );
                }
            },
        };
        let mut call = Call {
            method,
            params: &business,
            now,
            transient: false,
            corrupt: false,
            shuffle: 0,
            duplicate: false,
            late: None,
        };
        let mut wire = Wire::Normal;
        match self.inner.faults.next(method) {
            None => {}
            Some(Fault::DuplicatePage) => call.duplicate = true,
            Some(Fault::LateModified { lag }) => call.late = Some(lag),
            Some(Fault::Throttle { ban_secs }) => {
                let until = now + TimeDelta::seconds(i64::try_from(ban_secs).unwrap_or(i64::MAX / 2_000));
                state.bans.insert(method.to_string(), until);
                return (call_limited(), Wire::Normal);
            }
            Some(Fault::SessionExpired) => return (token_error(), Wire::Normal),
            Some(Fault::RemoteTimeout) => {
                return (
                    gateway_error("66", "平台连接后端服务超时", "isp.remote-service-timeout"),
                    Wire::Normal,
                );
            }
            Some(Fault::ServiceRejection) if !is_write(method) => {
                return (
                    gateway_error("67", "平台连接后端服务不可用", "isp.remote-service-unavailable"),
                    Wire::Normal,
                );
            }
            Some(Fault::ServiceRejection | Fault::TransientBusiness) => call.transient = true,
            Some(Fault::Slow(delay)) => wire = Wire::Slow(delay),
            Some(Fault::DropConnection) => return (Value::Null, Wire::Drop),
            Some(Fault::Malformed) => return (Value::Null, Wire::Malformed),
            Some(Fault::ApplyThenDrop) => wire = Wire::Drop,
            Some(Fault::Truncated) => wire = Wire::Truncate,
            Some(Fault::CorruptRecord) => call.corrupt = true,
            Some(Fault::ShuffleDuringPaging { orders }) => call.shuffle = orders,
        }
        tracing::debug!(method, "jos sandbox call");
        (dispatch(&mut state, &call), wire)
    }
}

fn dispatch(state: &mut Store, call: &Call<'_>) -> Value {
    match call.method {
        ORDER_SEARCH => orders::search(state, call),
        ORDER_GET => orders::get(state, call),
        STOCK_UPDATE => stock::update_sku_stock(state, call),
        STOCK_SET => stock::sku_set(state, call),
        STOCK_QUERY => stock::sku_query(state, call),
        SHIPMENT => shipment::ship(state, call),
        LOGISTICS => shipment::logistics(call),
        // `check` refused every other method already.
        other => gateway_error("15", "不存在的方法名", &format!("Invalid Method: {other}")),
    }
}

fn call_limited() -> Value {
    gateway_error("2", "限制时间内调用失败次数", "App Call Limited")
}

fn token_error() -> Value {
    gateway_error("19", "token已过期或者不存在，请重新授权访问", "Invalid access_token")
}

/// The gateway's own checks, before any API runs. Secrets never appear in the answers.
fn check(state: &Store, params: &[(String, String)], now: DateTime<Utc>) -> Result<(), Value> {
    let config = &state.config;
    let method = param(params, "method").filter(|m| !m.is_empty());
    let Some(method) = method else {
        return Err(gateway_error("14", "缺少方法名参数", "Missing Method"));
    };
    if !METHODS.contains(&method) {
        return Err(gateway_error("15", "不存在的方法名", "Invalid Method"));
    }
    match param(params, "app_key").filter(|k| !k.is_empty()) {
        None => return Err(gateway_error("9", "缺少AppKey参数", "Missing App Key")),
        Some(key) if key != config.app_key => {
            return Err(gateway_error("10", "无效的AppKey参数", "Invalid App Key"));
        }
        Some(_) => {}
    }
    let Some(timestamp) = param(params, "timestamp").filter(|t| !t.is_empty()) else {
        return Err(gateway_error("7", "缺少时间戳参数", "Missing Timestamp"));
    };
    match parse_time(timestamp) {
        Some(at) if (at - now).abs() <= MAX_SKEW => {}
        _ => return Err(gateway_error("8", "非法的时间戳参数", "Invalid Timestamp")),
    }
    match param(params, "v").filter(|v| !v.is_empty()) {
        None => return Err(gateway_error("4", "缺少版本参数", "Missing Version")),
        Some("2.0") => {}
        Some(_) => return Err(gateway_error("5", "不支持的版本号", "Unsupported Version")),
    }
    let Some(sent) = param(params, "sign").filter(|s| !s.is_empty()) else {
        return Err(gateway_error("11", "缺少签名参数", "Missing Signature"));
    };
    let expected = sign::sign(&config.app_secret, params.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    // Exact: JD documents upper-case hex, and a client sending lower case should fail here.
    if sent != expected {
        return Err(gateway_error("12", "无效签名", "Invalid Signature"));
    }
    let token_ok = param(params, "access_token").is_some_and(|t| t == config.access_token)
        && config.token_expires_at.is_none_or(|expiry| now < expiry);
    if !token_ok {
        return Err(token_error());
    }
    Ok(())
}
