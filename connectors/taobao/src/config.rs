//! The connector's settings: gateway, credentials, paging, concurrency, rate and retries.

use flagsync_market::retry::RetryPolicy;

use crate::sign::SignMethod;

/// Most calls one batch request carries here. The platform's own cap is not stated in the
/// sources we have; the SDKs send what they are given. 50 keeps a batch reply of full
/// trades to a few hundred KB.
pub const MAX_FULLINFO_BATCH: usize = 50;

/// The production HTTPS gateway.
pub const PRODUCTION_GATEWAY: &str = "https://eco.taobao.com/router/rest";

/// Every trade type the list APIs know. Without a `type` filter the gateway returns only
/// its default types, which leaves out, among others, `pre_auth_type` (zero-down contract
/// phones): such orders would silently never arrive.
pub const ALL_TRADE_TYPES: &[&str] = &[
    "fixed",
    "auction",
    "guarantee_trade",
    "auto_delivery",
    "independent_simple_trade",
    "independent_shop_trade",
    "ec",
    "cod",
    "fenxiao",
    "game_equipment",
    "shopex_trade",
    "netcn_trade",
    "external_trade",
    "o2o_offlinetrade",
    "step",
    "nopaid",
    "pre_auth_type",
];

/// How a connector reaches one store. `app_secret` and `session` are secrets: `Debug`
/// hides them and no error message carries them.
#[derive(Clone)]
pub struct TaobaoConfig {
    pub gateway: String,
    pub app_key: String,
    pub app_secret: String,
    pub session: String,
    pub sign_method: SignMethod,
    /// Trades per list page, 1..=100 (default 40; the docs advise 40-50).
    pub page_size: u32,
    /// Calls per second for this `app_key`, shared by every connector in the process with
    /// the same key (the first one registered sets the rate).
    pub calls_per_second: u32,
    /// Parallel detail requests during a pull (default 8; the calls are independent, and
    /// the app key's rate limit still applies).
    pub detail_concurrency: usize,
    /// `taobao.trade.fullinfo.get` calls sent together through the batch API
    /// (`/router/batch`), 1..=[`MAX_FULLINFO_BATCH`] (default 20; 1 sends each on its own).
    /// Each call still counts against the app's rate; a batch saves HTTP round trips.
    pub fullinfo_batch: usize,
    /// The `type` filter sent with every list call (default [`ALL_TRADE_TYPES`]).
    pub trade_types: Vec<String>,
    pub retry: RetryPolicy,
}

impl Default for TaobaoConfig {
    fn default() -> Self {
        Self {
            gateway: PRODUCTION_GATEWAY.to_string(),
            app_key: String::new(),
            app_secret: String::new(),
            session: String::new(),
            sign_method: SignMethod::default(),
            page_size: 40,
            calls_per_second: 10,
            detail_concurrency: 8,
            fullinfo_batch: 20,
            trade_types: ALL_TRADE_TYPES.iter().map(|t| t.to_string()).collect(),
            retry: RetryPolicy::default(),
        }
    }
}

impl TaobaoConfig {
    /// Every problem with these settings, each naming its field; empty when usable.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !(self.gateway.starts_with("https://") || self.gateway.starts_with("http://")) {
            out.push(format!("gateway: expected an http(s) url, got {:?}", self.gateway));
        }
        if self.app_key.is_empty() {
            out.push("app_key: missing".into());
        }
        if self.app_secret.is_empty() {
            out.push("app_secret: missing".into());
        }
        if self.session.is_empty() {
            out.push("session: missing".into());
        }
        if !(1..=100).contains(&self.page_size) {
            out.push(format!("page_size: must be 1..=100, got {}", self.page_size));
        }
        if self.calls_per_second == 0 {
            out.push("calls_per_second: must be at least 1".into());
        }
        if self.detail_concurrency == 0 {
            out.push("detail_concurrency: must be at least 1".into());
        }
        if !(1..=MAX_FULLINFO_BATCH).contains(&self.fullinfo_batch) {
            out.push(format!(
                "fullinfo_batch: must be 1..={MAX_FULLINFO_BATCH}, got {}",
                self.fullinfo_batch
            ));
        } else if self.fullinfo_batch > 1 && !self.gateway.trim_end_matches('/').ends_with("/router/rest") {
            out.push(format!(
                "fullinfo_batch: batching needs a gateway ending in /router/rest (the batch endpoint \
                 /router/batch sits beside it), got {:?}; set fullinfo_batch = 1",
                self.gateway
            ));
        }
        if self.trade_types.iter().any(|t| t.trim().is_empty() || t.contains(',')) {
            out.push("trade_types: each type must be one non-empty name".into());
        }
        out
    }

    pub(crate) fn page_size(&self) -> u32 {
        self.page_size.clamp(1, 100)
    }

    /// Calls per batch request; 1 means no batching.
    pub(crate) fn fullinfo_batch(&self) -> usize {
        if self.gateway.trim_end_matches('/').ends_with("/router/rest") {
            self.fullinfo_batch.clamp(1, MAX_FULLINFO_BATCH)
        } else {
            1
        }
    }

    /// The batch endpoint beside the REST one, as the SDKs derive it.
    pub(crate) fn batch_gateway(&self) -> String {
        let rest = self.gateway.trim_end_matches('/');
        match rest.strip_suffix("/router/rest") {
            Some(base) => format!("{base}/router/batch"),
            None => rest.to_string(),
        }
    }
}

impl std::fmt::Debug for TaobaoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaobaoConfig")
            .field("gateway", &self.gateway)
            .field("app_key", &self.app_key)
            .field("app_secret", &"***")
            .field("session", &"***")
            .field("sign_method", &self.sign_method)
            .field("page_size", &self.page_size)
            .field("calls_per_second", &self.calls_per_second)
            .field("detail_concurrency", &self.detail_concurrency)
            .field("fullinfo_batch", &self.fullinfo_batch)
            .field("trade_types", &self.trade_types)
            .field("retry", &self.retry)
            .finish()
    }
}
