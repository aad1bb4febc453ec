//! What every benchmark shares: the figures table and its JSON, the machine description,
//! and the sandbox-backed app and store builders (the same shapes the integration tests use).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use flagsync::config::{Config, DatabaseConfig, Gateway, OperatorConfig, StoreConfig, StoreKind, SyncConfig};
use flagsync::inventory::{Catalog, ComponentKind, SkuDef};
use flagsync::sandbox::{self, EmbeddedSandbox};
use flagsync::store::{Store, StoreOptions};
use flagsync_market::Clock;
use flagsync_market::retry::RetryPolicy;
use flagsync_sandbox::clock::SimClock;
use flagsync_sandbox::faults::FaultPlan;
use flagsync_sandbox::jos::JosConfig;
use flagsync_sandbox::top::TopConfig;
use secrecy::SecretString;
use serde_json::{Value, json};

pub const PG_ENV: &str = "FLAGSYNC_TEST_POSTGRES_URL";

/// One measured figure, with the target it is judged against when there is one.
#[derive(Debug, Clone)]
pub struct Figure {
    pub bench: &'static str,
    pub metric: String,
    pub value: f64,
    pub unit: &'static str,
    pub target: Option<String>,
    pub met: Option<bool>,
}

/// Everything one harness run found.
#[derive(Debug, Default)]
pub struct Report {
    pub figures: Vec<Figure>,
    pub notes: Vec<(String, String)>,
}

impl Report {
    pub fn figure(&mut self, bench: &'static str, metric: impl Into<String>, value: f64, unit: &'static str) {
        self.figures.push(Figure { bench, metric: metric.into(), value, unit, target: None, met: None });
    }

    pub fn judged(
        &mut self,
        bench: &'static str,
        metric: impl Into<String>,
        value: f64,
        unit: &'static str,
        target: impl Into<String>,
        met: bool,
    ) {
        self.figures.push(Figure {
            bench,
            metric: metric.into(),
            value,
            unit,
            target: Some(target.into()),
            met: Some(met),
        });
    }

    pub fn note(&mut self, bench: &str, text: impl Into<String>) {
        let text = text.into();
        println!("  [{bench}] {text}");
        self.notes.push((bench.to_string(), text));
    }

    pub fn print_table(&self) {
        let width = self.figures.iter().map(|f| f.metric.len()).max().unwrap_or(10).max(10);
        println!();
        println!("{:<10} {:<width$} {:>14} {:<8} {:<30} met", "bench", "metric", "value", "unit", "target");
        println!("{}", "-".repeat(10 + width + 14 + 8 + 30 + 10));
        for f in &self.figures {
            let met = match f.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "",
            };
            println!(
                "{:<10} {:<width$} {:>14} {:<8} {:<30} {}",
                f.bench,
                f.metric,
                format_value(f.value),
                f.unit,
                f.target.as_deref().unwrap_or(""),
                met
            );
        }
    }

    pub fn to_json(&self, mode: &str, elapsed: Duration) -> Value {
        let figures: Vec<Value> = self
            .figures
            .iter()
            .map(|f| {
                json!({"bench": f.bench, "metric": f.metric, "value": f.value, "unit": f.unit,
                       "target": f.target, "met": f.met})
            })
            .collect();
        let notes: Vec<Value> = self.notes.iter().map(|(b, t)| json!({"bench": b, "note": t})).collect();
        json!({
            "mode": mode,
            "finished_at": Utc::now().to_rfc3339(),
            "elapsed_secs": elapsed.as_secs_f64(),
            "machine": machine(),
            "command": if mode == "quick" { "cargo bench --bench flagsync -- --quick" } else { "cargo bench --bench flagsync" },
            "figures": figures,
            "notes": notes,
        })
    }
}

fn format_value(value: f64) -> String {
    if (value.fract() == 0.0 && value.abs() < 1e15) || value.abs() >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.3}")
    }
}

/// Where the JSON goes: `$CARGO_TARGET_DIR/bench/flagsync.json`, else `target/bench/...`.
pub fn json_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target")));
    target.join("bench").join("flagsync.json")
}

fn first_line_with(path: &str, prefix: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.split(':').nth(1))
        .map(|v| v.trim().to_string())
}

/// CPU, cores, memory and kernel of this machine, for the figures' context.
pub fn machine() -> Value {
    let cpu = first_line_with("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let memory = first_line_with("/proc/meminfo", "MemTotal").unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    // Other work on the machine skews timings; the load at the end says how much there was.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_string();
    json!({"cpu": cpu, "cores": cores, "memory": memory, "kernel": kernel, "rustc": rustc, "loadavg_at_end": load})
}

/// The connectors read the sandbox's simulated clock.
#[derive(Debug)]
pub struct SandboxClock(pub SimClock);

impl Clock for SandboxClock {
    fn now(&self) -> DateTime<Utc> {
        self.0.now()
    }
}

/// A listing as the store records it from a catalogue read: item, SKU, merchant code, live.
pub type SeenListing = (String, Option<String>, Option<String>, Option<i64>);

/// Short waits: the sandbox runs without faults here, so retries only hide bugs.
pub fn bench_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(2),
        max_delay: Duration::from_millis(20),
        max_hint: Duration::from_secs(2),
    }
}

/// A store on the sandbox with the platform's largest page size.
pub fn store_config(id: &str, store_type: &str, gateway: Gateway) -> StoreConfig {
    let secret = |s: &str| SecretString::from(s.to_string());
    let kind = match store_type {
        "taobao" => StoreKind::Taobao {
            app_key: sandbox::TOP_APP_KEY.into(),
            app_secret: secret(sandbox::TOP_APP_SECRET),
            session: secret(sandbox::TOP_SESSION),
            sign_method: "hmac-sha256".into(),
            page_size: 100,
            fullinfo_batch: 20,
        },
        _ => StoreKind::Jd {
            app_key: sandbox::JOS_APP_KEY.into(),
            app_secret: secret(sandbox::JOS_APP_SECRET),
            access_token: secret(sandbox::JOS_ACCESS_TOKEN),
            page_size: 50,
            page_cap: 300,
        },
    };
    StoreConfig {
        id: id.into(),
        kind,
        gateway,
        calls_per_second: 100_000,
        paused: false,
        schedules: Default::default(),
        paused_jobs: Vec::new(),
        reserve_on_order: false,
        shared_pool: false,
        listings: Default::default(),
        allocation: Default::default(),
    }
}

pub fn operator_config() -> OperatorConfig {
    OperatorConfig {
        gateway: Gateway::Sandbox,
        key_id: sandbox::OPERATOR_KEY_ID.into(),
        secret: SecretString::from(sandbox::OPERATOR_SECRET.to_string()),
    }
}

pub fn base_config(stores: Vec<StoreConfig>, catalog: Catalog) -> Config {
    Config {
        database: DatabaseConfig {
            url: "unused://".into(),
            max_connections: 4,
            sqlite_synchronous_full: true,
        },
        sync: SyncConfig {
            window: Duration::from_secs(30 * 60),
            settle_delay: Duration::from_secs(5),
            overlap: Duration::from_secs(60),
            initial_lookback: Duration::from_secs(2 * 3600),
            request_timeout: Duration::from_secs(30),
        },
        daemon: Default::default(),
        admin: Default::default(),
        catalog,
        operator: None,
        stores,
        carriers: Default::default(),
    }
}

/// Handsets `SKU-{first:05}` .. `SKU-{first+count-1:05}`: the sandbox's merchant codes.
pub fn handset_catalog(count: usize) -> Catalog {
    let skus: BTreeMap<String, SkuDef> = (0..count)
        .map(|n| {
            let code = format!("SKU-{n:05}");
            let def = SkuDef {
                code: code.clone(),
                kind_name: "handset".into(),
                kind: ComponentKind::Stock,
                safety_stock: 0,
            };
            (code, def)
        })
        .collect();
    Catalog { skus, bundles: BTreeMap::new() }
}

pub async fn start_sandbox(
    clock: &SimClock,
    top: TopConfig,
    jos: JosConfig,
) -> anyhow::Result<EmbeddedSandbox> {
    EmbeddedSandbox::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        clock.clone(),
        top,
        jos,
        FaultPlan::new(1),
        FaultPlan::new(2),
    )
    .await
    .context("starting the sandbox")
}

/// A database for one measurement, removed afterwards.
pub struct BenchDb {
    pub store: Store,
    pub url: String,
    /// PostgreSQL: the schema this run owns.
    pub schema: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

pub fn postgres_url() -> Option<String> {
    std::env::var(PG_ENV).ok().filter(|u| !u.is_empty())
}

impl BenchDb {
    /// A fresh, migrated database; `None` for PostgreSQL when no server is configured.
    pub async fn open(backend: Backend, label: &str) -> anyhow::Result<Option<Self>> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().context("temp dir")?;
                let url = format!("sqlite://{}", dir.path().join("bench.db").display());
                let store = Store::open(&StoreOptions::new(url.clone())).await?;
                Ok(Some(Self { store, url, schema: None, _dir: Some(dir) }))
            }
            Backend::Postgres => {
                let Some(url) = postgres_url() else { return Ok(None) };
                let schema = format!("fs_bench_{label}_{}", std::process::id());
                drop_schema(&url, &schema).await;
                let mut options = StoreOptions::new(url.clone());
                options.schema = Some(schema.clone());
                options.max_connections = 4;
                let store = Store::open(&options).await?;
                Ok(Some(Self { store, url, schema: Some(schema), _dir: None }))
            }
        }
    }

    pub async fn close(self) {
        self.store.close().await;
        if let Some(schema) = &self.schema {
            drop_schema(&self.url, schema).await;
        }
    }
}

async fn drop_schema(url: &str, schema: &str) {
    if let Ok(pool) = sqlx::PgPool::connect(url).await {
        let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
        pool.close().await;
    }
}

/// The p-th percentile (0..=100) of sorted values, nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
