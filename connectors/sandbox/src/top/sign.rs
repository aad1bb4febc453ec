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
    let text = canonical(params);
    match method {
        SignMethod::Md5 => {
            let mut hasher = Md5::new();
            hasher.update(secret.as_bytes());
            hasher.update(text.as_bytes());
            hasher.update(secret.as_bytes());
            hex::encode_upper(hasher.finalize())
        }
        SignMethod::Hmac => match Hmac::<Md5>::new_from_slice(secret.as_bytes()) {
            Ok(mut mac) => {
                mac.update(text.as_bytes());
                hex::encode_upper(mac.finalize().into_bytes())
            }
            // HMAC takes keys of any length; an empty string can never match a real signature.
            Err(_) => String::new(),
        },
        SignMethod::HmacSha256 => match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
            Ok(mut mac) => {
                mac.update(text.as_bytes());
                hex::encode_upper(mac.finalize().into_bytes())
            }
            Err(_) => String::new(),
        },
    }
}

/// Whether `given` is the signature of `params`. Hex case is not significant.
pub fn verify(method: SignMethod, secret: &str, params: &BTreeMap<String, String>, given: &str) -> bool {
    let expected = sign(method, secret, params);
    !expected.is_empty() && expected.eq_ignore_ascii_case(given)
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
