//! The one integration-test binary. PostgreSQL tests run when
//! `FLAGSYNC_TEST_POSTGRES_URL` is set (`.ci/run` sets it) and say plainly when they are not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod architecture;
mod chaos;
mod commands;
mod config_check;
mod contract;
mod daemon;
mod exactly_once;
mod fulfilment;
mod fuzz_regressions;
mod inventory;
mod operator_push;
mod soak;
mod store_suite;
