//! One signed TOP call: common parameters, Beijing timestamp, signature, the shared rate
//! limiter, the transport, and the reply turned into a value or a classified error.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flagsync_market::transport::{HttpMethod, HttpReply, HttpRequest, Transport};
use flagsync_market::{Clock, ConnectorError};
use governor::DefaultDirectRateLimiter;

use crate::config::TaobaoConfig;
use crate::error::from_transport;
use crate::limiter;
use crate::sign::{is_sent, sign};

pub(crate) struct Client {
    pub(crate) config: TaobaoConfig,
    transport: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
    limiter: Arc<DefaultDirectRateLimiter>,
}

/// A reply parser: the api name and the raw reply to a value or an error.
pub(crate) type Parser<T> = fn(&str, &HttpReply) -> Result<T, ConnectorError>;

impl Client {
    pub(crate) fn new(config: TaobaoConfig, transport: Arc<dyn Transport>, clock: Arc<dyn Clock>) -> Self {
        let limiter = limiter::for_app(&config.app_key, config.calls_per_second);
        Self { config, transport, clock, limiter }
    }

    /// The full, signed form for `api`. Every API this connector calls acts for the
    /// seller, so the session always goes along.
    pub(crate) fn signed_params(&self, api: &str, params: &[(&str, String)]) -> Vec<(String, String)> {
        let common = [
            ("method", api.to_string()),
            ("app_key", self.config.app_key.clone()),
            ("session", self.config.session.clone()),
            ("timestamp", flagsync_market::time::format_beijing(self.clock.now())),
            ("v", "2.0".to_string()),
            ("format", "json".to_string()),
            ("simplify", "true".to_string()),
            ("sign_method", self.config.sign_method.as_str().to_string()),
        ];
        // Empty values are dropped from the form as well as from the signature, or the
        // gateway would hash a different set than we did.
        let mut all: Vec<(String, String)> = common
            .iter()
            .chain(params.iter())
            .filter(|(name, value)| is_sent(name, value))
            .map(|(name, value)| (name.to_string(), value.clone()))
            .collect();
        let signature = sign(self.config.sign_method, &self.config.app_secret, &all);
        all.push(("sign".to_string(), signature));
        all
    }

    /// One attempt: wait for the app's rate budget, send, parse.
    pub(crate) async fn call<T>(
        &self,
        api: &str,
        params: &[(&str, String)],
        calls: &AtomicU64,
        parse: Parser<T>,
    ) -> Result<T, ConnectorError> {
        self.limiter.until_ready().await;
        let request = HttpRequest {
            method: HttpMethod::Post,
            url: self.config.gateway.clone(),
            api: api.to_string(),
            params: self.signed_params(api, params),
        };
        calls.fetch_add(1, Ordering::Relaxed);
        let reply = self.transport.send(&request).await.map_err(|e| from_transport(api, &e))?;
        let result = parse(api, &reply);
        if let Err(error) = &result {
            tracing::debug!(api, kind = ?error.kind, code = ?error.code, sub_code = ?error.sub_code, "top call failed");
        }
        result
    }

    /// Attempts under the retry policy, but never again after an ambiguous failure: for
    /// incremental writes, which must not be applied twice.
    pub(crate) async fn call_not_twice<T>(
        &self,
        api: &str,
        params: &[(&str, String)],
        calls: &AtomicU64,
        parse: Parser<T>,
    ) -> Result<T, ConnectorError> {
        self.config
            .retry
            .run_not_twice(rand::random::<f64>, |_attempt| self.call(api, params, calls, parse))
            .await
    }

    /// Attempts under the retry policy; for reads and absolute writes only, since a lost
    /// reply is retried as if nothing happened. Each attempt is signed with a fresh
    /// timestamp.
    pub(crate) async fn call_retrying<T>(
        &self,
        api: &str,
        params: &[(&str, String)],
        calls: &AtomicU64,
        parse: Parser<T>,
    ) -> Result<T, ConnectorError> {
        self.config.retry.run(rand::random::<f64>, |_attempt| self.call(api, params, calls, parse)).await
    }
}
