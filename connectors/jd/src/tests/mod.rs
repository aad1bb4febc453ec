//! Connector-level tests and their doubles: a scripted transport that logs every request,
//! a collecting sink, and helpers to read what the connector sent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ops;
mod parse;
mod pull;
mod replay;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use flagsync_market::retry::RetryPolicy;
use flagsync_market::transport::{HttpReply, HttpRequest, Transport, TransportError};
use flagsync_market::{Fetched, ManualClock, Order, OrderSink, SinkError};
use serde_json::Value;

use crate::{JdConfig, JdConnector};

type Handler = Box<dyn FnMut(&HttpRequest) -> Result<HttpReply, TransportError> + Send>;

/// A transport whose replies come from a closure; it keeps every request it saw.
pub(crate) struct Scripted {
    handler: Mutex<Handler>,
    log: Mutex<Vec<HttpRequest>>,
}

impl Scripted {
    pub(crate) fn new(
        handler: impl FnMut(&HttpRequest) -> Result<HttpReply, TransportError> + Send + 'static,
    ) -> Arc<Self> {
        Arc::new(Self { handler: Mutex::new(Box::new(handler)), log: Mutex::new(Vec::new()) })
    }

    pub(crate) fn requests(&self) -> Vec<HttpRequest> {
        self.log.lock().unwrap().clone()
    }

    pub(crate) fn apis(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.api).collect()
    }
}

#[async_trait]
impl Transport for Scripted {
    async fn send(&self, request: &HttpRequest) -> Result<HttpReply, TransportError> {
        self.log.lock().unwrap().push(request.clone());
        (self.handler.lock().unwrap())(request)
    }
}

pub(crate) fn ok(body: Value) -> Result<HttpReply, TransportError> {
    Ok(HttpReply { status: 200, body: body.to_string() })
}

pub(crate) fn param<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    request.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// The business parameters of a request, parsed back from `360buy_param_json`.
pub(crate) fn business(request: &HttpRequest) -> Value {
    serde_json::from_str(param(request, "360buy_param_json").unwrap()).unwrap()
}

pub(crate) fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 10, 16, 10, 0).unwrap()
}

pub(crate) fn config() -> JdConfig {
    JdConfig {
        gateway: "https://jos.test/routerjson".into(),
        app_key: "test-app".into(),
        app_secret: "test-secret".into(),
        access_token: "test-token".into(),
        page_size: 50,
        page_cap: 300,
        calls_per_second: 100_000,
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            max_hint: Duration::from_secs(1),
        },
        ..JdConfig::default()
    }
}

pub(crate) fn connector_with(config: JdConfig, transport: Arc<Scripted>) -> JdConnector {
    JdConnector::new(config, transport, Arc::new(ManualClock::new(now())))
}

pub(crate) fn connector(transport: Arc<Scripted>) -> JdConnector {
    connector_with(config(), transport)
}

/// Keeps every batch it is handed.
#[derive(Default)]
pub(crate) struct Collect {
    pub(crate) got: Vec<Fetched>,
}

impl Collect {
    pub(crate) fn orders(&self) -> Vec<&Order> {
        self.got
            .iter()
            .filter_map(|f| match f {
                Fetched::Order(order) => Some(order.as_ref()),
                Fetched::Unparsed(_) => None,
            })
            .collect()
    }
}

#[async_trait]
impl OrderSink for Collect {
    async fn accept(&mut self, batch: Vec<Fetched>) -> Result<(), SinkError> {
        self.got.extend(batch);
        Ok(())
    }
}
