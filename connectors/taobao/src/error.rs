//! Turning TOP `error_response`s, HTTP failures and transport failures into
//! [`ConnectorError`]s that tell the caller whether to retry, re-authenticate or give up.

use std::time::Duration;

use flagsync_market::transport::TransportError;
use flagsync_market::{ConnectorError, ErrorKind};

pub const PLATFORM: &str = "taobao";

/// The gateway's own wait for `isv.*-service-rejection` ("retry in 3 minutes").
pub const SERVICE_REJECTION_WAIT: Duration = Duration::from_secs(180);

/// The sub_code prefix of `taobao.logistics.offline.send` business errors.
pub const LOGISTICS_PREFIX: &str = "isv.logistics-offline-service-error:";

/// An `error_response` as the gateway sent it. `code` is kept as text, exactly as sent
/// (an integer in practice, a string from some proxies).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopError {
    pub code: String,
    pub msg: String,
    pub sub_code: Option<String>,
    pub sub_msg: Option<String>,
}

/// Reads N out of "This ban will last for N more seconds".
pub fn ban_seconds(text: &str) -> Option<Duration> {
    let rest = &text[text.find("ban will last for ")? + "ban will last for ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse::<u64>().ok().map(Duration::from_secs)
}

/// The logistics business code (`B04`, `B150`, `CD28`, ...) of a shipping error.
pub fn logistics_code(sub_code: Option<&str>) -> Option<&str> {
    sub_code?.strip_prefix(LOGISTICS_PREFIX)
}

fn is_service_rejection(sub_code: &str) -> bool {
    // `isv.<word>-service-rejection`, e.g. `isv.trade-service-rejection`.
    sub_code
        .strip_prefix("isv.")
        .and_then(|rest| rest.strip_suffix("-service-rejection"))
        .is_some_and(|word| !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

/// Classifies a gateway error for `api`.
pub fn classify(api: &str, error: &TopError) -> ConnectorError {
    let sub_code = error.sub_code.as_deref().unwrap_or("");
    let code: Option<i64> = error.code.trim().parse().ok();
    let msg =
        if error.msg.trim().is_empty() { format!("error code {}", error.code) } else { error.msg.clone() };
    let mut message = match error.sub_msg.as_deref().filter(|m| !m.is_empty()) {
        Some(sub_msg) => format!("{msg}: {sub_msg}"),
        None => msg,
    };
    let mut retry_after = None;
    let kind = if let Some(logistics) = logistics_code(error.sub_code.as_deref()) {
        // B150 "发货异常，请稍等后重试", S01 data error and CD28 back-end split error are
        // the platform's own "try again"; every other B/CD/F/P code is a business refusal.
        match logistics {
            "B150" | "S01" | "CD28" => ErrorKind::Transient,
            _ => ErrorKind::Rejected,
        }
    } else if code == Some(7) || sub_code.starts_with("accesscontrol.") {
        retry_after = error.sub_msg.as_deref().and_then(ban_seconds).or_else(|| ban_seconds(&error.msg));
        ErrorKind::Throttled
    } else if sub_code == "isp.call-limited" {
        ErrorKind::Throttled
    } else if sub_code.starts_with("isp.") {
        ErrorKind::Transient
    } else if is_service_rejection(sub_code) {
        retry_after = Some(SERVICE_REJECTION_WAIT);
        ErrorKind::Throttled
    } else if matches!(code, Some(26 | 27))
        || sub_code.ends_with("invalid-sessionkey")
        || sub_code.ends_with("session-expired")
    {
        ErrorKind::Auth
    } else {
        match code {
            // 4-6 and 8 are the user/session/partner/frequency call limits.
            Some(4..=6 | 8) => {
                retry_after = error.sub_msg.as_deref().and_then(ban_seconds);
                ErrorKind::Throttled
            }
            Some(10) => ErrorKind::Transient,
            Some(31) => {
                // The gateway allows 10 minutes of skew; a retry with a fresh timestamp
                // may pass, but a host clock that is off will keep failing, so say so.
                message.push_str(
                    " (the gateway rejected the timestamp: is the host clock more than 10 minutes off?)",
                );
                ErrorKind::Transient
            }
            _ => ErrorKind::Rejected,
        }
    };
    let mut out = ConnectorError::new(PLATFORM, api, kind, message)
        .with_code(error.code.clone(), error.sub_code.clone());
    if let Some(wait) = retry_after {
        out = out.with_retry_after(wait);
    }
    out
}

/// A transport failure: no connection is worth a retry; a lost reply is ambiguous.
pub fn from_transport(api: &str, error: &TransportError) -> ConnectorError {
    let kind = match error {
        TransportError::Connect(_) => ErrorKind::Transient,
        TransportError::Ambiguous(_) => ErrorKind::Ambiguous,
        // A replay with nothing recorded is a broken fixture: fail loudly, never retry.
        TransportError::NotRecorded(_) => ErrorKind::Rejected,
    };
    ConnectorError::new(PLATFORM, api, kind, error.to_string())
}

/// A reply we could not understand. Only the body's length is kept: a body may carry
/// buyer personal data.
pub fn malformed(api: &str, what: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::new(PLATFORM, api, ErrorKind::Malformed, format!("unreadable reply: {what}"))
}

/// A request refused before it left (bad input, a window too wide, a negative quantity).
pub fn rejected_locally(api: &str, what: impl Into<String>) -> ConnectorError {
    ConnectorError::new(PLATFORM, api, ErrorKind::Rejected, what)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn top(code: &str, sub_code: Option<&str>, sub_msg: Option<&str>) -> ConnectorError {
        classify(
            "taobao.trades.sold.increment.get",
            &TopError {
                code: code.into(),
                msg: "some message".into(),
                sub_code: sub_code.map(Into::into),
                sub_msg: sub_msg.map(Into::into),
            },
        )
    }

    #[test]
    fn ban_seconds_are_read_from_the_sub_msg() {
        assert_eq!(ban_seconds("This ban will last for 41 more seconds"), Some(Duration::from_secs(41)));
        assert_eq!(
            ban_seconds("This ban will last for 31062 more seconds"),
            Some(Duration::from_secs(31062))
        );
        assert_eq!(ban_seconds("This ban will last for  more seconds"), None);
        assert_eq!(ban_seconds("App Call Limited"), None);
    }

    #[test]
    fn code_7_is_throttled_with_the_ban() {
        for sub in [
            "accesscontrol.limited-by-app-access-count",
            "accesscontrol.limited-by-api-access-count",
            "accesscontrol.limited-by-app-api-access-count",
        ] {
            let e = top("7", Some(sub), Some("This ban will last for 41 more seconds"));
            assert_eq!(e.kind, ErrorKind::Throttled, "{sub}");
            assert_eq!(e.retry_after, Some(Duration::from_secs(41)));
            assert_eq!(e.code.as_deref(), Some("7"));
            assert_eq!(e.sub_code.as_deref(), Some(sub));
        }
        assert_eq!(top("7", None, None).kind, ErrorKind::Throttled);
        assert_eq!(top("7", None, None).retry_after, None);
    }

    #[test]
    fn isp_faults_are_transient_and_call_limited_is_throttled() {
        for sub in
            ["isp.remote-service-timeout", "isp.remote-connection-error", "isp.top-remote-connection-timeout"]
        {
            assert_eq!(top("15", Some(sub), None).kind, ErrorKind::Transient, "{sub}");
            assert_eq!(top("520", Some(sub), None).kind, ErrorKind::Transient, "{sub}");
        }
        assert_eq!(top("15", Some("isp.call-limited"), None).kind, ErrorKind::Throttled);
    }

    #[test]
    fn service_rejection_waits_three_minutes() {
        let e = top(
            "15",
            Some("isv.trade-service-rejection"),
            Some("超时请求过多，请将查询时间间隔缩短,3分钟后再查询！"),
        );
        assert_eq!(e.kind, ErrorKind::Throttled);
        assert_eq!(e.retry_after, Some(SERVICE_REJECTION_WAIT));
        assert_eq!(top("15", Some("isv.item-service-rejection"), None).kind, ErrorKind::Throttled);
        assert_eq!(top("15", Some("isv.-service-rejection"), None).kind, ErrorKind::Rejected);
    }

    #[test]
    fn session_errors_ask_for_reauthentication() {
        assert_eq!(top("27", Some("invalid-sessionkey"), None).kind, ErrorKind::Auth);
        assert_eq!(top("26", None, None).kind, ErrorKind::Auth);
        assert_eq!(top("15", Some("session-expired"), None).kind, ErrorKind::Auth);
        assert_eq!(top("15", Some("isv.invalid-sessionkey"), None).kind, ErrorKind::Auth);
    }

    #[test]
    fn unavailable_and_clock_skew_are_transient() {
        assert_eq!(top("10", None, None).kind, ErrorKind::Transient);
        let skew = top("31", None, None);
        assert_eq!(skew.kind, ErrorKind::Transient);
        assert!(skew.message.contains("clock"), "{}", skew.message);
    }

    #[test]
    fn request_faults_are_rejected() {
        for code in ["25", "11", "12", "13", "21", "22", "23", "24", "28", "29", "30", "40", "41", "42", "43"]
        {
            assert_eq!(top(code, None, None).kind, ErrorKind::Rejected, "code {code}");
        }
    }

    #[test]
    fn logistics_codes() {
        for retry in ["B150", "S01", "CD28"] {
            let sub = format!("{LOGISTICS_PREFIX}{retry}");
            assert_eq!(top("15", Some(&sub), None).kind, ErrorKind::Transient, "{retry}");
        }
        for refuse in ["B01", "B04", "B60", "CD22", "CD01", "F01", "F06"] {
            let sub = format!("{LOGISTICS_PREFIX}{refuse}");
            assert_eq!(top("15", Some(&sub), None).kind, ErrorKind::Rejected, "{refuse}");
        }
        assert_eq!(logistics_code(Some("isv.logistics-offline-service-error:B04")), Some("B04"));
    }

    #[test]
    fn transport_failures() {
        assert_eq!(
            from_transport("m", &TransportError::Connect("refused".into())).kind,
            ErrorKind::Transient
        );
        assert_eq!(
            from_transport("m", &TransportError::Ambiguous("reset".into())).kind,
            ErrorKind::Ambiguous
        );
    }
}
