//! `flagsync demo`: the whole system in about a minute. Starts the sandboxes (Tmall, JD,
//! the operator) and the daemon on a fresh SQLite file, runs a flash sale of one hero
//! handset on both stores, and prints what happened: orders ingested, units sold against
//! stock, oversold, shipments pushed, API calls per platform, and lags.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{TimeDelta, Utc};
use flagsync_market::SystemClock;
use flagsync_sandbox::clock::SimClock;
use flagsync_sandbox::faults::FaultPlan;
use flagsync_sandbox::jos::JosConfig;
use flagsync_sandbox::scenario::{Arrivals, ScenarioConfig, generate};
use flagsync_sandbox::top::TopConfig;
use secrecy::SecretString;

use crate::app::{App, AppOptions};
use crate::config::{
    AdminConfig, CarrierCodes, Config, DaemonConfig, DatabaseConfig, Gateway, OperatorConfig, StoreConfig,
    StoreKind, SyncConfig,
};
use crate::daemon::{Daemon, DaemonOptions};
use crate::inventory::{Allocation, Catalog, ComponentKind, SkuDef};
use crate::jobs::JobKind;
use crate::sandbox::{self, EmbeddedSandbox};

const HERO: &str = "HERO-5G-256";
const UNITS: i64 = 400;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Wall-clock seconds of selling.
    #[arg(long, default_value_t = 45)]
    pub seconds: u64,
    /// Buyers per store.
    #[arg(long, default_value_t = 3_000)]
    pub buyers: usize,
    /// The SQLite file (replaced at start).
    #[arg(long, default_value = "data/demo.db")]
    pub database: std::path::PathBuf,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

fn store(id: &str, kind: StoreKind, listing: String) -> StoreConfig {
    StoreConfig {
        id: id.into(),
        kind,
        gateway: Gateway::Sandbox,
        calls_per_second: 200,
        paused: false,
        schedules: BTreeMap::new(),
        paused_jobs: Vec::new(),
        reserve_on_order: false,
        shared_pool: false,
        listings: [(listing, HERO.to_string())].into_iter().collect(),
        allocation: [(HERO.to_string(), Allocation { share: 0.5, cap: None, floor: 0 })]
            .into_iter()
            .collect(),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

pub async fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    if let Some(parent) = args.database.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", args.database.display()));
    }
    // The sandboxes follow real time; both listings start empty: flagsync's pushes decide.
    let clock = SimClock::real();
    let sandbox = EmbeddedSandbox::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        clock.clone(),
        TopConfig { listings: 1, contract_listings: 0, initial_quantity: 0, ..TopConfig::default() },
        JosConfig { listings: 1, contract_listings: 0, initial_quantity: 0, ..JosConfig::default() },
        FaultPlan::new(args.seed),
        FaultPlan::new(args.seed + 1),
    )
    .await?;
    sandbox.operator.set_on_hand(HERO, "WH-HZ", UNITS);
    sandbox.operator.auto_ship(Duration::from_secs(5));
    let top = sandbox.top.listing(0);
    let jos = sandbox.jos.listing(0);

    let secret = |s: &str| SecretString::from(s.to_string());
    let mut schedules = BTreeMap::new();
    for (job, every) in [
        (JobKind::Orders, "*/2 * * * * *"),
        (JobKind::Inventory, "*/3 * * * * *"),
        (JobKind::Stock, "*/2 * * * * *"),
        (JobKind::Fulfilment, "*/2 * * * * *"),
        (JobKind::Shipments, "*/2 * * * * *"),
        (JobKind::Reconcile, "0 0 0 1 1 *"),
    ] {
        schedules.insert(job, every.to_string());
    }
    let config = Config {
        database: DatabaseConfig {
            url: format!("sqlite://{}", args.database.display()),
            max_connections: 4,
            sqlite_synchronous_full: true,
        },
        sync: SyncConfig {
            window: Duration::from_secs(30 * 60),
            settle_delay: Duration::from_secs(1),
            overlap: Duration::from_secs(30),
            initial_lookback: Duration::from_secs(600),
            request_timeout: Duration::from_secs(10),
        },
        daemon: DaemonConfig { instance_id: Some("demo".into()), schedules, ..DaemonConfig::default() },
        admin: AdminConfig { listen: SocketAddr::from(([127, 0, 0, 1], 0)), token: None },
        catalog: Catalog {
            skus: [(
                HERO.to_string(),
                SkuDef {
                    code: HERO.into(),
                    kind_name: "handset".into(),
                    kind: ComponentKind::Stock,
                    safety_stock: 0,
                },
            )]
            .into_iter()
            .collect(),
            bundles: BTreeMap::new(),
        },
        operator: Some(OperatorConfig {
            gateway: Gateway::Sandbox,
            key_id: sandbox::OPERATOR_KEY_ID.into(),
            secret: secret(sandbox::OPERATOR_SECRET),
        }),
        carriers: [("SF".to_string(), CarrierCodes { taobao: Some("SF".into()), jd: Some("467".into()) })]
            .into_iter()
            .collect(),
        stores: vec![
            store(
                "jd-flagship",
                StoreKind::Jd {
                    app_key: sandbox::JOS_APP_KEY.into(),
                    app_secret: secret(sandbox::JOS_APP_SECRET),
                    access_token: secret(sandbox::JOS_ACCESS_TOKEN),
                    page_size: 50,
                    page_cap: 300,
                },
                format!("{}:{}", jos.ware_id, jos.sku_id),
            ),
            store(
                "tmall-flagship",
                StoreKind::Taobao {
                    app_key: sandbox::TOP_APP_KEY.into(),
                    app_secret: secret(sandbox::TOP_APP_SECRET),
                    session: secret(sandbox::TOP_SESSION),
                    sign_method: "hmac-sha256".into(),
                    page_size: 100,
                    fullinfo_batch: 20,
                },
                format!("{}:{}", top.num_iid, top.sku_id),
            ),
        ],
    };

    let store = crate::app::open_store(&config).await?;
    let app = Arc::new(
        App::build_with(
            config,
            &AppOptions::default(),
            Arc::new(SystemClock),
            Some(sandbox.clone()),
            store.clone(),
        )
        .await?,
    );
    let daemon =
        Daemon::start(super::daemon::generation_of(app.clone()), store.clone(), DaemonOptions::default())
            .await?;

    // The sale starts a few seconds in, so the first stock push lands before buyers come.
    let sale_start = Utc::now() + TimeDelta::seconds(4);
    let span = TimeDelta::seconds(args.seconds as i64);
    let scenario = |seed| ScenarioConfig {
        seed,
        start: sale_start,
        duration: span,
        orders: args.buyers,
        listings: 1,
        contract_listings: 0,
        max_lines: 1,
        max_quantity: 2,
        arrivals: Arrivals::FlashSale { mean: span / 4 },
        unpaid_share: 0.05,
        refund_share: 0.02,
        hold_share: 0.0,
        touch_share: 0.05,
    };
    sandbox.top.load_scenario(generate(&scenario(args.seed)));
    sandbox.jos.load_scenario(generate(&scenario(args.seed + 1)));
    println!(
        "flagsync demo: {} buyers per store chase {UNITS} units of {HERO} on a Tmall and a JD store for {} s (shares 0.5 / 0.5)",
        args.buyers, args.seconds
    );
    let total = Duration::from_secs(args.seconds + 4 + 20);
    let bar = indicatif::ProgressBar::new(total.as_secs());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} s  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    while started.elapsed() < total {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let orders = store.count_orders("tmall-flagship").await.unwrap_or(0)
            + store.count_orders("jd-flagship").await.unwrap_or(0);
        bar.set_position(started.elapsed().as_secs().min(total.as_secs()));
        bar.set_message(format!("{orders} orders ingested"));
    }
    bar.finish_and_clear();
    daemon.trigger_shutdown();
    daemon.wait().await?;

    // The report.
    let tmall_sold = sandbox.top.sold_units(top.num_iid, top.sku_id);
    let jd_sold: i64 = sandbox
        .jos
        .orders()
        .iter()
        .filter(|o| o.visible && !matches!(o.order_state.as_str(), "TRADE_CANCELED" | "WAIT_PAY"))
        .flat_map(|o| o.lines.iter())
        .filter(|(sku, _)| *sku == jos.sku_id)
        .map(|(_, qty)| qty)
        .sum();
    let sold = tmall_sold + jd_sold;
    let mut lags = Vec::new();
    for store_id in ["tmall-flagship", "jd-flagship"] {
        for (paid, ingested) in store.paid_to_ingested(store_id).await? {
            lags.push((ingested - paid).num_milliseconds().max(0) as f64 / 1000.0);
        }
    }
    lags.sort_by(f64::total_cmp);
    let calls = |map: BTreeMap<String, u64>| {
        map.iter().filter(|(k, _)| !k.starts_with("error:")).map(|(_, v)| v).sum::<u64>()
    };
    println!();
    println!("{:<34} {:>10} {:>10}", "", "Tmall", "JD");
    println!(
        "{:<34} {:>10} {:>10}",
        "orders ingested",
        store.count_orders("tmall-flagship").await?,
        store.count_orders("jd-flagship").await?
    );
    println!("{:<34} {:>10} {:>10}", "units sold", tmall_sold, jd_sold);
    println!(
        "{:<34} {:>10} {:>10}",
        "shipments pushed",
        sandbox.top.shipments().len(),
        sandbox.jos.shipments().len()
    );
    println!("{:<34} {:>10} {:>10}", "API calls", calls(sandbox.top.calls()), calls(sandbox.jos.calls()));
    println!(
        "{:<34} {:>10} {:>10}",
        "buyers turned away (sold out)",
        sandbox.top.sold_out_orders().len(),
        sandbox.jos.sold_out_orders().len()
    );
    println!();
    println!("units sold against stock:           {sold} of {UNITS}");
    println!("oversold:                           {}", (sold - UNITS).max(0));
    println!("operator fulfilment requests:       {}", sandbox.operator.fulfilments().len());
    println!(
        "paid-to-ingested lag (s):           p50 {:.1}, p99 {:.1}, worst {:.1}",
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        lags.last().copied().unwrap_or(0.0)
    );
    println!(
        "  (orders are pulled every 2 s with a 1 s settle delay; with shares summing to 1 a sale on one"
    );
    println!("   store never changes the other store's quantity, so no cross-store push is waited for)");
    println!("database: {} ; runs: flagsync --config <config> runs", args.database.display());
    Ok(if sold > UNITS { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
