//! One JOS call: rate limit, common parameters, the business JSON serialised once, signing,
//! the POST, and transport failures classified; plus the retrying wrapper for safe calls.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, OnceLock};

use flagsync_market::time::format_beijing;
use flagsync_market::transport::{HttpMethod, HttpReply, HttpRequest, TransportError};
use flagsync_market::{ConnectorError, ErrorKind};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::Value;

use crate::JdConnector;
use crate::envelope::PLATFORM;
use crate::sign::sign;

/// A parser from `(http status, body)` to a result, one per remote method.
pub(crate) type Parser<T> = fn(u16, &str) -> Result<T, ConnectorError>;

/// The limiter for an app key, shared by every connector in the process that uses that key,
/// because JD counts calls per app. The first connector's rate wins for a key.
pub(crate) fn limiter_for(app_key: &str, per_second: u32) -> Arc<DefaultDirectRateLimiter> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Arc<DefaultDirectRateLimiter>>>> = OnceLock::new();
    let quota = Quota::per_second(NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN));
    let fresh = || Arc::new(RateLimiter::direct(quota));
    match REGISTRY.get_or_init(Default::default).lock() {
        Ok(mut registry) => registry.entry(app_key.to_string()).or_insert_with(fresh).clone(),
        // A poisoned registry only loses sharing, never the limit itself.
        Err(_) => fresh(),
    }
}

impl JdConnector {
    /// Builds the signed request for one attempt. The timestamp is taken per attempt so a
    /// retry after error 8 (timestamp out of range) carries a fresh one.
    pub(crate) fn build_request(&self, api: &str, business_json: &str) -> HttpRequest {
        let config = &self.config;
        let mut params: Vec<(String, String)> = [
            ("360buy_param_json", business_json),
            ("access_token", config.access_token.as_str()),
            ("app_key", config.app_key.as_str()),
            ("format", "json"),
            ("method", api),
            ("timestamp", &format_beijing(self.clock.now())),
            ("v", "2.0"),
        ]
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
        let signature = sign(&config.app_secret, &params);
        params.push(("sign".into(), signature));
        HttpRequest::form(HttpMethod::Post, config.gateway.clone(), api, params)
    }

    /// One attempt, no retry.
    pub(crate) async fn once<T>(
        &self,
        api: &'static str,
        business_json: &str,
        parse: Parser<T>,
    ) -> Result<T, ConnectorError> {
        self.limiter.until_ready().await;
        let request = self.build_request(api, business_json);
        let reply: HttpReply = self.transport.send(&request).await.map_err(|error| {
            let kind = match &error {
                TransportError::Connect(_) => ErrorKind::Transient,
                TransportError::Ambiguous(_) => ErrorKind::Ambiguous,
                // A replay with nothing left: retrying cannot help and must fail loudly.
                TransportError::NotRecorded(_) => ErrorKind::Rejected,
            };
            ConnectorError::new(PLATFORM, api, kind, error.to_string())
        })?;
        let outcome = parse(reply.status, &reply.body);
        if let Err(error) = &outcome {
            tracing::debug!(platform = PLATFORM, api, status = reply.status, error = %error, "jd call failed");
        }
        outcome
    }

    /// A call that is safe to repeat (reads, absolute stock writes), retried per the
    /// configured policy. `calls` counts attempts.
    /// Like `with_retry`, but never again after an ambiguous failure (incremental writes).
    pub(crate) async fn not_twice<T>(
        &self,
        api: &'static str,
        business: &Value,
        parse: Parser<T>,
        calls: &mut u64,
    ) -> Result<T, ConnectorError> {
        let business_json = business.to_string();
        self.config
            .retry
            .run_not_twice(rand::random::<f64>, |_| {
                *calls += 1;
                self.once(api, &business_json, parse)
            })
            .await
    }

    pub(crate) async fn with_retry<T>(
        &self,
        api: &'static str,
        business: &Value,
        parse: Parser<T>,
        calls: &mut u64,
    ) -> Result<T, ConnectorError> {
        // Serialised once: the signed bytes are exactly the bytes sent, on every attempt.
        let business_json = business.to_string();
        self.config
            .retry
            .run(rand::random::<f64>, |_| {
                *calls += 1;
                self.once(api, &business_json, parse)
            })
            .await
    }
}
