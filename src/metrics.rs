//! Metrics: the Prometheus recorder, the metric names, what a job run records, a metered
//! [`Transport`] that counts marketplace calls and throttles, and the gauges read from the
//! store at scrape time. Labels are store, job, platform, api and outcome only: never a SKU
//! or an order.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use flagsync_market::transport::{HttpReply, HttpRequest, TOP_BATCH_SEPARATOR, Transport, TransportError};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::Value;

use crate::config::Config;
use crate::store::{Store, StoreError};

pub const RUNS_TOTAL: &str = "flagsync_job_runs_total";
pub const RUN_DURATION_SECONDS: &str = "flagsync_job_run_duration_seconds";
pub const RUNS_RUNNING: &str = "flagsync_job_runs_running";
pub const ORDERS_INGESTED_TOTAL: &str = "flagsync_orders_ingested_total";
pub const API_CALLS_TOTAL: &str = "flagsync_api_calls_total";
pub const API_THROTTLES_TOTAL: &str = "flagsync_api_throttles_total";
pub const API_ERRORS_TOTAL: &str = "flagsync_api_transport_errors_total";
pub const CURSOR_LAG_SECONDS: &str = "flagsync_cursor_lag_seconds";
pub const QUARANTINE_SIZE: &str = "flagsync_quarantine_payloads";
pub const OUTBOX_DEPTH: &str = "flagsync_outbox_depth";
pub const DEAD_LETTERS: &str = "flagsync_dead_letters";
pub const TOKEN_EXPIRY_SECONDS: &str = "flagsync_token_expiry_seconds";
pub const LEASES_HELD: &str = "flagsync_leases_held";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus handle; installs the recorder on first use. If another
/// recorder was installed first, the handle renders an empty page rather than failing.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = || {
            PrometheusBuilder::new()
                .set_buckets(&[0.05, 0.25, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0])
                .unwrap_or_else(|_| PrometheusBuilder::new())
        };
        match builder().install_recorder() {
            Ok(handle) => handle,
            Err(error) => {
                tracing::warn!(error = %error, "a metrics recorder was already installed; /metrics stays empty");
                builder().build_recorder().handle()
            }
        }
    })
}

/// Renders the Prometheus text page.
pub fn render() -> String {
    let handle = handle();
    handle.run_upkeep();
    handle.render()
}

/// Records the end of a job run: outcome, duration, and each whole-number count the job
/// reported (its counts JSON: inserted, updated, quarantined, pushed, ...) as
/// `flagsync_job_<count>_total{store, job}`.
pub fn record_run(store_id: &str, job: &str, outcome: &str, duration: Duration, counts: &Value) {
    let _ = handle();
    let labels = [("store", store_id.to_string()), ("job", job.to_string())];
    metrics::counter!(RUNS_TOTAL, "store" => store_id.to_string(), "job" => job.to_string(), "outcome" => outcome.to_string())
        .increment(1);
    metrics::histogram!(RUN_DURATION_SECONDS, &labels).record(duration.as_secs_f64());
    let Value::Object(map) = counts else { return };
    for (key, value) in map {
        let Some(n) = value.as_u64() else { continue };
        if key == "run_id" || key.is_empty() || !key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            continue;
        }
        metrics::counter!(format!("flagsync_job_{key}_total"), &labels).increment(n);
    }
    if job == "orders" {
        let ingested =
            ["inserted", "updated"].iter().filter_map(|k| map.get(*k).and_then(Value::as_u64)).sum();
        metrics::counter!(ORDERS_INGESTED_TOTAL, "store" => store_id.to_string()).increment(ingested);
    }
}

/// Runs in progress on this instance.
pub fn set_running(count: usize) {
    let _ = handle();
    metrics::gauge!(RUNS_RUNNING).set(count as f64);
}

pub fn set_leases_held(count: usize) {
    let _ = handle();
    metrics::gauge!(LEASES_HELD).set(count as f64);
}

/// The platform a gateway method belongs to, from its name.
pub fn platform_of(api: &str) -> &'static str {
    if api.starts_with("taobao.") || api.starts_with("tmall.") || api.starts_with("alibaba.") {
        "taobao"
    } else if api.starts_with("jingdong.") || api.starts_with("jd.") {
        "jd"
    } else {
        "other"
    }
}

/// Whether a gateway reply says "slow down": TOP error code 7 (app call limits, bans) or
/// JD code "2"/"32" (frequency limits), or HTTP 429. Observability only: the connectors
/// classify errors for retrying themselves.
pub fn is_throttle(platform: &str, reply: &HttpReply) -> bool {
    /// Only the keys that can carry a throttle code; the rest of the reply (a whole trade,
    /// a page of orders) is skipped by the parser without being built.
    #[derive(serde::Deserialize)]
    struct Probe {
        error_response: Option<CodeOnly>,
        code: Option<Value>,
    }
    #[derive(serde::Deserialize)]
    struct CodeOnly {
        code: Option<Value>,
    }
    if reply.status == 429 {
        return true;
    }
    // TOP puts every error under `error_response`; JOS also answers some with a root code.
    let worth_reading = match platform {
        "taobao" => reply.body.contains("error_response"),
        "jd" => reply.body.contains("code"),
        _ => false,
    };
    if !worth_reading {
        return false;
    }
    let Ok(body) = serde_json::from_str::<Probe>(&reply.body) else { return false };
    let code_is = |v: Option<&Value>, wanted: &[&str]| match v {
        Some(Value::String(s)) => wanted.contains(&s.as_str()),
        Some(Value::Number(n)) => wanted.contains(&n.to_string().as_str()),
        _ => false,
    };
    let error_code = body.error_response.as_ref().and_then(|e| e.code.as_ref());
    match platform {
        // TOP: {"error_response": {"code": 7, ...}}
        "taobao" => code_is(error_code, &["7"]),
        // JOS: {"error_response": {"code": "32"}} or a root {"code": "2"}
        "jd" => code_is(error_code, &["2", "32"]) || code_is(body.code.as_ref(), &["2", "32"]),
        _ => false,
    }
}

/// How many of a request's calls its reply throttled. A TOP batch reply holds one reply per
/// call, each counted; a refusal of the whole request counts every call in it.
pub fn throttled_calls(platform: &str, request: &HttpRequest, reply: &HttpReply) -> u64 {
    if request.calls > 1 && reply.status != 429 && reply.body.contains(TOP_BATCH_SEPARATOR) {
        let parts = reply.body.split(TOP_BATCH_SEPARATOR).filter(|part| part.contains("error_response"));
        return parts
            .filter(|part| {
                is_throttle(platform, &HttpReply { status: reply.status, body: (*part).to_string() })
            })
            .count() as u64;
    }
    if is_throttle(platform, reply) { u64::from(request.calls) } else { 0 }
}

/// Wraps a transport and counts each call by platform and api, throttled replies and
/// transport errors.
pub struct MeteredTransport {
    inner: Arc<dyn Transport>,
}

impl MeteredTransport {
    pub fn new(inner: Arc<dyn Transport>) -> Self {
        let _ = handle();
        Self { inner }
    }
}

#[async_trait]
impl Transport for MeteredTransport {
    async fn send(&self, request: &HttpRequest) -> Result<HttpReply, TransportError> {
        let platform = platform_of(&request.api);
        let result = self.inner.send(request).await;
        let labels = [("platform", platform.to_string()), ("api", request.api.clone())];
        metrics::counter!(API_CALLS_TOTAL, &labels).increment(u64::from(request.calls));
        match &result {
            Ok(reply) => {
                let throttled = throttled_calls(platform, request, reply);
                if throttled > 0 {
                    metrics::counter!(API_THROTTLES_TOTAL, &labels).increment(throttled);
                }
            }
            Err(_) => metrics::counter!(API_ERRORS_TOTAL, &labels).increment(1),
        }
        result
    }
}

/// Hook for the outbox depth of a store (fulfilment and pushes waiting to be sent). The
/// outbox queries arrive with the outbox itself; until then this reports 0.
pub async fn outbox_depth(store: &Store, store_id: &str) -> Result<i64, StoreError> {
    store.outbox_depth(store_id).await
}

/// Hook for a store's dead letters (effects given up on, with their reasons); 0 until the
/// dead-letter list exists.
pub async fn dead_letters(store: &Store, store_id: &str) -> Result<i64, StoreError> {
    store.dead_letter_count(store_id).await
}

/// Hook for when a store's marketplace token expires (seconds from now); None while no
/// connector reports it, and then nothing is exported.
pub fn token_expiry_seconds(_config: &Config, _store_id: &str) -> Option<i64> {
    None
}

/// Sets the gauges read from the store: cursor lag, quarantine size, outbox depth, dead
/// letters and token expiry per configured store.
pub async fn scrape_store_gauges(store: &Store, config: &Config) -> Result<(), StoreError> {
    let _ = handle();
    let now = Utc::now();
    let cursors = store.cursors().await?;
    let quarantine = store.quarantine(None).await?;
    for cfg in &config.stores {
        let id = cfg.id.as_str();
        for (_, job, position) in cursors.iter().filter(|(s, _, _)| s == id) {
            let lag = (now - *position).num_milliseconds() as f64 / 1000.0;
            metrics::gauge!(CURSOR_LAG_SECONDS, "store" => id.to_string(), "job" => job.clone()).set(lag);
        }
        let quarantined = quarantine.iter().filter(|q| q.store_id == id).count();
        metrics::gauge!(QUARANTINE_SIZE, "store" => id.to_string()).set(quarantined as f64);
        metrics::gauge!(OUTBOX_DEPTH, "store" => id.to_string()).set(outbox_depth(store, id).await? as f64);
        metrics::gauge!(DEAD_LETTERS, "store" => id.to_string()).set(dead_letters(store, id).await? as f64);
        if let Some(expiry) = token_expiry_seconds(config, id) {
            metrics::gauge!(TOKEN_EXPIRY_SECONDS, "store" => id.to_string()).set(expiry as f64);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> HttpReply {
        HttpReply { status, body: body.into() }
    }

    #[test]
    fn throttles_are_recognised_on_both_platforms_and_nothing_else() {
        let top_ban = r#"{"error_response":{"code":7,"msg":"App Call Limited"}}"#;
        assert!(is_throttle("taobao", &reply(200, top_ban)));
        assert!(!is_throttle("jd", &reply(200, top_ban)));
        assert!(is_throttle("jd", &reply(200, r#"{"error_response":{"code":"32","zh_desc":"..."}}"#)));
        assert!(is_throttle("jd", &reply(200, r#"{"code":"2","msg":"..."}"#)));
        assert!(is_throttle("jd", &reply(429, "")));
        assert!(!is_throttle(
            "taobao",
            &reply(200, r#"{"error_response":{"code":27,"msg":"Invalid session"}}"#)
        ));
        assert!(!is_throttle("taobao", &reply(200, r#"{"trades_sold_get_response":{"total_results":0}}"#)));
        assert!(!is_throttle("jd", &reply(502, "<html>bad gateway</html>")));
    }

    #[test]
    fn a_batch_reply_counts_each_throttled_call() {
        let trade = r#"{"trade":{"tid":1}}"#;
        let ban = r#"{"error_response":{"code":7,"msg":"App Call Limited"}}"#;
        let other = r#"{"error_response":{"code":15,"msg":"Remote service error"}}"#;
        let mut request = HttpRequest::form(
            flagsync_market::transport::HttpMethod::Post,
            "http://x/router/batch".into(),
            "taobao.trade.fullinfo.get",
            Vec::new(),
        );
        request.calls = 4;
        request.body = Some("#PUBLIC#method=taobao.trade.fullinfo.get".into());
        let body = [trade, ban, other, ban].join(TOP_BATCH_SEPARATOR);
        assert_eq!(throttled_calls("taobao", &request, &reply(200, &body)), 2);
        assert_eq!(throttled_calls("taobao", &request, &reply(200, ban)), 4, "the whole batch refused");
        request.calls = 1;
        assert_eq!(throttled_calls("taobao", &request, &reply(200, ban)), 1);
        assert_eq!(throttled_calls("taobao", &request, &reply(200, trade)), 0);
        // A code deeper in a successful reply is data, not a throttle.
        let trade = r#"{"trade":{"tid":1,"orders":{"order":[{"code":7,"error_response":{"code":7}}]}}}"#;
        assert!(!is_throttle("taobao", &reply(200, trade)));
        assert!(!is_throttle("jd", &reply(200, r#"{"jingdong_pop_order_search_responce":{"code":"2"}}"#)));
    }

    #[test]
    fn platforms_come_from_the_method_name() {
        assert_eq!(platform_of("taobao.trades.sold.increment.get"), "taobao");
        assert_eq!(platform_of("jingdong.pop.order.search"), "jd");
        assert_eq!(platform_of("something"), "other");
    }
}
