//! One seed of the simulation: a scenario and a fault plan drawn from the seed, the real
//! jobs (through [`JobRunner`], as the daemon runs them) against the in-process sandboxes
//! on a paused clock, crashes that drop every in-memory state mid-job and restart from the
//! database file, the invariants after every step, and a final phase without faults in
//! which everything must converge.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use flagsync_market::Clock;
use flagsync_market::retry::RetryPolicy;
use flagsync_sandbox::clock::SimClock;
use flagsync_sandbox::faults::{Fault, FaultPlan};
use flagsync_sandbox::jos::JosConfig;
use flagsync_sandbox::operator::SimResource;
use flagsync_sandbox::scenario::{Arrivals, ScenarioConfig, generate};
use flagsync_sandbox::top::TopConfig;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use secrecy::SecretString;
use serde::Serialize;
use serde_json::json;

use crate::app::{App, AppOptions};
use crate::config::{
    CarrierCodes, Config, DatabaseConfig, Gateway, OperatorConfig, StoreConfig, StoreKind, SyncConfig,
};
use crate::inventory::{Allocation, Catalog, Component, ComponentKind, SkuDef};
use crate::jobs::{JobKind, JobRequest, JobRunner, OPERATOR_SCOPE, Trigger};
use crate::sandbox::{self, EmbeddedSandbox};
use crate::soak::invariants::{self, CheckContext, History, Violations};
use crate::soak::transport::RouterTransport;
use crate::store::{Store, StoreOptions};

const LISTINGS: usize = 20;
const STORES: [(&str, &str); 2] = [("tmall", "taobao"), ("jd", "jd")];
/// The in-process transport's reply deadline (real time: sqlx's SQLite worker threads and
/// tokio's paused clock do not mix, so the seed runs on the real clock with short waits).
const CALL_TIMEOUT: Duration = Duration::from_millis(25);
const PLAN: &str = "PLAN-5G-129";
const POOL: &str = "POOL-HZ-01";

/// The connectors' clock reads the sandbox's simulated clock.
#[derive(Debug)]
struct SandboxClock(SimClock);

impl Clock for SandboxClock {
    fn now(&self) -> DateTime<Utc> {
        self.0.now()
    }
}

/// How big and how hostile each seed is.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Most orders per store in a seed's scenario.
    pub max_orders: usize,
    /// Steps (one job each) before the final phase.
    pub steps: usize,
    /// Rounds of the final phase (every job once; two simulated minutes apart, then ten).
    pub settle_rounds: usize,
    /// Where seeds put their SQLite file (a fresh folder each); tmpfs is fastest.
    pub scratch: Option<PathBuf>,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self { max_orders: 40, steps: 40, settle_rounds: 24, scratch: None }
    }
}

/// What one seed did and found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SeedReport {
    pub seed: u64,
    pub violations: Violations,
    /// The step at which the first violation was seen (the final phase counts on).
    pub first_violation_step: Option<usize>,
    pub faults: BTreeMap<String, u64>,
    pub crashes: u64,
    pub jobs: u64,
    pub failed_jobs: u64,
    pub orders: u64,
    /// Simulated seconds from the end of faults until every check passed.
    pub converge_secs: Option<i64>,
    pub calls: u64,
    /// Shipment pushes sent to the marketplaces (every attempt).
    pub mutating_calls: u64,
    /// Shipments the marketplaces applied.
    pub effects: u64,
    /// Stock writes the marketplaces applied, fulfilment requests the operator accepted,
    /// and shipment notices it emitted (how much of the loop a seed exercised).
    pub stock_writes: u64,
    pub fulfilments: u64,
    pub notices: u64,
}

fn catalog(rng: &mut ChaCha8Rng) -> Catalog {
    let def = |code: &str, kind, safety_stock| {
        (code.to_string(), SkuDef { code: code.into(), kind_name: "x".into(), kind, safety_stock })
    };
    let mut skus: BTreeMap<String, SkuDef> = (4..LISTINGS)
        .map(|n| def(&format!("SKU-{n:05}"), ComponentKind::Stock, rng.random_range(0..3)))
        .collect();
    skus.extend([def(PLAN, ComponentKind::PlanQuota, 0), def(POOL, ComponentKind::NumberPool, 0)]);
    let bundles = (0..4)
        .map(|n| {
            let handset = format!("SKU-{:05}", n + 4);
            (format!("SKU-{n:05}"), vec![(handset, 1), (PLAN.into(), 1), (POOL.into(), 1)])
        })
        .collect();
    Catalog { skus, bundles }
}

fn store_config(id: &str, store_type: &str, rng: &mut ChaCha8Rng) -> StoreConfig {
    let secret = |s: &str| SecretString::from(s.to_string());
    let kind = match store_type {
        "taobao" => StoreKind::Taobao {
            app_key: sandbox::TOP_APP_KEY.into(),
            app_secret: secret(sandbox::TOP_APP_SECRET),
            session: secret(sandbox::TOP_SESSION),
            sign_method: "hmac-sha256".into(),
            page_size: rng.random_range(3..40),
            fullinfo_batch: rng.random_range(1..=25),
        },
        _ => StoreKind::Jd {
            app_key: sandbox::JOS_APP_KEY.into(),
            app_secret: secret(sandbox::JOS_APP_SECRET),
            access_token: secret(sandbox::JOS_ACCESS_TOKEN),
            page_size: rng.random_range(3..50),
            page_cap: rng.random_range(2..6),
        },
    };
    let mut allocation = BTreeMap::new();
    if id == "tmall" && rng.random_bool(0.5) {
        // An explicit share for one handset; the other store takes what is left.
        let target = format!("SKU-{:05}", rng.random_range(4..LISTINGS));
        let cap = rng.random_bool(0.3).then(|| rng.random_range(1..10));
        allocation.insert(
            target,
            Allocation { share: rng.random_range(0.1..0.9), cap, floor: rng.random_range(0..2) },
        );
    }
    StoreConfig {
        id: id.into(),
        kind,
        gateway: Gateway::Sandbox,
        calls_per_second: 10_000,
        paused: false,
        schedules: Default::default(),
        paused_jobs: Vec::new(),
        reserve_on_order: rng.random_bool(0.3),
        shared_pool: false,
        listings: Default::default(),
        allocation,
    }
}

fn config(rng: &mut ChaCha8Rng) -> Config {
    let stores = STORES.iter().map(|(id, kind)| store_config(id, kind, rng)).collect();
    Config {
        database: DatabaseConfig {
            url: "unused://".into(),
            max_connections: 2,
            sqlite_synchronous_full: false,
        },
        sync: SyncConfig {
            window: Duration::from_secs(rng.random_range(5..60) * 60),
            settle_delay: Duration::from_secs(rng.random_range(1..60)),
            overlap: Duration::from_secs(rng.random_range(30..300)),
            initial_lookback: Duration::from_secs(4 * 3600),
            request_timeout: Duration::from_secs(5),
        },
        daemon: Default::default(),
        admin: Default::default(),
        catalog: catalog(rng),
        operator: Some(OperatorConfig {
            gateway: Gateway::Sandbox,
            key_id: sandbox::OPERATOR_KEY_ID.into(),
            secret: SecretString::from(sandbox::OPERATOR_SECRET.to_string()),
        }),
        stores,
        carriers: [("SF".to_string(), CarrierCodes { taobao: Some("SF".into()), jd: Some("467".into()) })]
            .into_iter()
            .collect(),
    }
}

/// Faults for one gateway, each kind with its own probability drawn from the seed.
/// `protection` is how late an order list may see a modification without losing it (the
/// settle delay plus the overlap): the index lags drawn for `LateModified` stay within it.
fn plan_faults(
    plan: &FaultPlan,
    rng: &mut ChaCha8Rng,
    rate: f64,
    list_api: Option<&str>,
    protection: Duration,
) {
    if rate <= 0.0 {
        return;
    }
    let mut kinds = vec![
        Fault::Throttle { ban_secs: rng.random_range(1..120) },
        Fault::RemoteTimeout,
        Fault::ServiceRejection,
        Fault::TransientBusiness,
        Fault::SessionExpired,
        // Past the transport's timeout: an ambiguous outcome (applied, no reply in time).
        Fault::Slow(CALL_TIMEOUT + Duration::from_millis(rng.random_range(5..30))),
        Fault::Slow(Duration::from_millis(rng.random_range(1..10))),
        Fault::DropConnection,
        Fault::ApplyThenDrop,
        Fault::Truncated,
        Fault::Malformed,
        Fault::DuplicatePage,
    ];
    if rng.random_bool(0.3) {
        kinds.push(Fault::CorruptRecord);
    }
    for fault in kinds {
        let p = rate * rng.random_range(0.0..1.0);
        plan.random(None, fault, p);
    }
    if let Some(api) = list_api {
        plan.random(Some(api), Fault::ShuffleDuringPaging { orders: rng.random_range(1..5) }, rate * 2.0);
        let lag = Duration::from_secs(rng.random_range(1..=protection.as_secs().max(1)));
        plan.random(Some(api), Fault::LateModified { lag }, rate * 2.0);
    }
}

struct Sim {
    rng: ChaCha8Rng,
    clock: SimClock,
    sandbox: EmbeddedSandbox,
    transport: RouterTransport,
    config: Config,
    options: AppOptions,
    db_url: String,
    app: Option<App>,
    supply: BTreeMap<String, i64>,
    history: History,
    report: SeedReport,
    step: usize,
}

fn component_key(kind: ComponentKind, code: &str) -> String {
    Component { kind, code: code.to_string() }.key()
}

impl Sim {
    async fn open_app(&mut self) -> anyhow::Result<()> {
        let store = Store::open(&StoreOptions {
            url: self.db_url.clone(),
            schema: None,
            max_connections: 2,
            sqlite_synchronous_full: false,
        })
        .await?;
        let clock: Arc<dyn Clock> = Arc::new(SandboxClock(self.clock.clone()));
        let app =
            App::build_with(self.config.clone(), &self.options, clock, Some(self.sandbox.clone()), store)
                .await?;
        self.app = Some(app);
        Ok(())
    }

    fn app(&self) -> anyhow::Result<&App> {
        self.app.as_ref().ok_or_else(|| anyhow::anyhow!("no app"))
    }

    /// Runs one job; a crash armed in the transport drops it mid-flight, and then the app
    /// with every in-memory state, and restarts it from the database file.
    async fn job(
        &mut self,
        store_id: &str,
        job: JobKind,
        params: serde_json::Value,
        crash: Option<(u64, bool)>,
    ) -> anyhow::Result<()> {
        let request =
            JobRequest { store_id: store_id.into(), job, trigger: Trigger::Cli, params, fence: None };
        if let Some((after, applied)) = crash {
            self.transport.arm_crash(after, applied);
        }
        self.report.jobs += 1;
        let crashed = {
            let app = self.app()?;
            let transport = self.transport.clone();
            tokio::select! {
                biased;
                () = transport.crashed() => true,
                result = app.run(&request) => {
                    if std::env::var_os("FLAGSYNC_SOAK_DEBUG").is_some() {
                        eprintln!("job {store_id} {job} at {}: {result:?}", self.clock.now());
                    }
                    if result.is_err() {
                        self.report.failed_jobs += 1;
                    }
                    false
                }
            }
        };
        if crashed && std::env::var_os("FLAGSYNC_SOAK_DEBUG").is_some() {
            eprintln!("job {store_id} {job} at {}: crashed {crash:?}", self.clock.now());
        }
        self.transport.disarm();
        if crashed {
            self.report.crashes += 1;
            if let Some(app) = self.app.take() {
                let store = app.store.clone();
                drop(app);
                store.close().await;
            }
            self.open_app().await?;
        }
        Ok(())
    }

    fn ctx(&self) -> CheckContext<'_> {
        CheckContext { config: &self.config, listings: LISTINGS, supply: &self.supply }
    }

    fn note(&mut self, found: &Violations) {
        if !found.is_clean() && self.report.first_violation_step.is_none() {
            self.report.first_violation_step = Some(self.step);
        }
        self.report.violations.add(found);
    }

    async fn check_step(&mut self) -> anyhow::Result<()> {
        let mut history = std::mem::take(&mut self.history);
        let found = {
            let app = self.app()?;
            invariants::check_step(&app.store, &self.sandbox, &self.ctx(), &mut history).await?
        };
        self.history = history;
        self.note(&found);
        Ok(())
    }

    /// A random job, possibly with a crash somewhere in its calls.
    async fn random_step(&mut self) -> anyhow::Result<()> {
        let store = STORES[self.rng.random_range(0..STORES.len())].0;
        let (store, job, params) = match self.rng.random_range(0..100) {
            0..30 => (store, JobKind::Orders, json!({})),
            30..40 => (OPERATOR_SCOPE, JobKind::Inventory, json!({"full": self.rng.random_bool(0.2)})),
            40..58 => (store, JobKind::Stock, json!({})),
            58..64 => (store, JobKind::Reconcile, json!({"fix": self.rng.random_bool(0.5)})),
            64..82 => (store, JobKind::Fulfilment, json!({})),
            _ => (store, JobKind::Shipments, json!({})),
        };
        let crash =
            self.rng.random_bool(0.08).then(|| (self.rng.random_range(1..6), self.rng.random_bool(0.5)));
        self.job(store, job, params, crash).await
    }

    fn restock(&mut self) {
        let n = self.rng.random_range(4..LISTINGS);
        let code = format!("SKU-{n:05}");
        let more = self.rng.random_range(1..10);
        let now = self.sandbox.operator.on_hand_in(&code, "WH-HZ");
        self.sandbox.operator.set_on_hand(&code, "WH-HZ", now + more);
        *self.supply.entry(component_key(ComponentKind::Stock, &code)).or_default() += more;
    }

    /// Every job once, in the daemon's usual order.
    async fn round(&mut self) -> anyhow::Result<()> {
        self.job(OPERATOR_SCOPE, JobKind::Inventory, json!({}), None).await?;
        for job in [JobKind::Orders, JobKind::Fulfilment, JobKind::Shipments, JobKind::Stock] {
            for (store, _) in STORES {
                self.job(store, job, json!({}), None).await?;
            }
        }
        // Reconcile reports only (as the daemon's schedule does): a listing that differs
        // stays different, so the settled check sees it.
        for (store, _) in STORES {
            self.job(store, JobKind::Reconcile, json!({"fix": false}), None).await?;
        }
        Ok(())
    }

    /// Everything that must hold once settled, plus nothing left to do.
    async fn settled(&self) -> anyhow::Result<Violations> {
        let app = self.app()?;
        let mut v = invariants::check(&app.store, &self.sandbox, &self.ctx()).await?;
        // Every listing shows what the ledger says it should (its last push, less sales
        // since, plus what refunds gave back): reconcile reads each back and compares. A
        // push that overwrote a newer value with an older one shows here.
        for (store, _) in STORES {
            let request = JobRequest {
                store_id: store.into(),
                job: JobKind::Reconcile,
                trigger: Trigger::Cli,
                params: json!({"fix": false}),
                fence: None,
            };
            let report = app.run(&request).await.map_err(|e| anyhow::anyhow!("reconcile {store}: {e}"))?;
            let differing = report["differing"].as_array().map_or(0, Vec::len);
            if differing > 0 && std::env::var_os("FLAGSYNC_SOAK_DEBUG").is_some() {
                eprintln!("stale: {store}: {}", report["differing"]);
                if store == "tmall" {
                    for w in self.sandbox.top.stock_writes() {
                        eprintln!("  write {w:?}");
                    }
                    for c in self.sandbox.top.buyer_stock_changes() {
                        eprintln!("  buyer {c:?}");
                    }
                    for l in app.store.listings(store).await? {
                        eprintln!("  listing {l:?}");
                    }
                    for c in self.sandbox.top.buyer_stock_changes() {
                        let order = app.store.order(store, &c.tid.to_string()).await?;
                        eprintln!(
                            "  stored {:?}",
                            order.map(|o| (
                                o.order.status,
                                o.order.paid_at,
                                o.order.modified_at,
                                o.order
                                    .lines
                                    .iter()
                                    .map(|l| (l.item_id.clone(), l.sku_id.clone(), l.quantity, l.refund))
                                    .collect::<Vec<_>>()
                            ))
                        );
                    }
                }
            }
            v.stale_stock_push += differing as u64;
        }
        let pending = app.store.outbox_counts(None).await?.pending;
        if pending > 0 {
            v.not_converged += 1;
        }
        Ok(v)
    }
}

/// The scratch folder for seeds: `/dev/shm` when it exists (a crash keeps what was
/// committed either way; tmpfs just skips the disk).
pub fn default_scratch() -> Option<PathBuf> {
    let shm = Path::new("/dev/shm");
    shm.is_dir().then(|| shm.to_path_buf())
}

/// Runs one seed to the end and reports what it saw.
pub async fn run_seed(seed: u64, options: &SimOptions) -> anyhow::Result<SeedReport> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dir = match &options.scratch {
        Some(base) => tempfile::Builder::new().prefix("flagsync-soak-").tempdir_in(base)?,
        None => tempfile::Builder::new().prefix("flagsync-soak-").tempdir()?,
    };
    let db_url = format!("sqlite://{}", dir.path().join("soak.db").display());
    let start = ScenarioConfig::default().start;
    let clock = SimClock::manual(start);
    let sandbox = EmbeddedSandbox::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        clock.clone(),
        TopConfig { initial_quantity: 0, ..TopConfig::default() },
        JosConfig { initial_quantity: 0, ..JosConfig::default() },
        FaultPlan::new(rng.random()),
        FaultPlan::new(rng.random()),
    )
    .await?;
    sandbox.operator_faults.reseed(rng.random());
    let config = config(&mut rng);

    // The operator's books: small stock, so buyers run into sell-outs.
    let mut supply = BTreeMap::new();
    for n in 4..LISTINGS {
        let code = format!("SKU-{n:05}");
        let units = rng.random_range(0..25);
        sandbox.operator.set_on_hand(&code, "WH-HZ", units);
        supply.insert(component_key(ComponentKind::Stock, &code), units);
    }
    for (kind, sim, code) in [
        (ComponentKind::PlanQuota, SimResource::PlanQuota, PLAN),
        (ComponentKind::NumberPool, SimResource::NumberPool, POOL),
    ] {
        let units = rng.random_range(0..30);
        sandbox.operator.set_resource(sim, code, units);
        supply.insert(component_key(kind, code), units);
    }
    let ship_after: i64 = rng.random_range(30..900);
    sandbox.operator.auto_ship(Duration::from_secs(ship_after.unsigned_abs()));

    let orders = rng.random_range(5..=options.max_orders.max(5));
    let scenario = |seed: u64, rng: &mut ChaCha8Rng| ScenarioConfig {
        seed,
        start: start + TimeDelta::minutes(5),
        duration: TimeDelta::minutes(rng.random_range(20..90)),
        orders,
        arrivals: if rng.random_bool(0.4) {
            Arrivals::FlashSale { mean: TimeDelta::minutes(rng.random_range(1..10)) }
        } else {
            Arrivals::Uniform
        },
        unpaid_share: rng.random_range(0.0..0.3),
        refund_share: rng.random_range(0.0..0.3),
        hold_share: rng.random_range(0.0..0.5),
        touch_share: rng.random_range(0.0..0.4),
        ..ScenarioConfig::default()
    };
    let top_events = generate(&scenario(rng.random(), &mut rng));
    let jd_events = generate(&scenario(rng.random(), &mut rng));
    let last_event = top_events.iter().chain(&jd_events).map(|e| e.at).max().unwrap_or(start);
    sandbox.top.load_scenario(top_events);
    sandbox.jos.load_scenario(jd_events);

    // A third of the seeds run clean; the rest draw a fault rate.
    let rate = if rng.random_bool(0.33) { 0.0 } else { rng.random_range(0.02..0.25) };
    let protection = config.sync.settle_delay + config.sync.overlap;
    plan_faults(&sandbox.top_faults, &mut rng, rate, Some("taobao.trades.sold.increment.get"), protection);
    plan_faults(&sandbox.jos_faults, &mut rng, rate, Some("jingdong.pop.order.search"), protection);
    plan_faults(&sandbox.operator_faults, &mut rng, rate, None, protection);

    let router = sandbox.top.router().merge(sandbox.jos.router()).merge(sandbox.operator.router());
    let transport = RouterTransport::new(router, CALL_TIMEOUT);
    let options_app = AppOptions {
        record: None,
        retry: RetryPolicy {
            max_attempts: rng.random_range(1..5),
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
            max_hint: Duration::from_millis(4),
        },
        transport: Some(Arc::new(transport.clone())),
        operator_transport: Some(Arc::new(transport.clone())),
    };
    let mut sim = Sim {
        rng,
        clock,
        sandbox,
        transport,
        config,
        options: options_app,
        db_url,
        app: None,
        supply,
        history: History::default(),
        report: SeedReport { seed, orders: orders as u64 * 2, ..SeedReport::default() },
        step: 0,
    };
    sim.open_app().await?;
    // Before the first buyer: the ledger pulls the operator's stock and the listings show it.
    sim.round().await?;

    for step in 0..options.steps {
        sim.step = step;
        let advance = sim.rng.random_range(5..240);
        sim.clock.advance(TimeDelta::seconds(advance));
        if sim.rng.random_bool(0.1) {
            sim.restock();
        }
        sim.random_step().await?;
        sim.check_step().await?;
    }

    // Faults stop; the scenario plays out; every job runs until all is settled.
    for plan in [&sim.sandbox.top_faults, &sim.sandbox.jos_faults, &sim.sandbox.operator_faults] {
        plan.set_enabled(false);
    }
    let calm = sim.clock.now().max(last_event);
    sim.clock.set(calm);
    let mut last = Violations::default();
    for round in 0..options.settle_rounds {
        sim.step = options.steps + round;
        // Two-minute rounds, then longer ones: an outbox row that failed often during the
        // faults waits up to an hour before its next attempt (sync::outbox::backoff).
        sim.clock.advance(TimeDelta::minutes(if round < 10 { 2 } else { 10 }));
        sim.round().await?;
        sim.check_step().await?;
        if sim.clock.now() < calm + TimeDelta::seconds(ship_after) {
            // The operator has not shipped what it accepted before the calm yet.
            continue;
        }
        last = sim.settled().await?;
        if last.is_clean() {
            sim.report.converge_secs = Some((sim.clock.now() - calm).num_seconds());
            break;
        }
    }
    if !last.is_clean() && std::env::var_os("FLAGSYNC_SOAK_DEBUG").is_some() {
        let app = sim.app()?;
        let rows = app
            .store
            .outbox_rows(&crate::store::OutboxFilter {
                state: Some(crate::store::OutboxState::Pending),
                ..Default::default()
            })
            .await?;
        for row in rows {
            eprintln!(
                "pending {:?} {} {} attempts={} next={} now={} error={:?}",
                row.kind,
                row.store_id,
                row.order_id,
                row.attempts,
                row.next_attempt_at,
                sim.clock.now(),
                row.last_error
            );
        }
    }
    if !last.is_clean() {
        if last.not_converged == 0 && last.orders_lost == 0 && last.shipment_never == 0 {
            last.not_converged = 1;
        }
        sim.note(&last);
    }

    let mut faults = BTreeMap::new();
    for plan in [&sim.sandbox.top_faults, &sim.sandbox.jos_faults, &sim.sandbox.operator_faults] {
        for (kind, n) in plan.injected() {
            *faults.entry(kind.to_string()).or_default() += n;
        }
    }
    sim.report.faults = faults;
    sim.report.calls = sim.transport.calls();
    sim.report.mutating_calls =
        sim.transport.calls_by_api().iter().filter(|(api, _)| is_mutating(api)).map(|(_, n)| n).sum();
    let s = &sim.sandbox;
    sim.report.effects = (s.top.shipments().len() + s.jos.shipments().len()) as u64;
    sim.report.stock_writes = (s.top.stock_writes().len() + s.jos.stock_writes().len()) as u64;
    sim.report.fulfilments = s.operator.fulfilments().len() as u64;
    sim.report.notices = s.operator.notices().len() as u64;
    if let Some(app) = sim.app.take() {
        app.store.close().await;
    }
    drop(dir);
    Ok(sim.report)
}

/// Shipment pushes.
fn is_mutating(api: &str) -> bool {
    matches!(api, "taobao.logistics.offline.send" | "jingdong.pop.order.shipment")
}
