//! Marketplace sandbox: faithful, stateful simulators of the Taobao Open Platform gateway
//! (`/router/rest`) and the JD open platform gateway (`/routerjson`), for tests, the demo
//! and benchmarks.
//!
//! Independence rule: this crate shares no code or types with the connectors it tests. It
//! verifies signatures, builds envelopes and pages results with its own code, written from
//! the platforms' documentation (see `shared/research/marketplace-apis.md`), so a mistake in
//! a client cannot be mirrored here and hidden.
//!
//! Shared pieces: [`clock::SimClock`] (the gateways' notion of now), [`faults::FaultPlan`]
//! (what goes wrong, chosen by the test), [`scenario`] (seeded buyer behaviour over simulated
//! time, applied by each platform to its own order store).

pub mod clock;
pub mod faults;
pub mod jos;
pub mod operator;
pub mod scenario;
pub mod server;
pub mod top;
