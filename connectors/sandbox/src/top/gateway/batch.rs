//! `/router/batch`: several API calls in one signed HTTP request.
//!
//! The system parameters ride in the URL query. The body (`text/plain;charset=UTF-8`) holds
//! the calls, split by the `top-api-separator` header's value or else `"\r\n-S-\r\n"`. A first
//! part starting with `#PUBLIC#` holds form-encoded parameters for every call (typically the
//! `method` when all calls are the same API); every other part is one call's form-encoded
//! parameters, or `N` for a call with none of its own. The signature covers the sorted query
//! parameters followed by the raw body exactly as sent.
//!
//! The reply joins the calls' replies in request order with the same separator, each exactly
//! what `/router/rest` would answer for that call. A failure of the whole batch (the URL-level
//! checks, a body that is not UTF-8, no call, too many calls) is a single `error_response`
//! with no separator, which is how the SDKs tell it apart (the part count does not match).
//!
//! Each call goes through the same per-call path as a `/router/rest` call. The faults about
//! the HTTP exchange (drop, truncation, proxy page, delay) apply to the whole reply.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, Utc};

use super::super::store;
use super::super::wire::{Params, TopError};
use super::super::{TopConfig, TopSandbox};
use super::{
    Attempt, Call, Outcome, accepted, attempt, check_app_key, check_format_version_timestamp, check_session,
    check_signature, error_body, method_of, render, run, served,
};

/// The most calls one `/router/batch` request may carry in the sandbox. The platform's own
/// cap is not confirmed in our sources.
pub const MAX_BATCH_CALLS: usize = 50;

/// The key under which [`TopSandbox::calls`] counts `/router/batch` HTTP requests (each
/// call inside a batch is counted under its method, as on `/router/rest`).
pub const BATCH_COUNTER: &str = "router/batch";

/// The request header naming the separator.
const SEPARATOR_HEADER: &str = "top-api-separator";

/// The separator when the request names none.
const DEFAULT_SEPARATOR: &str = "\r\n-S-\r\n";

/// Starts a first part holding parameters common to every call.
const PUBLIC_PREFIX: &str = "#PUBLIC#";

/// A whole part standing for a call with no parameters of its own.
const NO_PARAMETERS: &str = "N";

/// A batch past the whole-batch checks: the calls still to run and the replies so far.
struct Batch {
    separator: String,
    /// Each call's parameters: the URL's, overridden by the public part's, overridden by its
    /// own (so a call's `session` wins over the URL's).
    calls: std::vec::IntoIter<Params>,
    replies: Vec<String>,
    /// A call drew `Truncated`: the joined reply is cut in half.
    truncated: bool,
}

enum BatchStep {
    Done(Outcome),
    /// A call drew `Slow`: sleep outside the state lock, run that call, then go on.
    SleepThenRun(Duration, Call, Batch),
}

pub(super) async fn handle(
    State(sandbox): State<TopSandbox>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let separator = separator(&headers);
    let mut step = {
        let mut state = sandbox.lock();
        first_step(&sandbox, &mut state, query.as_deref(), separator, &body)
    };
    loop {
        match step {
            BatchStep::Done(outcome) => return render(outcome),
            BatchStep::SleepThenRun(delay, call, mut batch) => {
                tokio::time::sleep(delay).await;
                let mut state = sandbox.lock();
                let now = sandbox.inner.clock.now();
                state.apply_due(&sandbox.inner.config, now);
                let reply = run(&sandbox, &mut state, &call, None);
                batch.replies.push(reply);
                step = batch.advance(&sandbox, &mut state, now);
            }
        }
    }
}

/// The `top-api-separator` header's value when it is present and not empty.
fn separator(headers: &HeaderMap) -> String {
    headers
        .get(SEPARATOR_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty())
        .unwrap_or(DEFAULT_SEPARATOR)
        .to_string()
}

/// Runs under one hold of the state lock: the whole-batch checks, then every call until the
/// end or a `Slow` fault.
fn first_step(
    sandbox: &TopSandbox,
    state: &mut store::State,
    query: Option<&str>,
    separator: String,
    body: &[u8],
) -> BatchStep {
    let config = &sandbox.inner.config;
    let now = sandbox.inner.clock.now();
    state.apply_due(config, now);
    state.count(BATCH_COUNTER.to_string());
    let mut system = BTreeMap::new();
    if let Some(query) = query {
        system.extend(form_urlencoded::parse(query.as_bytes()).into_owned());
    }
    match open(config, now, &Params(system), separator, body) {
        Ok(batch) => batch.advance(sandbox, state, now),
        Err(error) => BatchStep::Done(Outcome::Json(error_body(state, &error))),
    }
}

/// The whole-batch checks: the URL's system parameters in the order of `/router/rest`'s
/// codes (the signature covering the body), then the body itself.
fn open(
    config: &TopConfig,
    now: DateTime<Utc>,
    system: &Params,
    separator: String,
    body: &[u8],
) -> Result<Batch, TopError> {
    check_app_key(config, system)?;
    check_format_version_timestamp(now, system)?;
    check_signature(config, system, Some(body))?;
    let text = std::str::from_utf8(body).map_err(|_| {
        TopError::new(41, "Invalid arguments")
            .sub("isv.invalid-parameter", "the batch body is not UTF-8 text")
    })?;
    let calls = split(text, &separator, system)?;
    let replies = Vec::with_capacity(calls.len());
    Ok(Batch { separator, calls: calls.into_iter(), replies, truncated: false })
}

/// Each call's parameters, in order.
fn split(text: &str, separator: &str, system: &Params) -> Result<Vec<Params>, TopError> {
    let parts: Vec<&str> = if text.is_empty() { Vec::new() } else { text.split(separator).collect() };
    let public_part =
        parts.split_first().and_then(|(first, rest)| Some((first.strip_prefix(PUBLIC_PREFIX)?, rest)));
    let (public, parts) = match public_part {
        Some((public, rest)) => (form(public), rest),
        None => (BTreeMap::new(), parts.as_slice()),
    };
    if parts.is_empty() {
        return Err(TopError::new(40, "Missing required arguments")
            .sub("isv.missing-parameter", "the batch holds no API call"));
    }
    if parts.len() > MAX_BATCH_CALLS {
        return Err(TopError::new(41, "Invalid arguments").sub(
            "isv.invalid-parameter",
            format!("a batch holds at most {MAX_BATCH_CALLS} API calls; this one holds {}", parts.len()),
        ));
    }
    Ok(parts
        .iter()
        .map(|part| {
            let mut params = system.0.clone();
            params.extend(public.iter().map(|(name, value)| (name.clone(), value.clone())));
            if *part != NO_PARAMETERS {
                params.extend(form(part));
            }
            Params(params)
        })
        .collect())
}

fn form(text: &str) -> BTreeMap<String, String> {
    form_urlencoded::parse(text.as_bytes()).into_owned().collect()
}

/// The checks of one call in a batch; a failure is that call's reply only.
fn check_call(config: &TopConfig, now: DateTime<Utc>, params: Params) -> Result<Call, TopError> {
    let method = method_of(&params)?;
    let (method, needs_session) = served(method)?;
    if needs_session {
        check_session(config, now, &params)?;
    }
    Ok(accepted(method, params))
}

impl Batch {
    /// Runs the remaining calls, in order, until the end or an exchange fault.
    fn advance(mut self, sandbox: &TopSandbox, state: &mut store::State, now: DateTime<Utc>) -> BatchStep {
        let config = &sandbox.inner.config;
        while let Some(params) = self.calls.next() {
            let call = match check_call(config, now, params) {
                Ok(call) => call,
                Err(error) => {
                    self.replies.push(error_body(state, &error));
                    continue;
                }
            };
            match attempt(sandbox, state, now, &call) {
                Attempt::Reply(reply) => self.replies.push(reply),
                Attempt::Truncated(reply) => {
                    self.replies.push(reply);
                    self.truncated = true;
                }
                Attempt::Slow(delay) => return BatchStep::SleepThenRun(delay, call, self),
                // The calls before this one have run; the client gets no reply for any.
                Attempt::Drop => return BatchStep::Done(Outcome::Drop),
                Attempt::Malformed => return BatchStep::Done(Outcome::Malformed),
            }
        }
        let body = self.replies.join(&self.separator);
        if self.truncated {
            let mut body = body.into_bytes();
            body.truncate(body.len() / 2);
            BatchStep::Done(Outcome::Truncated(body))
        } else {
            BatchStep::Done(Outcome::Json(body))
        }
    }
}
