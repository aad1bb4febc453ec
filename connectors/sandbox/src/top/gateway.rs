//! The `/router/rest` endpoint: parameter collection (query and form), protocol checks in the
//! platform's order of codes, flow control, fault rendering and dispatch to the API modules;
//! and the batch endpoint `/router/batch`, which carries several calls in one signed body and
//! puts each through the same per-call path.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value};

use super::sign::{self, SignMethod};
use super::store;
use super::wire::{Params, Shape, TopError, parse_time};
use super::{TopConfig, TopSandbox, logistics, stock, trades};
use crate::faults::Fault;

mod batch;

pub use batch::{BATCH_COUNTER, MAX_BATCH_CALLS};

/// Every method served, and whether it needs the seller's `session` (需要授权).
const METHODS: &[(&str, bool)] = &[
    ("taobao.trades.sold.increment.get", true),
    ("taobao.trades.sold.get", true),
    ("taobao.trade.fullinfo.get", true),
    ("taobao.trade.wtvertical.get", true),
    ("taobao.refunds.receive.get", true),
    ("taobao.item.seller.get", true),
    ("taobao.items.onsale.get", true),
    ("taobao.item.quantity.update", true),
    ("taobao.skus.quantity.update", true),
    ("taobao.logistics.offline.send", true),
    ("taobao.logistics.companies.get", false),
    ("taobao.user.seller.get", true),
];

/// Largest accepted difference between `timestamp` and the sandbox clock.
const MAX_SKEW: TimeDelta = TimeDelta::minutes(10);

pub(super) fn router(sandbox: TopSandbox) -> Router {
    Router::new()
        .route("/router/rest", get(handle).post(handle))
        .route("/router/batch", post(batch::handle))
        .with_state(sandbox)
}

/// What one API call sees besides its parameters.
pub(super) struct Ctx {
    pub now: DateTime<Utc>,
    pub shape: Shape,
    pub fault: Option<Fault>,
}

impl Ctx {
    pub fn corrupt(&self) -> bool {
        self.fault == Some(Fault::CorruptRecord)
    }
}

struct Call {
    method: String,
    params: Params,
    shape: Shape,
}

enum Outcome {
    Json(String),
    Truncated(Vec<u8>),
    Malformed,
    Drop,
}

enum Step {
    Done(Outcome),
    SleepThenRun(Duration, Call),
}

async fn handle(
    State(sandbox): State<TopSandbox>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = collect_params(query.as_deref(), &headers, &body);
    let step = {
        let mut state = sandbox.lock();
        first_step(&sandbox, &mut state, params)
    };
    let outcome = match step {
        Step::Done(outcome) => outcome,
        Step::SleepThenRun(delay, call) => {
            tokio::time::sleep(delay).await;
            let mut state = sandbox.lock();
            let now = sandbox.inner.clock.now();
            state.apply_due(&sandbox.inner.config, now);
            Outcome::Json(run(&sandbox, &mut state, &call, None))
        }
    };
    render(outcome)
}

/// Query parameters plus a form body; the official Java SDK sends the common parameters in
/// the query and the business ones in the body, so both count.
fn collect_params(query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Params {
    let mut params = BTreeMap::new();
    if let Some(query) = query {
        params.extend(form_urlencoded::parse(query.as_bytes()).into_owned());
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let is_form = content_type.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded");
    if !body.is_empty() && (is_form || content_type.is_empty()) {
        params.extend(form_urlencoded::parse(body).into_owned());
    }
    Params(params)
}

fn first_step(sandbox: &TopSandbox, state: &mut store::State, params: Params) -> Step {
    let config = &sandbox.inner.config;
    let now = sandbox.inner.clock.now();
    state.apply_due(config, now);
    let call = match check(config, now, params) {
        Ok(call) => call,
        Err(error) => return Step::Done(Outcome::Json(error_body(state, &error))),
    };
    match attempt(sandbox, state, now, &call) {
        Attempt::Reply(reply) => Step::Done(Outcome::Json(reply)),
        Attempt::Slow(delay) => Step::SleepThenRun(delay, call),
        Attempt::Drop => Step::Done(Outcome::Drop),
        Attempt::Truncated(reply) => {
            let mut body = reply.into_bytes();
            body.truncate(body.len() / 2);
            Step::Done(Outcome::Truncated(body))
        }
        Attempt::Malformed => Step::Done(Outcome::Malformed),
    }
}

/// What became of one call past the protocol checks, once flow control and its fault are
/// applied. The faults that concern the HTTP exchange are left to the endpoint to render.
enum Attempt {
    /// The call's reply: its result, or its refusal by flow control or by a per-call fault.
    Reply(String),
    /// The reply comes after this delay; the call has not run yet.
    Slow(Duration),
    /// The connection drops (for `ApplyThenDrop`, after the call ran).
    Drop,
    /// The call ran and this is its reply, but the HTTP body is to be cut in half.
    Truncated(String),
    /// A proxy error page instead of the gateway's reply: the call never reached the service.
    Malformed,
}

/// The per-call path shared by `/router/rest` and `/router/batch`: counts the call under its
/// method, applies the method's ban and the per-app `calls_per_second` limit, draws the call's
/// fault and runs it.
fn attempt(sandbox: &TopSandbox, state: &mut store::State, now: DateTime<Utc>, call: &Call) -> Attempt {
    let config = &sandbox.inner.config;
    state.count(call.method.clone());

    if let Some(until) = state.bans.get(&call.method).copied().filter(|until| *until > now) {
        let secs = (until - now).num_milliseconds().saturating_add(999) / 1000;
        return Attempt::Reply(error_body(state, &TopError::throttled(secs)));
    }
    if let Some(limit) = config.calls_per_second {
        let second = now.timestamp();
        if state.rate_window.0 != second {
            state.rate_window = (second, 0);
        }
        if state.rate_window.1 >= limit {
            return Attempt::Reply(error_body(state, &TopError::throttled(1)));
        }
        state.rate_window.1 += 1;
    }

    let fault = sandbox.inner.faults.next(&call.method);
    let error = match fault {
        None => return Attempt::Reply(run(sandbox, state, call, None)),
        Some(Fault::Throttle { ban_secs }) => {
            let secs = i64::try_from(ban_secs).unwrap_or(i64::MAX / 1000).max(1);
            state.bans.insert(call.method.clone(), now + TimeDelta::seconds(secs));
            TopError::throttled(secs)
        }
        Some(Fault::RemoteTimeout) => {
            TopError::new(15, "Remote service error").sub("isp.remote-service-timeout", "API调用服务超时")
        }
        Some(Fault::ServiceRejection) => TopError::new(15, "Remote service error")
            .sub("isv.trade-service-rejection", "超时请求过多，请将查询时间间隔缩短,3分钟后再查询！"),
        Some(Fault::SessionExpired) => TopError::invalid_session(),
        Some(Fault::Slow(delay)) => return Attempt::Slow(delay),
        Some(Fault::DropConnection) => return Attempt::Drop,
        Some(Fault::ApplyThenDrop) => {
            run(sandbox, state, call, None);
            return Attempt::Drop;
        }
        Some(Fault::Truncated) => return Attempt::Truncated(run(sandbox, state, call, None)),
        Some(Fault::Malformed) => return Attempt::Malformed,
        Some(
            fault @ (Fault::CorruptRecord
            | Fault::ShuffleDuringPaging { .. }
            | Fault::DuplicatePage
            | Fault::LateModified { .. }
            | Fault::TransientBusiness),
        ) => return Attempt::Reply(run(sandbox, state, call, Some(fault))),
    };
    Attempt::Reply(error_body(state, &error))
}

/// The protocol checks, in the order of the platform's codes.
fn check(config: &TopConfig, now: DateTime<Utc>, params: Params) -> Result<Call, TopError> {
    let method = method_of(&params)?;
    check_app_key(config, &params)?;
    let (method, needs_session) = served(method)?;
    check_format_version_timestamp(now, &params)?;
    check_signature(config, &params, None)?;
    if needs_session {
        check_session(config, now, &params)?;
    }
    Ok(accepted(method, params))
}

fn method_of(params: &Params) -> Result<&str, TopError> {
    params.get("method").ok_or_else(|| {
        TopError::new(21, "Missing method").sub("isv.missing-method", "the method parameter is required")
    })
}

fn check_app_key(config: &TopConfig, params: &Params) -> Result<(), TopError> {
    let app_key = params.get("app_key").ok_or_else(|| {
        TopError::new(28, "Missing app key").sub("isv.missing-app-key", "the app_key parameter is required")
    })?;
    if app_key != config.app_key {
        return Err(TopError::new(29, "Invalid app key").sub("isv.appkey-not-exists", "app_key is not known"));
    }
    Ok(())
}

/// The method's served name and whether it needs the seller's session.
fn served(method: &str) -> Result<(&'static str, bool), TopError> {
    match METHODS.iter().find(|(name, _)| *name == method) {
        Some(&(method, needs_session)) => Ok((method, needs_session)),
        None => Err(TopError::new(22, "Invalid method")
            .sub("isv.invalid-method", format!("method {method} is not served by this gateway"))),
    }
}

fn check_format_version_timestamp(now: DateTime<Utc>, params: &Params) -> Result<(), TopError> {
    match params.get("format") {
        Some("json") => {}
        other => {
            return Err(TopError::new(23, "Invalid format").sub(
                "isv.invalid-format",
                format!(
                    "format {} is not supported here; send format=json",
                    other.unwrap_or("xml (the default)")
                ),
            ));
        }
    }
    match params.get("v") {
        None => {
            return Err(TopError::new(32, "Missing version").sub("isv.missing-version", "v is required"));
        }
        Some("2.0") => {}
        Some(v) if v.split('.').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit())) => {
            return Err(TopError::new(34, "Unsupported version")
                .sub("isv.unsupported-version", format!("version {v} is not supported; use 2.0")));
        }
        Some(_) => {
            return Err(TopError::new(33, "Invalid version").sub("isv.invalid-version", "v must be 2.0"));
        }
    }
    let timestamp = params.get("timestamp").ok_or_else(|| {
        TopError::new(30, "Missing timestamp").sub("isv.missing-timestamp", "timestamp is required")
    })?;
    let at = parse_timestamp(timestamp).ok_or_else(|| {
        TopError::new(31, "Invalid timestamp").sub(
            "isv.invalid-timestamp",
            "timestamp must be yyyy-MM-dd HH:mm:ss (GMT+8) or epoch milliseconds",
        )
    })?;
    if (at - now).abs() > MAX_SKEW {
        return Err(TopError::new(31, "Invalid timestamp").sub(
            "isv.invalid-timestamp",
            "timestamp differs from the server time by more than 10 minutes (timestamps are GMT+8)",
        ));
    }
    Ok(())
}

/// `sign` over the parameters, followed by the body for a batch (`Some`, possibly empty).
fn check_signature(config: &TopConfig, params: &Params, body: Option<&[u8]>) -> Result<(), TopError> {
    let given_sign = params.get("sign").ok_or_else(|| {
        TopError::new(24, "Missing signature").sub("isv.missing-signature", "sign is required")
    })?;
    let sign_method = SignMethod::parse(params.get("sign_method")).ok_or_else(|| {
        TopError::new(25, "Invalid signature")
            .sub("isv.invalid-signature", "sign_method must be md5, hmac or hmac-sha256")
    })?;
    let matches = match body {
        None => sign::verify(sign_method, &config.app_secret, &params.0, given_sign),
        Some(body) => sign::verify_with_body(sign_method, &config.app_secret, &params.0, body, given_sign),
    };
    if !matches {
        return Err(TopError::new(25, "Invalid signature")
            .sub("isv.invalid-signature", "the signature does not match"));
    }
    Ok(())
}

fn check_session(config: &TopConfig, now: DateTime<Utc>, params: &Params) -> Result<(), TopError> {
    let session = params.get("session").ok_or_else(|| {
        TopError::new(26, "Missing session")
            .sub("isv.missing-session", "this method needs the seller's session")
    })?;
    let expired = config.session_expires_at.is_some_and(|at| now >= at);
    if session != config.session || expired {
        return Err(TopError::invalid_session());
    }
    Ok(())
}

fn accepted(method: &str, params: Params) -> Call {
    let shape = Shape { simplify: params.flag("simplify") };
    Call { method: method.to_string(), params, shape }
}

fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<i64>().ok().and_then(DateTime::from_timestamp_millis);
    }
    parse_time(text)
}

/// Runs an accepted call against the state and renders its JSON reply.
fn run(sandbox: &TopSandbox, state: &mut store::State, call: &Call, fault: Option<Fault>) -> String {
    let cx = Ctx { now: sandbox.inner.clock.now(), shape: call.shape, fault };
    match dispatch(&cx, state, &call.method, &call.params) {
        Ok(inner) => {
            let request_id = state.next_request_id();
            call.shape.success(&call.method, inner, &request_id).to_string()
        }
        Err(error) => error_body(state, &error),
    }
}

fn dispatch(
    cx: &Ctx,
    state: &mut store::State,
    method: &str,
    params: &Params,
) -> Result<Map<String, Value>, TopError> {
    if cx.fault == Some(Fault::TransientBusiness) && method != "taobao.logistics.offline.send" {
        return Err(TopError::business("isp.remote-service-error", "服务暂时不可用，请稍后重试"));
    }
    match method {
        "taobao.trades.sold.increment.get" => trades::increment_get(cx, state, params),
        "taobao.trades.sold.get" => trades::sold_get(cx, state, params),
        "taobao.trade.fullinfo.get" => trades::fullinfo_get(cx, state, params),
        "taobao.trade.wtvertical.get" => trades::wtvertical_get(cx, state, params),
        "taobao.refunds.receive.get" => trades::refunds_receive_get(cx, state, params),
        "taobao.item.seller.get" => stock::item_seller_get(cx, state, params),
        "taobao.items.onsale.get" => stock::items_onsale_get(cx, state, params),
        "taobao.item.quantity.update" => stock::item_quantity_update(cx, state, params),
        "taobao.skus.quantity.update" => stock::skus_quantity_update(cx, state, params),
        "taobao.logistics.offline.send" => logistics::offline_send(cx, state, params),
        "taobao.logistics.companies.get" => logistics::companies_get(cx, params),
        "taobao.user.seller.get" => logistics::user_seller_get(cx, params),
        other => {
            Err(TopError::new(22, "Invalid method")
                .sub("isv.invalid-method", format!("unknown method {other}")))
        }
    }
}

fn error_body(state: &mut store::State, error: &TopError) -> String {
    state.count(format!("error:{}", error.code));
    let request_id = state.next_request_id();
    error.body(&request_id).to_string()
}

fn render(outcome: Outcome) -> Response {
    const JSON: &str = "application/json;charset=UTF-8";
    match outcome {
        Outcome::Json(body) => ([(header::CONTENT_TYPE, JSON)], body).into_response(),
        Outcome::Truncated(body) => ([(header::CONTENT_TYPE, JSON)], body).into_response(),
        Outcome::Malformed => (
            [(header::CONTENT_TYPE, "text/html")],
            "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>Tengine</center></body></html>",
        )
            .into_response(),
        Outcome::Drop => {
            // A body stream that fails makes hyper abort the connection mid-reply.
            let stream = futures::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::other("sandbox dropped the connection"))
            });
            ([(header::CONTENT_TYPE, JSON)], Body::from_stream(stream)).into_response()
        }
    }
}
