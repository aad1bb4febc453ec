//! Retry with backoff for idempotent calls.
//!
//! Schedule (defaults): attempt 1 immediately; then waits of 200 ms, 400 ms, 800 ms,
//! 1.6 s, 3.2 s ... doubling up to `max_delay` (30 s), each with up to 25% random jitter
//! removed, for at most `max_attempts` (6) attempts in all. A platform's own hint (TOP's
//! "This ban will last for N more seconds") replaces the computed wait, plus one second,
//! and is honoured even when it exceeds `max_delay` up to `max_hint` (10 min); a longer ban
//! is returned to the caller as an error to reschedule instead of holding a task asleep.
//! Errors that retrying cannot fix (auth, rejected) return at once.

use std::future::Future;
use std::time::Duration;

use crate::error::{Action, ConnectorError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub max_hint: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
            max_hint: Duration::from_secs(600),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (attempt counts from 1), without jitter.
    pub fn delay_for(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// Runs `call` until it succeeds, fails for good, or attempts run out. `jitter` in
    /// [0, 1) scales the jitter (pass a seeded value in tests for determinism).
    pub async fn run<T, F, Fut>(&self, jitter: impl FnMut() -> f64, call: F) -> Result<T, ConnectorError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, ConnectorError>>,
    {
        self.attempts(jitter, call, false).await
    }

    /// Like [`RetryPolicy::run`], for calls that must not be applied twice (incremental
    /// stock changes): an ambiguous failure (no complete reply, or one that cannot be read)
    /// is returned at once instead of retried, since the call may have landed.
    pub async fn run_not_twice<T, F, Fut>(
        &self,
        jitter: impl FnMut() -> f64,
        call: F,
    ) -> Result<T, ConnectorError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, ConnectorError>>,
    {
        self.attempts(jitter, call, true).await
    }

    async fn attempts<T, F, Fut>(
        &self,
        mut jitter: impl FnMut() -> f64,
        mut call: F,
        not_twice: bool,
    ) -> Result<T, ConnectorError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, ConnectorError>>,
    {
        use crate::error::ErrorKind;
        let mut attempt = 1;
        loop {
            match call(attempt).await {
                Ok(value) => return Ok(value),
                Err(error) => {
                    if not_twice && matches!(error.kind, ErrorKind::Ambiguous | ErrorKind::Malformed) {
                        return Err(error);
                    }
                    let Action::RetryAfter(hint) = error.action() else { return Err(error) };
                    if attempt >= self.max_attempts {
                        return Err(error);
                    }
                    let wait = match hint {
                        Some(hint) if hint > self.max_hint => return Err(error),
                        Some(hint) => hint + Duration::from_secs(1),
                        None => {
                            let full = self.delay_for(attempt);
                            full.mul_f64(1.0 - 0.25 * jitter().clamp(0.0, 1.0))
                        }
                    };
                    tracing::debug!(api = %error.api, attempt, wait_ms = wait.as_millis() as u64, error = %error, "retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn schedule_doubles_up_to_the_cap() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay_for(1), Duration::from_millis(200));
        assert_eq!(policy.delay_for(2), Duration::from_millis(400));
        assert_eq!(policy.delay_for(9), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn honours_ban_seconds_and_stops_on_rejection() {
        let policy = RetryPolicy::default();
        let start = tokio::time::Instant::now();
        let result = policy
            .run(
                || 0.0,
                |attempt| async move {
                    if attempt == 1 {
                        Err(ConnectorError::new("x", "m", ErrorKind::Throttled, "ban")
                            .with_retry_after(Duration::from_secs(41)))
                    } else {
                        Ok(attempt)
                    }
                },
            )
            .await;
        assert_eq!(result.ok(), Some(2));
        assert_eq!(start.elapsed(), Duration::from_secs(42));

        let mut calls = 0;
        let result: Result<(), _> = policy
            .run(
                || 0.0,
                |_| {
                    calls += 1;
                    async { Err(ConnectorError::new("x", "m", ErrorKind::Rejected, "no")) }
                },
            )
            .await;
        assert!(result.is_err());
        assert_eq!(calls, 1);
    }
}
