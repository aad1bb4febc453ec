//! The fulfilment loop end to end against the in-process sandbox: paid orders go to the
//! operator's fulfilment, its shipment notices come back and reach Taobao and JD exactly
//! once (with IMEIs and waybills) under injected faults and a worker killed between a push
//! and its bookkeeping; held contract orders wait; a refund before shipment withdraws;
//! a shipment the marketplace refuses lands in the dead-letter list with the platform's
//! reason, and `retry` after a fix delivers it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use flagsync::app::{App, AppOptions};
use flagsync::config::{CarrierCodes, Config, Gateway, OperatorConfig};
use flagsync::inventory::{Catalog, ComponentKind, SkuDef};
use flagsync::jobs::{JobKind, JobRequest, JobRunner, Trigger};
use flagsync::sandbox::EmbeddedSandbox;
use flagsync::store::{OutboxFilter, OutboxKind, OutboxState};
use flagsync::sync::outbox::DrainReport;
use flagsync_market::Clock;
use flagsync_sandbox::clock::SimClock;
use flagsync_sandbox::faults::Fault;
use flagsync_sandbox::operator::{FulfilmentState, SimResource};
use flagsync_sandbox::scenario::{BuyerEvent, EventKind, ScenarioConfig, generate};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::exactly_once::{SandboxClock, fast_retry, start_sandbox, store_config, test_config};
use crate::support::{Backend, TestStore, test_store};

const TOP_SHIP: &str = "taobao.logistics.offline.send";
const JOS_SHIP: &str = "jingdong.pop.order.shipment";
const PLANS: [&str; 3] = ["PLAN-5G-059", "PLAN-5G-129", "PLAN-5G-199"];

/// The sandbox's catalogue: SKU-00004.. are handsets; SKU-00000..3 contract bundles of a
/// handset, a plan and a number from POOL-HZ-01.
fn catalog() -> Catalog {
    let def = |code: &str, kind| {
        (code.to_string(), SkuDef { code: code.into(), kind_name: "x".into(), kind, safety_stock: 0 })
    };
    let mut skus: BTreeMap<String, SkuDef> =
        (4..20).map(|n| def(&format!("SKU-{n:05}"), ComponentKind::Stock)).collect();
    skus.extend([def("PLAN-5G-129", ComponentKind::PlanQuota), def("POOL-HZ-01", ComponentKind::NumberPool)]);
    let bundles = (0..4)
        .map(|n| {
            let handset = format!("SKU-{:05}", n + 4);
            (format!("SKU-{n:05}"), vec![(handset, 1), ("PLAN-5G-129".into(), 1), ("POOL-HZ-01".into(), 1)])
        })
        .collect();
    Catalog { skus, bundles }
}

fn config(carriers: &[(&str, &str, &str)]) -> Config {
    let mut config = test_config(vec![store_config("jd", "jd"), store_config("tmall", "taobao")]);
    config.sync.settle_delay = Duration::from_secs(5);
    config.catalog = catalog();
    config.operator = Some(OperatorConfig {
        gateway: Gateway::Sandbox,
        key_id: flagsync::sandbox::OPERATOR_KEY_ID.into(),
        secret: SecretString::from(flagsync::sandbox::OPERATOR_SECRET.to_string()),
    });
    config.carriers = carriers
        .iter()
        .map(|(name, taobao, jd)| {
            (name.to_string(), CarrierCodes { taobao: Some(taobao.to_string()), jd: Some(jd.to_string()) })
        })
        .collect();
    config
}

struct World {
    app: App,
    sandbox: EmbeddedSandbox,
    clock: SimClock,
    store: TestStore,
}

impl World {
    async fn new(backend: Backend, seed: u64) -> Option<World> {
        let store = test_store(backend).await?;
        let clock = SimClock::manual(ScenarioConfig::default().start);
        let sandbox = start_sandbox(&clock, seed).await;
        let operator = &sandbox.operator;
        for n in 4..20 {
            operator.set_on_hand(&format!("SKU-{n:05}"), "WH-HZ", 1_000_000);
        }
        for plan in PLANS {
            operator.set_resource(SimResource::PlanQuota, plan, 1_000_000);
        }
        operator.set_resource(SimResource::NumberPool, "POOL-HZ-01", 1_000_000);
        let app = build(&sandbox, &clock, &store, config(&[("SF", "SF", "467")])).await;
        Some(World { app, sandbox, clock, store })
    }

    async fn rebuild(&mut self, config: Config) {
        self.app = build(&self.sandbox, &self.clock, &self.store, config).await;
    }
}

async fn build(sandbox: &EmbeddedSandbox, clock: &SimClock, store: &TestStore, config: Config) -> App {
    let options = AppOptions { retry: fast_retry(), ..AppOptions::default() };
    let client_clock: Arc<dyn Clock> = Arc::new(SandboxClock(clock.clone()));
    App::build_with(config, &options, client_clock, Some(sandbox.clone()), store.store.clone()).await.unwrap()
}

async fn run(app: &App, store: &str, job: JobKind) -> Value {
    let request =
        JobRequest { store_id: store.into(), job, trigger: Trigger::Cli, params: json!({}), fence: None };
    app.run(&request).await.unwrap_or_else(|e| panic!("{store} {job}: {e}"))
}

fn drained(report: &Value) -> DrainReport {
    serde_json::from_value(report.get("push").cloned().unwrap_or_else(|| report.clone())).unwrap()
}

/// One daemon cycle for both stores: pull orders, send fulfilments, pull notices and push
/// shipments.
async fn cycle(app: &App) {
    for job in [JobKind::Orders, JobKind::Fulfilment, JobKind::Shipments] {
        for store in ["tmall", "jd"] {
            run(app, store, job).await;
        }
    }
}

async fn dead_letters(app: &App) -> Vec<flagsync::store::OutboxRow> {
    app.store
        .outbox_rows(&OutboxFilter { state: Some(OutboxState::Dead), ..OutboxFilter::default() })
        .await
        .unwrap()
}

async fn every_shipment_reaches_taobao_and_jd_exactly_once_under_faults_and_a_kill(backend: Backend) {
    let Some(mut world) = World::new(backend, 71).await else { return };
    // Two thousand orders on SQLite; PostgreSQL, which adds its claim query, runs fewer.
    let orders = if backend == Backend::Sqlite { 1_000 } else { 400 };
    let scenario = |seed| ScenarioConfig {
        seed,
        orders,
        duration: TimeDelta::minutes(30),
        unpaid_share: 0.05,
        refund_share: 0.05,
        hold_share: 0.3,
        touch_share: 0.1,
        ..ScenarioConfig::default()
    };
    world.sandbox.top.load_scenario(generate(&scenario(71)));
    world.sandbox.jos.load_scenario(generate(&scenario(72)));
    world.sandbox.operator.auto_ship(Duration::from_secs(120));
    world.sandbox.top_faults.random(Some(TOP_SHIP), Fault::RemoteTimeout, 0.03);
    world.sandbox.jos_faults.random(Some(JOS_SHIP), Fault::RemoteTimeout, 0.03);
    for (faults, api) in [(&world.sandbox.top_faults, TOP_SHIP), (&world.sandbox.jos_faults, JOS_SHIP)] {
        faults.random(Some(api), Fault::ApplyThenDrop, 0.05);
        faults.random(Some(api), Fault::TransientBusiness, 0.05);
        faults.script(Some(api), Fault::Throttle { ban_secs: 90 });
    }
    let operator_faults = &world.sandbox.operator_faults;
    operator_faults.random(Some("fulfilments"), Fault::ApplyThenDrop, 0.03);
    operator_faults.random(Some("fulfilments"), Fault::TransientBusiness, 0.03);
    operator_faults.random(Some("shipments"), Fault::RemoteTimeout, 0.02);

    let start = world.clock.now();
    let mut killed = false;
    while world.clock.now() < start + TimeDelta::minutes(60) {
        world.clock.advance(TimeDelta::minutes(3));
        cycle(&world.app).await;
        if !killed && world.clock.now() >= start + TimeDelta::minutes(20) {
            killed = true;
            // JD replies slowly after applying; the worker dies while it waits.
            for _ in 0..4 {
                world.sandbox.jos_faults.script(Some(JOS_SHIP), Fault::Slow(Duration::from_millis(400)));
            }
            world.clock.advance(TimeDelta::minutes(2));
            run(&world.app, "jd", JobKind::Orders).await;
            run(&world.app, "jd", JobKind::Fulfilment).await;
            let before = world.sandbox.jos.shipments().len();
            let app = Arc::new(std::mem::replace(
                &mut world.app,
                build(&world.sandbox, &world.clock, &world.store, config(&[("SF", "SF", "467")])).await,
            ));
            let worker = tokio::spawn({
                let app = app.clone();
                async move { run(&app, "jd", JobKind::Shipments).await }
            });
            // Kill it as soon as a push has landed (its reply is held back by the slow fault),
            // so the bookkeeping of that push never happens.
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while world.sandbox.jos.shipments().len() == before && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            worker.abort();
            let _ = worker.await;
            drop(app);
            let landed = world.sandbox.jos.shipments().len() - before;
            let claimed = world
                .app
                .store
                .outbox_rows(&OutboxFilter {
                    store_id: Some("jd"),
                    state: Some(OutboxState::Pending),
                    kind: Some(OutboxKind::Ship),
                    ..OutboxFilter::default()
                })
                .await
                .unwrap()
                .into_iter()
                .filter(|r| r.attempts > 0)
                .count();
            assert!(
                landed >= 1 && claimed >= 1,
                "the kill fell between a push ({landed}) and its bookkeeping ({claimed})"
            );
            // The next drain takes the dead worker's claims at once, not when they lapse.
            let report = drained(&run(&world.app, "jd", JobKind::Shipments).await);
            assert!(report.released as usize >= claimed, "{claimed} claimed rows, {report:?}");
        }
    }
    // Faults stop; claims of the killed worker lapse; everything settles.
    for faults in [&world.sandbox.top_faults, &world.sandbox.jos_faults, &world.sandbox.operator_faults] {
        faults.set_enabled(false);
    }
    for _ in 0..4 {
        world.clock.advance(TimeDelta::minutes(20));
        cycle(&world.app).await;
    }
    let counts = world.app.store.outbox_counts(None).await.unwrap();
    assert_eq!(counts.pending, 0, "{counts:?}");

    let notices = world.sandbox.operator.notices();
    assert!(notices.len() > orders * 3 / 2, "the operator shipped {} orders", notices.len());
    let dead: BTreeMap<(String, String), String> = dead_letters(&world.app)
        .await
        .into_iter()
        .map(|r| ((r.store_id.clone(), r.order_id.clone()), r.dead_reason.unwrap_or_default()))
        .collect();

    // Taobao: one offline.send per shipped trade, with its waybill and every IMEI by oid.
    let top = world.sandbox.top.shipments();
    let trades: BTreeMap<String, String> =
        world.sandbox.top.trades().into_iter().map(|t| (t.tid.to_string(), t.status)).collect();
    let mut top_by_tid: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for record in &top {
        top_by_tid.entry(record.tid.to_string()).or_default().push(record);
    }
    let mut checked = (0, 0);
    for notice in notices.iter().filter(|n| n.store_id == "tmall") {
        let records = top_by_tid.get(&notice.order_id).map(Vec::as_slice).unwrap_or_default();
        if let Some(reason) = dead.get(&("tmall".to_string(), notice.order_id.clone())) {
            assert!(records.is_empty(), "dead but shipped: {}", notice.order_id);
            assert!(trades[&notice.order_id].contains("CLOSED"), "{}: {reason}", trades[&notice.order_id]);
            continue;
        }
        assert_eq!(records.len(), 1, "trade {} shipped {} times", notice.order_id, records.len());
        let record = records[0];
        assert_eq!((record.company_code.as_str(), record.out_sid.as_str()), ("SF", notice.waybill.as_str()));
        let want: BTreeMap<i64, Vec<String>> =
            notice.serials.iter().map(|(line, imeis)| (line.parse().unwrap(), imeis.clone())).collect();
        assert_eq!(record.ident_codes, want, "IMEIs of trade {}", notice.order_id);
        checked.0 += 1;
    }
    assert_eq!(top.len(), checked.0, "no shipment without a notice");

    // JD: one shipment per order, with the numeric carrier id and the waybill.
    let jd = world.sandbox.jos.shipments();
    let jd_orders: BTreeMap<String, String> =
        world.sandbox.jos.orders().into_iter().map(|o| (o.order_id, o.order_state)).collect();
    for notice in notices.iter().filter(|n| n.store_id == "jd") {
        let records: Vec<_> = jd.iter().filter(|r| r.order_id == notice.order_id).collect();
        if let Some(reason) = dead.get(&("jd".to_string(), notice.order_id.clone())) {
            assert!(records.is_empty(), "dead but shipped: {}", notice.order_id);
            assert_eq!(jd_orders[&notice.order_id], "TRADE_CANCELED", "{reason}");
            continue;
        }
        assert_eq!(records.len(), 1, "jd order {} shipped {} times", notice.order_id, records.len());
        assert_eq!((records[0].logi_copr_id, records[0].logi_no.as_str()), (467, notice.waybill.as_str()));
        checked.1 += 1;
    }
    assert_eq!(jd.len(), checked.1, "no shipment without a notice");
    assert!(checked.0 > orders * 7 / 10 && checked.1 > orders * 7 / 10, "{checked:?}");

    // Each delivered order's reservations were consumed, once.
    for notice in notices.iter().take(300) {
        if dead.contains_key(&(notice.store_id.clone(), notice.order_id.clone())) {
            continue;
        }
        let (open, _, consumed) =
            world.app.store.reservation_counts(&notice.store_id, &notice.order_id).await.unwrap();
        assert_eq!(open, 0, "{}/{}", notice.store_id, notice.order_id);
        assert!(consumed > 0, "{}/{}", notice.store_id, notice.order_id);
    }
    for faults in [&world.sandbox.top_faults, &world.sandbox.jos_faults] {
        let injected = faults.injected();
        for kind in ["apply_then_drop", "transient_business", "throttle"] {
            assert!(injected.get(kind).copied().unwrap_or(0) > 0, "{kind}: {injected:?}");
        }
    }
    let operator_injected = world.sandbox.operator_faults.injected();
    assert!(operator_injected.get("apply_then_drop").copied().unwrap_or(0) > 0, "{operator_injected:?}");
    let submissions: u32 = world.sandbox.operator.fulfilments().iter().map(|f| f.submissions).max().unwrap();
    assert!(submissions >= 2, "a lost reply was resubmitted and taken as already accepted");
}

/// Events for scenario order `order` on both marketplaces, `at` seconds from now.
fn events(world: &World, plan: &[(u64, i64, EventKind)]) {
    let now = world.clock.now();
    let mut list: Vec<BuyerEvent> = plan
        .iter()
        .map(|(order, secs, kind)| BuyerEvent {
            at: now + TimeDelta::seconds(*secs),
            order: *order,
            kind: kind.clone(),
        })
        .collect();
    list.sort_by(|a, b| a.at.cmp(&b.at).then(a.order.cmp(&b.order)));
    world.sandbox.top.load_scenario(list.clone());
    world.sandbox.jos.load_scenario(list);
}

fn place(listing: usize) -> EventKind {
    EventKind::Place { lines: vec![(listing, 1)] }
}

async fn held_contract_orders_wait_until_released(backend: Backend) {
    let Some(world) = World::new(backend, 73).await else { return };
    // Order 0 is a contract phone held right after payment, released ten minutes later.
    events(
        &world,
        &[
            (0, 1, place(1)),
            (0, 2, EventKind::Pay),
            (0, 3, EventKind::Hold),
            (0, 600, EventKind::Release),
            (1, 1, place(6)),
            (1, 2, EventKind::Pay),
        ],
    );
    world.clock.advance(TimeDelta::seconds(60));
    cycle(&world.app).await;
    let tid = world.sandbox.top.tid_of(0).unwrap().to_string();
    let jd_id = world.sandbox.jos.order_id_of(0).unwrap();
    let sent = |store: &str, id: &str| {
        world.sandbox.operator.fulfilments().into_iter().find(|f| f.store_id == store && f.order_id == id)
    };
    assert!(sent("tmall", &tid).is_none(), "a held order is not sent");
    assert!(sent("jd", &jd_id).is_none(), "a paused jd order is not sent");
    assert_eq!(world.sandbox.operator.fulfilments().len(), 2, "the plain handset orders went");
    world.clock.advance(TimeDelta::seconds(300));
    cycle(&world.app).await;
    assert!(sent("tmall", &tid).is_none(), "still held");

    world.clock.advance(TimeDelta::seconds(400));
    cycle(&world.app).await;
    let tmall = sent("tmall", &tid).expect("sent once released");
    assert_eq!(tmall.plan_code.as_deref(), Some("PLAN-5G-129"), "the plan from taobao.trade.wtvertical.get");
    assert_eq!(tmall.number_pool.as_deref(), Some("POOL-HZ-01"));
    assert!(tmall.has_receiver);
    assert_eq!(tmall.lines[0].sku, "SKU-00005", "the bundle's handset");
    let jd = sent("jd", &jd_id).expect("sent once released");
    assert_eq!((jd.plan_code, jd.number_pool.as_deref()), (None, Some("POOL-HZ-01")), "jd has no plan data");
}

async fn a_refund_before_shipment_withdraws_the_fulfilment_and_releases_the_reservation(backend: Backend) {
    let Some(world) = World::new(backend, 74).await else { return };
    events(&world, &[(0, 1, place(5)), (0, 2, EventKind::Pay), (1, 1, place(6)), (1, 2, EventKind::Pay)]);
    world.clock.advance(TimeDelta::seconds(60));
    cycle(&world.app).await;
    let tid = world.sandbox.top.tid_of(0).unwrap().to_string();
    let state = |id: &str| {
        world.sandbox.operator.fulfilments().into_iter().find(|f| f.order_id == id).map(|f| f.state)
    };
    assert_eq!(state(&tid), Some(FulfilmentState::Pending));
    assert_eq!(world.app.store.reservation_counts("tmall", &tid).await.unwrap(), (1, 0, 0));

    // Order 0 is refunded after it was sent; order 2 is paid and refunded before any send.
    events(
        &world,
        &[
            (0, 1, EventKind::RequestRefund),
            (0, 2, EventKind::Refund),
            (2, 1, place(7)),
            (2, 2, EventKind::Pay),
        ],
    );
    world.clock.advance(TimeDelta::seconds(60));
    run(&world.app, "tmall", JobKind::Orders).await;
    events(&world, &[(2, 1, EventKind::RequestRefund), (2, 2, EventKind::Refund)]);
    world.clock.advance(TimeDelta::seconds(60));
    run(&world.app, "tmall", JobKind::Orders).await;
    let report = drained(&run(&world.app, "tmall", JobKind::Fulfilment).await);
    assert_eq!(report.delivered, 1, "one withdrawal: {report:?}");
    assert!(matches!(state(&tid), Some(FulfilmentState::Withdrawn { .. })), "{:?}", state(&tid));
    assert_eq!(world.app.store.reservation_counts("tmall", &tid).await.unwrap(), (0, 1, 0), "released once");
    let second = world.sandbox.top.tid_of(2).unwrap().to_string();
    assert_eq!(state(&second), None, "never sent");
    let row =
        world.app.store.outbox_by_key(&flagsync::store::fulfil_key("tmall", &second)).await.unwrap().unwrap();
    assert_eq!(
        (row.state, row.dropped_reason.as_deref()),
        (OutboxState::Dropped, Some("withdrawn before sending"))
    );
    // The other order is untouched and ships as usual.
    let other = world.sandbox.top.tid_of(1).unwrap().to_string();
    assert_eq!(state(&other), Some(FulfilmentState::Pending));
}

async fn a_refused_shipment_is_a_dead_letter_with_the_platforms_reason_and_retry_after_a_fix_delivers(
    backend: Backend,
) {
    let Some(mut world) = World::new(backend, 75).await else { return };
    events(
        &world,
        &[
            (0, 1, place(5)),
            (0, 2, EventKind::Pay),
            (1, 1, place(6)),
            (1, 2, EventKind::Pay),
            (2, 1, place(7)),
            (2, 2, EventKind::Pay),
        ],
    );
    world.clock.advance(TimeDelta::seconds(60));
    cycle(&world.app).await;
    let tid = |n| world.sandbox.top.tid_of(n).unwrap().to_string();
    let (closed, held, yto) = (tid(0), tid(1), tid(2));
    // The operator ships all three; meanwhile the marketplace closes one (refund) and holds
    // another, and the third goes by a carrier the config does not map.
    let operator = &world.sandbox.operator;
    operator.ship("tmall", &closed, "SF", "SF1400000000101", Vec::new()).unwrap();
    operator.ship("tmall", &held, "SF", "SF1400000000102", Vec::new()).unwrap();
    operator.ship("tmall", &yto, "YTO", "YT1400000000103", Vec::new()).unwrap();
    events(&world, &[(0, 1, EventKind::RequestRefund), (0, 2, EventKind::Refund), (1, 1, EventKind::Hold)]);
    world.clock.advance(TimeDelta::seconds(10));
    let report = drained(&run(&world.app, "tmall", JobKind::Shipments).await);
    assert_eq!((report.dead, report.waiting), (2, 1), "{report:?}");
    assert!(world.sandbox.top.shipments().is_empty());

    let dead = dead_letters(&world.app).await;
    let reason =
        |order: &str| dead.iter().find(|r| r.order_id == order).unwrap().dead_reason.clone().unwrap();
    let closed_reason = reason(&closed);
    assert!(closed_reason.contains("closed") && closed_reason.contains("B04"), "{closed_reason}");
    let yto_reason = reason(&yto);
    assert!(yto_reason.contains("carriers.YTO.taobao"), "{yto_reason}");
    assert!(dead.iter().all(|r| r.order_id != held), "a held order waits for its release");

    // Retrying changes nothing until it is fixed.
    let now = world.clock.now();
    assert_eq!(world.app.store.retry_dead_letters(None, Some("tmall"), now).await.unwrap(), 2);
    let report = drained(&run(&world.app, "tmall", JobKind::Shipments).await);
    assert_eq!((report.dead, report.delivered), (2, 0), "{report:?}");

    // Fixes: the marketplace releases the hold; the config maps YTO, and ops retry.
    events(&world, &[(1, 1, EventKind::Release)]);
    world.clock.advance(TimeDelta::minutes(6));
    world.rebuild(config(&[("SF", "SF", "467"), ("YTO", "YTO", "463")])).await;
    let yto_row = dead_letters(&world.app).await.into_iter().find(|r| r.order_id == yto).unwrap();
    let now = world.clock.now();
    assert_eq!(world.app.store.retry_dead_letters(Some(yto_row.id), None, now).await.unwrap(), 1);
    let report = drained(&run(&world.app, "tmall", JobKind::Shipments).await);
    assert_eq!((report.delivered, report.dead), (2, 0), "{report:?}");
    let mut shipped: Vec<(String, String)> =
        world.sandbox.top.shipments().iter().map(|s| (s.tid.to_string(), s.company_code.clone())).collect();
    shipped.sort();
    let mut want = vec![(held.clone(), "SF".to_string()), (yto.clone(), "YTO".to_string())];
    want.sort();
    assert_eq!(shipped, want);
    assert_eq!(world.app.store.reservation_counts("tmall", &held).await.unwrap(), (0, 0, 1), "consumed");
    let dead = dead_letters(&world.app).await;
    assert_eq!(dead.len(), 1, "the closed trade stays in the list with its reason");
    assert!(world.app.store.outbox_drop(dead[0].id, "refunded; parcel recalled").await.unwrap());
    assert!(dead_letters(&world.app).await.is_empty());
}

#[test]
fn carriers_config_names_every_problem_with_its_key() {
    let text = r#"
[stores.tmall]
type = "taobao"
gateway = "sandbox"
[carriers.SF]
taobao = "SF"
jd = 467
[carriers.YTO]
jd = "yuantong"
[carriers."顺丰"]
taobao = "S F"
fedex = "X"
"#;
    let error =
        flagsync::config::parse(text, "t.toml", &[], std::path::Path::new("."), &|_| None).unwrap_err();
    let paths: Vec<&str> = error.problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, vec!["carriers.YTO.jd", "carriers.顺丰.fedex", "carriers.顺丰.taobao"], "{error}");
    let good = flagsync::config::parse(
        &text[..text.find("[carriers.YTO]").unwrap()],
        "t.toml",
        &[],
        std::path::Path::new("."),
        &|_| None,
    )
    .unwrap();
    assert_eq!(good.carrier_code("sf", "jd"), Some("467"));
    assert_eq!(good.carrier_code("SF", "taobao"), Some("SF"));
}

fn flagsync_cli(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_flagsync"))
        .env_remove("FLAGSYNC_CONFIG")
        .env("RUST_LOG", "warn")
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn shipments_import_and_the_dead_letter_commands_work_line_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("flagsync.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"sqlite://{}\"\n[operator]\ngateway = \"sandbox\"\n\
             [stores.tmall]\ntype = \"taobao\"\ngateway = \"sandbox\"\n[carriers.SF]\ntaobao = \"SF\"\n",
            dir.path().join("f.db").display()
        ),
    )
    .unwrap();
    let csv = dir.path().join("shipments.csv");
    std::fs::write(
        &csv,
        "store,order_id,carrier,waybill,shipped_at,imeis\n\
         tmall,2600000000000000015,SF,SF1400000000001,2026-11-01 10:00:00,2600000000000000016:860000000000011\n\
         nowhere,42,SF,SF1400000000002,2026-11-01 10:00:00,\n\
         tmall,43,SF,,2026-11-01 10:00:00,\n",
    )
    .unwrap();
    let csv_arg = csv.to_str().unwrap();
    let import = flagsync_cli(&config, &["shipments", "import", csv_arg]);
    let (stdout, stderr) = (String::from_utf8_lossy(&import.stdout), String::from_utf8_lossy(&import.stderr));
    assert!(!import.status.success(), "bad lines make the exit status 1");
    assert!(stderr.contains("line 3, column store") && stderr.contains("line 4, column waybill"), "{stderr}");
    assert!(stdout.contains("queued 1 new"), "{stdout}");
    let again = flagsync_cli(&config, &["shipments", "import", csv_arg]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("queued 0 new"), "a re-import queues nothing");

    let listed = flagsync_cli(&config, &["deadletters", "list", "--state", "pending", "--json"]);
    let rows: Vec<Value> = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["payload"]["serials"][0]["serials"][0], "860000000000011");
    let id = rows[0]["id"].as_i64().unwrap().to_string();
    let retry = flagsync_cli(&config, &["deadletters", "retry", &id]);
    assert!(!retry.status.success());
    assert!(String::from_utf8_lossy(&retry.stderr).contains("not dead"), "only dead letters are retried");
    assert!(!flagsync_cli(&config, &["deadletters", "drop", &id, "--reason", " "]).status.success());
    assert!(
        flagsync_cli(&config, &["deadletters", "drop", &id, "--reason", "shipped by hand"]).status.success()
    );
    let dropped = flagsync_cli(&config, &["deadletters", "list", "--state", "dropped"]);
    assert!(String::from_utf8_lossy(&dropped.stdout).contains("shipped by hand"));
    let empty = flagsync_cli(&config, &["deadletters", "list"]);
    assert!(String::from_utf8_lossy(&empty.stdout).contains("no dead rows"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shipment_reaches_taobao_and_jd_exactly_once_under_faults_and_a_kill_sqlite() {
    every_shipment_reaches_taobao_and_jd_exactly_once_under_faults_and_a_kill(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shipment_reaches_taobao_and_jd_exactly_once_under_faults_and_a_kill_postgres() {
    every_shipment_reaches_taobao_and_jd_exactly_once_under_faults_and_a_kill(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_contract_orders_wait_until_released_sqlite() {
    held_contract_orders_wait_until_released(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_contract_orders_wait_until_released_postgres() {
    held_contract_orders_wait_until_released(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_before_shipment_withdraws_the_fulfilment_and_releases_the_reservation_sqlite() {
    a_refund_before_shipment_withdraws_the_fulfilment_and_releases_the_reservation(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_before_shipment_withdraws_the_fulfilment_and_releases_the_reservation_postgres() {
    a_refund_before_shipment_withdraws_the_fulfilment_and_releases_the_reservation(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_shipment_is_a_dead_letter_with_the_platforms_reason_and_retry_after_a_fix_delivers_sqlite()
{
    a_refused_shipment_is_a_dead_letter_with_the_platforms_reason_and_retry_after_a_fix_delivers(
        Backend::Sqlite,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_shipment_is_a_dead_letter_with_the_platforms_reason_and_retry_after_a_fix_delivers_postgres()
 {
    a_refused_shipment_is_a_dead_letter_with_the_platforms_reason_and_retry_after_a_fix_delivers(
        Backend::Postgres,
    )
    .await;
}
