//! One signed TOP call: common parameters, Beijing timestamp, signature, the shared rate
//! limiter, the transport, and the reply turned into a value or a classified error.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flagsync_market::transport::{HttpMethod, HttpReply, HttpRequest, TOP_BATCH_SEPARATOR, Transport};
use flagsync_market::{Clock, ConnectorError};
use governor::DefaultDirectRateLimiter;

use crate::config::TaobaoConfig;
use crate::error::{from_transport, malformed};
use crate::limiter;
use crate::sign::{is_sent, sign, sign_with_body};

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

    /// The common parameters every request carries, empty ones dropped (from the form as
    /// well as from the signature, or the gateway would hash a different set than we did).
    /// Every API this connector calls acts for the seller, so the session always goes along.
    fn common(&self) -> Vec<(String, String)> {
        [
            ("app_key", self.config.app_key.clone()),
            ("session", self.config.session.clone()),
            ("timestamp", flagsync_market::time::format_beijing(self.clock.now())),
            ("v", "2.0".to_string()),
            ("format", "json".to_string()),
            ("simplify", "true".to_string()),
            ("sign_method", self.config.sign_method.as_str().to_string()),
        ]
        .into_iter()
        .filter(|(name, value)| is_sent(name, value))
        .map(|(name, value)| (name.to_string(), value))
        .collect()
    }

    /// The full, signed form for `api`.
    pub(crate) fn signed_params(&self, api: &str, params: &[(&str, String)]) -> Vec<(String, String)> {
        let mut all = vec![("method".to_string(), api.to_string())];
        all.extend(self.common());
        all.extend(
            params
                .iter()
                .filter(|(name, value)| is_sent(name, value))
                .map(|(name, value)| (name.to_string(), value.clone())),
        );
        let signature = sign(self.config.sign_method, &self.config.app_secret, &all);
        all.push(("sign".to_string(), signature));
        all
    }

    /// The query of a batch request: the common parameters, signed with the body.
    fn signed_batch_query(&self, body: &str) -> Vec<(String, String)> {
        let mut all = self.common();
        let signature = sign_with_body(self.config.sign_method, &self.config.app_secret, &all, body);
        all.push(("sign".to_string(), signature));
        all
    }

    /// One attempt at several calls of `api` in one `/router/batch` request: `shared` goes
    /// once in the `#PUBLIC#` part, each entry of `each` is one call's own parameters. The
    /// outer error is the whole request's (transport, a refusal of the batch itself, a reply
    /// that does not split into one part per call); the inner ones are each call's.
    pub(crate) async fn call_batch<T: Send + 'static>(
        &self,
        api: &str,
        shared: &[(&str, String)],
        each: &[Vec<(&str, String)>],
        calls: &AtomicU64,
        parse: Parser<T>,
    ) -> Result<Vec<Result<T, ConnectorError>>, ConnectorError> {
        for _ in 0..each.len() {
            self.limiter.until_ready().await;
        }
        let body = batch_body(api, shared, each);
        let request = HttpRequest {
            method: HttpMethod::Post,
            url: self.config.batch_gateway(),
            api: api.to_string(),
            params: self.signed_batch_query(&body),
            body: Some(body),
            calls: u32::try_from(each.len()).unwrap_or(u32::MAX),
        };
        calls.fetch_add(each.len() as u64, Ordering::Relaxed);
        let reply = self.transport.send(&request).await.map_err(|e| from_transport(api, &e))?;
        // The reply is split and parsed on the blocking pool: a pull keeps several batch
        // requests in flight, and their replies (20 trades each) then parse side by side
        // instead of one after another on the task that drives the pull.
        let (owned_api, expected) = (api.to_string(), each.len());
        tokio::task::spawn_blocking(move || parse_parts(&owned_api, &reply, expected, parse))
            .await
            .map_err(|e| malformed(api, format!("parsing a batch reply failed: {e}")))?
    }

    /// [`Self::call_batch`] under the retry policy, for reads only: a failure of the whole
    /// request is retried as if nothing happened.
    pub(crate) async fn call_batch_retrying<T: Send + 'static>(
        &self,
        api: &str,
        shared: &[(&str, String)],
        each: &[Vec<(&str, String)>],
        calls: &AtomicU64,
        parse: Parser<T>,
    ) -> Result<Vec<Result<T, ConnectorError>>, ConnectorError> {
        self.config
            .retry
            .run(rand::random::<f64>, |_attempt| self.call_batch(api, shared, each, calls, parse))
            .await
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
        let request = HttpRequest::form(
            HttpMethod::Post,
            self.config.gateway.clone(),
            api,
            self.signed_params(api, params),
        );
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

fn encode(out: &mut String, params: &[(&str, String)]) {
    let start = out.len();
    let mut form = url::form_urlencoded::Serializer::for_suffix(std::mem::take(out), start);
    for (name, value) in params.iter().filter(|(name, value)| is_sent(name, value)) {
        form.append_pair(name, value);
    }
    *out = form.finish();
}

/// `#PUBLIC#method=…&<shared>`, then each call's form, joined by the batch separator. A
/// call with no parameters of its own is written `N`, as the SDKs do.
/// Each part of a batch reply, parsed as the reply to its own call; an error when the reply
/// does not hold one part per call (a refusal of the whole batch is one `error_response`).
fn parse_parts<T>(
    api: &str,
    reply: &HttpReply,
    expected: usize,
    parse: Parser<T>,
) -> Result<Vec<Result<T, ConnectorError>>, ConnectorError> {
    let parts: Vec<&str> = reply.body.split(TOP_BATCH_SEPARATOR).collect();
    if parts.len() != expected {
        if parts.len() == 1 {
            parse(api, reply)?;
        }
        return Err(malformed(
            api,
            format!("a batch of {expected} calls was answered with {} parts", parts.len()),
        ));
    }
    Ok(parts
        .into_iter()
        .map(|part| {
            let result = parse(api, &HttpReply { status: reply.status, body: part.to_string() });
            if let Err(error) = &result {
                tracing::debug!(api, kind = ?error.kind, code = ?error.code, sub_code = ?error.sub_code, "top call in a batch failed");
            }
            result
        })
        .collect())
}

fn batch_body(api: &str, shared: &[(&str, String)], each: &[Vec<(&str, String)>]) -> String {
    let mut body = String::from("#PUBLIC#");
    let mut public = vec![("method", api.to_string())];
    public.extend(shared.iter().cloned());
    encode(&mut body, &public);
    for call in each {
        body.push_str(TOP_BATCH_SEPARATOR);
        let start = body.len();
        encode(&mut body, call);
        if body.len() == start {
            body.push('N');
        }
    }
    body
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn batch_body_puts_the_method_and_shared_fields_once() {
        let body = batch_body(
            "taobao.trade.fullinfo.get",
            &[("fields", "tid,status".to_string())],
            &[vec![("tid", "1".to_string())], vec![], vec![("tid", "3".to_string()), ("x", String::new())]],
        );
        assert_eq!(
            body,
            "#PUBLIC#method=taobao.trade.fullinfo.get&fields=tid%2Cstatus\r\n-S-\r\ntid=1\r\n-S-\r\nN\r\n-S-\r\ntid=3"
        );
    }
}
