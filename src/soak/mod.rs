//! Reliability rigs: the seeded simulation of the sync engine (`flagsync soak`), the
//! invariants it and the process-kill rig check, and the in-process transport that makes a
//! seed cheap. See RELIABILITY.md.

pub mod invariants;
pub mod sim;
pub mod transport;

pub use invariants::{CheckContext, History, Violations, check, check_step};
