//! Builds the whole application from a config: the store, one connector per configured
//! marketplace store, and, when a store's gateway is `"sandbox"`, the built-in sandbox
//! running in-process. The CLI, the tests and (later) the daemon share this one function.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flagsync_market::retry::RetryPolicy;
use flagsync_market::transport::{Recorder, Recording, ReqwestTransport, Transport};
use flagsync_market::{Clock, Marketplace, SystemClock};

use crate::config::{Config, Gateway, StoreConfig};
use crate::registry;
use crate::sandbox::EmbeddedSandbox;
use crate::store::{Store, StoreError, StoreOptions};
use crate::sync::orders::OrderSyncOptions;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Setup(String),
}

/// Options the command line adds to the config.
#[derive(Debug, Clone, Default)]
pub struct AppOptions {
    /// Write every marketplace exchange to fixture files here (redacted).
    pub record: Option<PathBuf>,
    /// Retry schedule for marketplace calls (tests shorten it).
    pub retry: RetryPolicy,
}

pub struct App {
    pub config: Config,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub markets: BTreeMap<String, Arc<dyn Marketplace>>,
    /// The in-process sandbox, when any store uses it.
    pub sandbox: Option<EmbeddedSandbox>,
}

impl App {
    /// Opens and migrates the store, starts the sandbox if needed, and builds connectors.
    pub async fn build(config: Config, options: &AppOptions) -> Result<Self, AppError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = open_store(&config).await?;
        Self::build_with(config, options, clock, None, store).await
    }

    /// Like [`App::build`] with an injected clock, an opened store and, optionally, a
    /// sandbox the caller already runs (tests drive its clock and faults).
    pub async fn build_with(
        config: Config,
        options: &AppOptions,
        clock: Arc<dyn Clock>,
        sandbox: Option<EmbeddedSandbox>,
        store: Store,
    ) -> Result<Self, AppError> {
        let needs_sandbox = config.stores.iter().any(|s| s.gateway == Gateway::Sandbox);
        let sandbox = match (sandbox, needs_sandbox) {
            (Some(sandbox), _) => Some(sandbox),
            (None, true) => Some(
                EmbeddedSandbox::start_default()
                    .await
                    .map_err(|e| AppError::Setup(format!("starting the built-in sandbox: {e}")))?,
            ),
            (None, false) => None,
        };
        let transport = make_transport(&config, options.record.as_deref())?;
        let mut markets = BTreeMap::new();
        for store_config in &config.stores {
            store.register_store(&store_config.id, store_config.kind.type_name()).await?;
            let gateway = gateway_url(store_config, sandbox.as_ref())?;
            let market =
                registry::connector(store_config, gateway, transport.clone(), clock.clone(), options.retry);
            markets.insert(store_config.id.clone(), market);
        }
        Ok(Self { config, store, clock, markets, sandbox })
    }

    pub fn market(&self, store_id: &str) -> Result<&Arc<dyn Marketplace>, AppError> {
        self.markets.get(store_id).ok_or_else(|| {
            let known: Vec<&str> = self.markets.keys().map(String::as_str).collect();
            AppError::Setup(format!("no store {store_id:?} in the config (configured: {})", known.join(", ")))
        })
    }

    pub fn order_sync_options(&self) -> OrderSyncOptions {
        let sync = &self.config.sync;
        OrderSyncOptions {
            window: sync.window,
            settle_delay: sync.settle_delay,
            overlap: sync.overlap,
            initial_lookback: sync.initial_lookback,
        }
    }
}

/// Opens and migrates the configured database, creating a SQLite file's folder if needed.
pub async fn open_store(config: &Config) -> Result<Store, AppError> {
    let url = &config.database.url;
    if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        let file = path.split('?').next().unwrap_or(path);
        if let Some(parent) = Path::new(file).parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                AppError::Setup(format!("creating database folder {}: {e}", parent.display()))
            })?;
        }
    }
    let mut options = StoreOptions::new(url.clone());
    options.max_connections = config.database.max_connections;
    options.sqlite_synchronous_full = config.database.sqlite_synchronous_full;
    Ok(Store::open(&options).await?)
}

fn make_transport(config: &Config, record: Option<&Path>) -> Result<Arc<dyn Transport>, AppError> {
    let http = ReqwestTransport::new(config.sync.request_timeout)
        .map_err(|e| AppError::Setup(format!("http client: {e}")))?;
    Ok(match record {
        None => Arc::new(http),
        Some(dir) => {
            let recorder = Recorder::new(dir)
                .map_err(|e| AppError::Setup(format!("recording folder {}: {e}", dir.display())))?;
            Arc::new(Recording::new(http, recorder))
        }
    })
}

fn gateway_url(store: &StoreConfig, sandbox: Option<&EmbeddedSandbox>) -> Result<String, AppError> {
    match &store.gateway {
        Gateway::Url(url) => Ok(url.clone()),
        Gateway::Sandbox => {
            let sandbox = sandbox.ok_or_else(|| AppError::Setup("the sandbox is not running".into()))?;
            Ok(sandbox.gateway_for(store.kind.type_name()))
        }
    }
}
