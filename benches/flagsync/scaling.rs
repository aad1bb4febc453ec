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
/// Changed cycles timed per size; the median is reported. One cycle is tens of
/// milliseconds and this VM has slow spells lasting seconds, so the sizes take turns, round
/// by round: a slow spell then falls on every size alike instead of on one of them.
const ROUNDS: usize = 9;

/// One catalogue size, set up and published, ready for changed cycles.
struct Catalogue {
    listings: usize,
    db: BenchDb,
    app: App,
    first: Duration,
    idle: Duration,
    changed: Vec<Duration>,
}

async fn cycle(app: &App) -> anyhow::Result<(Duration, StockReport)> {
    let began = Instant::now();
    let report: StockReport = serde_json::from_value(job(app, "tmall", JobKind::Stock).await?)?;
    Ok((began.elapsed(), report))
}

async fn catalogue(listings: usize) -> anyhow::Result<Catalogue> {
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

    let (first, published) = cycle(&app).await?;
    if published.pushed as usize != listings {
        bail!("{listings} listings: the first cycle pushed {}", published.pushed);
    }
    let (idle, quiet) = cycle(&app).await?;
    if quiet.pushed != 0 {
        bail!("{listings} listings: a cycle with no change pushed {}", quiet.pushed);
    }
    Ok(Catalogue { listings, db, app, first, idle, changed: Vec::with_capacity(ROUNDS) })
}

/// One changed cycle: the same 100 listings (spread over the catalogue) get a new level.
async fn changed_cycle(catalogue: &mut Catalogue, round: usize) -> anyhow::Result<()> {
    let (listings, step) = (catalogue.listings, catalogue.listings / CHANGED);
    let level = 90 - round as i64;
    let changed: Vec<(String, String, i64)> =
        (0..CHANGED).map(|i| (format!("SKU-{:05}", i * step), "WH-HZ-01".to_string(), level)).collect();
    catalogue.app.store.apply_stock_snapshot(2 + round as i64, false, &changed, &[]).await?;
    let (time, pushed) = cycle(&catalogue.app).await?;
    if pushed.pushed as usize != CHANGED {
        bail!("{listings} listings, round {round}: {CHANGED} changed but {} were pushed", pushed.pushed);
    }
    catalogue.changed.push(time);
    Ok(())
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

pub async fn run(quick: bool, report: &mut Report) -> anyhow::Result<()> {
    let sizes: &[usize] = if quick { &[200, 1_000, 2_000] } else { &[1_000, 10_000, 100_000] };
    let mut catalogues = Vec::new();
    for &size in sizes {
        catalogues.push(catalogue(size).await?);
    }
    for round in 0..ROUNDS {
        for catalogue in &mut catalogues {
            changed_cycle(catalogue, round).await?;
        }
    }
    for catalogue in &catalogues {
        let size = catalogue.listings;
        report.figure(
            BENCH,
            format!("{size} listings: first cycle (publish all)"),
            ms(catalogue.first),
            "ms",
        );
        report.figure(BENCH, format!("{size} listings: cycle, nothing changed"), ms(catalogue.idle), "ms");
        report.figure(
            BENCH,
            format!("{size} listings: cycle, {CHANGED} changed (median of {ROUNDS}, sizes taking turns)"),
            ms(median(&catalogue.changed)),
            "ms",
        );
    }
    if let (Some(small), Some(large)) = (catalogues.first(), catalogues.last()) {
        let ratio = median(&large.changed).as_secs_f64() / median(&small.changed).as_secs_f64();
        let metric = format!("{} / {} listings, {CHANGED} changed", large.listings, small.listings);
        report.judged(BENCH, metric, ratio, "ratio", "< 2", ratio < 2.0);
    }
    for catalogue in catalogues {
        catalogue.db.close().await;
    }
    Ok(())
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
