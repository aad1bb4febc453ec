//! Bench 4, memory: peak RSS of `flagsync` child processes running one cycle of every job
//! (orders of both stores, inventory, stock of both stores, reconcile) through the CLI
//! against the sandbox, on a SQLite database seeded straight with SQL with 1,000,000 stored
//! orders and 100,000 listings per store.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{TimeDelta, Utc};
use flagsync::store::{Store, StoreOptions};
use flagsync_sandbox::clock::SimClock;
use flagsync_sandbox::jos::JosConfig;
use flagsync_sandbox::scenario::{ScenarioConfig, generate};
use flagsync_sandbox::top::TopConfig;
use sqlx::QueryBuilder;

use crate::common::{Report, start_sandbox};

const BENCH: &str = "memory";
const LIMIT_MIB: f64 = 150.0;
const ROWS_PER_STATEMENT: usize = 100;

pub async fn run(quick: bool, report: &mut Report) -> anyhow::Result<()> {
    let (orders, listings, skus) = if quick { (10_000, 1_000, 100) } else { (1_000_000, 100_000, 1_000) };
    let dir = tempfile::tempdir()?;
    let db_path = dir.path().join("memory.db");
    let url = format!("sqlite://{}", db_path.display());

    let clock = SimClock::real();
    let outer_ids: Vec<String> = (0..listings).map(|n| format!("SKU-{:05}", n % skus)).collect();
    let top = TopConfig {
        listings,
        contract_listings: 0,
        initial_quantity: 0,
        outer_ids: outer_ids.clone(),
        ..TopConfig::default()
    };
    let jos =
        JosConfig { listings, contract_listings: 0, initial_quantity: 0, outer_ids, ..JosConfig::default() };
    let sandbox = start_sandbox(&clock, top, jos).await?;
    for n in 0..skus {
        sandbox.operator.set_on_hand(&format!("SKU-{n:05}"), "WH-HZ-01", 10_000);
    }
    let recent = ScenarioConfig {
        start: Utc::now() - TimeDelta::hours(1),
        duration: TimeDelta::minutes(50),
        orders: 2_000,
        listings,
        contract_listings: 0,
        hold_share: 0.0,
        ..ScenarioConfig::default()
    };
    sandbox.top.load_scenario(generate(&ScenarioConfig { seed: 51, ..recent.clone() }));
    sandbox.jos.load_scenario(generate(&ScenarioConfig { seed: 52, ..recent.clone() }));

    let began = Instant::now();
    let store = Store::open(&StoreOptions::new(url.clone())).await?;
    store.register_store("tmall", "taobao").await?;
    store.register_store("jd", "jd").await?;
    let ids = |store: &str, n: usize| -> (String, String) {
        if store == "tmall" {
            let l = sandbox.top.listing(n);
            (l.num_iid.to_string(), l.sku_id.to_string())
        } else {
            let l = sandbox.jos.listing(n);
            (l.ware_id.to_string(), l.sku_id.to_string())
        }
    };
    let listing_ids: Vec<(&str, Vec<(String, String)>)> =
        ["tmall", "jd"].into_iter().map(|s| (s, (0..listings).map(|n| ids(s, n)).collect())).collect();
    store.close().await;
    seed(&url, orders, skus, &listing_ids).await?;
    report.figure(BENCH, "seeding the database", began.elapsed().as_secs_f64(), "s");
    let size = std::fs::metadata(&db_path).map(|m| m.len()).unwrap_or(0);
    report.figure(BENCH, "database size", size as f64 / (1024.0 * 1024.0), "MiB");

    // How long the planner's first look at one never-pushed listing takes on this database.
    let store = Store::open(&StoreOptions::new(url.clone())).await?;
    let (item, sku) = &listing_ids[0].1[0];
    let began = Instant::now();
    store.sold_units("tmall", item, sku).await?;
    report.figure(BENCH, "sold_units of one listing", began.elapsed().as_secs_f64() * 1000.0, "ms");
    store.close().await;

    let config = dir.path().join("flagsync.toml");
    std::fs::write(&config, config_toml(&url, &sandbox.base_url(), skus))?;
    let steps: [(&str, Vec<&str>); 7] = [
        ("orders tmall", vec!["sync", "orders", "--store", "tmall"]),
        ("orders jd", vec!["sync", "orders", "--store", "jd"]),
        ("inventory", vec!["sync", "inventory"]),
        ("stock tmall", vec!["sync", "stock", "--store", "tmall"]),
        ("stock jd", vec!["sync", "stock", "--store", "jd"]),
        ("reconcile tmall", vec!["reconcile", "--store", "tmall"]),
        ("reconcile jd", vec!["reconcile", "--store", "jd"]),
    ];
    let limit = Duration::from_secs(if quick { 120 } else { 300 });
    let mut peak: f64 = 0.0;
    for (label, args) in steps {
        let run = child_peak_rss(&config, &args, limit).await.with_context(|| label.to_string())?;
        let mib = run.peak_kib as f64 / 1024.0;
        peak = peak.max(mib);
        let label = if run.finished { label.to_string() } else { format!("{label} (stopped unfinished)") };
        if !run.finished {
            report.note(BENCH, format!("{label}: still running after {} s, stopped", limit.as_secs()));
        }
        report.figure(BENCH, format!("{label}: peak RSS"), mib, "MiB");
        report.figure(BENCH, format!("{label}: wall time"), run.took.as_secs_f64(), "s");
    }
    let sizes = format!("{orders} orders, {listings} listings per store");
    report.judged(
        BENCH,
        format!("peak RSS over every job ({sizes})"),
        peak,
        "MiB",
        "< 150",
        peak < LIMIT_MIB,
    );
    drop(sandbox);
    Ok(())
}

/// How one child run ended.
struct ChildRun {
    peak_kib: u64,
    took: Duration,
    /// False when it was stopped at the time limit.
    finished: bool,
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs `flagsync ARGS`, sampling its peak RSS (`VmHWM`, a high-water mark the kernel keeps)
/// every 10 ms until it exits or `limit` passes; then it is stopped and counted unfinished.
async fn child_peak_rss(config: &Path, args: &[&str], limit: Duration) -> anyhow::Result<ChildRun> {
    let began = Instant::now();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_flagsync"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("BENCH_TOP_SECRET", flagsync::sandbox::TOP_APP_SECRET)
        .env("BENCH_TOP_SESSION", flagsync::sandbox::TOP_SESSION)
        .env("BENCH_JOS_SECRET", flagsync::sandbox::JOS_APP_SECRET)
        .env("BENCH_JOS_TOKEN", flagsync::sandbox::JOS_ACCESS_TOKEN)
        .env("BENCH_OPERATOR_SECRET", flagsync::sandbox::OPERATOR_SECRET)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting flagsync")?;
    let pid = child.id().context("flagsync exited at once")?;
    let mut peak = 0;
    let status = loop {
        if let Some(kib) = vm_hwm_kib(pid) {
            peak = peak.max(kib);
        }
        if began.elapsed() > limit {
            child.kill().await.context("stopping flagsync at the time limit")?;
            return Ok(ChildRun { peak_kib: peak, took: began.elapsed(), finished: false });
        }
        tokio::select! {
            status = child.wait() => break status?,
            () = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
    };
    if !status.success() {
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            use tokio::io::AsyncReadExt;
            let _ = pipe.read_to_string(&mut stderr).await;
        }
        let last = stderr.lines().last().unwrap_or("").chars().take(300).collect::<String>();
        bail!("flagsync {} exited with {status}: {last}", args.join(" "));
    }
    Ok(ChildRun { peak_kib: peak, took: began.elapsed(), finished: true })
}

fn config_toml(db_url: &str, base: &str, skus: usize) -> String {
    let mut text = format!(
        "[database]\nurl = \"{db_url}\"\n\n[sync]\nwindow_mins = 30\nsettle_delay_secs = 0\noverlap_secs = 300\n\
         initial_lookback_hours = 2\n\n[operator]\ngateway = \"{base}\"\nkey_id = \"{key}\"\n\
         secret = {{ env = \"BENCH_OPERATOR_SECRET\" }}\n\n[stores.tmall]\ntype = \"taobao\"\n\
         gateway = \"{base}/router/rest\"\napp_key = \"{top_key}\"\napp_secret = {{ env = \"BENCH_TOP_SECRET\" }}\n\
         session = {{ env = \"BENCH_TOP_SESSION\" }}\nsign_method = \"hmac-sha256\"\npage_size = 100\ncalls_per_second = 10000\n\n\
         [stores.jd]\ntype = \"jd\"\ngateway = \"{base}/routerjson\"\napp_key = \"{jd_key}\"\n\
         app_secret = {{ env = \"BENCH_JOS_SECRET\" }}\naccess_token = {{ env = \"BENCH_JOS_TOKEN\" }}\ncalls_per_second = 10000\n\n[catalog.skus]\n",
        key = flagsync::sandbox::OPERATOR_KEY_ID,
        top_key = flagsync::sandbox::TOP_APP_KEY,
        jd_key = flagsync::sandbox::JOS_APP_KEY,
    );
    for n in 0..skus {
        text.push_str(&format!("\"SKU-{n:05}\" = {{ kind = \"handset\" }}\n"));
    }
    text
}

/// Orders (one line each, a realistic raw payload), their reservations (2 % open, the rest
/// consumed), done outbox rows, every listing with a pushed state, and the stores' cursors.
async fn seed(
    url: &str,
    orders: usize,
    skus: usize,
    listing_ids: &[(&str, Vec<(String, String)>)],
) -> anyhow::Result<()> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    use std::str::FromStr;
    let options = SqliteConnectOptions::from_str(url)?
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true);
    let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
    let now = Utc::now();
    let raw = format!(
        "{{\"trade\":{{\"status\":\"TRADE_FINISHED\",\"payment\":\"3999.00\",\"pad\":\"{}\"}}}}",
        "x".repeat(240)
    );
    let mut tx = pool.begin().await?;
    for chunk_start in (0..orders).step_by(ROWS_PER_STATEMENT) {
        let part: Vec<usize> = (chunk_start..(chunk_start + ROWS_PER_STATEMENT).min(orders)).collect();
        let store_of = |i: usize| if i.is_multiple_of(2) { "tmall" } else { "jd" };
        let listing_of = |i: usize| {
            let ids = &listing_ids[i % 2].1;
            &ids[(i / 2) % ids.len()]
        };
        let at = |i: usize| now - TimeDelta::minutes(90 + (orders - i) as i64 / 10);
        let mut q = QueryBuilder::new(
            "INSERT INTO orders (store_id, order_id, status, status_rank, platform_status, created_at, modified_at, \
             paid_at, total_fen, payment_fen, post_fee_fen, detail, raw, fingerprint, revisions, ingested_at, updated_at) ",
        );
        q.push_values(&part, |mut b, &i| {
            b.push_bind(store_of(i))
                .push_bind(format!("9{i:015}"))
                .push_bind("completed")
                .push_bind(5_i64)
                .push_bind("TRADE_FINISHED")
                .push_bind(at(i))
                .push_bind(at(i))
                .push_bind(at(i))
                .push_bind(399_900_i64)
                .push_bind(399_900_i64)
                .push_bind(0_i64)
                .push_bind("{\"buyer\":\"***\",\"receiver\":null,\"contract\":null}")
                .push_bind(&raw)
                .push_bind(format!("{i:016x}"))
                .push_bind(1_i64)
                .push_bind(now)
                .push_bind(now);
        });
        q.build().execute(&mut *tx).await?;
        let mut q = QueryBuilder::new(
            "INSERT INTO order_lines (store_id, order_id, line_id, item_id, sku_id, outer_sku_id, title, quantity, \
             price_fen, payment_fen, refund, platform_status) ",
        );
        q.push_values(&part, |mut b, &i| {
            let (item, sku) = listing_of(i);
            b.push_bind(store_of(i))
                .push_bind(format!("9{i:015}"))
                .push_bind(format!("9{i:015}-1"))
                .push_bind(item)
                .push_bind(sku)
                .push_bind(format!("SKU-{:05}", (i / 2) % skus))
                .push_bind("Handset 256 GB")
                .push_bind(1_i64)
                .push_bind(399_900_i64)
                .push_bind(399_900_i64)
                .push_bind("none")
                .push_bind(None::<String>);
        });
        q.build().execute(&mut *tx).await?;
        let mut q = QueryBuilder::new(
            "INSERT INTO reservations (store_id, order_id, line_id, component, listing, quantity, state, ordered_at, \
             created_at, consumed_watermark) ",
        );
        q.push_values(&part, |mut b, &i| {
            let (item, sku) = listing_of(i);
            let open = i % 50 == 0;
            b.push_bind(store_of(i))
                .push_bind(format!("9{i:015}"))
                .push_bind(format!("9{i:015}-1"))
                .push_bind(format!("sku:SKU-{:05}", (i / 2) % skus))
                .push_bind(format!("{item}:{sku}"))
                .push_bind(1_i64)
                .push_bind(if open { "open" } else { "consumed" })
                .push_bind(at(i))
                .push_bind(now)
                .push_bind(if open { None } else { Some(0_i64) });
        });
        q.build().execute(&mut *tx).await?;
        let mut q = QueryBuilder::new(
            "INSERT INTO outbox (kind, store_id, order_id, dedupe_key, payload, state, attempts, next_attempt_at, \
             created_at, done_at) ",
        );
        q.push_values(&part, |mut b, &i| {
            b.push_bind("fulfil")
                .push_bind(store_of(i))
                .push_bind(format!("9{i:015}"))
                .push_bind(format!("fulfil:{}:9{i:015}", store_of(i)))
                .push_bind("{}")
                .push_bind("done")
                .push_bind(1_i64)
                .push_bind(at(i))
                .push_bind(now)
                .push_bind(now);
        });
        q.build().execute(&mut *tx).await?;
        if chunk_start % 20_000 == 0 {
            tx.commit().await?;
            tx = pool.begin().await?;
        }
    }
    // Every listing already carries a pushed state, as in a daemon that has run for a while.
    for (store, ids) in listing_ids {
        for (index, part) in ids.chunks(ROWS_PER_STATEMENT).enumerate() {
            let mut q = QueryBuilder::new(
                "INSERT INTO listings (store_id, item_id, sku_id, outer_id, title, grant_units, allowance, last_pushed, \
                 last_pushed_at, discovered_at) ",
            );
            q.push_values(part.iter().enumerate(), |mut b, (offset, (item, sku))| {
                let n = index * ROWS_PER_STATEMENT + offset;
                b.push_bind(*store)
                    .push_bind(item)
                    .push_bind(sku)
                    .push_bind(format!("SKU-{:05}", n % skus))
                    .push_bind("Handset 256 GB")
                    .push_bind(0_i64)
                    .push_bind(0_i64)
                    .push_bind(0_i64)
                    .push_bind(now)
                    .push_bind(now);
            });
            q.build().execute(&mut *tx).await?;
        }
        sqlx::query(
            "INSERT INTO sync_cursors (store_id, job, position, updated_at) VALUES ($1, 'orders', $2, $2)",
        )
        .bind(*store)
        .bind(now - TimeDelta::hours(1))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&pool).await?;
    pool.close().await;
    Ok(())
}
