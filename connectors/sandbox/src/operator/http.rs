//! The request pipeline: routing, the signature and replay checks, bans and injected faults,
//! the endpoint handlers, and how a reply (or a fault) goes out on the wire.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::faults::Fault;

use super::state::{State as Books, same_lines};
use super::{
    FulfilmentState, FulfilmentView, MAX_SHIPMENTS_LIMIT, OperatorSim, REPLAY_WINDOW_SECS, SimLine,
    SimNotice, endpoint, sign,
};

/// An answer before it meets the wire.
#[derive(Debug)]
struct Reply {
    status: u16,
    body: Value,
    retry_after: Option<u64>,
}

impl Reply {
    fn ok(body: Value) -> Self {
        Self { status: 200, body, retry_after: None }
    }

    fn error(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self { status, body: json!({"error": {"code": code, "message": message.into()}}), retry_after: None }
    }

    fn throttled(secs: u64) -> Self {
        let mut reply = Self::error(429, "throttled", format!("too many requests; retry after {secs} s"));
        reply.retry_after = Some(secs);
        reply
    }
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

#[derive(Debug)]
enum Route {
    Stock,
    Fulfilments,
    Withdraw { store_id: String, order_id: String },
    Shipments,
    Ping,
}

pub(crate) async fn handle(
    State(sim): State<OperatorSim>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = uri.path_and_query().map_or_else(|| uri.path().to_string(), |pq| pq.as_str().to_string());
    let (reply, wire) = sim.process(method.as_str(), &target, &headers, &body);
    let text = reply.body.to_string();
    match wire {
        Wire::Normal => render(&reply, text),
        Wire::Slow(delay) => {
            tokio::time::sleep(delay).await;
            render(&reply, text)
        }
        Wire::Drop => {
            let broken = futures::stream::iter([Err::<Bytes, std::io::Error>(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "operator sandbox dropped the connection",
            ))]);
            (StatusCode::OK, Body::from_stream(broken)).into_response()
        }
        Wire::Truncate => {
            let mut bytes = text.into_bytes();
            bytes.truncate(bytes.len() / 2);
            render_bytes(&reply, bytes)
        }
        Wire::Malformed => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html;charset=utf-8")],
            "<html><head><title>502 Bad Gateway</title></head><body>upstream error</body></html>",
        )
            .into_response(),
    }
}

fn render(reply: &Reply, text: String) -> Response {
    render_bytes(reply, text.into_bytes())
}

fn render_bytes(reply: &Reply, bytes: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    if let Some(secs) = reply.retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// Decodes `%XX` escapes of one path segment.
fn decode_segment(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn route(method: &str, path: &str) -> Result<(Route, &'static str), Reply> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (route, name, wanted) = match segments.as_slice() {
        ["v1", "stock"] => (Route::Stock, endpoint::STOCK, "GET"),
        ["v1", "fulfilments"] => (Route::Fulfilments, endpoint::FULFILMENTS, "POST"),
        ["v1", "fulfilments", store, order, "withdraw"] => {
            let (Some(store_id), Some(order_id)) = (decode_segment(store), decode_segment(order)) else {
                return Err(Reply::error(
                    400,
                    "bad_request",
                    "store_id or order_id is not valid percent-encoded utf-8",
                ));
            };
            (Route::Withdraw { store_id, order_id }, endpoint::WITHDRAW, "POST")
        }
        ["v1", "shipments"] => (Route::Shipments, endpoint::SHIPMENTS, "GET"),
        ["v1", "ping"] => (Route::Ping, endpoint::PING, "GET"),
        _ => return Err(Reply::error(404, "not_found", format!("no endpoint {path}"))),
    };
    if method != wanted {
        return Err(Reply::error(405, "method_not_allowed", format!("{path} takes {wanted}")));
    }
    Ok((route, name))
}

fn header_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

/// Key, timestamp window, nonce shape, signature, then replay; a nonce is remembered only
/// once the signature holds, so a forged request cannot burn one.
fn authenticate(
    books: &mut Books,
    method: &str,
    target: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), Reply> {
    let mut values = Vec::new();
    for name in ["X-Flagsync-Key", "X-Flagsync-Timestamp", "X-Flagsync-Nonce", "X-Flagsync-Signature"] {
        match header_value(headers, name) {
            Some(value) => values.push(value),
            None => return Err(Reply::error(401, "missing_header", format!("header {name} is required"))),
        }
    }
    let [key, timestamp, nonce, signature] = values[..] else {
        return Err(Reply::error(401, "missing_header", "signing headers are required"));
    };
    if key != books.config.key_id {
        return Err(Reply::error(401, "unknown_key", "unknown key id"));
    }
    let Ok(ts) = timestamp.parse::<i64>() else {
        return Err(Reply::error(401, "bad_timestamp", "X-Flagsync-Timestamp must be unix seconds"));
    };
    let now_secs = now.timestamp();
    if (ts - now_secs).abs() > REPLAY_WINDOW_SECS {
        return Err(Reply::error(
            401,
            "stale_timestamp",
            format!("timestamp {ts} is more than {REPLAY_WINDOW_SECS} s from the server's {now_secs}"),
        ));
    }
    if !(8..=64).contains(&nonce.len()) || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Reply::error(401, "bad_nonce", "X-Flagsync-Nonce must be 8 to 64 hex digits"));
    }
    if !sign::verify(&books.config.secret, method, target, timestamp, nonce, body, signature) {
        return Err(Reply::error(401, "bad_signature", "signature does not match"));
    }
    books.prune_nonces(now_secs, REPLAY_WINDOW_SECS);
    if books.nonces.contains_key(nonce) {
        return Err(Reply::error(401, "replayed_nonce", "nonce already used within the window"));
    }
    books.nonces.insert(nonce.to_string(), ts);
    Ok(())
}

impl OperatorSim {
    fn process(&self, method: &str, target: &str, headers: &HeaderMap, body: &[u8]) -> (Reply, Wire) {
        let now = self.inner.clock.now();
        let mut books = self.lock();
        books.apply_due(now);
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let routed = route(method, path);
        let name = routed.as_ref().map_or("unknown", |(_, name)| *name);
        *books.calls.entry(name.to_string()).or_default() += 1;
        let route = match routed {
            Ok((route, _)) => route,
            Err(reply) => return (reply, Wire::Normal),
        };
        if let Err(reply) = authenticate(&mut books, method, target, headers, body, now) {
            return (reply, Wire::Normal);
        }
        if let Some(until) = books.bans.get(name).filter(|until| **until > now) {
            let left = (*until - now).num_milliseconds();
            return (Reply::throttled(u64::try_from((left + 999) / 1000).unwrap_or(1)), Wire::Normal);
        }
        let mut wire = Wire::Normal;
        let mut corrupt = false;
        match self.inner.faults.next(name) {
            None
            | Some(Fault::ShuffleDuringPaging { .. } | Fault::DuplicatePage | Fault::LateModified { .. }) => {
            }
            Some(Fault::Throttle { ban_secs }) => {
                let ban = TimeDelta::seconds(i64::try_from(ban_secs).unwrap_or(i64::MAX / 2_000));
                books.bans.insert(name, now + ban);
                return (Reply::throttled(ban_secs), Wire::Normal);
            }
            Some(Fault::RemoteTimeout) => {
                return (Reply::error(504, "upstream_timeout", "inventory back end timed out"), Wire::Normal);
            }
            Some(Fault::ServiceRejection | Fault::TransientBusiness) => {
                return (Reply::error(503, "unavailable", "busy, try again"), Wire::Normal);
            }
            Some(Fault::SessionExpired) => {
                return (Reply::error(401, "key_revoked", "key id revoked"), Wire::Normal);
            }
            Some(Fault::DropConnection) => return (Reply::ok(Value::Null), Wire::Drop),
            Some(Fault::Malformed) => return (Reply::ok(Value::Null), Wire::Malformed),
            Some(Fault::Slow(delay)) => wire = Wire::Slow(delay),
            Some(Fault::ApplyThenDrop) => wire = Wire::Drop,
            Some(Fault::Truncated) => wire = Wire::Truncate,
            Some(Fault::CorruptRecord) => corrupt = true,
        }
        tracing::debug!(endpoint = name, "operator sandbox call");
        let mut reply = match route {
            Route::Stock => stock(&books, query),
            Route::Fulfilments => submit(&mut books, body, now),
            Route::Withdraw { store_id, order_id } => withdraw(&mut books, &store_id, &order_id, body),
            Route::Shipments => shipments(&books, query),
            Route::Ping => Reply::ok(json!({"ok": true})),
        };
        if corrupt && reply.status == 200 {
            spoil(&mut reply.body);
        }
        (reply, wire)
    }
}

/// Gives one record a field of the wrong type.
fn spoil(body: &mut Value) {
    if let Some(level) = body.pointer_mut("/levels/0/on_hand") {
        *level = Value::String(level.to_string());
    } else if let Some(sequence) = body.pointer_mut("/notices/0/sequence") {
        *sequence = Value::String(sequence.to_string());
    } else if let Some(result) = body.get_mut("result") {
        *result = json!(1);
    } else if let Some(watermark) = body.get_mut("watermark") {
        *watermark = Value::String(watermark.to_string());
    }
}

fn query_number(query: &str, name: &str) -> Result<Option<i64>, Reply> {
    let Some((_, value)) = form_urlencoded::parse(query.as_bytes()).find(|(n, _)| n == name) else {
        return Ok(None);
    };
    match value.parse::<i64>() {
        Ok(n) if n >= 0 => Ok(Some(n)),
        _ => Err(Reply::error(400, "bad_request", format!("{name}: {value:?} is not a whole number >= 0"))),
    }
}

fn stock(books: &Books, query: &str) -> Reply {
    let since = match query_number(query, "since") {
        Ok(since) => since,
        Err(reply) => return reply,
    };
    if let Some(since) = since
        && since > books.watermark
    {
        return Reply::error(
            409,
            "watermark_ahead",
            format!(
                "since={since} is ahead of the current watermark {}; take a full snapshot",
                books.watermark
            ),
        );
    }
    let changed = |at: i64| since.is_none_or(|since| at > since);
    let levels: Vec<Value> = books
        .levels
        .iter()
        .filter(|(_, level)| changed(level.changed_at))
        .map(|((sku, warehouse), level)| json!({"sku": sku, "warehouse": warehouse, "on_hand": level.value}))
        .collect();
    let resources: Vec<Value> = books
        .resources
        .iter()
        .filter(|(_, level)| changed(level.changed_at))
        .map(|((kind, code), level)| json!({"kind": kind.as_str(), "code": code, "available": level.value}))
        .collect();
    Reply::ok(
        json!({"watermark": books.watermark, "full": since.is_none(), "levels": levels, "resources": resources}),
    )
}

#[derive(Deserialize)]
struct WireLine {
    line_id: String,
    operator_sku: String,
    quantity: i64,
}

#[derive(Deserialize)]
struct WireContract {
    #[serde(default)]
    plan_code: String,
}

#[derive(Deserialize)]
struct WireReceiver {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct WireRequest {
    store_id: String,
    order_id: String,
    platform: String,
    lines: Vec<WireLine>,
    #[serde(default)]
    receiver: Option<WireReceiver>,
    #[serde(default)]
    contract: Option<WireContract>,
    #[serde(default)]
    number_pool: Option<String>,
}

fn submit(books: &mut Books, body: &[u8], now: DateTime<Utc>) -> Reply {
    let request: WireRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(e) => {
            // Only the position: the body holds personal data.
            let at = format!("line {} column {}", e.line(), e.column());
            return Reply::error(400, "bad_request", format!("body is not a fulfilment request ({at})"));
        }
    };
    let problem = if request.store_id.trim().is_empty() {
        Some("store_id: empty".to_string())
    } else if request.order_id.trim().is_empty() {
        Some("order_id: empty".to_string())
    } else if request.lines.is_empty() {
        Some("lines: empty".to_string())
    } else {
        request.lines.iter().enumerate().find_map(|(i, line)| {
            if line.line_id.trim().is_empty() || line.operator_sku.trim().is_empty() {
                Some(format!("lines[{i}]: line_id and operator_sku are required"))
            } else if line.quantity <= 0 {
                Some(format!("lines[{i}].quantity: {} is not positive", line.quantity))
            } else if request.lines[..i].iter().any(|other| other.line_id == line.line_id) {
                Some(format!("lines[{i}].line_id: {} appears twice", line.line_id))
            } else {
                None
            }
        })
    };
    if let Some(problem) = problem {
        return Reply::error(422, "invalid_request", problem);
    }
    let lines: Vec<SimLine> = request
        .lines
        .iter()
        .map(|l| SimLine { line_id: l.line_id.clone(), sku: l.operator_sku.clone(), quantity: l.quantity })
        .collect();
    if let Some(index) = books.find(&request.store_id, &request.order_id) {
        let existing = &mut books.fulfilments[index];
        if !same_lines(&existing.lines, &lines) {
            return Reply::error(409, "conflict", "this order was accepted with different lines");
        }
        if matches!(existing.state, FulfilmentState::Withdrawn { .. }) {
            return Reply::error(409, "withdrawn", "this order was withdrawn and will not ship");
        }
        existing.submissions += 1;
        return Reply::ok(json!({"result": "already_accepted"}));
    }
    books.fulfilments.push(FulfilmentView {
        store_id: request.store_id,
        order_id: request.order_id,
        platform: request.platform,
        lines,
        plan_code: request.contract.map(|c| c.plan_code).filter(|c| !c.is_empty()),
        number_pool: request.number_pool.filter(|p| !p.is_empty()),
        has_receiver: request.receiver.is_some_and(|r| !r.name.is_empty()),
        accepted_at: now,
        submissions: 1,
        state: FulfilmentState::Pending,
    });
    Reply::ok(json!({"result": "accepted"}))
}

#[derive(Deserialize)]
struct WireWithdraw {
    #[serde(default)]
    reason: String,
}

fn withdraw(books: &mut Books, store_id: &str, order_id: &str, body: &[u8]) -> Reply {
    let Ok(WireWithdraw { reason }) = serde_json::from_slice::<WireWithdraw>(body) else {
        return Reply::error(400, "bad_request", "body must be {\"reason\": \"...\"}");
    };
    let Some(index) = books.find(store_id, order_id) else {
        return Reply::ok(json!({"result": "not_found"}));
    };
    let fulfilment = &mut books.fulfilments[index];
    let result = match fulfilment.state {
        FulfilmentState::Pending => {
            fulfilment.state = FulfilmentState::Withdrawn { reason };
            "withdrawn"
        }
        FulfilmentState::Withdrawn { .. } => "not_found",
        FulfilmentState::Shipped { .. } => "already_shipped",
    };
    Reply::ok(json!({"result": result}))
}

fn notice_json(notice: &SimNotice) -> Value {
    let serials: Vec<Value> = notice
        .serials
        .iter()
        .map(|(line_id, serials)| json!({"line_id": line_id, "serials": serials}))
        .collect();
    json!({
        "notice_id": notice.notice_id,
        "sequence": notice.sequence,
        "store_id": notice.store_id,
        "order_id": notice.order_id,
        "line_ids": notice.line_ids,
        "carrier": notice.carrier,
        "waybill": notice.waybill,
        "serials": serials,
        "shipped_at": notice.shipped_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        "stock_watermark": notice.stock_watermark,
        "corrects": notice.corrects,
    })
}

fn shipments(books: &Books, query: &str) -> Reply {
    let since = match query_number(query, "since") {
        Ok(since) => since.unwrap_or(0),
        Err(reply) => return reply,
    };
    let limit = match query_number(query, "limit") {
        Ok(None) => 100,
        Ok(Some(n)) if (1..=MAX_SHIPMENTS_LIMIT as i64).contains(&n) => n as usize,
        Ok(Some(n)) => {
            return Reply::error(
                400,
                "bad_request",
                format!("limit: {n} is outside 1..={MAX_SHIPMENTS_LIMIT}"),
            );
        }
        Err(reply) => return reply,
    };
    let page: Vec<&SimNotice> = books.notices.iter().filter(|n| n.sequence > since).take(limit).collect();
    let watermark = page.last().map_or(since, |n| n.sequence);
    let notices: Vec<Value> = page.into_iter().map(notice_json).collect();
    Reply::ok(json!({"notices": notices, "watermark": watermark}))
}
