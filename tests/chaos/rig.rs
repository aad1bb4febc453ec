//! The world a chaos run lives in: the marketplace and operator sandboxes on 127.0.0.1
//! (real clock), one tagged HTTP front per daemon slot so every effect the sandboxes receive
//! is attributed to the daemon that sent it, the lease history polled from the database,
//! the config files, and the daemon processes themselves.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, TimeDelta, Utc};
use flagsync::sandbox::EmbeddedSandbox;
use flagsync::store::{LeaseRow, Store};
use flagsync_sandbox::clock::SimClock;
use flagsync_sandbox::faults::{Fault, FaultPlan};
use flagsync_sandbox::jos::JosConfig;
use flagsync_sandbox::scenario::{Arrivals, BuyerEvent, ScenarioConfig, generate};
use flagsync_sandbox::server::{RunningServer, serve};
use flagsync_sandbox::top::TopConfig;
use tokio::time::Instant;

/// The operator's catalogue: two handsets, sold on both stores at shares of 0.5 each.
pub const SKUS: [&str; 2] = ["SKU-00000", "SKU-00001"];
/// Store ids in the config.
pub const TMALL: &str = "tmall";
pub const JD: &str = "jd";

/// One request the sandboxes received, attributed to the daemon slot whose front it came
/// through. `api` is the TOP/JOS method or the operator path.
#[derive(Debug, Clone)]
pub struct Effect {
    pub slot: usize,
    pub api: String,
    /// The operator's store id for fulfilment calls (from the body or path).
    pub operator_store: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Default)]
pub struct EffectLog(Arc<Mutex<Vec<Effect>>>);

impl EffectLog {
    pub fn all(&self) -> Vec<Effect> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The method a request calls: TOP and JOS carry it as `method` in the query or the form
/// body; the operator's API is addressed by path.
fn api_of(path: &str, query: Option<&str>, body: &[u8]) -> (String, Option<String>) {
    if path.starts_with("/v1/") {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let store = match segments.as_slice() {
            ["v1", "fulfilments", store, _, "withdraw"] => Some(store.to_string()),
            ["v1", "fulfilments"] => serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("store_id").and_then(|s| s.as_str()).map(str::to_string)),
            _ => None,
        };
        let name = segments.iter().filter(|s| !s.is_empty()).take(2).cloned().collect::<Vec<_>>();
        let name =
            if segments.last() == Some(&"withdraw") { "v1/withdraw".to_string() } else { name.join("/") };
        return (name, store);
    }
    let method = |bytes: &[u8]| {
        url::form_urlencoded::parse(bytes).find(|(k, _)| k == "method").map(|(_, v)| v.into_owned())
    };
    let api = query.and_then(|q| method(q.as_bytes())).or_else(|| method(body)).unwrap_or_default();
    (api, None)
}

async fn tag(State((log, slot)): State<(EffectLog, usize)>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let (api, operator_store) = api_of(parts.uri.path(), parts.uri.query(), &bytes);
    // Recorded when the request arrives: a call applied and then dropped still counts.
    log.0.lock().unwrap_or_else(|p| p.into_inner()).push(Effect {
        slot,
        api,
        operator_store,
        at: Utc::now(),
    });
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

/// The run's knobs, from the environment (`CHAOS_*`) or the CI defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    pub seed: u64,
    pub kills: usize,
    pub buyers: usize,
    /// Units of each SKU the operator holds.
    pub units: i64,
    pub sale: Duration,
    pub converge_limit: Duration,
    /// Probability scale of the random sandbox faults during the sale (1.0 = the default mix).
    pub faults: f64,
}

fn env_num<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

impl Settings {
    pub fn from_env(default_kills: usize) -> Self {
        let seed = env_num("CHAOS_SEED").unwrap_or_else(|| {
            let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
            (nanos as u64) % 1_000_000
        });
        let kills = env_num("CHAOS_KILLS").unwrap_or(default_kills);
        let buyers = env_num("CHAOS_BUYERS").unwrap_or(120 + 4 * kills);
        // Long enough for every kill to land while buyers are still buying.
        let sale = Duration::from_secs_f64((kills as f64 * 1.9).max(15.0));
        Self {
            seed,
            kills,
            buyers,
            units: env_num("CHAOS_UNITS").unwrap_or(60 + kills as i64),
            sale,
            converge_limit: Duration::from_secs(env_num("CHAOS_CONVERGE_SECS").unwrap_or(150)),
            faults: env_num("CHAOS_FAULTS").unwrap_or(1.0),
        }
    }
}

/// The sandboxes, one tagged front per daemon slot, and what they record.
pub struct World {
    pub sandbox: EmbeddedSandbox,
    pub fronts: Vec<RunningServer>,
    pub effects: EffectLog,
    pub sale_end: DateTime<Utc>,
}

impl World {
    pub async fn start(settings: &Settings, slots: usize) -> World {
        let clock = SimClock::real();
        let sandbox = EmbeddedSandbox::start(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            clock,
            TopConfig {
                listings: SKUS.len(),
                contract_listings: 0,
                initial_quantity: 0,
                ..TopConfig::default()
            },
            JosConfig {
                listings: SKUS.len(),
                contract_listings: 0,
                initial_quantity: 0,
                ..JosConfig::default()
            },
            FaultPlan::new(settings.seed),
            FaultPlan::new(settings.seed.wrapping_add(1)),
        )
        .await
        .unwrap();
        for sku in SKUS {
            sandbox.operator.set_on_hand(sku, "WH-HZ", settings.units);
        }
        // The warehouse ships what it was asked to a few seconds after the request, so
        // some refunds come before shipment (withdrawals) and most after.
        sandbox.operator.auto_ship(Duration::from_secs(4));
        let effects = EffectLog::default();
        let mut fronts = Vec::new();
        for slot in 0..slots {
            let router = sandbox
                .top
                .router()
                .merge(sandbox.jos.router())
                .merge(sandbox.operator.router())
                .layer(axum::middleware::from_fn_with_state((effects.clone(), slot), tag));
            fronts.push(serve(router, SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap());
        }

        // The sale: a seeded scenario per platform whose hour of buyers (payments, cancels,
        // refunds, touches) is compressed into `sale`, starting a few seconds from now so
        // the first stock push lands first.
        let sale_start = Utc::now() + TimeDelta::seconds(4);
        let span = TimeDelta::from_std(settings.sale).unwrap_or(TimeDelta::seconds(30));
        let scenario = |seed| ScenarioConfig {
            seed,
            start: sale_start,
            duration: TimeDelta::minutes(60),
            orders: settings.buyers,
            listings: SKUS.len(),
            contract_listings: 0,
            max_lines: 2,
            max_quantity: 2,
            arrivals: Arrivals::FlashSale { mean: TimeDelta::minutes(15) },
            unpaid_share: 0.1,
            refund_share: 0.15,
            hold_share: 0.0,
            touch_share: 0.1,
        };
        let top = compress(generate(&scenario(settings.seed)), sale_start, span);
        let jos = compress(generate(&scenario(settings.seed.wrapping_add(7))), sale_start, span);
        let sale_end =
            top.iter().chain(&jos).map(|e| e.at).max().unwrap_or(sale_start) + TimeDelta::seconds(1);
        sandbox.top.load_scenario(top);
        sandbox.jos.load_scenario(jos);
        World { sandbox, fronts, effects, sale_end }
    }

    /// Random faults at a low rate on every gateway and the operator.
    pub fn faults_on(&self, scale: f64) {
        let mix = [
            (Fault::RemoteTimeout, 0.01),
            (Fault::DropConnection, 0.01),
            (Fault::ApplyThenDrop, 0.01),
            (Fault::Slow(Duration::from_millis(300)), 0.02),
            (Fault::Malformed, 0.005),
            (Fault::Truncated, 0.005),
            (Fault::TransientBusiness, 0.01),
        ];
        for plan in [&self.sandbox.top_faults, &self.sandbox.jos_faults, &self.sandbox.operator_faults] {
            for (fault, p) in &mix {
                plan.random(None, fault.clone(), p * scale);
            }
        }
        for plan in [&self.sandbox.top_faults, &self.sandbox.jos_faults] {
            plan.random(None, Fault::Throttle { ban_secs: 1 }, 0.003 * scale);
        }
        // TOP's `isv.trade-service-rejection` asks for 3 minutes of quiet ("3分钟后再查询"),
        // which the connector honours inside the run: one near the end would outlast the
        // convergence budget. The seeded simulation injects it (with its waits shortened).
        self.sandbox.jos_faults.random(None, Fault::ServiceRejection, 0.005 * scale);
    }

    pub fn faults_off(&self) {
        for plan in [&self.sandbox.top_faults, &self.sandbox.jos_faults, &self.sandbox.operator_faults] {
            plan.set_enabled(false);
        }
    }

    pub fn faults_injected(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for plan in [&self.sandbox.top_faults, &self.sandbox.jos_faults, &self.sandbox.operator_faults] {
            for (kind, n) in plan.injected() {
                *out.entry(kind.to_string()).or_default() += n;
            }
        }
        out
    }

    pub fn front(&self, slot: usize) -> String {
        self.fronts[slot].base_url()
    }
}

/// Maps the scenario's times into `span` from `start`, keeping every order's events in
/// their order.
fn compress(mut events: Vec<BuyerEvent>, start: DateTime<Utc>, span: TimeDelta) -> Vec<BuyerEvent> {
    let last = events.iter().map(|e| e.at).max().unwrap_or(start);
    let total = (last - start).num_milliseconds().max(1) as f64;
    let factor = span.num_milliseconds() as f64 / total;
    for event in &mut events {
        let offset = (event.at - start).num_milliseconds() as f64 * factor;
        event.at = start + TimeDelta::milliseconds(offset as i64);
    }
    events.sort_by(|a, b| a.at.cmp(&b.at).then(a.order.cmp(&b.order)));
    events
}

/// The config file of one daemon slot: both stores and the operator through the slot's
/// tagged front, every job every second or two, secrets in files.
pub fn write_config(
    dir: &Path,
    database: &str,
    instance: &str,
    front: &str,
    lease_secs: u64,
    sandbox: &EmbeddedSandbox,
) -> PathBuf {
    let secrets = [
        ("top_secret", flagsync::sandbox::TOP_APP_SECRET),
        ("top_session", flagsync::sandbox::TOP_SESSION),
        ("jd_secret", flagsync::sandbox::JOS_APP_SECRET),
        ("jd_token", flagsync::sandbox::JOS_ACCESS_TOKEN),
        ("operator_secret", flagsync::sandbox::OPERATOR_SECRET),
    ];
    for (name, value) in secrets {
        std::fs::write(dir.join(name), value).unwrap();
    }
    let mut skus = String::new();
    let mut allocation = String::new();
    let (mut top_listings, mut jd_listings) = (String::new(), String::new());
    for (n, sku) in SKUS.iter().enumerate() {
        skus.push_str(&format!("\"{sku}\" = {{ kind = \"handset\" }}\n"));
        allocation.push_str(&format!("\"{sku}\" = {{ share = 0.5 }}\n"));
        // Listings start at 0 units, so no buyer can reveal them through an order: they are
        // mapped up front, as an operator does before a sale.
        let top = sandbox.top.listing(n);
        top_listings.push_str(&format!("\"{}:{}\" = \"{sku}\"\n", top.num_iid, top.sku_id));
        let jos = sandbox.jos.listing(n);
        jd_listings.push_str(&format!("\"{}:{}\" = \"{sku}\"\n", jos.ware_id, jos.sku_id));
    }
    let text = format!(
        "[database]\nurl = \"{database}\"\n\
         [sync]\nwindow_mins = 30\nsettle_delay_secs = 1\noverlap_secs = 30\ninitial_lookback_hours = 1\nrequest_timeout_secs = 5\n\
         [daemon]\ninstance_id = \"{instance}\"\nlease_secs = {lease_secs}\ndrain_timeout_secs = 5\n\
         [schedules]\norders = \"* * * * * *\"\ninventory = \"*/2 * * * * *\"\nstock = \"* * * * * *\"\n\
         fulfilment = \"* * * * * *\"\nshipments = \"* * * * * *\"\nreconcile = \"0 0 0 1 1 *\"\n\
         [operator]\ngateway = \"{front}\"\nkey_id = \"{op_key}\"\nsecret = {{ file = \"operator_secret\" }}\n\
         [carriers.SF]\ntaobao = \"SF\"\njd = \"467\"\n\
         [catalog.skus]\n{skus}\
         [stores.{TMALL}]\ntype = \"taobao\"\ngateway = \"{front}/router/rest\"\napp_key = \"{top_key}\"\n\
         app_secret = {{ file = \"top_secret\" }}\nsession = {{ file = \"top_session\" }}\ncalls_per_second = 1000\n\
         [stores.{TMALL}.allocation]\n{allocation}[stores.{TMALL}.listings]\n{top_listings}\
         [stores.{JD}]\ntype = \"jd\"\ngateway = \"{front}/routerjson\"\napp_key = \"{jd_key}\"\n\
         app_secret = {{ file = \"jd_secret\" }}\naccess_token = {{ file = \"jd_token\" }}\ncalls_per_second = 1000\n\
         [stores.{JD}.allocation]\n{allocation}[stores.{JD}.listings]\n{jd_listings}",
        op_key = flagsync::sandbox::OPERATOR_KEY_ID,
        top_key = flagsync::sandbox::TOP_APP_KEY,
        jd_key = flagsync::sandbox::JOS_APP_KEY,
    );
    let path = dir.join(format!("{instance}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// One daemon slot: a config, and the process currently running it (if any).
pub struct Slot {
    pub name: String,
    pub config: PathBuf,
    logs: PathBuf,
    child: Option<Child>,
    pub starts: usize,
}

impl Slot {
    pub fn new(name: &str, config: PathBuf, logs: &Path) -> Self {
        Self { name: name.to_string(), config, logs: logs.to_path_buf(), child: None, starts: 0 }
    }

    fn log_path(&self, n: usize) -> PathBuf {
        self.logs.join(format!("{}-{n}.log", self.name))
    }

    pub fn start(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.log_path(self.starts)).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_flagsync"))
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .env_remove("NOTIFY_SOCKET")
            .env("RUST_LOG", std::env::var("CHAOS_RUST_LOG").unwrap_or_else(|_| "flagsync=info,warn".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process died by itself (it should not).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGTERM; waits for the exit at most `limit`. Returns the status, or None on timeout.
    pub async fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let end = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= end {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last lines of the current (or last) incarnation's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(self.starts)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One poll of the leases table: the state at some instant between `sent` and `received`.
#[derive(Debug, Clone)]
pub struct LeaseSnapshot {
    pub sent: DateTime<Utc>,
    pub received: DateTime<Utc>,
    pub rows: BTreeMap<String, LeaseRow>,
}

/// Polls the leases table every 100 ms until dropped.
pub struct LeaseHistory {
    pub snapshots: Arc<Mutex<Vec<LeaseSnapshot>>>,
    task: tokio::task::JoinHandle<()>,
}

impl LeaseHistory {
    pub fn start(store: Store) -> Self {
        let snapshots: Arc<Mutex<Vec<LeaseSnapshot>>> = Arc::default();
        let sink = snapshots.clone();
        let task = tokio::spawn(async move {
            loop {
                let sent = Utc::now();
                if let Ok(rows) = store.leases().await {
                    let received = Utc::now();
                    let rows = rows.into_iter().map(|r| (r.key.clone(), r)).collect();
                    sink.lock().unwrap_or_else(|p| p.into_inner()).push(LeaseSnapshot {
                        sent,
                        received,
                        rows,
                    });
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self { snapshots, task }
    }

    pub fn take(&self) -> Vec<LeaseSnapshot> {
        self.snapshots.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for LeaseHistory {
    fn drop(&mut self) {
        self.task.abort();
    }
}
