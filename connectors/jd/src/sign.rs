//! JOS request signing: upper-case hex MD5 over the secret-wrapped, name-sorted parameters.

use md5::{Digest, Md5};

/// Signs the parameters of one JOS call.
///
/// `sign = UPPER(HEX(MD5(secret + name1 + value1 + name2 + value2 ... + secret)))` over every
/// parameter except `sign`, sorted by name (byte order, so `360buy_param_json` comes first),
/// hashing the raw UTF-8 values (not URL-encoded). Empty values are skipped, because the
/// request drops them too and the gateway signs only what it receives.
pub fn sign(secret: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> =
        params.iter().filter(|(name, value)| name != "sign" && !value.is_empty()).collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut hasher = Md5::new();
    hasher.update(secret.as_bytes());
    for (name, value) in sorted {
        hasher.update(name.as_bytes());
        hasher.update(value.as_bytes());
    }
    hasher.update(secret.as_bytes());
    hex::encode_upper(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    /// The vector from the research notes (section 2.2).
    #[test]
    fn matches_the_notes_vector() {
        let p = params(&[
            ("method", "jingdong.pop.order.get"),
            ("app_key", "123456780233FA31AD94AA59CFA65305"),
            ("access_token", "12345678-b0e1-4d0c-9d10-a998d9597d75"),
            ("timestamp", "2026-09-25 10:00:00"),
            ("v", "2.0"),
            (
                "360buy_param_json",
                r#"{"order_id":67834311,"optional_fields":"orderId,orderState,itemInfoList,modified"}"#,
            ),
        ]);
        assert_eq!(sign("jd-secret-0123456789", &p), "D2EF80AC95247E6ECA5F732F9218931C");
    }

    /// Computed independently with Python's hashlib over the UTF-8 bytes:
    ///
    /// ```sh
    /// python3 -c 'import hashlib; s="jd-secret-0123456789"; c=s+"360buy_param_json"+"{\"orderId\":\"301234567890\",\"logiCoprId\":\"467\",\"logiNo\":\"SF1234567890\",\"remark\":\"顺丰速运 合约机\"}"+"access_token"+"12345678-b0e1-4d0c-9d10-a998d9597d75"+"app_key"+"123456780233FA31AD94AA59CFA65305"+"format"+"json"+"method"+"jingdong.pop.order.shipment"+"timestamp"+"2026-11-11 00:00:05"+"v"+"2.0"+s; print(hashlib.md5(c.encode("utf-8")).hexdigest().upper())'
    /// ```
    ///
    /// The `installId` parameter is empty here: it must be left out of the signature.
    #[test]
    fn matches_an_independent_vector_with_chinese_text_and_drops_empty_values() {
        let p = params(&[
            ("v", "2.0"),
            ("timestamp", "2026-11-11 00:00:05"),
            ("method", "jingdong.pop.order.shipment"),
            ("format", "json"),
            ("installId", ""),
            ("app_key", "123456780233FA31AD94AA59CFA65305"),
            ("access_token", "12345678-b0e1-4d0c-9d10-a998d9597d75"),
            (
                "360buy_param_json",
                r#"{"orderId":"301234567890","logiCoprId":"467","logiNo":"SF1234567890","remark":"顺丰速运 合约机"}"#,
            ),
            ("sign", "ignored"),
        ]);
        assert_eq!(sign("jd-secret-0123456789", &p), "C93CF3273CFE07757419F544879E4117");
    }
}
