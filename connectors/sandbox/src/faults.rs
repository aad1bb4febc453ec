//! Fault injection, chosen by the test: scripted faults served in order, and random faults
//! drawn from a seeded generator, per remote method or for every method.
//!
//! Each gateway asks [`FaultPlan::next`] once per call and renders the fault in its own
//! platform's words (error codes, envelopes); the plan itself is platform neutral.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Something that goes wrong with one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Call limit: TOP code 7 with "This ban will last for N more seconds"; JD "2"/"32".
    /// While the ban lasts, every call to the same method gets the same answer.
    Throttle { ban_secs: u64 },
    /// The platform's back end timed out (TOP `isp.remote-service-timeout`).
    RemoteTimeout,
    /// The trade service sheds load (TOP `isv.trade-service-rejection`).
    ServiceRejection,
    /// A mutating call fails with the platform's "try again" business code (TOP B150,
    /// JD 999999), not applied.
    TransientBusiness,
    /// The session / access token is refused as expired (TOP 27, JD 19).
    SessionExpired,
    /// The reply comes after this delay.
    Slow(Duration),
    /// The connection drops before the call is applied.
    DropConnection,
    /// The call is applied, then the connection drops without a reply.
    ApplyThenDrop,
    /// The reply body is cut off halfway.
    Truncated,
    /// The reply body is not JSON at all.
    Malformed,
    /// One record in an otherwise good reply has a field of the wrong type.
    CorruptRecord,
    /// Before answering a page, this many orders inside the queried window are modified
    /// (their `modified` moves to now), so they shift between pages mid-pull.
    ShuffleDuringPaging { orders: usize },
    /// A page of an order list repeats one of its records (the rest shift one place toward
    /// the next page), as offset paging does when the list changes under it. TOP's
    /// incremental trade list renders it; other methods answer normally.
    DuplicatePage,
    /// The order list's index lags behind the orders: a list reply leaves out orders
    /// modified within `lag` before now (later calls show them, with their original
    /// `modified`). Order-list methods render it; other methods answer normally.
    LateModified { lag: Duration },
}

impl Fault {
    /// A stable name for counting.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Throttle { .. } => "throttle",
            Self::RemoteTimeout => "remote_timeout",
            Self::ServiceRejection => "service_rejection",
            Self::TransientBusiness => "transient_business",
            Self::SessionExpired => "session_expired",
            Self::Slow(_) => "slow",
            Self::DropConnection => "drop_connection",
            Self::ApplyThenDrop => "apply_then_drop",
            Self::Truncated => "truncated",
            Self::Malformed => "malformed",
            Self::CorruptRecord => "corrupt_record",
            Self::ShuffleDuringPaging { .. } => "shuffle_during_paging",
            Self::DuplicatePage => "duplicate_page",
            Self::LateModified { .. } => "late_modified",
        }
    }
}

#[derive(Debug)]
struct RandomFault {
    api: Option<String>,
    fault: Fault,
    probability: f64,
}

#[derive(Debug)]
struct PlanState {
    scripted: VecDeque<(Option<String>, Fault)>,
    random: Vec<RandomFault>,
    rng: ChaCha8Rng,
    enabled: bool,
    injected: BTreeMap<&'static str, u64>,
}

/// Shared by a gateway and the test that drives it; clones share state.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    state: Arc<Mutex<PlanState>>,
}

impl Default for FaultPlan {
    fn default() -> Self {
        Self::new(0)
    }
}

impl FaultPlan {
    pub fn new(seed: u64) -> Self {
        Self {
            state: Arc::new(Mutex::new(PlanState {
                scripted: VecDeque::new(),
                random: Vec::new(),
                rng: ChaCha8Rng::seed_from_u64(seed),
                enabled: true,
                injected: BTreeMap::new(),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PlanState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Restarts the random draws from `seed` (a simulation gives every plan its own seed).
    pub fn reseed(&self, seed: u64) {
        self.lock().rng = ChaCha8Rng::seed_from_u64(seed);
    }

    /// Queues a fault for the next call to `api` (or to any method when `None`).
    pub fn script(&self, api: Option<&str>, fault: Fault) {
        self.lock().scripted.push_back((api.map(str::to_string), fault));
    }

    /// Injects `fault` into calls to `api` (or any method) with this probability.
    pub fn random(&self, api: Option<&str>, fault: Fault, probability: f64) {
        self.lock().random.push(RandomFault { api: api.map(str::to_string), fault, probability });
    }

    /// Turns injection off (scripted faults stay queued) or back on; used for a final
    /// phase in which everything must converge.
    pub fn set_enabled(&self, enabled: bool) {
        self.lock().enabled = enabled;
    }

    /// Drops every scripted and random fault.
    pub fn clear(&self) {
        let mut state = self.lock();
        state.scripted.clear();
        state.random.clear();
    }

    /// The fault for this call to `api`, if any. Scripted faults come first, in order.
    pub fn next(&self, api: &str) -> Option<Fault> {
        let mut state = self.lock();
        if !state.enabled {
            return None;
        }
        let scripted =
            state.scripted.iter().position(|(filter, _)| filter.as_deref().is_none_or(|f| f == api));
        let fault = match scripted.and_then(|index| state.scripted.remove(index)) {
            Some((_, fault)) => Some(fault),
            None => {
                let PlanState { random, rng, .. } = &mut *state;
                random
                    .iter()
                    .filter(|r| r.api.as_deref().is_none_or(|f| f == api))
                    .find(|r| rng.random_bool(r.probability.clamp(0.0, 1.0)))
                    .map(|r| r.fault.clone())
            }
        };
        if let Some(fault) = &fault {
            *state.injected.entry(fault.kind()).or_default() += 1;
        }
        fault
    }

    /// How many faults of each kind were injected so far.
    pub fn injected(&self) -> BTreeMap<&'static str, u64> {
        self.lock().injected.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_faults_come_first_and_in_order() {
        let plan = FaultPlan::new(1);
        plan.script(Some("a"), Fault::Malformed);
        plan.script(None, Fault::Truncated);
        assert_eq!(plan.next("b"), Some(Fault::Truncated));
        assert_eq!(plan.next("a"), Some(Fault::Malformed));
        assert_eq!(plan.next("a"), None);
        assert_eq!(plan.injected().get("malformed"), Some(&1));
    }

    #[test]
    fn random_faults_follow_the_seed() {
        let draw = |seed| {
            let plan = FaultPlan::new(seed);
            plan.random(None, Fault::RemoteTimeout, 0.3);
            (0..200).map(|_| plan.next("x").is_some()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        let hits = draw(7).into_iter().filter(|hit| *hit).count();
        assert!((30..90).contains(&hits), "{hits}");
    }
}
