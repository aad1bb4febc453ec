//! The operator API's request signature as the simulator checks it, written from `API.md`
//! (not from the client): HMAC-SHA256 over `METHOD\nPATH_WITH_QUERY\nTIMESTAMP\nNONCE\nBODY`.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

fn mac(
    secret: &str,
    method: &str,
    path_with_query: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(method.as_bytes());
    mac.update(b"\n");
    mac.update(path_with_query.as_bytes());
    mac.update(b"\n");
    mac.update(timestamp.as_bytes());
    mac.update(b"\n");
    mac.update(nonce.as_bytes());
    mac.update(b"\n");
    mac.update(body);
    Some(mac)
}

/// The lower-case hex signature the server expects (tests pin it to `API.md`).
#[cfg(test)]
pub(crate) fn expected(
    secret: &str,
    method: &str,
    path_with_query: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> String {
    mac(secret, method, path_with_query, timestamp, nonce, body)
        .map(|mac| hex::encode(mac.finalize().into_bytes()))
        .unwrap_or_default()
}

/// Whether `given` (hex) signs the request; compared in constant time.
pub(crate) fn verify(
    secret: &str,
    method: &str,
    path_with_query: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
    given: &str,
) -> bool {
    let Ok(given) = hex::decode(given) else { return false };
    mac(secret, method, path_with_query, timestamp, nonce, body)
        .is_some_and(|mac| mac.verify_slice(&given).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "sandbox-operator-secret-0123456789";
    const PATH: &str = "/v1/fulfilments/tmall-1/4012345678901234567/withdraw";
    const NONCE: &str = "9f86d081884c7d659a2feaa0c55ad015";
    const BODY: &[u8] = br#"{"reason":"buyer cancelled"}"#;

    /// The worked example in `connectors/operator/API.md` (computed with python3 hmac).
    #[test]
    fn matches_the_api_md_vectors() {
        let sig = "7898dc2e45860c14350fbbd4532231213669d407b56207a554bd9b27efed6e8e";
        assert_eq!(expected(SECRET, "POST", PATH, "1793498400", NONCE, BODY), sig);
        assert!(verify(SECRET, "POST", PATH, "1793498400", NONCE, BODY, sig));
        assert_eq!(
            expected(
                SECRET,
                "GET",
                "/v1/stock?since=42",
                "1793498400",
                "0123456789abcdef0123456789abcdef",
                b""
            ),
            "cbfe6e8084394a231ad169d74f7d7f2228febe0348fd14de961c0380a0941d4f"
        );
    }

    #[test]
    fn refuses_any_change() {
        let sig = expected(SECRET, "POST", PATH, "1793498400", NONCE, BODY);
        assert!(!verify(SECRET, "POST", PATH, "1793498401", NONCE, BODY, &sig));
        assert!(!verify(SECRET, "POST", PATH, "1793498400", NONCE, b"{}", &sig));
        assert!(!verify("other", "POST", PATH, "1793498400", NONCE, BODY, &sig));
        assert!(!verify(SECRET, "POST", PATH, "1793498400", NONCE, BODY, "zz"));
    }
}
