//! In-process transports: every marketplace or operator call is handed to the sandbox's
//! axum router as a request value (`tower::ServiceExt::oneshot`), with no socket at all, so
//! a seed costs microseconds per call and a `Slow` reply costs only paused-clock time.
//!
//! The transport keeps the HTTP client's failure semantics: a reply whose body breaks off
//! (the sandbox's dropped connection) or that comes later than the request timeout is
//! [`TransportError::Ambiguous`] (the call may have been applied).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use flagsync_market::transport::{HttpMethod, HttpReply, HttpRequest, Transport, TransportError};
use flagsync_operator::{OperatorReply, OperatorRequest, OperatorTransport};
use tokio::sync::Notify;
use tower::ServiceExt;

/// Calls into a router; clones share the call counter and the crash plan.
#[derive(Clone)]
pub struct RouterTransport {
    router: Router,
    timeout: Duration,
    calls: Arc<AtomicU64>,
    /// Calls per api / endpoint name.
    by_api: Arc<Mutex<BTreeMap<String, u64>>>,
    /// `(call number, applied)`: at that call the process "dies" (see [`RouterTransport::arm_crash`]).
    crash: Arc<Mutex<Option<(u64, bool)>>>,
    crashed: Arc<Notify>,
}

impl std::fmt::Debug for RouterTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterTransport").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

/// The path and query of a URL (`http://host:port/router/rest?x=1` -> `/router/rest?x=1`).
fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.find('/').map_or("/", |at| &rest[at..])
}

impl RouterTransport {
    pub fn new(router: Router, timeout: Duration) -> Self {
        Self {
            router,
            timeout,
            calls: Arc::new(AtomicU64::new(0)),
            by_api: Arc::default(),
            crash: Arc::default(),
            crashed: Arc::new(Notify::new()),
        }
    }

    /// Calls per api (marketplace method, or operator endpoint such as `POST /v1/fulfilments`).
    pub fn calls_by_api(&self) -> BTreeMap<String, u64> {
        self.by_api.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The `after`-th call from now never returns: with `applied` the sandbox applies it
    /// first (the process died waiting for the reply), otherwise it never arrives (died just
    /// before sending). [`RouterTransport::crashed`] completes at that moment, so the
    /// caller can drop the job mid-flight.
    pub fn arm_crash(&self, after: u64, applied: bool) {
        let at = self.calls() + after.max(1);
        *self.crash.lock().unwrap_or_else(|p| p.into_inner()) = Some((at, applied));
    }

    /// Cancels an armed crash that did not happen.
    pub fn disarm(&self) {
        *self.crash.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Completes when an armed crash happens.
    pub async fn crashed(&self) {
        self.crashed.notified().await;
    }

    fn take_crash(&self, call: u64) -> Option<bool> {
        let mut crash = self.crash.lock().unwrap_or_else(|p| p.into_inner());
        match *crash {
            Some((at, applied)) if at == call => {
                *crash = None;
                Some(applied)
            }
            _ => None,
        }
    }

    /// Calls made so far (every attempt, retries included).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    async fn exchange(
        &self,
        api: &str,
        request: Request<Body>,
    ) -> Result<(u16, Option<String>, String), TransportError> {
        let number = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        *self.by_api.lock().unwrap_or_else(|p| p.into_inner()).entry(api.to_string()).or_default() += 1;
        let router = self.router.clone();
        let call = async move {
            let response = router
                .oneshot(request)
                .await
                .map_err(|e| TransportError::Connect(format!("in-process call: {e}")))?;
            let status = response.status().as_u16();
            let retry_after =
                response.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_string);
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .map_err(|e| TransportError::Ambiguous(format!("reply broke off: {e}")))?;
            Ok((status, retry_after, String::from_utf8_lossy(&bytes).into_owned()))
        };
        if let Some(applied) = self.take_crash(number) {
            if applied {
                let _ = call.await;
            }
            self.crashed.notify_one();
            return std::future::pending().await;
        }
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Ambiguous(format!("no reply within {:?}", self.timeout))),
        }
    }
}

fn encode(params: &[(String, String)]) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        out.append_pair(name, value);
    }
    out.finish()
}

fn build(builder: axum::http::request::Builder, body: Body) -> Result<Request<Body>, TransportError> {
    builder.body(body).map_err(|e| TransportError::Connect(format!("building the request: {e}")))
}

#[async_trait]
impl Transport for RouterTransport {
    async fn send(&self, request: &HttpRequest) -> Result<HttpReply, TransportError> {
        let path = path_of(&request.url);
        let api = request.api.clone();
        let request = match (request.method, &request.body) {
            (HttpMethod::Post, Some(body)) => {
                let sep = if path.contains('?') { '&' } else { '?' };
                build(
                    Request::post(format!("{path}{sep}{}", encode(&request.params)))
                        .header(header::CONTENT_TYPE, "text/plain;charset=UTF-8"),
                    Body::from(body.clone()),
                )?
            }
            (HttpMethod::Get, _) => {
                let query = encode(&request.params);
                let sep = if path.contains('?') { '&' } else { '?' };
                build(Request::get(format!("{path}{sep}{query}")), Body::empty())?
            }
            (HttpMethod::Post, None) => build(
                Request::post(path)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded; charset=utf-8"),
                Body::from(encode(&request.params)),
            )?,
        };
        let (status, _, body) = self.exchange(&api, request).await?;
        Ok(HttpReply { status, body })
    }
}

#[async_trait]
impl OperatorTransport for RouterTransport {
    async fn send(&self, request: &OperatorRequest) -> Result<OperatorReply, TransportError> {
        let path = path_of(&request.url);
        let mut builder = match request.method {
            "POST" => Request::post(path),
            _ => Request::get(path),
        };
        for (name, value) in &request.headers {
            builder = builder.header(*name, value);
        }
        let body = match &request.body {
            Some(body) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json; charset=utf-8");
                Body::from(body.clone())
            }
            None => Body::empty(),
        };
        let (status, retry_after, body) = self.exchange(request.endpoint, build(builder, body)?).await?;
        Ok(OperatorReply { status, retry_after, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_keep_their_query() {
        assert_eq!(path_of("http://127.0.0.1:1/router/rest"), "/router/rest");
        assert_eq!(path_of("http://h/v1/stock?since=3"), "/v1/stock?since=3");
        assert_eq!(path_of("http://h"), "/");
    }
}
