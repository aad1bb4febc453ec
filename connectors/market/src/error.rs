//! Connector errors say what the caller should do: retry (after a delay), re-authenticate,
//! or give up. They keep the platform's own code and message.

use std::time::Duration;

/// What kind of failure, as far as the caller is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Rate limited or banned for a while (TOP code 7, JD "2"/"32").
    Throttled,
    /// A server-side fault that a later retry may get past (TOP `isp.*`, B150, JD 999999).
    Transient,
    /// The request may or may not have been applied: a timeout or a connection dropped
    /// after it was sent. Mutating calls must re-read before retrying.
    Ambiguous,
    /// The credentials (session, access token) are missing, expired or revoked.
    Auth,
    /// The platform refused the request for a reason that will not go away by retrying.
    Rejected,
    /// The reply could not be understood (truncated or malformed JSON, missing fields).
    Malformed,
}

/// What the caller should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    RetryAfter(Option<Duration>),
    Reauthenticate,
    GiveUp,
}

/// A failed call to a remote system.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{platform} {api} failed ({kind:?}{code}): {message}", code = self.code_suffix())]
pub struct ConnectorError {
    pub platform: &'static str,
    /// The remote method, e.g. `taobao.trade.fullinfo.get`.
    pub api: String,
    pub kind: ErrorKind,
    /// The platform's error code and sub-code, kept verbatim.
    pub code: Option<String>,
    pub sub_code: Option<String>,
    pub message: String,
    /// A delay the platform asked for (TOP "This ban will last for N more seconds").
    pub retry_after: Option<Duration>,
}

impl ConnectorError {
    pub fn new(
        platform: &'static str,
        api: impl Into<String>,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> Self {
        Self {
            platform,
            api: api.into(),
            kind,
            code: None,
            sub_code: None,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn with_code(mut self, code: impl Into<String>, sub_code: Option<String>) -> Self {
        self.code = Some(code.into());
        self.sub_code = sub_code;
        self
    }

    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    pub fn action(&self) -> Action {
        match self.kind {
            ErrorKind::Throttled | ErrorKind::Transient | ErrorKind::Ambiguous | ErrorKind::Malformed => {
                Action::RetryAfter(self.retry_after)
            }
            ErrorKind::Auth => Action::Reauthenticate,
            ErrorKind::Rejected => Action::GiveUp,
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self.action(), Action::RetryAfter(_))
    }

    fn code_suffix(&self) -> String {
        match (&self.code, &self.sub_code) {
            (Some(code), Some(sub)) => format!(", code {code}/{sub}"),
            (Some(code), None) => format!(", code {code}"),
            _ => String::new(),
        }
    }
}
