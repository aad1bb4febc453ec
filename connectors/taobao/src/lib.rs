//! Taobao/Tmall Open Platform (TOP) connector: signing, paging, error codes, rate limits
//! and retries, mapping trades to flagsync's domain types. Wire (JSON) shapes stay inside
//! this crate; callers see [`TaobaoConnector`] as a [`flagsync_market::Marketplace`].

// `ConnectorError` is the contract's error type, returned by value by `Marketplace`;
// boxing it only inside this crate would convert back and forth for nothing.
#![allow(clippy::result_large_err)]

mod client;
mod config;
mod connector;
pub mod error;
mod limiter;
pub mod parse;
pub mod sign;

pub use config::{ALL_TRADE_TYPES, PRODUCTION_GATEWAY, TaobaoConfig};
pub use connector::{
    FULLINFO_API, ITEM_GET_API, ITEM_QUANTITY_API, LIST_API, SELLER_API, SHIP_API, SKUS_QUANTITY_API,
    TaobaoConnector, WTVERTICAL_API,
};
pub use sign::SignMethod;

#[cfg(test)]
mod tests;
