//! The HTTP exchange under [`HttpOperator`](crate::HttpOperator): a signed JSON request with
//! headers, a status and a body back. The market crate's transport speaks form/query
//! gateway calls only, so the operator keeps this small trait of its own.

use std::time::Duration;

use async_trait::async_trait;
pub use flagsync_market::transport::TransportError;

/// One request to the operator. `Debug` shows the body's length only: a fulfilment body
/// holds the receiver's and the contract holder's personal data in clear.
#[derive(Clone, PartialEq, Eq)]
pub struct OperatorRequest {
    /// `GET` or `POST`.
    pub method: &'static str,
    pub url: String,
    /// The endpoint template (e.g. `POST /v1/fulfilments`), for logs.
    pub endpoint: &'static str,
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body; `None` for a GET.
    pub body: Option<String>,
}

impl std::fmt::Debug for OperatorRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("body_bytes", &self.body.as_ref().map(String::len))
            .finish_non_exhaustive()
    }
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorReply {
    pub status: u16,
    /// The `Retry-After` header as sent, if any.
    pub retry_after: Option<String>,
    pub body: String,
}

#[async_trait]
pub trait OperatorTransport: Send + Sync {
    async fn send(&self, request: &OperatorRequest) -> Result<OperatorReply, TransportError>;
}

/// The real HTTP client.
#[derive(Debug, Clone)]
pub struct ReqwestOperatorTransport {
    client: reqwest::Client,
}

impl ReqwestOperatorTransport {
    /// `timeout` bounds a whole exchange; connecting gets at most 10 s of it.
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
impl OperatorTransport for ReqwestOperatorTransport {
    async fn send(&self, request: &OperatorRequest) -> Result<OperatorReply, TransportError> {
        let mut builder = match request.method {
            "POST" => self.client.post(&request.url),
            _ => self.client.get(&request.url),
        };
        for (name, value) in &request.headers {
            builder = builder.header(*name, value);
        }
        if let Some(body) = &request.body {
            builder = builder.header("Content-Type", "application/json; charset=utf-8").body(body.clone());
        }
        // `without_url` keeps order ids out of the message; the body never appears in it.
        let response = builder.send().await.map_err(|e| {
            if e.is_connect() {
                TransportError::Connect(e.without_url().to_string())
            } else {
                TransportError::Ambiguous(e.without_url().to_string())
            }
        })?;
        let status = response.status().as_u16();
        let retry_after =
            response.headers().get("Retry-After").and_then(|value| value.to_str().ok()).map(str::to_string);
        let bytes =
            response.bytes().await.map_err(|e| TransportError::Ambiguous(e.without_url().to_string()))?;
        Ok(OperatorReply { status, retry_after, body: String::from_utf8_lossy(&bytes).into_owned() })
    }
}
