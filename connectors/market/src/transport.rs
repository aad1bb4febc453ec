//! HTTP transport under the connectors, with recording and replay.
//!
//! A connector builds and signs its parameters, then calls a [`Transport`]. The real one is
//! [`ReqwestTransport`]; [`Recording`] wraps any transport and writes every exchange to a
//! fixture file with secrets and buyer personal data redacted; [`Replay`] serves recorded
//! exchanges back with no server at all, so recordings become regression tests.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::pii::mask;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HttpMethod {
    #[serde(rename = "GET")]
    Get,
    #[serde(rename = "POST")]
    Post,
}

/// A gateway call: every parameter already signed, sent as a query string (GET) or an
/// `application/x-www-form-urlencoded` UTF-8 body (POST). With `body` set (the TOP batch
/// API), the parameters go in the query string and `body` is sent as UTF-8 `text/plain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRequest {
    pub method: HttpMethod,
    pub url: String,
    /// The remote method name (e.g. `taobao.trade.fullinfo.get`), for logs and fixtures.
    pub api: String,
    pub params: Vec<(String, String)>,
    /// A raw text body, sent as is (POST only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// How many API calls this request carries: 1, or more for a batch. Platforms ration
    /// calls, not HTTP requests, so metrics count this.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub calls: u32,
}

fn one() -> u32 {
    1
}

fn is_one(calls: &u32) -> bool {
    *calls == 1
}

impl HttpRequest {
    /// One API call with its parameters as a query (GET) or a form (POST).
    pub fn form(method: HttpMethod, url: String, api: &str, params: Vec<(String, String)>) -> Self {
        Self { method, url, api: api.to_string(), params, body: None, calls: 1 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpReply {
    pub status: u16,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// No connection was made: the request never reached the server.
    #[error("could not connect: {0}")]
    Connect(String),
    /// The request was sent but no complete reply came back in time, or the connection
    /// dropped mid-reply: it may have been applied.
    #[error("no complete reply (request may have been applied): {0}")]
    Ambiguous(String),
    /// Replay found no recorded exchange for this request.
    #[error("no recorded exchange for {0}")]
    NotRecorded(String),
}

#[async_trait]
pub trait Transport: Send + Sync {
    async fn send(&self, request: &HttpRequest) -> Result<HttpReply, TransportError>;
}

/// The real HTTP client.
#[derive(Debug, Clone)]
pub struct ReqwestTransport {
    client: reqwest::Client,
}

impl ReqwestTransport {
    pub fn new(timeout: Duration) -> Result<Self, TransportError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| TransportError::Connect(format!("building the http client: {e}")))?;
        Ok(Self { client })
    }
}

#[async_trait]
impl Transport for ReqwestTransport {
    async fn send(&self, request: &HttpRequest) -> Result<HttpReply, TransportError> {
        let builder = match (request.method, &request.body) {
            (HttpMethod::Get, _) => self.client.get(&request.url).query(&request.params),
            (HttpMethod::Post, None) => self.client.post(&request.url).form(&request.params),
            (HttpMethod::Post, Some(body)) => self
                .client
                .post(&request.url)
                .query(&request.params)
                .header(reqwest::header::CONTENT_TYPE, "text/plain;charset=UTF-8")
                .body(body.clone()),
        };
        let response = builder.send().await.map_err(|e| {
            if e.is_connect() {
                TransportError::Connect(e.without_url().to_string())
            } else {
                TransportError::Ambiguous(e.without_url().to_string())
            }
        })?;
        let status = response.status().as_u16();
        let bytes =
            response.bytes().await.map_err(|e| TransportError::Ambiguous(e.without_url().to_string()))?;
        Ok(HttpReply { status, body: String::from_utf8_lossy(&bytes).into_owned() })
    }
}

/// Parameter names whose values are secrets; recordings replace them.
const SECRET_PARAMS: &[&str] =
    &["sign", "session", "access_token", "app_secret", "client_secret", "refresh_token", "code"];

/// JSON keys that hold buyer personal data, on either platform; recordings mask them.
const PII_KEYS: &[&str] = &[
    "receiver_name",
    "receiver_mobile",
    "receiver_phone",
    "receiver_address",
    "buyer_nick",
    "buyer_message",
    "buyer_open_uid",
    "buyer_email",
    "buyer_alipay_no",
    "fullname",
    "fullName",
    "mobile",
    "telephone",
    "fullAddress",
    "address",
    "phone_num",
    "phone_owner_name",
    "cert_card_num",
    "owner_name",
    "account",
    "pin",
    "realPin",
    "idNumber",
    "cert_no",
];

/// What separates the calls of a TOP batch request and their replies, unless the request
/// names another in its `top-api-separator` header.
pub const TOP_BATCH_SEPARATOR: &str = "\r\n-S-\r\n";

/// Masks buyer personal data inside a JSON body; a body that is not JSON is masked as text.
/// A TOP batch reply is masked part by part.
pub fn redact_body(body: &str) -> String {
    if body.contains(TOP_BATCH_SEPARATOR) {
        return body
            .split(TOP_BATCH_SEPARATOR)
            .map(redact_body)
            .collect::<Vec<_>>()
            .join(TOP_BATCH_SEPARATOR);
    }
    match serde_json::from_str::<Value>(body) {
        Ok(mut value) => {
            redact_value(&mut value);
            value.to_string()
        }
        Err(_) => redact_text(body),
    }
}

fn redact_value(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if PII_KEYS.contains(&key.as_str()) {
                    if let Value::String(text) = inner {
                        *text = mask(text);
                    } else if !inner.is_null() {
                        *inner = Value::String("***".into());
                    }
                } else if let Value::String(text) = inner {
                    // Some fields hold JSON as a string (TMC content, JD param json).
                    if text.starts_with('{') && serde_json::from_str::<Value>(text).is_ok() {
                        *text = redact_body(text);
                    }
                } else {
                    redact_value(inner);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_value),
        _ => {}
    }
}

/// Masks `"key":"value"` pairs for the PII keys in a body that does not parse as JSON
/// (truncated replies), so a broken reply cannot leak what a whole one would not.
fn redact_text(body: &str) -> String {
    let mut out = body.to_string();
    for key in PII_KEYS {
        let needle = format!("\"{key}\":\"");
        let mut from = 0;
        while let Some(pos) = out[from..].find(&needle) {
            let start = from + pos + needle.len();
            let end = out[start..].find('"').map(|e| start + e).unwrap_or(out.len());
            let masked = mask(&out[start..end]);
            out.replace_range(start..end, &masked);
            from = start + masked.len();
        }
    }
    out
}

/// One recorded call, as stored in a fixture file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exchange {
    pub request: HttpRequest,
    /// The reply, or the transport error that ended the call.
    pub reply: Result<HttpReply, String>,
}

/// Writes each exchange as `NNNNN-<api>.json` in a directory, redacted.
#[derive(Debug)]
pub struct Recorder {
    dir: PathBuf,
    next: AtomicU64,
}

impl Recorder {
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        let existing = std::fs::read_dir(&dir)?.filter_map(Result::ok).count() as u64;
        Ok(Self { dir, next: AtomicU64::new(existing + 1) })
    }

    pub fn record(
        &self,
        request: &HttpRequest,
        reply: &Result<HttpReply, TransportError>,
    ) -> std::io::Result<PathBuf> {
        let mut request = request.clone();
        for (name, value) in request.params.iter_mut() {
            if SECRET_PARAMS.contains(&name.as_str()) {
                *value = "REDACTED".into();
            } else if value.starts_with('{') {
                *value = redact_body(value);
            }
        }
        let reply = match reply {
            Ok(reply) => Ok(HttpReply { status: reply.status, body: redact_body(&reply.body) }),
            Err(error) => Err(error.to_string()),
        };
        let exchange = Exchange { request, reply };
        let seq = self.next.fetch_add(1, Ordering::SeqCst);
        let safe_api: String = exchange
            .request
            .api
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '_' })
            .collect();
        let path = self.dir.join(format!("{seq:05}-{safe_api}.json"));
        let text = serde_json::to_string_pretty(&exchange).map_err(std::io::Error::other)?;
        std::fs::write(&path, text)?;
        Ok(path)
    }
}

/// Wraps a transport and records every exchange.
pub struct Recording<T> {
    inner: T,
    recorder: Recorder,
}

impl<T> Recording<T> {
    pub fn new(inner: T, recorder: Recorder) -> Self {
        Self { inner, recorder }
    }
}

#[async_trait]
impl<T: Transport> Transport for Recording<T> {
    async fn send(&self, request: &HttpRequest) -> Result<HttpReply, TransportError> {
        let reply = self.inner.send(request).await;
        if let Err(error) = self.recorder.record(request, &reply) {
            tracing::warn!(api = %request.api, error = %error, "could not write the recording");
        }
        reply
    }
}

/// Serves recorded exchanges: each request gets the next recorded reply for the same API,
/// in file order. A request with none left fails loudly.
#[derive(Debug)]
pub struct Replay {
    exchanges: Mutex<VecDeque<Exchange>>,
}

impl Replay {
    /// Loads every `*.json` exchange in `dir`, sorted by file name.
    pub fn from_dir(dir: &Path) -> std::io::Result<Self> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect();
        paths.sort();
        let mut exchanges = VecDeque::new();
        for path in paths {
            let text = std::fs::read_to_string(&path)?;
            let exchange: Exchange = serde_json::from_str(&text).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))
            })?;
            exchanges.push_back(exchange);
        }
        Ok(Self { exchanges: Mutex::new(exchanges) })
    }

    pub fn from_exchanges(exchanges: Vec<Exchange>) -> Self {
        Self { exchanges: Mutex::new(exchanges.into()) }
    }

    /// Exchanges not yet served.
    pub fn remaining(&self) -> usize {
        self.exchanges.lock().map(|q| q.len()).unwrap_or(0)
    }
}

#[async_trait]
impl Transport for Replay {
    async fn send(&self, request: &HttpRequest) -> Result<HttpReply, TransportError> {
        let mut queue =
            self.exchanges.lock().map_err(|_| TransportError::NotRecorded(request.api.clone()))?;
        let position = queue.iter().position(|e| e.request.api == request.api);
        let Some(exchange) = position.and_then(|p| queue.remove(p)) else {
            return Err(TransportError::NotRecorded(request.api.clone()));
        };
        exchange.reply.map_err(TransportError::Ambiguous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_masks_personal_data_in_json_and_broken_json() {
        let body =
            r#"{"trade":{"tid":1,"receiver_mobile":"13812345678","receiver_name":"张三","payment":"1.00"}}"#;
        let out = redact_body(body);
        assert!(!out.contains("13812345678") && !out.contains("张三"), "{out}");
        assert!(out.contains("138****5678") && out.contains("\"payment\":\"1.00\""));
        let broken = &body[..60];
        assert!(!redact_body(broken).contains("13812345678"));
    }
}
