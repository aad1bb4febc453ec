//! TOP request signatures (md5, hmac, hmac-sha256), written from the platform notes (§1.2).

use std::collections::BTreeMap;

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

/// The `sign_method` values the gateway knows; `md5` when the parameter is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignMethod {
    Md5,
    Hmac,
    HmacSha256,
}

impl SignMethod {
    pub fn parse(value: Option<&str>) -> Option<Self> {
        match value {
            None | Some("md5") => Some(Self::Md5),
            Some("hmac") => Some(Self::Hmac),
            Some("hmac-sha256") => Some(Self::HmacSha256),
            Some(_) => None,
        }
    }
}

/// `name1value1name2value2...` over every parameter except `sign`, empty names and values
/// dropped, names in byte order (a `BTreeMap<String, _>` already iterates that way).
pub fn canonical(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .filter(|(name, value)| name.as_str() != "sign" && !name.is_empty() && !value.is_empty())
        .fold(String::new(), |mut out, (name, value)| {
            out.push_str(name);
            out.push_str(value);
            out
        })
}

/// The upper-case hex signature of `params` under `method`.
pub fn sign(method: SignMethod, secret: &str, params: &BTreeMap<String, String>) -> String {
    digest(method, secret, canonical(params).as_bytes(), b"")
}

/// Whether `given` is the signature of `params`. Hex case is not significant.
pub fn verify(method: SignMethod, secret: &str, params: &BTreeMap<String, String>, given: &str) -> bool {
    let expected = sign(method, secret, params);
    !expected.is_empty() && expected.eq_ignore_ascii_case(given)
}

/// The upper-case hex signature of a request that carries a body signed with it (the batch
/// API, `/router/batch`): the canonical string of the URL parameters followed by the body
/// bytes exactly as sent, hashed as [`sign`] hashes the canonical string alone.
pub fn sign_with_body(
    method: SignMethod,
    secret: &str,
    params: &BTreeMap<String, String>,
    body: &[u8],
) -> String {
    digest(method, secret, canonical(params).as_bytes(), body)
}

/// Whether `given` is [`sign_with_body`]'s signature. Hex case is not significant.
pub fn verify_with_body(
    method: SignMethod,
    secret: &str,
    params: &BTreeMap<String, String>,
    body: &[u8],
    given: &str,
) -> bool {
    let expected = sign_with_body(method, secret, params, body);
    !expected.is_empty() && expected.eq_ignore_ascii_case(given)
}

/// md5 wraps `text` then `body` in the secret; the HMACs are keyed with the secret alone.
fn digest(method: SignMethod, secret: &str, text: &[u8], body: &[u8]) -> String {
    match method {
        SignMethod::Md5 => {
            let mut hasher = Md5::new();
            hasher.update(secret.as_bytes());
            hasher.update(text);
            hasher.update(body);
            hasher.update(secret.as_bytes());
            hex::encode_upper(hasher.finalize())
        }
        SignMethod::Hmac => match Hmac::<Md5>::new_from_slice(secret.as_bytes()) {
            Ok(mut mac) => {
                mac.update(text);
                mac.update(body);
                hex::encode_upper(mac.finalize().into_bytes())
            }
            // HMAC takes keys of any length; an empty string can never match a real signature.
            Err(_) => String::new(),
        },
        SignMethod::HmacSha256 => match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
            Ok(mut mac) => {
                mac.update(text);
                mac.update(body);
                hex::encode_upper(mac.finalize().into_bytes())
            }
            Err(_) => String::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn vector_one(sign_method: &str) -> BTreeMap<String, String> {
        params(&[
            ("app_key", "12486123"),
            (
                "fields",
                "user_id,nick,sex,buyer_credit,seller_credit,location,created,last_visit,alipay_account",
            ),
            ("format", "json"),
            ("method", "taobao.users.get"),
            ("nicks", "孙凤民"),
            ("partner_id", "top-apitools"),
            ("sign_method", sign_method),
            ("timestamp", "2012-02-15 23:02:05"),
            ("v", "2.0"),
        ])
    }

    const SECRET_ONE: &str = "280a8edc3a899b8a1e4cb965732d2441";

    #[test]
    fn vector_one_md5_matches_the_published_signature() {
        let p = vector_one("md5");
        assert_eq!(sign(SignMethod::Md5, SECRET_ONE, &p), "8E170B6351CC5C6CF34DFFDC63569734");
        assert!(verify(SignMethod::Md5, SECRET_ONE, &p, "8e170b6351cc5c6cf34dffdc63569734"));
    }

    #[test]
    fn vector_one_hmac_variants_match_the_derived_signatures() {
        assert_eq!(
            sign(SignMethod::Hmac, SECRET_ONE, &vector_one("hmac")),
            "E558DDB6D925931F3C77E7A4881E9F4A"
        );
        assert_eq!(
            sign(SignMethod::HmacSha256, SECRET_ONE, &vector_one("hmac-sha256")),
            "6E9B62A99FDF8EE675A6BCDCC7F1E0D2550CFF1632A1306D52E175AF62A82B9B"
        );
    }

    #[test]
    fn vector_two_hashes_non_ascii_as_utf8() {
        let p = params(&[("a", "1"), ("b", "2"), ("c", "✔️")]);
        assert_eq!(
            sign(SignMethod::Md5, "sandbox01eff1e5ac77cf3d078982e6e", &p),
            "3250EADEB3D5F9B453F4F0B95FA4B160"
        );
    }

    const BATCH_SECRET: &str = "batch-secret-42";
    const BATCH_BODY: &str = "#PUBLIC#method=taobao.trade.fullinfo.get\r\n-S-\r\nfields=tid&tid=1001\r\n-S-\r\nfields=tid&tid=1002&memo=发货";

    fn batch_query(sign_method: &str) -> BTreeMap<String, String> {
        params(&[
            ("app_key", "12345678"),
            ("format", "json"),
            ("session", "sandbox-top-session"),
            ("sign", "LEFT-OUT"),
            ("sign_method", sign_method),
            ("timestamp", "2026-11-01 10:00:00"),
            ("v", "2.0"),
        ])
    }

    // Computed independently (md5, hmac, hmac-sha256):
    // python3 -c 'import hashlib,hmac;s="batch-secret-42";b="#PUBLIC#method=taobao.trade.fullinfo.get\r\n-S-\r\nfields=tid&tid=1001\r\n-S-\r\nfields=tid&tid=1002&memo=发货";t=lambda m:"app_key12345678formatjsonsessionsandbox-top-sessionsign_method"+m+"timestamp2026-11-01 10:00:00v2.0"+b;print(hashlib.md5((s+t("md5")+s).encode()).hexdigest().upper(),hmac.new(s.encode(),t("hmac").encode(),"md5").hexdigest().upper(),hmac.new(s.encode(),t("hmac-sha256").encode(),"sha256").hexdigest().upper())'
    #[test]
    fn batch_signatures_append_the_raw_body_to_the_canonical_string() {
        let body = BATCH_BODY.as_bytes();
        assert_eq!(
            sign_with_body(SignMethod::Md5, BATCH_SECRET, &batch_query("md5"), body),
            "3E3D0EFB86616541A0909B1603C0E812"
        );
        assert_eq!(
            sign_with_body(SignMethod::Hmac, BATCH_SECRET, &batch_query("hmac"), body),
            "4BBF38AFE8202B73C26CA7E696C50314"
        );
        assert_eq!(
            sign_with_body(SignMethod::HmacSha256, BATCH_SECRET, &batch_query("hmac-sha256"), body),
            "44D5C288D6B8AE6171FB0A948815B6D0992E384F5F883B2BE3D3ADA3553975E4"
        );
        let md5 = batch_query("md5");
        assert!(verify_with_body(
            SignMethod::Md5,
            BATCH_SECRET,
            &md5,
            body,
            "3e3d0efb86616541a0909b1603c0e812"
        ));
        let altered = BATCH_BODY.replace("1002", "1003");
        assert!(!verify_with_body(
            SignMethod::Md5,
            BATCH_SECRET,
            &md5,
            altered.as_bytes(),
            "3E3D0EFB86616541A0909B1603C0E812"
        ));
        // An empty body signs exactly as a plain request.
        assert_eq!(sign_with_body(SignMethod::Hmac, "s", &md5, b""), sign(SignMethod::Hmac, "s", &md5));
    }

    #[test]
    fn sign_and_empty_values_are_left_out_of_the_canonical_string() {
        let p = params(&[("b", "2"), ("a", "1"), ("sign", "XYZ"), ("empty", "")]);
        assert_eq!(canonical(&p), "a1b2");
        let mut tampered = p.clone();
        tampered.insert("b".into(), "3".into());
        let good = sign(SignMethod::Md5, "s", &p);
        assert!(!verify(SignMethod::Md5, "s", &tampered, &good));
        assert_eq!(SignMethod::parse(Some("sha1")), None);
    }
}
