//! The JOS request signature, written from JD's documentation: upper-case hex MD5 over the
//! secret, every sent parameter but `sign` sorted by name, and the secret again.

use md5::{Digest, Md5};

/// `UPPER(HEX(MD5(secret + name1 value1 + name2 value2 ... + secret)))` over `params`
/// sorted by name in byte order. `sign` itself and empty values are left out, as JD's
/// gateway does; values are hashed raw (as decoded from the request), never URL-encoded.
pub(crate) fn sign<'a, I>(secret: &str, params: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut pairs: Vec<(&str, &str)> =
        params.into_iter().filter(|(name, value)| *name != "sign" && !value.is_empty()).collect();
    // Stable, so a repeated name keeps the order in which it was sent.
    pairs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut hasher = Md5::new();
    hasher.update(secret.as_bytes());
    for (name, value) in pairs {
        hasher.update(name.as_bytes());
        hasher.update(value.as_bytes());
    }
    hasher.update(secret.as_bytes());
    hex::encode_upper(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_research_notes_vector() {
        let params = [
            ("method", "jingdong.pop.order.get"),
            ("timestamp", "2026-09-25 10:00:00"),
            ("v", "2.0"),
            ("app_key", "123456780233FA31AD94AA59CFA65305"),
            ("access_token", "12345678-b0e1-4d0c-9d10-a998d9597d75"),
            (
                "360buy_param_json",
                r#"{"order_id":67834311,"optional_fields":"orderId,orderState,itemInfoList,modified"}"#,
            ),
        ];
        assert_eq!(sign("jd-secret-0123456789", params), "D2EF80AC95247E6ECA5F732F9218931C");
    }

    #[test]
    fn ignores_sign_and_empty_values_but_not_other_changes() {
        let base = [("method", "m"), ("v", "2.0")];
        let expected = sign("s", base);
        assert_eq!(sign("s", [("method", "m"), ("v", "2.0"), ("sign", "X"), ("format", "")]), expected);
        assert_ne!(sign("s", [("method", "m"), ("v", "2.1")]), expected);
        assert_ne!(sign("t", base), expected);
    }
}
