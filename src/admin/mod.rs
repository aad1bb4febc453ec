//! The admin HTTP API (axum), on 127.0.0.1 by default: liveness, readiness, Prometheus
//! metrics, jobs and runs, manual triggers, pauses, and the operator's push endpoints.
//! Everything but `/healthz` needs `Authorization: Bearer <admin.token>`; a missing or wrong
//! token gets a bare 401. A malformed request gets a 400 whose error names the field.

use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::daemon::Control;
use crate::jobs::{JobError, JobKind, OPERATOR_SCOPE};

mod inbox;

/// Where the operator's pushes go: stock levels and shipment notices, as JSON bodies.
/// `Err` carries a message for the caller (it becomes a 400, or a 501 while the feature is
/// "not available yet").
#[async_trait]
pub trait OperatorInbox: Send + Sync {
    async fn stock(&self, body: Value) -> Result<Value, String>;
    async fn shipments(&self, body: Value) -> Result<Value, String>;
}

/// An inbox that takes nothing (daemons built around a test runner rather than an `App`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NotAvailableInbox;

#[async_trait]
impl OperatorInbox for NotAvailableInbox {
    async fn stock(&self, _body: Value) -> Result<Value, String> {
        Err("operator stock pushes are not available yet".into())
    }

    async fn shipments(&self, _body: Value) -> Result<Value, String> {
        Err("operator shipment notices are not available yet".into())
    }
}

#[derive(Clone)]
struct AdminState {
    control: Control,
    token: Arc<SecretString>,
}

/// An error reply: status and a message naming what was wrong.
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl ApiError {
    fn bad(message: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, message.into())
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self(StatusCode::NOT_FOUND, message.into())
    }

    fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "admin api request failed");
        Self(StatusCode::INTERNAL_SERVER_ERROR, "internal error; see the daemon's log".into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({"error": self.1}))).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

fn ok(status: StatusCode, value: Value) -> ApiResult {
    Ok((status, axum::Json(value)).into_response())
}

/// The admin router. Serve it with `axum::serve`.
pub fn router(control: Control, token: SecretString) -> Router {
    let state = AdminState { control, token: Arc::new(token) };
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/jobs", get(jobs))
        .route("/api/v1/runs", get(runs))
        .route("/api/v1/runs/{id}", get(run))
        .route("/api/v1/stores/{store}/jobs/{job}/runs", post(trigger))
        .route("/api/v1/stores/{store}/pause", post(pause_store))
        .route("/api/v1/stores/{store}/resume", post(resume_store))
        .route("/api/v1/stores/{store}/jobs/{job}/pause", post(pause_job))
        .route("/api/v1/stores/{store}/jobs/{job}/resume", post(resume_job))
        .route("/api/v1/operator/stock", post(operator_stock))
        .route("/api/v1/operator/shipments", post(operator_shipments))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

/// Compares in time independent of where the strings differ.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && given.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

async fn require_token(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    if request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .map(<[u8]>::to_vec);
    match given {
        Some(given) if same_secret(&given, state.token.expose_secret().as_bytes()) => next.run(request).await,
        _ => {
            let mut response = StatusCode::UNAUTHORIZED.into_response();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AdminState>) -> ApiResult {
    let problems = state.control.not_ready().await;
    if problems.is_empty() {
        ok(StatusCode::OK, json!({"ready": true, "instance": state.control.instance_id()}))
    } else {
        ok(StatusCode::SERVICE_UNAVAILABLE, json!({"ready": false, "problems": problems}))
    }
}

async fn metrics(State(state): State<AdminState>) -> ApiResult {
    let config = state.control.config();
    crate::metrics::scrape_store_gauges(state.control.store(), &config).await.map_err(ApiError::internal)?;
    let page = crate::metrics::render();
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], page).into_response())
}

async fn jobs(State(state): State<AdminState>) -> ApiResult {
    let views = state.control.jobs().await.map_err(ApiError::internal)?;
    ok(StatusCode::OK, serde_json::to_value(views).map_err(ApiError::internal)?)
}

fn parse_job(text: &str) -> Result<JobKind, ApiError> {
    JobKind::parse(text).ok_or_else(|| {
        let names: Vec<&str> = JobKind::ALL.iter().map(|j| j.as_str()).collect();
        ApiError::bad(format!("job: {text:?} is not a job (expected one of: {})", names.join(", ")))
    })
}

/// The store a path names must be configured (or the operator scope, for its jobs).
fn check_store(state: &AdminState, store: &str, job: Option<JobKind>) -> Result<(), ApiError> {
    let config = state.control.config();
    let operator_job = job.is_some_and(|j| !j.per_store());
    match (config.store(store).is_some(), store == OPERATOR_SCOPE) {
        (true, _) if !operator_job => Ok(()),
        (_, true) if operator_job || job.is_none() => Ok(()),
        _ if operator_job => Err(ApiError::bad(format!(
            "store: job {} runs under store {OPERATOR_SCOPE:?}",
            job.map_or("", |j| j.as_str())
        ))),
        _ => Err(ApiError::not_found(format!("store: no store {store:?} in the config"))),
    }
}

async fn runs(State(state): State<AdminState>, RawQuery(query): RawQuery) -> ApiResult {
    let (mut store, mut job, mut limit) = (None, None, 50i64);
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "store" => store = Some(value.into_owned()),
            "job" => job = Some(parse_job(&value)?),
            "limit" => {
                limit = value.parse().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| {
                    ApiError::bad(format!("limit: {value:?} is not a whole number from 1 to 1000"))
                })?
            }
            other => {
                return Err(ApiError::bad(format!(
                    "{other}: unknown parameter (expected store, job, limit)"
                )));
            }
        }
    }
    let runs = state
        .control
        .store()
        .runs_of(store.as_deref(), job.map(JobKind::as_str), limit)
        .await
        .map_err(ApiError::internal)?;
    ok(StatusCode::OK, serde_json::to_value(runs).map_err(ApiError::internal)?)
}

/// The handle a manual trigger returns: `req-<id>`.
pub fn request_handle(id: i64) -> String {
    format!("req-{id}")
}

async fn run(State(state): State<AdminState>, Path(id): Path<String>) -> ApiResult {
    let store = state.control.store();
    if let Some(number) = id.strip_prefix("req-") {
        let number: i64 = number
            .parse()
            .map_err(|_| ApiError::bad(format!("id: {id:?} is not a run id such as 42 or req-7")))?;
        let Some(request) = store.run_request(number).await.map_err(ApiError::internal)? else {
            return Err(ApiError::not_found(format!("id: no manual run {id}")));
        };
        // The job_runs row: found by the lease epoch while running, by the result after.
        let job_run = match (request.state.as_str(), &request.epoch) {
            ("running", Some(epoch)) => {
                let fence = crate::jobs::Fence {
                    key: format!("{}/{}", request.store_id, request.job),
                    epoch: *epoch,
                };
                store
                    .running_run(&request.store_id, &request.job, &fence)
                    .await
                    .map_err(ApiError::internal)?
            }
            _ => match request.result.as_ref().and_then(|r| r.get("run_id")).and_then(Value::as_i64) {
                Some(run_id) => store.run(run_id).await.map_err(ApiError::internal)?,
                None => None,
            },
        };
        let end = request.finished_at.unwrap_or_else(chrono::Utc::now);
        let elapsed = request.started_at.map(|start| (end - start).num_milliseconds() as f64 / 1000.0);
        return ok(
            StatusCode::OK,
            json!({
                "run": request_handle(request.id),
                "state": request.state,
                "store": request.store_id,
                "job": request.job,
                "params": request.params,
                "requested_by": request.requested_by,
                "requested_at": request.requested_at,
                "started_at": request.started_at,
                "finished_at": request.finished_at,
                "instance": request.holder,
                "progress": {"elapsed_secs": elapsed, "job_run": job_run},
                "result": request.result,
                "error": request.error,
            }),
        );
    }
    let number: i64 =
        id.parse().map_err(|_| ApiError::bad(format!("id: {id:?} is not a run id such as 42 or req-7")))?;
    let Some(run) = store.run(number).await.map_err(ApiError::internal)? else {
        return Err(ApiError::not_found(format!("id: no run {id}")));
    };
    let mut value = serde_json::to_value(&run).map_err(ApiError::internal)?;
    if let Value::Object(map) = &mut value {
        map.insert("run".into(), json!(run.id));
        map.insert("state".into(), json!(run.outcome));
    }
    ok(StatusCode::OK, value)
}

/// Parses a JSON body (empty means `{}`), naming where it breaks.
fn json_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("body: not valid JSON: {e}")))
}

async fn trigger(
    State(state): State<AdminState>,
    Path((store, job)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let job = parse_job(&job)?;
    check_store(&state, &store, Some(job))?;
    let params = json_body(&body)?;
    if !params.is_object() {
        return Err(ApiError::bad(
            "body: expected a JSON object of job params, such as {\"since\": .., \"until\": ..}",
        ));
    }
    if job == JobKind::Orders {
        crate::runner::order_pull(&params).map_err(|e| match e {
            JobError::Invalid(message) => ApiError::bad(message),
            other => ApiError::bad(other.to_string()),
        })?;
    }
    let by = headers
        .get("x-flagsync-user")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64)
        .unwrap_or("admin-api");
    let id = state.control.request_run(&store, job, &params, by).await.map_err(ApiError::internal)?;
    let handle = request_handle(id);
    ok(StatusCode::ACCEPTED, json!({"run": handle, "status": format!("/api/v1/runs/{handle}")}))
}

async fn set_paused(state: &AdminState, store: &str, job: Option<&str>, paused: bool) -> ApiResult {
    let job = job.map(parse_job).transpose()?;
    check_store(state, store, job)?;
    state.control.set_paused(store, job, paused).await.map_err(ApiError::internal)?;
    ok(StatusCode::OK, json!({"store": store, "job": job.map(JobKind::as_str), "paused": paused}))
}

async fn pause_store(State(state): State<AdminState>, Path(store): Path<String>) -> ApiResult {
    set_paused(&state, &store, None, true).await
}

async fn resume_store(State(state): State<AdminState>, Path(store): Path<String>) -> ApiResult {
    set_paused(&state, &store, None, false).await
}

async fn pause_job(State(state): State<AdminState>, Path((store, job)): Path<(String, String)>) -> ApiResult {
    set_paused(&state, &store, Some(&job), true).await
}

async fn resume_job(
    State(state): State<AdminState>,
    Path((store, job)): Path<(String, String)>,
) -> ApiResult {
    set_paused(&state, &store, Some(&job), false).await
}

fn inbox_reply(result: Result<Value, String>) -> ApiResult {
    match result {
        Ok(value) => ok(StatusCode::OK, value),
        Err(message) if message.ends_with("not available yet") => {
            Err(ApiError(StatusCode::NOT_IMPLEMENTED, message))
        }
        Err(message) => Err(ApiError::bad(message)),
    }
}

async fn operator_stock(State(state): State<AdminState>, body: Bytes) -> ApiResult {
    let body = json_body(&body)?;
    inbox_reply(state.control.generation().inbox.stock(body).await)
}

async fn operator_shipments(State(state): State<AdminState>, body: Bytes) -> ApiResult {
    let body = json_body(&body)?;
    inbox_reply(state.control.generation().inbox.shipments(body).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abd", b"abc"));
        assert!(!same_secret(b"ab", b"abc"));
        assert!(!same_secret(b"", b"abc"));
    }
}
