//! Bench 5, scaling: one stock cycle of a Tmall store with 1,000, 10,000 and 100,000
//! listings where the same 100 listings' operator stock changed. The cost should follow
//! what changed, not the catalogue size.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use flagsync::app::{App, AppOptions};
use flagsync::config::Gateway;
use flagsync::jobs::JobKind;
use flagsync::sync::stock::StockReport;
use flagsync_market::Clock;
use flagsync_sandbox::clock::SimClock;
use flagsync_sandbox::jos::JosConfig;
use flagsync_sandbox::scenario::ScenarioConfig;
use flagsync_sandbox::top::TopConfig;

use crate::common::{
    Backend, BenchDb, Report, SandboxClock, base_config, bench_retry, handset_catalog, start_sandbox,
    store_config,
};
use crate::lag::job;

const BENCH: &str = "scaling";
const CHANGED: usize = 100;
/// Changed cycles timed per size; the median is reported (one cycle is tens of
/// milliseconds, so a single sample moves with the machine's noise).
const ROUNDS: usize = 5;

struct Timing {
    listings: usize,
    first: Duration,
    idle: Duration,
    changed: Duration,
}

async fn one_size(listings: usize) -> anyhow::Result<Timing> {
    let db = BenchDb::open(Backend::Sqlite, "scaling").await?.context("sqlite is always there")?;
    let clock = SimClock::manual(ScenarioConfig::default().start);
    let top = TopConfig { listings, contract_listings: 0, initial_quantity: 0, ..TopConfig::default() };
    let jos = JosConfig { listings: 1, ..JosConfig::default() };
    let sandbox = start_sandbox(&clock, top, jos).await?;
    let config =
        base_config(vec![store_config("tmall", "taobao", Gateway::Sandbox)], handset_catalog(listings));
    let options = AppOptions { retry: bench_retry(), ..AppOptions::default() };
    let client_clock: Arc<dyn Clock> = Arc::new(SandboxClock(clock.clone()));
    let app =
        App::build_with(config, &options, client_clock, Some(sandbox.clone()), db.store.clone()).await?;
    let seen: Vec<crate::common::SeenListing> = (0..listings)
        .map(|n| {
            let l = sandbox.top.listing(n);
            (l.num_iid.to_string(), Some(l.sku_id.to_string()), Some(l.outer_sku_id), None)
        })
        .collect();
    app.store.upsert_listings("tmall", &seen).await?;
    let levels: Vec<(String, String, i64)> =
        (0..listings).map(|n| (format!("SKU-{n:05}"), "WH-HZ-01".to_string(), 100)).collect();
    app.store.apply_stock_snapshot(1, true, &levels, &[]).await?;

    let cycle = || async {
        let began = Instant::now();
        let report: StockReport = serde_json::from_value(job(&app, "tmall", JobKind::Stock).await?)?;
        anyhow::Ok((began.elapsed(), report))
    };
    let (first, published) = cycle().await?;
    if published.pushed as usize != listings {
        bail!("{listings} listings: the first cycle pushed {}", published.pushed);
    }
    let (idle, quiet) = cycle().await?;
    if quiet.pushed != 0 {
        bail!("{listings} listings: a cycle with no change pushed {}", quiet.pushed);
    }
    // The same 100 listings (spread over the catalogue) see their stock change, round
    // after round, each time to a new level.
    let step = listings / CHANGED;
    let mut rounds = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let level = 90 - round as i64;
        let changed: Vec<(String, String, i64)> =
            (0..CHANGED).map(|i| (format!("SKU-{:05}", i * step), "WH-HZ-01".to_string(), level)).collect();
        app.store.apply_stock_snapshot(2 + round as i64, false, &changed, &[]).await?;
        let (time, pushed) = cycle().await?;
        if pushed.pushed as usize != CHANGED {
            bail!("{listings} listings, round {round}: {CHANGED} changed but {} were pushed", pushed.pushed);
        }
        rounds.push(time);
    }
    rounds.sort();
    db.close().await;
    Ok(Timing { listings, first, idle, changed: rounds[ROUNDS / 2] })
}

pub async fn run(quick: bool, report: &mut Report) -> anyhow::Result<()> {
    let sizes: &[usize] = if quick { &[200, 1_000, 2_000] } else { &[1_000, 10_000, 100_000] };
    let mut timings = Vec::new();
    for &size in sizes {
        let timing = one_size(size).await?;
        report.figure(BENCH, format!("{size} listings: first cycle (publish all)"), ms(timing.first), "ms");
        report.figure(BENCH, format!("{size} listings: cycle, nothing changed"), ms(timing.idle), "ms");
        report.figure(
            BENCH,
            format!("{size} listings: cycle, {CHANGED} changed (median of {ROUNDS})"),
            ms(timing.changed),
            "ms",
        );
        timings.push(timing);
    }
    if let (Some(small), Some(large)) = (timings.first(), timings.last()) {
        let ratio = large.changed.as_secs_f64() / small.changed.as_secs_f64();
        let metric = format!("{} / {} listings, {CHANGED} changed", large.listings, small.listings);
        report.judged(BENCH, metric, ratio, "ratio", "< 2", ratio < 2.0);
    }
    Ok(())
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
