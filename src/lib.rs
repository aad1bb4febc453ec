//! flagsync: marketplace flagship-store synchronizer. Pulls orders from Tmall/Taobao and JD
//! stores, keeps them in a store (SQLite or PostgreSQL), pushes stock and shipments back.
//!
//! The binary in `main.rs` is thin: it parses the command line and calls into this library.

pub mod admin;
pub mod app;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod inventory;
pub mod jobs;
pub mod metrics;
pub mod registry;
pub mod runner;
pub mod sandbox;
pub mod soak;
pub mod store;
pub mod sync;
