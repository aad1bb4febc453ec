//! JOS reply envelopes: the `_responce` root, gateway `error_response`, and the second
//! `success` flag inside business results, classified into what the caller should do.

use flagsync_market::{ConnectorError, ErrorKind};
use serde_json::{Map, Value};

/// The platform label on every error and log line.
pub const PLATFORM: &str = "jd";

/// What a gateway error code means for the caller.
///
/// Codes from JD's gateway table and the integrators cited in the research notes: 2 and 32
/// (and sub-code `isp.call-limited`) are call limits; 18 and 19 bad or expired tokens; 8 a
/// timestamp outside the allowed skew, which a retry with a fresh timestamp fixes; 4, 5, 7,
/// 11, 12, 14 and 15 malformed requests. Unknown codes are refusals unless the sub-code is
/// an `isp.*` (server-side) one.
pub fn classify_gateway(code: &str, sub_code: Option<&str>) -> ErrorKind {
    if sub_code == Some("isp.call-limited") {
        return ErrorKind::Throttled;
    }
    match code {
        "2" | "32" => ErrorKind::Throttled,
        "18" | "19" => ErrorKind::Auth,
        "8" => ErrorKind::Transient,
        "4" | "5" | "7" | "11" | "12" | "14" | "15" => ErrorKind::Rejected,
        // Codes the notes do not list (the gateway's service faults among them, such as a
        // remote timeout) are retried a bounded number of times rather than given up on.
        _ => ErrorKind::Transient,
    }
}

/// What a business failure code means: JD's `999999`/`99999999` are system errors worth a
/// retry; every other business failure is a refusal.
pub fn classify_business(code: Option<&str>) -> ErrorKind {
    match code {
        Some("999999" | "99999999") => ErrorKind::Transient,
        _ => ErrorKind::Rejected,
    }
}

/// A string or number field as text (JD sends codes and ids either way).
pub(crate) fn text_of(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn first_text(object: &Value, keys: &[&str]) -> Option<String> {
    keys.iter().filter_map(|key| text_of(object.get(*key))).find(|text| !text.is_empty())
}

fn malformed(api: &str, message: impl Into<String>) -> ConnectorError {
    ConnectorError::new(PLATFORM, api, ErrorKind::Malformed, message)
}

/// Opens a reply: checks it is JSON, turns `error_response` and a non-zero root `code` into
/// errors, and returns the `<method_with_underscores>_responce` object.
pub fn open(api: &str, status: u16, body: &str) -> Result<Map<String, Value>, ConnectorError> {
    let value: Value = match serde_json::from_str(body) {
        Ok(value) => value,
        Err(error) => {
            let kind = match status {
                429 => ErrorKind::Throttled,
                500..=599 => ErrorKind::Transient,
                _ => ErrorKind::Malformed,
            };
            // The serde message names a position, never the body's content.
            return Err(ConnectorError::new(
                PLATFORM,
                api,
                kind,
                format!("http {status} reply is not json: {error}"),
            ));
        }
    };
    let Value::Object(mut top) = value else {
        return Err(malformed(api, "reply is not a json object"));
    };
    if let Some(error) = top.get("error_response") {
        return Err(gateway_error(api, error));
    }
    let base = api.replace('.', "_");
    // JD spells it `_responce`; the correct spelling is accepted too in case it is fixed.
    let root = top.remove(&format!("{base}_responce")).or_else(|| top.remove(&format!("{base}_response")));
    let Some(root) = root else {
        let kind = if (500..=599).contains(&status) { ErrorKind::Transient } else { ErrorKind::Malformed };
        return Err(ConnectorError::new(
            PLATFORM,
            api,
            kind,
            format!("http {status} reply has neither {base}_responce nor error_response"),
        ));
    };
    let Value::Object(root) = root else {
        return Err(malformed(api, format!("{base}_responce is not an object")));
    };
    if let Some(code) = text_of(root.get("code"))
        && code != "0"
    {
        return Err(gateway_error(api, &Value::Object(root)));
    }
    Ok(root)
}

/// An `error_response` (or a root with a non-zero code) as a classified error.
fn gateway_error(api: &str, error: &Value) -> ConnectorError {
    let code = text_of(error.get("code")).unwrap_or_else(|| "unknown".into());
    let sub_code = text_of(error.get("sub_code")).filter(|s| !s.is_empty());
    let message = first_text(error, &["en_desc", "zh_desc", "msg", "sub_msg"])
        .unwrap_or_else(|| "gateway error with no description".into());
    let kind = classify_gateway(&code, sub_code.as_deref());
    ConnectorError::new(PLATFORM, api, kind, message).with_code(code, sub_code)
}

/// The second check: a business result object's own `success` flag. A failure keeps JD's
/// `errorCode`/`numberCode` as the code and `chineseErrCode`/`englishErrCode` as the message.
pub fn check_business(api: &str, result: &Value, what: &str) -> Result<(), ConnectorError> {
    let success = match result.get("success") {
        Some(Value::Bool(flag)) => *flag,
        Some(Value::String(text)) if text == "true" || text == "false" => text == "true",
        _ => return Err(malformed(api, format!("{what} has no success flag"))),
    };
    if success {
        return Ok(());
    }
    let code = first_text(result, &["errorCode", "numberCode", "code"]);
    let chinese = first_text(result, &["chineseErrCode"]);
    let english = first_text(result, &["englishErrCode", "message", "msg"]);
    let message = match (chinese, english) {
        (Some(zh), Some(en)) => format!("{zh} ({en})"),
        (Some(one), None) | (None, Some(one)) => one,
        (None, None) => "business failure with no message".into(),
    };
    let kind = classify_business(code.as_deref());
    let error = ConnectorError::new(PLATFORM, api, kind, message);
    Err(match code {
        Some(code) => error.with_code(code, None),
        None => error,
    })
}

/// The named result object inside an opened root.
pub(crate) fn result<'a>(
    api: &str,
    root: &'a Map<String, Value>,
    key: &str,
) -> Result<&'a Value, ConnectorError> {
    match root.get(key) {
        Some(value) if value.is_object() => Ok(value),
        _ => Err(malformed(api, format!("reply has no {key} object"))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const API: &str = "jingdong.pop.order.shipment";

    #[test]
    fn every_gateway_code_is_classified() {
        let table = [
            ("2", None, ErrorKind::Throttled),
            ("32", None, ErrorKind::Throttled),
            ("99", Some("isp.call-limited"), ErrorKind::Throttled),
            ("18", None, ErrorKind::Auth),
            ("19", None, ErrorKind::Auth),
            ("12", None, ErrorKind::Rejected),
            ("11", None, ErrorKind::Rejected),
            ("14", None, ErrorKind::Rejected),
            ("15", None, ErrorKind::Rejected),
            ("4", None, ErrorKind::Rejected),
            ("5", None, ErrorKind::Rejected),
            ("7", None, ErrorKind::Rejected),
            ("8", None, ErrorKind::Transient),
            ("2001", None, ErrorKind::Transient),
            ("66", Some("isp.internal-error"), ErrorKind::Transient),
        ];
        for (code, sub, kind) in table {
            assert_eq!(classify_gateway(code, sub), kind, "code {code} sub {sub:?}");
        }
        assert_eq!(classify_business(Some("999999")), ErrorKind::Transient);
        assert_eq!(classify_business(Some("99999999")), ErrorKind::Transient);
        assert_eq!(classify_business(Some("10400001")), ErrorKind::Rejected);
        assert_eq!(classify_business(None), ErrorKind::Rejected);
    }

    #[test]
    fn the_misspelled_root_with_code_zero_opens() {
        let body = r#"{"jingdong_pop_order_shipment_responce":{"code":"0","sopjosshipment_result":{"success":true}}}"#;
        let root = open(API, 200, body).unwrap();
        check_business(API, result(API, &root, "sopjosshipment_result").unwrap(), "x").unwrap();
        let numeric =
            r#"{"jingdong_pop_order_shipment_responce":{"code":0,"sopjosshipment_result":{"success":true}}}"#;
        assert!(open(API, 200, numeric).is_ok());
    }

    #[test]
    fn gateway_errors_with_string_or_numeric_codes_are_classified() {
        let body = r#"{"error_response":{"code":"19","zh_desc":"token已过期或者不存在，请重新授权访问","en_desc":"Invalid access_token"}}"#;
        let error = open(API, 200, body).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Auth);
        assert_eq!(error.code.as_deref(), Some("19"));
        assert_eq!(error.message, "Invalid access_token");

        let numeric = r#"{"error_response":{"code":12,"zh_desc":"无效签名"}}"#;
        let error = open(API, 200, numeric).unwrap_err();
        assert_eq!((error.kind, error.code.as_deref()), (ErrorKind::Rejected, Some("12")));
        assert_eq!(error.message, "无效签名");

        let limited = r#"{"error_response":{"code":"66","sub_code":"isp.call-limited","zh_desc":"x"}}"#;
        assert_eq!(open(API, 200, limited).unwrap_err().kind, ErrorKind::Throttled);

        let in_root = r#"{"jingdong_pop_order_shipment_responce":{"code":"32","zh_desc":"操作太频繁"}}"#;
        assert_eq!(open(API, 200, in_root).unwrap_err().kind, ErrorKind::Throttled);
    }

    #[test]
    fn inner_success_false_is_a_business_failure_with_its_codes() {
        let failed = serde_json::json!({"success":false,"chineseErrCode":"运单号不合法","englishErrCode":"invalid waybill","errorCode":"10100016"});
        let error = check_business(API, &failed, "sopjosshipment_result").unwrap_err();
        assert_eq!(error.kind, ErrorKind::Rejected);
        assert_eq!(error.code.as_deref(), Some("10100016"));
        assert!(error.message.contains("运单号不合法") && error.message.contains("invalid waybill"));

        let system = serde_json::json!({"success":false,"chineseErrCode":"系统异常","errorCode":999999});
        assert_eq!(check_business(API, &system, "r").unwrap_err().kind, ErrorKind::Transient);
        let orders = serde_json::json!({"success":false,"numberCode":99999999,"englishErrCode":"busy"});
        let error = check_business(API, &orders, "apiResult").unwrap_err();
        assert_eq!((error.kind, error.code.as_deref()), (ErrorKind::Transient, Some("99999999")));

        let missing = serde_json::json!({"chineseErrCode":""});
        assert_eq!(check_business(API, &missing, "r").unwrap_err().kind, ErrorKind::Malformed);
    }

    #[test]
    fn replies_that_are_not_json_or_lack_the_root_are_malformed() {
        let truncated = r#"{"jingdong_pop_order_shipment_responce":{"code":"0","sopjos"#;
        assert_eq!(open(API, 200, truncated).unwrap_err().kind, ErrorKind::Malformed);
        assert_eq!(open(API, 200, "<html>busy</html>").unwrap_err().kind, ErrorKind::Malformed);
        assert_eq!(open(API, 502, "<html>bad gateway</html>").unwrap_err().kind, ErrorKind::Transient);
        let other = r#"{"jingdong_pop_order_get_responce":{"code":"0"}}"#;
        let error = open(API, 200, other).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Malformed);
        assert!(error.message.contains("jingdong_pop_order_shipment_responce"), "{}", error.message);
    }
}
