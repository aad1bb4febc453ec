//! Bench 3, API economy: a scenario day on a Tmall and a JD store (allocated shares, stock
//! changing at the operator all day) run as the daemon would, every call counted by the
//! sandboxes per API and set against the fewest calls the platforms' page and batch limits
//! allow for the same work.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::TimeDelta;
use flagsync::app::{App, AppOptions};
use flagsync::config::Gateway;
use flagsync::jobs::{JobKind, OPERATOR_SCOPE};
use flagsync::sync::orders::OrderSyncReport;
use flagsync::sync::orders::{OrderPull, sync_orders};
use flagsync_market::Clock;
use flagsync_sandbox::clock::SimClock;
use flagsync_sandbox::jos::JosConfig;
use flagsync_sandbox::scenario::{Arrivals, ScenarioConfig, generate};
use flagsync_sandbox::top::TopConfig;
use rand::{Rng, SeedableRng};

use crate::common::{
    Backend, BenchDb, Report, SandboxClock, base_config, bench_retry, handset_catalog, operator_config,
    start_sandbox, store_config,
};
use crate::lag::job;

const BENCH: &str = "economy";
const TOP_PAGE: u64 = 100;
const JOS_PAGE: u64 = 50;
const STOCK_BATCH: u64 = 20;

fn pages(rows: u64, per_page: u64) -> u64 {
    rows.div_ceil(per_page).max(1)
}

/// Fewest calls per API, accumulated run by run from what each run had to do.
#[derive(Default)]
struct Minimum {
    calls: BTreeMap<String, u64>,
}

impl Minimum {
    fn add(&mut self, api: &str, calls: u64) {
        *self.calls.entry(api.to_string()).or_default() += calls;
    }
}

fn diff(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(api, n)| (api.clone(), n - before.get(api).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

type Grants = BTreeMap<(String, String), Option<i64>>;

async fn grants(app: &App, store: &str) -> anyhow::Result<Grants> {
    Ok(app
        .store
        .listings(store)
        .await?
        .into_iter()
        .map(|row| ((row.item_id, row.sku_id), row.state.grant))
        .collect())
}

fn moved_grants(before: &Grants, after: &Grants) -> Vec<(String, String)> {
    after.iter().filter(|(key, grant)| before.get(*key) != Some(grant)).map(|(key, _)| key.clone()).collect()
}

/// How a day splits the wait for a late platform index between the settle delay (every
/// window ends this long before now) and the overlap (each moment is listed again once it
/// has aged this much more). Their sum is how late an order may appear and still be found.
#[derive(Clone, Copy)]
struct Wait {
    settle_secs: u64,
    overlap_secs: u64,
}

/// Judged: the example configuration's settle delay (60 s) and an overlap of 30 s, sized to
/// the index lag left beyond it rather than to the pull interval: 90 s of cover.
const JUDGED: Wait = Wait { settle_secs: 60, overlap_secs: 30 };
/// Shown beside it: the same 90 s of cover split the other way (the split judged until
/// session 9): orders are seen 30 s sooner, and a fifth of each window is listed twice.
const SHOWN: Wait = Wait { settle_secs: 30, overlap_secs: 60 };

pub async fn run(quick: bool, report: &mut Report) -> anyhow::Result<()> {
    day(quick, JUDGED, true, report).await?;
    if !quick {
        day(quick, SHOWN, false, report).await?;
    }
    flash_sale(quick, report).await
}

/// A scenario day at one [`Wait`]. When not `judged`, only the per-API ratios are shown,
/// labelled with the wait.
async fn day(quick: bool, wait: Wait, judged: bool, report: &mut Report) -> anyhow::Result<()> {
    let (orders, listings, hours) = if quick { (2_000, 200, 4) } else { (20_000, 2_000, 24) };
    let interval = Duration::from_secs(300);
    let db = BenchDb::open(Backend::Sqlite, "economy").await?.context("sqlite is always there")?;
    let day = ScenarioConfig::default().start;
    let clock = SimClock::manual(day);
    let top = TopConfig { listings, contract_listings: 0, initial_quantity: 0, ..TopConfig::default() };
    let jos = JosConfig { listings, contract_listings: 0, initial_quantity: 0, ..JosConfig::default() };
    let sandbox = start_sandbox(&clock, top, jos).await?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(31);
    for n in 0..listings {
        sandbox.operator.set_on_hand(&format!("SKU-{n:05}"), "WH-HZ-01", rng.random_range(50..500));
    }
    let mut config = base_config(
        vec![store_config("tmall", "taobao", Gateway::Sandbox), store_config("jd", "jd", Gateway::Sandbox)],
        handset_catalog(listings),
    );
    config.sync.settle_delay = Duration::from_secs(wait.settle_secs);
    config.sync.overlap = Duration::from_secs(wait.overlap_secs);
    config.operator = Some(operator_config());
    // The stores' listings are known from the catalogue read before the day starts.
    let options = AppOptions { retry: bench_retry(), ..AppOptions::default() };
    let client_clock: Arc<dyn Clock> = Arc::new(SandboxClock(clock.clone()));
    let app =
        App::build_with(config, &options, client_clock, Some(sandbox.clone()), db.store.clone()).await?;
    for (store, platform) in [("tmall", "top"), ("jd", "jos")] {
        let seen: Vec<crate::common::SeenListing> = (0..listings)
            .map(|n| {
                let (item, sku) = if platform == "top" {
                    let l = sandbox.top.listing(n);
                    (l.num_iid.to_string(), l.sku_id.to_string())
                } else {
                    let l = sandbox.jos.listing(n);
                    (l.ware_id.to_string(), l.sku_id.to_string())
                };
                (item, Some(sku), Some(format!("SKU-{n:05}")), None)
            })
            .collect();
        app.store.upsert_listings(store, &seen).await?;
    }
    let per_store = ScenarioConfig {
        orders: orders / 2,
        listings,
        contract_listings: 0,
        hold_share: 0.0,
        duration: TimeDelta::hours(hours),
        start: day,
        ..ScenarioConfig::default()
    };
    sandbox.top.load_scenario(generate(&ScenarioConfig { seed: 41, ..per_store.clone() }));
    sandbox.jos.load_scenario(generate(&ScenarioConfig { seed: 42, ..per_store.clone() }));

    // The first cycle publishes every listing (start-up); the rest is the steady state.
    let mut minimum = Minimum::default();
    // The same for list calls, counting every order the windows listed (the overlap's
    // re-listed orders included) rather than only the changed ones.
    let mut listed_minimum = Minimum::default();
    let mut first: Option<(BTreeMap<String, u64>, BTreeMap<String, u64>)> = None;
    let cycles = hours * 3600 / interval.as_secs() as i64;
    for cycle in 0..=cycles {
        for (store, list, per_page) in [
            ("tmall", "taobao.trades.sold.increment.get", TOP_PAGE),
            ("jd", "jingdong.pop.order.search", JOS_PAGE),
        ] {
            let pulled: OrderSyncReport = serde_json::from_value(job(&app, store, JobKind::Orders).await?)?;
            let changed = pulled.inserted + pulled.updated;
            if first.is_some() {
                minimum.add(list, pages(changed, per_page));
                listed_minimum.add(list, pages(pulled.received.max(changed), per_page));
                if store == "tmall" {
                    minimum.add("taobao.trade.fullinfo.get", changed);
                }
            }
        }
        job(&app, OPERATOR_SCOPE, JobKind::Inventory).await?;
        let top_writes = sandbox.top.stock_writes().len();
        let jos_writes = sandbox.jos.stock_writes().len();
        let grants_before = grants(&app, "tmall").await?;
        let jd_grants_before = grants(&app, "jd").await?;
        job(&app, "tmall", JobKind::Stock).await?;
        job(&app, "jd", JobKind::Stock).await?;
        if first.is_some() {
            let mut by_item: BTreeMap<i64, u64> = BTreeMap::new();
            for write in &sandbox.top.stock_writes()[top_writes..] {
                *by_item.entry(write.num_iid).or_default() += 1;
            }
            minimum
                .add("taobao.skus.quantity.update", by_item.values().map(|n| n.div_ceil(STOCK_BATCH)).sum());
            // A listing whose grant moved needs its live quantity: TOP reads a whole item per
            // call, JOS one SKU per call.
            let moved = moved_grants(&grants_before, &grants(&app, "tmall").await?);
            let items: BTreeSet<&str> = moved.iter().map(|(item, _)| item.as_str()).collect();
            minimum.add("taobao.item.seller.get", items.len() as u64);
            let jd_moved = moved_grants(&jd_grants_before, &grants(&app, "jd").await?);
            minimum.add("jingdong.ware.stock.sku.query", jd_moved.len() as u64);
            let jd_written = (sandbox.jos.stock_writes().len() - jos_writes) as u64;
            minimum.add("jingdong.ware.stock.sku.set", jd_written.div_ceil(STOCK_BATCH));
        } else {
            first = Some((sandbox.top.calls(), sandbox.jos.calls()));
        }
        // The operator's stock moves all day: 1 % of SKUs change every cycle.
        for _ in 0..(listings / 100).max(1) {
            let n = rng.random_range(0..listings);
            sandbox.operator.set_on_hand(&format!("SKU-{n:05}"), "WH-HZ-01", rng.random_range(50..500));
        }
        if cycle < cycles {
            clock.advance(TimeDelta::from_std(interval).unwrap_or_default());
        }
    }
    let (top_first, jos_first) = first.unwrap_or_default();
    let top_steady = diff(&sandbox.top.calls(), &top_first);
    let jos_steady = diff(&sandbox.jos.calls(), &jos_first);
    let waited = format!("settle {} s + overlap {} s", wait.settle_secs, wait.overlap_secs);
    if !judged {
        for (platform, calls) in [("top", &top_steady), ("jos", &jos_steady)] {
            for (api, count) in calls {
                if let Some(&least) = minimum.calls.get(api).filter(|n| **n > 0) {
                    let ratio = *count as f64 / least as f64;
                    report.figure(BENCH, format!("{platform} {api} / minimum, {waited}"), ratio, "ratio");
                }
            }
        }
        db.close().await;
        return Ok(());
    }
    report.note(
        BENCH,
        format!(
            "{orders} orders, {listings} listings per store, {hours} h at one cycle per {} s ({} cycles), \
             {waited}; steady state = every cycle after the first",
            interval.as_secs(),
            cycles + 1
        ),
    );
    let mut refused = 0;
    let mut total = 0;
    for (platform, calls) in [("top", &top_steady), ("jos", &jos_steady)] {
        for (api, count) in calls {
            if api.starts_with("error:") {
                refused += count;
                report.figure(BENCH, format!("{platform} {api} replies"), *count as f64, "calls");
                continue;
            }
            if api == "router/batch" {
                // HTTP requests, not calls: each carried several calls counted under their
                // own method above.
                report.figure(
                    BENCH,
                    format!("{platform} /router/batch requests (their calls are counted per API)"),
                    *count as f64,
                    "requests",
                );
                continue;
            }
            total += count;
            match minimum.calls.get(api) {
                Some(&least) if least > 0 => {
                    let ratio = *count as f64 / least as f64;
                    report.figure(
                        BENCH,
                        format!("{platform} {api} calls (min {least})"),
                        *count as f64,
                        "calls",
                    );
                    report.judged(
                        BENCH,
                        format!("{platform} {api} / minimum"),
                        ratio,
                        "ratio",
                        "<= 1.2",
                        ratio <= 1.2,
                    );
                    if let Some(&listed) = listed_minimum.calls.get(api).filter(|n| **n > 0) {
                        report.figure(
                            BENCH,
                            format!("{platform} {api} / minimum for every order listed (overlap included)"),
                            *count as f64 / listed as f64,
                            "ratio",
                        );
                    }
                }
                _ => report.figure(
                    BENCH,
                    format!("{platform} {api} calls (no minimum)"),
                    *count as f64,
                    "calls",
                ),
            }
        }
    }
    report.figure(BENCH, "steady-state calls per simulated day", total as f64 * 24.0 / hours as f64, "calls");
    report.judged(
        BENCH,
        "error replies in steady state",
        refused as f64,
        "calls",
        "0 refused for quota",
        refused == 0,
    );
    db.close().await;
    Ok(())
}

/// A flash sale pulled every minute with the example configuration's overlap (300 s) and
/// settle delay (60 s): list calls as the daemon makes them, against one range per run
/// (`[cursor - overlap, now - settle]`, what every run listed before session 9, emulated
/// with range pulls into a second database) and against the fewest the page limits allow
/// for the orders that changed.
async fn flash_sale(quick: bool, report: &mut Report) -> anyhow::Result<()> {
    const SALE: &str = "economy-flash";
    let orders = if quick { 300 } else { 3_000 };
    let (settle, overlap) = (TimeDelta::seconds(60), TimeDelta::seconds(300));
    let start = ScenarioConfig::default().start;
    let clock = SimClock::manual(start);
    let top = TopConfig { initial_quantity: 1_000_000, ..TopConfig::default() };
    let jos = JosConfig { initial_quantity: 1_000_000, ..JosConfig::default() };
    let sandbox = start_sandbox(&clock, top, jos).await?;
    let sale = |seed| ScenarioConfig {
        seed,
        orders,
        duration: TimeDelta::minutes(30),
        arrivals: Arrivals::FlashSale { mean: TimeDelta::minutes(8) },
        ..ScenarioConfig::default()
    };
    sandbox.top.load_scenario(generate(&sale(51)));
    sandbox.jos.load_scenario(generate(&sale(52)));
    let mut config = base_config(
        vec![store_config("tmall", "taobao", Gateway::Sandbox), store_config("jd", "jd", Gateway::Sandbox)],
        handset_catalog(20),
    );
    config.sync.settle_delay = settle.to_std()?;
    config.sync.overlap = overlap.to_std()?;
    // A store's first run reaches this far back, as the daemon's first incremental run does.
    let lookback = TimeDelta::from_std(config.sync.initial_lookback)?;
    let options = AppOptions { retry: bench_retry(), ..AppOptions::default() };
    let mut apps = Vec::new();
    for label in ["flash_daemon", "flash_one_range"] {
        let db = BenchDb::open(Backend::Sqlite, label).await?.context("sqlite is always there")?;
        let client_clock: Arc<dyn Clock> = Arc::new(SandboxClock(clock.clone()));
        let app =
            App::build_with(config.clone(), &options, client_clock, Some(sandbox.clone()), db.store.clone())
                .await?;
        apps.push((app, db));
    }
    let stores = [("tmall", "top", TOP_PAGE), ("jd", "jos", JOS_PAGE)];
    let list_api = |platform: &str| {
        if platform == "top" { "taobao.trades.sold.increment.get" } else { "jingdong.pop.order.search" }
    };
    let list_calls = |platform: &str| {
        let calls = if platform == "top" { sandbox.top.calls() } else { sandbox.jos.calls() };
        calls.get(list_api(platform)).copied().unwrap_or(0)
    };
    // Per store: list calls of the daemon, of one range per run, and the minimum.
    let mut tally: BTreeMap<&str, [u64; 3]> = BTreeMap::new();
    let mut one_range_cursor: BTreeMap<&str, chrono::DateTime<chrono::Utc>> = BTreeMap::new();
    let minutes = 45;
    for _ in 0..minutes {
        clock.advance(TimeDelta::minutes(1));
        for (store, platform, per_page) in stores {
            let counts = tally.entry(store).or_default();
            let before = list_calls(platform);
            let (app, db) = &apps[0];
            let market = app.market(store)?;
            let run = sync_orders(
                &db.store,
                store,
                market.as_ref(),
                app.clock.as_ref(),
                &app.order_sync_options_for(store),
                &OrderPull::Incremental,
            )
            .await?;
            counts[0] += list_calls(platform) - before;
            counts[2] += pages(run.inserted + run.updated, per_page);

            let before = list_calls(platform);
            let (app, db) = &apps[1];
            let market = app.market(store)?;
            let now = clock.now();
            let until = now - settle;
            let since = one_range_cursor.get(store).map_or(now - lookback, |cursor| *cursor - overlap);
            sync_orders(
                &db.store,
                store,
                market.as_ref(),
                app.clock.as_ref(),
                &app.order_sync_options_for(store),
                &OrderPull::Range { since, until },
            )
            .await?;
            one_range_cursor.insert(store, until);
            counts[1] += list_calls(platform) - before;
        }
    }
    report.note(
        BENCH,
        format!(
            "flash sale: {orders} orders per store in 30 minutes (most in the first 8), pulled every minute for \
             {minutes} minutes with overlap {} s and settle delay {} s",
            overlap.num_seconds(),
            settle.num_seconds()
        ),
    );
    for (store, platform, _) in stores {
        let [daemon, one_range, least] = tally.get(store).copied().unwrap_or_default();
        let api = list_api(platform);
        report.figure(SALE, format!("{platform} {api} calls (min {least})"), daemon as f64, "calls");
        report.figure(
            SALE,
            format!("{platform} {api} calls with one range per run"),
            one_range as f64,
            "calls",
        );
        report.figure(
            SALE,
            format!("{platform} {api} / minimum"),
            daemon as f64 / least.max(1) as f64,
            "ratio",
        );
        report.figure(
            SALE,
            format!("{platform} {api} / minimum with one range per run"),
            one_range as f64 / least.max(1) as f64,
            "ratio",
        );
    }
    for (app, db) in apps {
        drop(app);
        db.close().await;
    }
    Ok(())
}
