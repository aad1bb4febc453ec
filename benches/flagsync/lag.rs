//! Bench 2, stock propagation lag: a flash sale on a Tmall and a JD store sharing one pool;
//! the time from a buyer's payment taking units at one gateway to the new quantity landing
//! on the other store's listing, with the daemon's cycle (orders, inventory, stock) run
//! every pull interval on the sandbox's simulated clock plus the cycle's real duration.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, TimeDelta, Utc};
use flagsync::app::{App, AppOptions};
use flagsync::config::Gateway;
use flagsync::inventory::Allocation;
use flagsync::jobs::{JobKind, JobRequest, JobRunner, OPERATOR_SCOPE, Trigger};
use flagsync_market::{Clock, OrderStatus};
use flagsync_sandbox::clock::SimClock;
use flagsync_sandbox::jos::JosConfig;
use flagsync_sandbox::scenario::{Arrivals, BuyerEvent, EventKind, ScenarioConfig, generate};
use flagsync_sandbox::top::TopConfig;
use serde_json::{Value, json};

use crate::common::{
    Backend, BenchDb, Report, SandboxClock, base_config, bench_retry, handset_catalog, operator_config,
    percentile, start_sandbox, store_config,
};

const BENCH: &str = "lag";
const HANDSET: &str = "SKU-00000";

pub async fn job(app: &App, store: &str, job: JobKind) -> anyhow::Result<Value> {
    let request =
        JobRequest { store_id: store.into(), job, trigger: Trigger::Cli, params: json!({}), fence: None };
    app.run(&request).await.with_context(|| format!("{store} {job}"))
}

fn sale(seed: u64, orders: usize, start: DateTime<Utc>) -> Vec<BuyerEvent> {
    generate(&ScenarioConfig {
        seed,
        start,
        orders,
        listings: 1,
        contract_listings: 0,
        max_lines: 1,
        max_quantity: 2,
        duration: TimeDelta::minutes(5),
        arrivals: Arrivals::FlashSale { mean: TimeDelta::seconds(40) },
        unpaid_share: 0.05,
        refund_share: 0.0,
        hold_share: 0.0,
        touch_share: 0.0,
    })
}

fn paid_times(events: &[BuyerEvent]) -> HashMap<u64, DateTime<Utc>> {
    events.iter().filter(|e| e.kind == EventKind::Pay).map(|e| (e.order, e.at)).collect()
}

pub async fn run(quick: bool, report: &mut Report) -> anyhow::Result<()> {
    let orders = if quick { 300 } else { 5_000 };
    let interval = Duration::from_secs(10);
    let settle = Duration::from_secs(5);
    let db = BenchDb::open(Backend::Sqlite, "lag").await?.context("sqlite is always there")?;
    let sale_start = ScenarioConfig::default().start;
    let clock = SimClock::manual(sale_start - TimeDelta::minutes(1));
    let top = TopConfig { listings: 1, contract_listings: 0, initial_quantity: 0, ..TopConfig::default() };
    let jos = JosConfig { listings: 1, contract_listings: 0, initial_quantity: 0, ..JosConfig::default() };
    let sandbox = start_sandbox(&clock, top, jos).await?;
    sandbox.operator.set_on_hand(HANDSET, "WH-HZ-01", 1_000_000);

    let mut tmall = store_config("tmall", "taobao", Gateway::Sandbox);
    let mut jd = store_config("jd", "jd", Gateway::Sandbox);
    let top_listing = sandbox.top.listing(0);
    let jos_listing = sandbox.jos.listing(0);
    tmall.listings.insert(format!("{}:{}", top_listing.num_iid, top_listing.sku_id), HANDSET.into());
    jd.listings.insert(format!("{}:{}", jos_listing.ware_id, jos_listing.sku_id), HANDSET.into());
    let allocation: BTreeMap<String, Allocation> =
        [(HANDSET.to_string(), Allocation { share: 1.0, cap: None, floor: 0 })].into_iter().collect();
    for store in [&mut tmall, &mut jd] {
        store.shared_pool = true;
        store.allocation = allocation.clone();
    }
    let mut config = base_config(vec![tmall, jd], handset_catalog(1));
    config.sync.settle_delay = settle;
    config.operator = Some(operator_config());
    let options = AppOptions { retry: bench_retry(), ..AppOptions::default() };
    let client_clock: Arc<dyn Clock> = Arc::new(SandboxClock(clock.clone()));
    let app =
        App::build_with(config, &options, client_clock, Some(sandbox.clone()), db.store.clone()).await?;

    let top_events = sale(21, orders, sale_start);
    let jos_events = sale(22, orders, sale_start);
    let top_paid = paid_times(&top_events);
    let jos_paid = paid_times(&jos_events);
    let last_event = top_events.iter().chain(&jos_events).map(|e| e.at).max().unwrap_or(sale_start);
    sandbox.top.load_scenario(top_events);
    sandbox.jos.load_scenario(jos_events);

    // (store, order id) -> when the other store's listing got the quantity that counts it.
    let mut arrived: BTreeMap<(String, String), DateTime<Utc>> = BTreeMap::new();
    let mut waiting: Vec<(String, String)> = Vec::new();
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    let mut cycles = 0;
    let mut slowest_cycle = Duration::ZERO;
    let end =
        last_event + TimeDelta::from_std(interval + settle).unwrap_or_default() + TimeDelta::seconds(20);
    while clock.now() <= end {
        let cycle_start = clock.now();
        let began = Instant::now();
        // The daemon's cycle as it should run (issue #7): both stores' orders at once, then
        // at once the stock jobs those orders' reservations changed, then the operator's
        // stock (a slow operator must not delay the propagation of a sale).
        let (tmall_orders, jd_orders) =
            tokio::join!(job(&app, "tmall", JobKind::Orders), job(&app, "jd", JobKind::Orders));
        tmall_orders?;
        jd_orders?;
        let timed = |store: &'static str| {
            let app = &app;
            async move {
                let value = job(app, store, JobKind::Stock).await?;
                anyhow::Ok((value, began.elapsed()))
            }
        };
        let (tmall_stock, jd_stock) = tokio::join!(timed("tmall"), timed("jd"));
        let ((tmall_push, tmall_done), (jd_push, jd_done)) = (tmall_stock?, jd_stock?);
        job(&app, OPERATOR_SCOPE, JobKind::Inventory).await?;
        cycles += 1;
        slowest_cycle = slowest_cycle.max(began.elapsed());
        for store in ["tmall", "jd"] {
            for summary in app.store.order_summaries(store).await? {
                let paid = OrderStatus::parse(&summary.status).is_some_and(|s| {
                    s.is_open_paid() || matches!(s, OrderStatus::Shipped | OrderStatus::Completed)
                });
                let key = (store.to_string(), summary.order_id);
                if paid && seen.insert(key.clone()) {
                    waiting.push(key);
                }
            }
        }
        // A Tmall sale reaches JD with JD's push, and the other way round.
        let pushed = |value: &Value| value["pushed"].as_u64().unwrap_or(0) > 0;
        let at = |wall: Duration| cycle_start + TimeDelta::from_std(wall).unwrap_or_default();
        waiting.retain(|(store, order)| {
            let (landed, when) = if store == "tmall" {
                (pushed(&jd_push), jd_done)
            } else {
                (pushed(&tmall_push), tmall_done)
            };
            if landed {
                arrived.insert((store.clone(), order.clone()), at(when));
            }
            !landed
        });
        let step = interval.max(began.elapsed());
        clock.advance(TimeDelta::from_std(step).unwrap_or_default());
    }

    let mut lags: Vec<f64> = Vec::new();
    let by_id = |store: &str| -> HashMap<String, DateTime<Utc>> {
        let paid = if store == "tmall" { &top_paid } else { &jos_paid };
        paid.iter()
            .filter_map(|(order, at)| {
                let id = if store == "tmall" {
                    sandbox.top.tid_of(*order).map(|t| t.to_string())
                } else {
                    sandbox.jos.order_id_of(*order)
                };
                id.map(|id| (id, *at))
            })
            .collect()
    };
    let paid_at: HashMap<&str, HashMap<String, DateTime<Utc>>> =
        [("tmall", by_id("tmall")), ("jd", by_id("jd"))].into();
    for ((store, order), landed) in &arrived {
        if let Some(paid) = paid_at.get(store.as_str()).and_then(|m| m.get(order)) {
            lags.push((*landed - *paid).num_milliseconds() as f64);
        }
    }
    if lags.is_empty() {
        bail!("no sale reached the other store");
    }
    lags.sort_by(f64::total_cmp);
    let (p50, p99, max) = (percentile(&lags, 50.0), percentile(&lags, 99.0), lags[lags.len() - 1]);
    let budget = (interval + settle).as_millis() as f64 + 250.0;
    report.note(
        BENCH,
        format!(
            "{} sales measured over {cycles} cycles ({} still waiting); pull interval {} s, settle delay {} s, \
             slowest cycle {} ms; shared-pool stores (in allocated mode a sale never changes the other store)",
            lags.len(),
            waiting.len(),
            interval.as_secs(),
            settle.as_secs(),
            slowest_cycle.as_millis()
        ),
    );
    report.figure(BENCH, "pull interval", interval.as_millis() as f64, "ms");
    report.figure(BENCH, "settle delay", settle.as_millis() as f64, "ms");
    report.figure(BENCH, "lag p50", p50, "ms");
    let target = format!("<= {budget:.0} (interval+settle+250)");
    if quick {
        report.figure(BENCH, "lag p99", p99, "ms");
    } else {
        report.judged(BENCH, "lag p99", p99, "ms", target, p99 <= budget);
    }
    report.figure(BENCH, "lag max", max, "ms");
    report.figure(BENCH, "slowest cycle", slowest_cycle.as_millis() as f64, "ms");
    db.close().await;
    Ok(())
}
