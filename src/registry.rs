//! The one place that knows which connector serves which store `type`. Adding a
//! marketplace means adding its crate and one arm here (and its config keys).

use std::sync::Arc;

use flagsync_market::retry::RetryPolicy;
use flagsync_market::transport::Transport;
use flagsync_market::{Clock, Marketplace};
use secrecy::ExposeSecret;

use crate::config::{StoreConfig, StoreKind};

/// Builds the connector for a configured store, talking to `gateway`.
pub fn connector(
    store: &StoreConfig,
    gateway: String,
    transport: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
) -> Arc<dyn Marketplace> {
    match &store.kind {
        StoreKind::Taobao { app_key, app_secret, session, sign_method, page_size, fullinfo_batch } => {
            let sign_method = match sign_method.as_str() {
                "md5" => flagsync_taobao::SignMethod::Md5,
                "hmac" => flagsync_taobao::SignMethod::Hmac,
                _ => flagsync_taobao::SignMethod::HmacSha256,
            };
            let config = flagsync_taobao::TaobaoConfig {
                gateway,
                app_key: app_key.clone(),
                app_secret: app_secret.expose_secret().to_string(),
                session: session.expose_secret().to_string(),
                sign_method,
                page_size: *page_size,
                fullinfo_batch: usize::try_from(*fullinfo_batch).unwrap_or(1),
                calls_per_second: store.calls_per_second,
                retry,
                ..flagsync_taobao::TaobaoConfig::default()
            };
            Arc::new(flagsync_taobao::TaobaoConnector::new(config, transport, clock))
        }
        StoreKind::Jd { app_key, app_secret, access_token, page_size, page_cap } => {
            let config = flagsync_jd::JdConfig {
                gateway,
                app_key: app_key.clone(),
                app_secret: app_secret.expose_secret().to_string(),
                access_token: access_token.expose_secret().to_string(),
                page_size: *page_size,
                page_cap: *page_cap,
                calls_per_second: store.calls_per_second,
                retry,
                ..flagsync_jd::JdConfig::default()
            };
            Arc::new(flagsync_jd::JdConnector::new(config, transport, clock))
        }
    }
}
