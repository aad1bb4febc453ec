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
use crate::inventory::ReservationRules;
use crate::registry;
use crate::sandbox::EmbeddedSandbox;
use crate::store::{Store, StoreError, StoreOptions};
use crate::sync::orders::OrderSyncOptions;
use crate::sync::stock::StockPolicy;
use flagsync_operator::{
    HttpOperator, OperatorApi, OperatorConfig as OperatorClientConfig, OperatorTransport,
    ReqwestOperatorTransport,
};
use secrecy::ExposeSecret;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Setup(String),
}

/// Options the command line adds to the config.
#[derive(Clone, Default)]
pub struct AppOptions {
    /// Write every marketplace exchange to fixture files here (redacted).
    pub record: Option<PathBuf>,
    /// Retry schedule for marketplace calls (tests shorten it).
    pub retry: RetryPolicy,
    /// Marketplace calls go through this instead of HTTP (the seeded simulation hands them
    /// to the sandbox's routers in-process).
    pub transport: Option<Arc<dyn Transport>>,
    /// Operator calls go through this instead of HTTP.
    pub operator_transport: Option<Arc<dyn OperatorTransport>>,
}

impl std::fmt::Debug for AppOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppOptions")
            .field("record", &self.record)
            .field("retry", &self.retry)
            .field("transport", &self.transport.as_ref().map(|_| "injected"))
            .field("operator_transport", &self.operator_transport.as_ref().map(|_| "injected"))
            .finish()
    }
}

pub struct App {
    pub config: Config,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub markets: BTreeMap<String, Arc<dyn Marketplace>>,
    /// The operator's system, when configured.
    pub operator: Option<Arc<dyn OperatorApi>>,
    /// The in-process sandbox, when any store uses it.
    pub sandbox: Option<EmbeddedSandbox>,
    /// Stock policies built so far (the config does not change under a running App; a
    /// policy walks the whole catalogue, too slow to rebuild every stock run at 100k SKUs).
    policies: std::sync::Mutex<BTreeMap<String, Arc<StockPolicy>>>,
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
        let needs_sandbox = config.stores.iter().any(|s| s.gateway == Gateway::Sandbox)
            || config.operator.as_ref().is_some_and(|o| o.gateway == Gateway::Sandbox);
        let sandbox = match (sandbox, needs_sandbox) {
            (Some(sandbox), _) => Some(sandbox),
            (None, true) => Some(
                EmbeddedSandbox::start_default()
                    .await
                    .map_err(|e| AppError::Setup(format!("starting the built-in sandbox: {e}")))?,
            ),
            (None, false) => None,
        };
        let transport = match &options.transport {
            Some(transport) => transport.clone(),
            None => make_transport(&config, options.record.as_deref())?,
        };
        let mut markets = BTreeMap::new();
        for store_config in &config.stores {
            store.register_store(&store_config.id, store_config.kind.type_name()).await?;
            let gateway = gateway_url(store_config, sandbox.as_ref())?;
            let market =
                registry::connector(store_config, gateway, transport.clone(), clock.clone(), options.retry);
            markets.insert(store_config.id.clone(), market);
        }
        let operator = match &config.operator {
            None => None,
            Some(operator) => {
                let base_url = match &operator.gateway {
                    Gateway::Url(url) => url.clone(),
                    Gateway::Sandbox => sandbox
                        .as_ref()
                        .map(|s| s.base_url())
                        .ok_or_else(|| AppError::Setup("the sandbox is not running".into()))?,
                };
                let transport: Arc<dyn OperatorTransport> = match &options.operator_transport {
                    Some(transport) => transport.clone(),
                    None => Arc::new(
                        ReqwestOperatorTransport::new(config.sync.request_timeout)
                            .map_err(|e| AppError::Setup(format!("operator http client: {e}")))?,
                    ),
                };
                let client = HttpOperator::new(
                    OperatorClientConfig {
                        base_url,
                        key_id: operator.key_id.clone(),
                        secret: operator.secret.expose_secret().to_string(),
                        retry: options.retry,
                    },
                    transport,
                    clock.clone(),
                );
                Some(Arc::new(client) as Arc<dyn OperatorApi>)
            }
        };
        Ok(Self { config, store, clock, markets, operator, sandbox, policies: Default::default() })
    }

    pub fn operator(&self) -> Result<&Arc<dyn OperatorApi>, AppError> {
        self.operator.as_ref().ok_or_else(|| AppError::Setup("no [operator] in the config".into()))
    }

    /// A store's stock policy: its mappings, allocation, and the default share of targets
    /// it has no explicit allocation for (what allocated stores left of 1, split evenly).
    pub fn stock_policy(&self, store_id: &str) -> Result<Arc<StockPolicy>, AppError> {
        let mut cache = self.policies.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(policy) = cache.get(store_id) {
            return Ok(policy.clone());
        }
        let policy = Arc::new(self.build_stock_policy(store_id)?);
        cache.insert(store_id.to_string(), policy.clone());
        Ok(policy)
    }

    fn build_stock_policy(&self, store_id: &str) -> Result<StockPolicy, AppError> {
        let store = self
            .config
            .store(store_id)
            .ok_or_else(|| AppError::Setup(format!("no store {store_id:?} in the config")))?;
        let rules = self.reservation_rules(store_id).map(|r| (*r).clone()).unwrap_or_default();
        // Per component: what explicit shares leave of 1, split evenly between every
        // (store, target) pair that uses the component without an explicit share. A target
        // takes the smallest such slice over its components, so shares of any component
        // never sum past 1 across allocated stores.
        let catalog = &self.config.catalog;
        let targets: Vec<&String> = catalog.skus.keys().chain(catalog.bundles.keys()).collect();
        let allocated: Vec<&StoreConfig> = self.config.stores.iter().filter(|s| !s.shared_pool).collect();
        let mut explicit: BTreeMap<String, f64> = BTreeMap::new();
        let mut open_pairs: BTreeMap<String, usize> = BTreeMap::new();
        for other in &allocated {
            for target in &targets {
                let Some(resolved) = catalog.resolve(target) else { continue };
                for (component, _) in resolved.components {
                    match other.allocation.get(*target) {
                        Some(allocation) => *explicit.entry(component.key()).or_default() += allocation.share,
                        None => *open_pairs.entry(component.key()).or_default() += 1,
                    }
                }
            }
        }
        let mut default_share = BTreeMap::new();
        for target in targets {
            if store.allocation.contains_key(target) {
                continue;
            }
            if store.shared_pool {
                default_share.insert(target.clone(), 1.0);
                continue;
            }
            let Some(resolved) = catalog.resolve(target) else { continue };
            let share = resolved
                .components
                .iter()
                .map(|(component, _)| {
                    let key = component.key();
                    let left = (1.0 - explicit.get(&key).copied().unwrap_or(0.0)).max(0.0);
                    left / open_pairs.get(&key).copied().unwrap_or(1).max(1) as f64
                })
                .fold(1.0_f64, f64::min);
            default_share.insert(target.clone(), share);
        }
        Ok(StockPolicy {
            rules,
            shared_pool: store.shared_pool,
            allocation: store.allocation.clone(),
            default_share,
            fingerprint: std::sync::OnceLock::new(),
        })
    }

    pub fn market(&self, store_id: &str) -> Result<&Arc<dyn Marketplace>, AppError> {
        self.markets.get(store_id).ok_or_else(|| {
            let known: Vec<&str> = self.markets.keys().map(String::as_str).collect();
            AppError::Setup(format!("no store {store_id:?} in the config (configured: {})", known.join(", ")))
        })
    }

    /// The order pull's options for a store (its reservation rules included).
    pub fn order_sync_options_for(&self, store_id: &str) -> OrderSyncOptions {
        let sync = &self.config.sync;
        OrderSyncOptions {
            window: sync.window,
            settle_delay: sync.settle_delay,
            overlap: sync.overlap,
            initial_lookback: sync.initial_lookback,
            reservations: self.reservation_rules(store_id),
            fence: None,
        }
    }

    /// Options without reservations (for stores whose lines map to nothing).
    pub fn order_sync_options(&self) -> OrderSyncOptions {
        let mut options = self.order_sync_options_for("");
        options.reservations = None;
        options
    }

    /// A store's reservation rules, when the catalogue has anything in it.
    pub fn reservation_rules(&self, store_id: &str) -> Option<Arc<ReservationRules>> {
        if self.config.catalog.is_empty() {
            return None;
        }
        let store = self.config.store(store_id);
        Some(Arc::new(ReservationRules {
            catalog: self.config.catalog.clone(),
            explicit: store.map(|s| s.listings.clone()).unwrap_or_default(),
            reserve_on_order: store.is_some_and(|s| s.reserve_on_order),
        }))
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
    let inner: Arc<dyn Transport> = match record {
        None => Arc::new(http),
        Some(dir) => {
            let recorder = Recorder::new(dir)
                .map_err(|e| AppError::Setup(format!("recording folder {}: {e}", dir.display())))?;
            Arc::new(Recording::new(http, recorder))
        }
    };
    // Counts calls and throttles per platform and api for /metrics.
    Ok(Arc::new(crate::metrics::MeteredTransport::new(inner)))
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
