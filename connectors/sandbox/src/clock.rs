//! The sandbox's clock. Gateways check request timestamps against it and stamp orders'
//! `modified` with it; tests move it by hand, the standalone sandbox follows the real clock.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};

#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Real time shifted by an offset (the standalone sandbox; offset 0).
    Real { offset_ms: i64 },
    /// Frozen until moved.
    Manual { at_ms: i64 },
}

/// Shared between every gateway of one sandbox; clones see the same time.
#[derive(Debug, Clone)]
pub struct SimClock {
    mode: Arc<Mutex<Mode>>,
}

impl SimClock {
    /// Follows the host's real clock.
    pub fn real() -> Self {
        Self { mode: Arc::new(Mutex::new(Mode::Real { offset_ms: 0 })) }
    }

    /// Frozen at `at` until [`SimClock::set`] or [`SimClock::advance`].
    pub fn manual(at: DateTime<Utc>) -> Self {
        Self { mode: Arc::new(Mutex::new(Mode::Manual { at_ms: at.timestamp_millis() })) }
    }

    pub fn now(&self) -> DateTime<Utc> {
        let mode = *self.mode.lock().unwrap_or_else(|p| p.into_inner());
        let ms = match mode {
            Mode::Real { offset_ms } => Utc::now().timestamp_millis() + offset_ms,
            Mode::Manual { at_ms } => at_ms,
        };
        DateTime::from_timestamp_millis(ms).unwrap_or_default()
    }

    pub fn set(&self, at: DateTime<Utc>) {
        let mut mode = self.mode.lock().unwrap_or_else(|p| p.into_inner());
        *mode = match *mode {
            Mode::Real { .. } => {
                Mode::Real { offset_ms: at.timestamp_millis() - Utc::now().timestamp_millis() }
            }
            Mode::Manual { .. } => Mode::Manual { at_ms: at.timestamp_millis() },
        };
    }

    pub fn advance(&self, by: TimeDelta) {
        let now = self.now();
        self.set(now + by);
    }
}
