//! [`HttpOperator`]: the operator API client. It signs every attempt afresh, sorts failures
//! into [`ErrorKind`]s, retries with the configured [`RetryPolicy`], and refuses answers
//! that break the contract in `API.md` before any caller can act on them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flagsync_market::pii::mask;
use flagsync_market::retry::RetryPolicy;
use flagsync_market::{Clock, ConnectorError, ErrorKind};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::OperatorApi;
use crate::sign::{KEY_HEADER, NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, nonce, sign};
use crate::transport::{
    OperatorReply, OperatorRequest, OperatorTransport, ReqwestOperatorTransport, TransportError,
};
use crate::types::{FulfilmentAck, FulfilmentRequest, ShipmentBatch, StockSnapshot, WithdrawAck};

/// The `platform` of every error this client returns.
pub const PLATFORM: &str = "operator";

/// Largest `limit` the API serves in one shipments page; larger asks are clamped.
pub const MAX_SHIPMENTS_LIMIT: u32 = 500;

/// Longest piece of a server's error message kept in an error.
const MAX_MESSAGE_CHARS: usize = 300;

const STOCK: &str = "GET /v1/stock";
const FULFILMENTS: &str = "POST /v1/fulfilments";
const WITHDRAW: &str = "POST /v1/fulfilments/{store_id}/{order_id}/withdraw";
const SHIPMENTS: &str = "GET /v1/shipments";
const PING: &str = "GET /v1/ping";

/// Where the operator API is and how to sign for it. `Debug` hides the secret.
#[derive(Clone)]
pub struct OperatorConfig {
    /// e.g. `https://erp.operator.example/api` (a path prefix is kept and signed).
    pub base_url: String,
    pub key_id: String,
    pub secret: String,
    pub retry: RetryPolicy,
}

impl std::fmt::Debug for OperatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorConfig")
            .field("base_url", &self.base_url)
            .field("key_id", &self.key_id)
            .field("secret", &"<redacted>")
            .field("retry", &self.retry)
            .finish()
    }
}

impl OperatorConfig {
    /// Every problem with this configuration, each naming its field (empty when usable).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if split_base(&self.base_url).is_none() {
            problems.push(format!("base_url: {:?} is not an http:// or https:// url", self.base_url));
        }
        if self.key_id.trim().is_empty() {
            problems.push("key_id: empty".to_string());
        }
        if self.secret.is_empty() {
            problems.push("secret: empty".to_string());
        }
        problems
    }
}

/// `("http://host:port", "/prefix")` with no trailing slash on the prefix.
fn split_base(base_url: &str) -> Option<(String, String)> {
    let base = base_url.trim();
    let rest = base.strip_prefix("http://").or_else(|| base.strip_prefix("https://"))?;
    let scheme_len = base.len() - rest.len();
    let (host, prefix) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, ""),
    };
    if host.is_empty() || prefix.contains(['?', '#']) {
        return None;
    }
    Some((format!("{}{host}", &base[..scheme_len]), prefix.trim_end_matches('/').to_string()))
}

/// Percent-encodes one path segment (everything but RFC 3986 unreserved characters).
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// One logical call, signed anew on each attempt.
struct Call {
    method: &'static str,
    endpoint: &'static str,
    /// Path (below the base URL's prefix) and query, e.g. `/v1/stock?since=4`.
    path_with_query: String,
    body: Option<String>,
    /// Clear personal values from the request, masked out of any error message.
    personal: Vec<String>,
}

/// The operator API over HTTP.
pub struct HttpOperator {
    config: OperatorConfig,
    transport: Arc<dyn OperatorTransport>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for HttpOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpOperator").field("config", &self.config).finish_non_exhaustive()
    }
}

impl HttpOperator {
    pub fn new(config: OperatorConfig, transport: Arc<dyn OperatorTransport>, clock: Arc<dyn Clock>) -> Self {
        Self { config, transport, clock }
    }

    /// A client over real HTTP; `timeout` bounds each attempt.
    pub fn with_reqwest(
        config: OperatorConfig,
        timeout: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConnectorError> {
        let transport = ReqwestOperatorTransport::new(timeout)
            .map_err(|e| ConnectorError::new(PLATFORM, "client", ErrorKind::Rejected, e.to_string()))?;
        Ok(Self::new(config, Arc::new(transport), clock))
    }

    async fn run<T>(
        &self,
        call: Call,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConnectorError> {
        let parse = &parse;
        let call = &call;
        self.config
            .retry
            .run(rand::random::<f64>, |attempt| async move {
                let body = self.attempt(call, attempt).await?;
                parse(&body).map_err(|message| {
                    error(call, ErrorKind::Malformed, format!("contract violation: {message}"))
                })
            })
            .await
    }

    /// Sends one signed attempt; the body of a 2xx reply, or the classified failure.
    async fn attempt(&self, call: &Call, attempt: u32) -> Result<String, ConnectorError> {
        let Some((origin, prefix)) = split_base(&self.config.base_url) else {
            return Err(error(call, ErrorKind::Rejected, "base_url is not an http:// or https:// url"));
        };
        let path = format!("{prefix}{}", call.path_with_query);
        let timestamp = self.clock.now().timestamp();
        let nonce = nonce();
        let body = call.body.clone().unwrap_or_default();
        let signature = sign(&self.config.secret, call.method, &path, timestamp, &nonce, &body);
        let request = OperatorRequest {
            method: call.method,
            url: format!("{origin}{path}"),
            endpoint: call.endpoint,
            headers: vec![
                (KEY_HEADER, self.config.key_id.clone()),
                (TIMESTAMP_HEADER, timestamp.to_string()),
                (NONCE_HEADER, nonce),
                (SIGNATURE_HEADER, signature),
            ],
            body: call.body.clone(),
        };
        let reply = self.transport.send(&request).await;
        match &reply {
            Ok(reply) => {
                tracing::debug!(endpoint = call.endpoint, attempt, status = reply.status, "operator call")
            }
            Err(e) => tracing::debug!(endpoint = call.endpoint, attempt, error = %e, "operator call failed"),
        }
        classify(call, reply)
    }
}

fn error(call: &Call, kind: ErrorKind, message: impl Into<String>) -> ConnectorError {
    ConnectorError::new(PLATFORM, call.endpoint, kind, scrub(message.into(), &call.personal))
}

/// Masks every personal value of the request out of `message`, in case the server echoed one.
fn scrub(mut message: String, personal: &[String]) -> String {
    for value in personal {
        if value.chars().count() >= 2 && message.contains(value.as_str()) {
            message = message.replace(value.as_str(), &mask(value));
        }
    }
    message
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    #[serde(default)]
    message: String,
}

fn classify(call: &Call, reply: Result<OperatorReply, TransportError>) -> Result<String, ConnectorError> {
    let reply = match reply {
        Ok(reply) => reply,
        Err(TransportError::Connect(e)) => {
            return Err(error(call, ErrorKind::Transient, format!("could not connect: {e}")));
        }
        Err(TransportError::Ambiguous(e)) => {
            return Err(error(
                call,
                ErrorKind::Ambiguous,
                format!("no complete reply, may have been applied: {e}"),
            ));
        }
        Err(e @ TransportError::NotRecorded(_)) => {
            return Err(error(call, ErrorKind::Rejected, e.to_string()));
        }
    };
    if (200..300).contains(&reply.status) {
        return Ok(reply.body);
    }
    let kind = match reply.status {
        429 => ErrorKind::Throttled,
        401 => ErrorKind::Auth,
        400..=499 => ErrorKind::Rejected,
        500..=599 => ErrorKind::Transient,
        _ => ErrorKind::Malformed,
    };
    let envelope = serde_json::from_str::<ErrorEnvelope>(&reply.body).ok();
    let message = match &envelope {
        Some(envelope) if !envelope.error.message.is_empty() => {
            let text: String = envelope.error.message.chars().take(MAX_MESSAGE_CHARS).collect();
            format!("http {}: {text}", reply.status)
        }
        _ => format!("http {}", reply.status),
    };
    let mut failure = error(call, kind, message);
    if let Some(envelope) = envelope {
        failure = failure.with_code(scrub(envelope.error.code, &call.personal), None);
    }
    if kind == ErrorKind::Throttled
        && let Some(secs) = reply.retry_after.as_deref().and_then(|v| v.trim().parse::<u64>().ok())
    {
        failure = failure.with_retry_after(Duration::from_secs(secs));
    }
    Err(failure)
}

fn parse_json<T: DeserializeOwned>(body: &str) -> Result<T, String> {
    serde_json::from_str(body).map_err(|e| format!("body is not the documented json: {e}"))
}

/// Checks a stock answer against the contract; the message names the field and value.
pub(crate) fn check_snapshot(snapshot: &StockSnapshot, since: Option<i64>) -> Result<(), String> {
    if snapshot.watermark < 0 {
        return Err(format!("watermark: {} is negative", snapshot.watermark));
    }
    match since {
        Some(since) if snapshot.watermark < since => {
            return Err(format!("watermark: {} went backwards from since={since}", snapshot.watermark));
        }
        None if !snapshot.full => return Err("full: false in answer to a full snapshot request".into()),
        _ => {}
    }
    let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, level) in snapshot.levels.iter().enumerate() {
        if level.sku.trim().is_empty() {
            return Err(format!("levels[{i}].sku: empty"));
        }
        if level.warehouse.trim().is_empty() {
            return Err(format!("levels[{i}].warehouse: empty (sku {})", level.sku));
        }
        if level.on_hand < 0 {
            return Err(format!(
                "levels[{i}].on_hand: {} is negative (sku {}, warehouse {})",
                level.on_hand, level.sku, level.warehouse
            ));
        }
        if let Some(first) = seen.insert((&level.sku, &level.warehouse), i) {
            return Err(format!(
                "levels[{i}]: sku {} warehouse {} appears twice (first at levels[{first}])",
                level.sku, level.warehouse
            ));
        }
    }
    let mut seen = HashMap::new();
    for (i, resource) in snapshot.resources.iter().enumerate() {
        if resource.code.trim().is_empty() {
            return Err(format!("resources[{i}].code: empty"));
        }
        if resource.available < 0 {
            return Err(format!(
                "resources[{i}].available: {} is negative ({:?} {})",
                resource.available, resource.kind, resource.code
            ));
        }
        if let Some(first) = seen.insert((resource.kind, resource.code.as_str()), i) {
            return Err(format!(
                "resources[{i}]: {:?} {} appears twice (first at resources[{first}])",
                resource.kind, resource.code
            ));
        }
    }
    Ok(())
}

/// Checks a shipments page against the contract.
pub(crate) fn check_batch(batch: &ShipmentBatch, since: i64, limit: u32) -> Result<(), String> {
    if batch.notices.len() > limit as usize {
        return Err(format!("notices: {} returned, more than limit={limit}", batch.notices.len()));
    }
    let mut previous = since;
    for (i, notice) in batch.notices.iter().enumerate() {
        if notice.sequence <= previous {
            return Err(if i == 0 {
                format!("notices[0].sequence: {} is not after since={since}", notice.sequence)
            } else {
                format!("notices[{i}].sequence: {} does not follow {previous}", notice.sequence)
            });
        }
        previous = notice.sequence;
        let id = &notice.notice_id;
        for (field, value) in [
            ("notice_id", id),
            ("store_id", &notice.store_id),
            ("order_id", &notice.order_id),
            ("carrier", &notice.carrier),
            ("waybill", &notice.waybill),
        ] {
            if value.trim().is_empty() {
                return Err(format!(
                    "notices[{i}].{field}: empty (notice {id:?}, sequence {})",
                    notice.sequence
                ));
            }
        }
        if notice.stock_watermark < 0 {
            return Err(format!(
                "notices[{i}].stock_watermark: {} is negative (notice {id})",
                notice.stock_watermark
            ));
        }
    }
    let expected = batch.notices.last().map_or(since, |n| n.sequence);
    if batch.watermark != expected {
        return Err(format!(
            "watermark: {} but expected {expected} (the last notice's sequence, or since when none)",
            batch.watermark
        ));
    }
    Ok(())
}

/// The clear personal values in a fulfilment request.
fn personal_values(request: &FulfilmentRequest) -> Vec<String> {
    let mut values = Vec::new();
    if let Some(receiver) = &request.receiver {
        for pii in [&receiver.name, &receiver.mobile, &receiver.phone, &receiver.address] {
            values.push(pii.expose().to_string());
        }
    }
    if let Some(contract) = &request.contract {
        for pii in [&contract.phone_number, &contract.cert_number, &contract.owner_name] {
            values.push(pii.expose().to_string());
        }
    }
    values.retain(|v| !v.is_empty());
    // Longest first, so a value containing another is masked whole.
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    values
}

#[derive(Deserialize)]
struct Ack<T> {
    result: T,
}

#[derive(Deserialize)]
struct Pong {
    ok: bool,
}

#[async_trait]
impl OperatorApi for HttpOperator {
    async fn stock(&self, since: Option<i64>) -> Result<StockSnapshot, ConnectorError> {
        let path_with_query = match since {
            Some(since) => format!("/v1/stock?since={since}"),
            None => "/v1/stock".to_string(),
        };
        let call = Call { method: "GET", endpoint: STOCK, path_with_query, body: None, personal: Vec::new() };
        self.run(call, |body| {
            let snapshot: StockSnapshot = parse_json(body)?;
            check_snapshot(&snapshot, since)?;
            Ok(snapshot)
        })
        .await
    }

    async fn submit_fulfilment(&self, request: &FulfilmentRequest) -> Result<FulfilmentAck, ConnectorError> {
        let personal = personal_values(request);
        let body = serde_json::to_string(request).map_err(|e| {
            ConnectorError::new(
                PLATFORM,
                FULFILMENTS,
                ErrorKind::Rejected,
                scrub(format!("encoding the request: {e}"), &personal),
            )
        })?;
        let call = Call {
            method: "POST",
            endpoint: FULFILMENTS,
            path_with_query: "/v1/fulfilments".into(),
            body: Some(body),
            personal,
        };
        self.run(call, |body| parse_json::<Ack<FulfilmentAck>>(body).map(|ack| ack.result)).await
    }

    async fn withdraw_fulfilment(
        &self,
        store_id: &str,
        order_id: &str,
        reason: &str,
    ) -> Result<WithdrawAck, ConnectorError> {
        let call = Call {
            method: "POST",
            endpoint: WITHDRAW,
            path_with_query: format!(
                "/v1/fulfilments/{}/{}/withdraw",
                encode_segment(store_id),
                encode_segment(order_id)
            ),
            body: Some(serde_json::json!({ "reason": reason }).to_string()),
            personal: Vec::new(),
        };
        self.run(call, |body| parse_json::<Ack<WithdrawAck>>(body).map(|ack| ack.result)).await
    }

    async fn shipments(&self, since: i64, limit: u32) -> Result<ShipmentBatch, ConnectorError> {
        let limit = limit.clamp(1, MAX_SHIPMENTS_LIMIT);
        let call = Call {
            method: "GET",
            endpoint: SHIPMENTS,
            path_with_query: format!("/v1/shipments?since={since}&limit={limit}"),
            body: None,
            personal: Vec::new(),
        };
        self.run(call, |body| {
            let batch: ShipmentBatch = parse_json(body)?;
            check_batch(&batch, since, limit)?;
            Ok(batch)
        })
        .await
    }

    async fn check(&self) -> Result<(), ConnectorError> {
        let call = Call {
            method: "GET",
            endpoint: PING,
            path_with_query: "/v1/ping".into(),
            body: None,
            personal: Vec::new(),
        };
        self.run(call, |body| match parse_json::<Pong>(body)? {
            Pong { ok: true } => Ok(()),
            Pong { ok: false } => Err("ok: false".into()),
        })
        .await
    }
}
