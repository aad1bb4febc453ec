//! Beijing time at the connector edge. Both marketplaces speak `yyyy-MM-dd HH:mm:ss` in
//! Asia/Shanghai (UTC+8, no daylight saving since 1991), whatever the host's time zone.

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};

const FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// UTC+8, exact for Asia/Shanghai (checked at compile time).
pub const BEIJING: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(offset) => offset,
    None => panic!("utc+8 is a valid offset"),
};

/// UTC+8, exact for Asia/Shanghai.
pub fn beijing() -> FixedOffset {
    BEIJING
}

/// Formats an instant as Beijing wall-clock time, `yyyy-MM-dd HH:mm:ss`.
pub fn format_beijing(at: DateTime<Utc>) -> String {
    at.with_timezone(&beijing()).format(FORMAT).to_string()
}

/// Parses `yyyy-MM-dd HH:mm:ss` (optionally with `.fff` and/or a `+0800` suffix) as Beijing
/// time. Returns `None` for JD's "not set" placeholders (`0001-01-01 00:00:00`,
/// `1970-01-01 00:00:00`) and for anything unparsable.
pub fn parse_beijing(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if text.is_empty() || text.starts_with("0001-01-01") || text.starts_with("1970-01-01 00:00:00") {
        return None;
    }
    // chrono's %Y accepts a sign; a year must start with a digit.
    if !text.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let base = text.get(..19)?;
    let naive = NaiveDateTime::parse_from_str(base, FORMAT).ok()?;
    beijing().from_local_datetime(&naive).single().map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_in_beijing_whatever_the_host_zone() {
        let at = Utc.with_ymd_and_hms(2026, 11, 10, 16, 0, 5).single().unwrap_or_default();
        assert_eq!(format_beijing(at), "2026-11-11 00:00:05");
        assert_eq!(parse_beijing("2026-11-11 00:00:05"), Some(at));
        assert_eq!(parse_beijing("2026-11-11 00:00:05.000+0800"), Some(at));
        assert_eq!(parse_beijing("0001-01-01 00:00:00"), None);
        assert_eq!(parse_beijing("garbage"), None);
    }
}
