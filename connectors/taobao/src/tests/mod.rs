//! Connector tests that drive the whole client through recorded or scripted transports.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod batch;
mod paging;
mod replay;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use flagsync_market::transport::{HttpReply, HttpRequest, Transport, TransportError};
use flagsync_market::{Fetched, ManualClock, OrderSink, SinkError};

use crate::TaobaoConfig;

pub(crate) const SECRET: &str = "test-secret";

pub(crate) fn fixtures(sub: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/taobao").join(sub)
}

/// A config with its own app key, so tests do not share a rate limiter.
pub(crate) fn config(app_key: &str) -> TaobaoConfig {
    TaobaoConfig {
        gateway: "https://eco.taobao.com/router/rest".into(),
        app_key: app_key.into(),
        app_secret: SECRET.into(),
        session: "test-session".into(),
        page_size: 2,
        calls_per_second: 10_000,
        detail_concurrency: 1,
        // The recorded fixtures hold single calls; tests::batch covers the batch API.
        fullinfo_batch: 1,
        ..TaobaoConfig::default()
    }
}

pub(crate) fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).single().unwrap()
}

/// 2026-11-11 00:30:00 in Beijing.
pub(crate) fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(utc(2026, 11, 10, 16, 30, 0)))
}

/// Records every request before passing it on.
pub(crate) struct Spy {
    pub inner: Arc<dyn Transport>,
    pub seen: Mutex<Vec<HttpRequest>>,
}

impl Spy {
    pub fn new(inner: Arc<dyn Transport>) -> Arc<Self> {
        Arc::new(Self { inner, seen: Mutex::new(Vec::new()) })
    }

    pub fn requests(&self) -> Vec<HttpRequest> {
        self.seen.lock().unwrap().clone()
    }

    pub fn apis(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.api).collect()
    }
}

#[async_trait]
impl Transport for Spy {
    async fn send(&self, request: &HttpRequest) -> Result<HttpReply, TransportError> {
        self.seen.lock().unwrap().push(request.clone());
        self.inner.send(request).await
    }
}

pub(crate) fn param<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    request.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// Collects what a pull hands over.
#[derive(Default)]
pub(crate) struct CollectSink {
    pub batches: Vec<Vec<Fetched>>,
    /// Tids the sink already holds at their listed version and so declines.
    pub known: Vec<String>,
}

impl CollectSink {
    pub fn all(&self) -> Vec<&Fetched> {
        self.batches.iter().flatten().collect()
    }
}

#[async_trait]
impl OrderSink for CollectSink {
    async fn select_changed(
        &mut self,
        candidates: &[(String, DateTime<Utc>)],
    ) -> Result<Vec<bool>, SinkError> {
        Ok(candidates.iter().map(|(tid, _)| !self.known.contains(tid)).collect())
    }

    async fn accept(&mut self, batch: Vec<Fetched>) -> Result<(), SinkError> {
        self.batches.push(batch);
        Ok(())
    }
}
