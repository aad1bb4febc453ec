//! JOS wire conventions: the `_responce` success envelope, `error_response` gateway errors,
//! business failure fields, Beijing-time strings, yuan strings and lenient reading of
//! `360buy_param_json` values.

use chrono::{DateTime, FixedOffset, Months, NaiveDateTime, Offset, TimeZone, Utc};
use serde_json::{Map, Value, json};

/// JD's "not set" time, sent in place of a null (`orderEndTime`, `paymentConfirmTime`).
pub(crate) const UNSET_TIME: &str = "0001-01-01 00:00:00";

/// The JD business "system busy, try again" code, retried by integrators.
pub(crate) const TRANSIENT_CODE: &str = "999999";

fn beijing() -> FixedOffset {
    // 8 hours east is always in range; the fallback is never taken.
    FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| Utc.fix())
}

/// `yyyy-MM-dd HH:mm:ss` in Beijing time, as JD sends every time field.
pub(crate) fn format_time(at: DateTime<Utc>) -> String {
    at.with_timezone(&beijing()).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Reads `yyyy-MM-dd HH:mm:ss` (Beijing time) or the official PHP SDK's
/// `yyyy-MM-dd HH:mm:ss.000+0800`.
pub(crate) fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(naive) = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S") {
        return beijing().from_local_datetime(&naive).single().map(|t| t.with_timezone(&Utc));
    }
    DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%z").ok().map(|t| t.with_timezone(&Utc))
}

/// Calendar months back or forth on the Beijing calendar, as JD counts its window limits.
pub(crate) fn shift_months(at: DateTime<Utc>, months: i32) -> DateTime<Utc> {
    let local = at.with_timezone(&beijing());
    let shifted = if months >= 0 {
        local.checked_add_months(Months::new(months.unsigned_abs()))
    } else {
        local.checked_sub_months(Months::new(months.unsigned_abs()))
    };
    shifted.map(|t| t.with_timezone(&Utc)).unwrap_or(at)
}

/// Whole seconds, the resolution of every time a client sends or sees.
pub(crate) fn to_second(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(at.timestamp(), 0).unwrap_or(at)
}

/// Fen as JD's yuan string, `"1999.00"`.
pub(crate) fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let fen = fen.unsigned_abs();
    format!("{sign}{}.{:02}", fen / 100, fen % 100)
}

/// `{"error_response":{"code":"12","zh_desc":"无效签名","en_desc":"Invalid Signature"}}`.
pub(crate) fn gateway_error(code: &str, zh: &str, en: &str) -> Value {
    json!({"error_response": {"code": code, "zh_desc": zh, "en_desc": en}})
}

/// `{"<method, dots to underscores>_responce":{"code":"0", ...result}}`; JD's own spelling.
pub(crate) fn success(method: &str, mut result: Map<String, Value>) -> Value {
    result.insert("code".into(), json!("0"));
    let root = format!("{}_responce", method.replace('.', "_"));
    let mut envelope = Map::new();
    envelope.insert(root, Value::Object(result));
    Value::Object(envelope)
}

/// A business failure in the shape of shipment and stock results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) code: String,
    pub(crate) zh: String,
    pub(crate) en: String,
}

impl Failure {
    pub(crate) fn new(code: &str, zh: impl Into<String>, en: impl Into<String>) -> Self {
        Self { code: code.to_string(), zh: zh.into(), en: en.into() }
    }

    pub(crate) fn transient() -> Self {
        Self::new(TRANSIENT_CODE, "系统繁忙，请稍后重试", "system busy, please retry later")
    }

    /// `{success:false, errorCode, chineseErrCode, englishErrCode}`.
    pub(crate) fn fields(&self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("success".into(), json!(false));
        map.insert("errorCode".into(), json!(self.code));
        map.insert("chineseErrCode".into(), json!(self.zh));
        map.insert("englishErrCode".into(), json!(self.en));
        map
    }

    /// The orders' `apiResult`, which carries a numeric `numberCode` instead of `errorCode`.
    pub(crate) fn api_result(&self) -> Value {
        json!({
            "success": false,
            "numberCode": self.code.parse::<i64>().unwrap_or(-1),
            "chineseErrCode": self.zh,
            "englishErrCode": self.en,
        })
    }
}

pub(crate) fn api_result_ok() -> Value {
    json!({"success": true, "numberCode": 0, "chineseErrCode": "", "englishErrCode": ""})
}

/// An integer parameter, sent as a JSON number or (as the PHP and Python SDKs do) a numeric
/// string. `Err` names the parameter.
pub(crate) fn int_param(params: &Value, name: &str) -> Result<Option<i64>, String> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => as_int(value).map(Some).ok_or_else(|| format!("{name} must be an integer")),
    }
}

pub(crate) fn as_int(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A string parameter; numbers are accepted as their decimal text.
pub(crate) fn str_param(params: &Value, name: &str) -> Option<String> {
    match params.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn times_read_both_sdk_formats_as_beijing() {
        let plain = parse_time("2026-09-25 10:00:00").unwrap();
        let php = parse_time("2026-09-25 10:00:00.000+0800").unwrap();
        assert_eq!(plain, php);
        assert_eq!(plain.to_rfc3339(), "2026-09-25T02:00:00+00:00");
        assert_eq!(format_time(plain), "2026-09-25 10:00:00");
        assert!(parse_time("2026/09/25").is_none());
    }

    #[test]
    fn envelope_keeps_method_case_and_jd_spelling() {
        let body = success("jingdong.stock.write.updateSkuStock", Map::new());
        assert_eq!(body["jingdong_stock_write_updateSkuStock_responce"]["code"], "0");
        assert_eq!(yuan(199_900), "1999.00");
        assert_eq!(yuan(5), "0.05");
    }
}
