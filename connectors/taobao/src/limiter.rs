//! One process-wide rate limiter per TOP `app_key`: the gateway counts calls per app, so
//! every store connector sharing an app must share its budget.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, OnceLock};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

static REGISTRY: OnceLock<Mutex<HashMap<String, Arc<DefaultDirectRateLimiter>>>> = OnceLock::new();

/// The limiter for `app_key`, created at `calls_per_second` on first use. Later callers
/// with another rate share the first one's: one app has one budget.
pub fn for_app(app_key: &str, calls_per_second: u32) -> Arc<DefaultDirectRateLimiter> {
    let registry = REGISTRY.get_or_init(|| Mutex::new(HashMap::new()));
    // A poisoned lock only means another thread panicked mid-insert; the map is still whole.
    let mut map = registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    map.entry(app_key.to_string())
        .or_insert_with(|| {
            let rate = NonZeroU32::new(calls_per_second).unwrap_or(NonZeroU32::MIN);
            Arc::new(RateLimiter::direct(Quota::per_second(rate)))
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connectors_with_one_app_key_share_a_limiter() {
        let a = for_app("limiter-test-app", 5);
        let b = for_app("limiter-test-app", 50);
        let other = for_app("limiter-test-other", 5);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &other));
    }
}
