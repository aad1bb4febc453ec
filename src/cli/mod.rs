//! Command-line commands. Each returns an exit code; errors carry context for the operator.

pub mod daemon;
mod demo;
mod fulfilment;
mod inventory;
pub mod soak;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use clap::{Args, Parser, Subcommand};
use flagsync_market::{LineSerials, ListingRef, Shipment, StockUpdate};

use crate::app::{App, AppOptions};
use crate::config;
use crate::sync::orders::{OrderPull, OrderSyncReport};

#[derive(Debug, Parser)]
#[command(name = "flagsync", version, about = "Marketplace flagship-store synchronizer")]
pub struct Cli {
    /// Configuration file (TOML). FLAGSYNC__SECTION__KEY variables override its values.
    #[arg(long, short, global = true, env = "FLAGSYNC_CONFIG", default_value = "config/flagsync.toml")]
    pub config: PathBuf,
    /// More logging (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply database migrations.
    Migrate,
    /// Check the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Run a sync by hand.
    Sync {
        #[command(subcommand)]
        command: SyncCommand,
    },
    /// Push something to a marketplace by hand.
    Push {
        #[command(subcommand)]
        command: PushCommand,
    },
    /// Payloads that could not be parsed.
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCommand,
    },
    /// Recent job runs.
    Runs {
        #[arg(long)]
        store: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Run the built-in marketplace sandbox (TOP at /router/rest, JOS at /routerjson).
    Sandbox(SandboxArgs),
    /// Run the daemon: scheduled jobs under database leases, the admin API, systemd notify.
    Run,
    /// Each store's jobs: last run, lag, errors, outbox, dead letters; pause and resume.
    Status(daemon::StatusArgs),
    /// A flash sale on a Tmall and a JD store, against the built-in sandboxes, in about a
    /// minute: starts everything, runs the daemon, prints a report.
    Demo(demo::DemoArgs),
    /// The seeded simulation: many seeds of scenario, faults and crashes against the
    /// sandboxes; prints every invariant's count (all must be 0) and exits 1 otherwise.
    Soak(soak::SoakArgs),
    /// Inspect the stock planner.
    Stock {
        #[command(subcommand)]
        command: inventory::StockCommand,
    },
    /// Compare every pushed listing's live quantity with what flagsync expects.
    Reconcile(inventory::ReconcileArgs),
    /// The operator's inventory.
    Inventory {
        #[command(subcommand)]
        command: inventory::InventoryCommand,
    },
    /// Effects given up on (fulfilment requests, withdrawals, shipment pushes): list, retry, drop.
    Deadletters {
        #[command(subcommand)]
        command: fulfilment::DeadLetterCommand,
    },
    /// Operator shipments by hand: import a CSV export.
    Shipments {
        #[command(subcommand)]
        command: fulfilment::ShipmentsCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// List every problem in the config, with its key path; exit 1 if there is any.
    Check,
}

#[derive(Debug, Args)]
pub struct RecordArg {
    /// Write every marketplace request and reply here as fixture files (secrets and buyer
    /// personal data redacted).
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Send paid orders to the operator's fulfilment and withdraw closed ones (drain the outbox).
    Fulfilment {
        /// The store id; every unpaused store when left out.
        #[arg(long)]
        store: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Pull operator shipment notices and push a store's shipments to its marketplace.
    Shipments {
        /// The store id; every unpaused store when left out.
        #[arg(long)]
        store: Option<String>,
        /// Push what is queued without asking the operator for new notices.
        #[arg(long)]
        no_pull: bool,
        #[arg(long)]
        json: bool,
    },
    /// Pull the operator's stock levels and resources (changes since the last pull).
    Inventory {
        /// Ask for a full snapshot instead of changes.
        #[arg(long)]
        full: bool,
        #[arg(long)]
        json: bool,
    },
    /// Plan every listing of a store (every unpaused store when left out) and push what changed.
    Stock {
        #[arg(long)]
        store: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Pull orders: incrementally from the cursor, or a time range / one order by hand.
    Orders {
        /// The store id from the config; every unpaused store when left out.
        #[arg(long)]
        store: Option<String>,
        /// Re-pull orders modified since this time (Beijing time `YYYY-MM-DD HH:MM:SS`, or RFC 3339).
        #[arg(long, requires = "until", conflicts_with = "order")]
        since: Option<String>,
        #[arg(long, requires = "since", conflicts_with = "order")]
        until: Option<String>,
        /// Re-pull one order by its platform id.
        #[arg(long, requires = "store")]
        order: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        record: RecordArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum PushCommand {
    /// Set absolute quantities on listings.
    Stock {
        #[arg(long)]
        store: String,
        /// `ITEM:SKU=QTY` for a SKU, or `ITEM=QTY` for an item without SKUs (repeatable).
        #[arg(long = "sku", value_name = "ITEM:SKU=QTY", required = true)]
        skus: Vec<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        record: RecordArg,
    },
    /// Report a shipment (a package) for an order.
    Shipment {
        #[arg(long)]
        store: String,
        #[arg(long)]
        order: String,
        /// The platform's carrier code (Taobao company code such as SF; JD numeric carrier id).
        #[arg(long)]
        carrier: String,
        #[arg(long)]
        waybill: String,
        /// Sub-order (line) ids in this package; all lines when left out (repeatable).
        #[arg(long = "line")]
        lines: Vec<String>,
        /// `LINE:IMEI` serials shipped (repeatable).
        #[arg(long = "imei", value_name = "LINE:IMEI")]
        imeis: Vec<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        record: RecordArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    List {
        #[arg(long)]
        store: Option<String>,
        /// Print the payloads too.
        #[arg(long)]
        payloads: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    #[arg(long, default_value = "127.0.0.1:8790")]
    pub listen: std::net::SocketAddr,
    /// Orders per platform in the generated scenario (spread over the last hours).
    #[arg(long, default_value_t = 300)]
    pub orders: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "flagsync=info,warn",
        1 => "flagsync=debug,flagsync_taobao=debug,flagsync_jd=debug,info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Config { command: ConfigCommand::Check } => Ok(config_check(&cli.config)),
        Command::Sandbox(args) => crate::sandbox::serve_forever(args.listen, args.orders, args.seed).await,
        Command::Demo(args) => demo::demo(args).await,
        Command::Soak(args) => {
            // Each seed runs on a current-thread runtime of its own, on a thread outside this one.
            std::thread::spawn(move || soak::soak(&args))
                .join()
                .map_err(|_| anyhow::anyhow!("the soak thread panicked"))?
        }
        Command::Run => {
            let config = config::load(&cli.config).map_err(|e| anyhow::anyhow!("{e}"))?;
            daemon::run_daemon(&cli.config, config).await
        }
        Command::Status(args) => {
            let config = config::load(&cli.config).map_err(|e| anyhow::anyhow!("{e}"))?;
            daemon::status(&config, args).await
        }
        command => {
            let config = config::load(&cli.config).map_err(|e| anyhow::anyhow!("{e}"))?;
            run_with_config(config, command).await
        }
    }
}

fn config_check(path: &std::path::Path) -> ExitCode {
    match config::load(path) {
        Ok(config) => {
            println!("{}: ok", path.display());
            for (key, value) in config::describe(&config) {
                println!("  {key}: {value}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

async fn run_with_config(config: config::Config, command: Command) -> anyhow::Result<ExitCode> {
    let record = match &command {
        Command::Sync { command: SyncCommand::Orders { record, .. } } => record.record.clone(),
        Command::Push {
            command: PushCommand::Stock { record, .. } | PushCommand::Shipment { record, .. },
        } => record.record.clone(),
        _ => None,
    };
    if let Command::Migrate = command {
        let store = crate::app::open_store(&config).await?;
        println!(
            "migrations applied ({} at {})",
            store.backend_name(),
            config::redact_url(&config.database.url)
        );
        return Ok(ExitCode::SUCCESS);
    }
    // A running daemon takes manual syncs, so they are leased and recorded like its own.
    if let Some(code) = daemon::sync_orders_via_daemon(&config, &command).await? {
        return Ok(code);
    }
    let app = App::build(config, &AppOptions { record, ..AppOptions::default() }).await?;
    match command {
        Command::Sync { command: SyncCommand::Orders { store, since, until, order, json, .. } } => {
            let pull = match (since, until, order) {
                (_, _, Some(order)) => OrderPull::Order(order),
                (Some(since), Some(until), None) => OrderPull::Range {
                    since: parse_time(&since, "--since")?,
                    until: parse_time(&until, "--until")?,
                },
                _ => OrderPull::Incremental,
            };
            let stores: Vec<String> = match store {
                Some(store) => vec![store],
                None => app.config.stores.iter().filter(|s| !s.paused).map(|s| s.id.clone()).collect(),
            };
            let mut failed = false;
            let mut rows = Vec::new();
            for store_id in stores {
                let result = orders_run(&app, &store_id, &pull).await;
                failed |= result.is_err();
                rows.push((store_id, result));
            }
            print_order_reports(&rows, json);
            Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        Command::Push { command: PushCommand::Stock { store, skus, json, .. } } => {
            let updates = skus.iter().map(|s| parse_stock_arg(s)).collect::<anyhow::Result<Vec<_>>>()?;
            let market = app.market(&store)?;
            let results =
                market.push_stock(&updates).await.with_context(|| format!("pushing stock to {store}"))?;
            let mut failed = false;
            let mut out = Vec::new();
            for result in results {
                let listing = listing_label(&result.listing);
                match result.outcome {
                    Ok(quantity) => out.push(serde_json::json!({"listing": listing, "quantity": quantity})),
                    Err(error) => {
                        failed = true;
                        out.push(serde_json::json!({"listing": listing, "error": error.to_string()}))
                    }
                }
            }
            if json {
                println!("{}", serde_json::Value::Array(out));
            } else {
                for row in out {
                    match row.get("error") {
                        Some(error) => {
                            println!("{:<32} failed: {}", row["listing"].as_str().unwrap_or(""), error)
                        }
                        None => {
                            println!("{:<32} now {}", row["listing"].as_str().unwrap_or(""), row["quantity"])
                        }
                    }
                }
            }
            Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        Command::Push {
            command: PushCommand::Shipment { store, order, carrier, waybill, lines, imeis, json, .. },
        } => {
            let serials = parse_serials(&imeis)?;
            let shipment = Shipment { order_id: order.clone(), line_ids: lines, carrier, waybill, serials };
            let market = app.market(&store)?;
            let outcome = market
                .push_shipment(&shipment)
                .await
                .with_context(|| format!("pushing the shipment of order {order}"))?;
            if json {
                println!("{}", serde_json::json!({"order": order, "outcome": outcome}));
            } else {
                let said = match outcome {
                    flagsync_market::ShipmentOutcome::Shipped => "shipped",
                    flagsync_market::ShipmentOutcome::AlreadyShipped => "already shipped (done)",
                };
                println!("order {order}: {said}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Sync { command: SyncCommand::Inventory { full, json } } => {
            inventory::sync_inventory(&app, full, json).await
        }
        Command::Sync { command: SyncCommand::Fulfilment { store, json } } => {
            let params = serde_json::json!({});
            fulfilment::sync_outbox(&app, crate::jobs::JobKind::Fulfilment, store, params, json).await
        }
        Command::Sync { command: SyncCommand::Shipments { store, no_pull, json } } => {
            let params = serde_json::json!({"pull": !no_pull});
            fulfilment::sync_outbox(&app, crate::jobs::JobKind::Shipments, store, params, json).await
        }
        Command::Deadletters { command } => fulfilment::dead_letters(&app, command).await,
        Command::Shipments { command } => fulfilment::shipments(&app, command).await,
        Command::Sync { command: SyncCommand::Stock { store, json } } => {
            inventory::sync_stock(&app, store, json).await
        }
        Command::Stock { command: inventory::StockCommand::Explain { store, listing, json } } => {
            inventory::explain(&app, &store, &listing, json).await
        }
        Command::Reconcile(args) => inventory::reconcile(&app, args).await,
        Command::Inventory { command: inventory::InventoryCommand::Import { file, dry_run } } => {
            inventory::import(&app, &file, dry_run).await
        }
        Command::Quarantine { command: QuarantineCommand::List { store, payloads, json } } => {
            let rows = app.store.quarantine(store.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!("quarantine is empty");
            } else {
                println!("{:<6} {:<16} {:<22} {:<32} reason", "id", "store", "order", "api");
                for row in &rows {
                    println!(
                        "{:<6} {:<16} {:<22} {:<32} {}",
                        row.id,
                        row.store_id,
                        row.order_id.as_deref().unwrap_or("-"),
                        row.api,
                        row.reason
                    );
                    if payloads {
                        println!("       payload: {}", flagsync_market::transport::redact_body(&row.payload));
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Runs { store, limit, json } => {
            let runs = app.store.runs(store.as_deref(), limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
            } else {
                println!(
                    "{:<6} {:<16} {:<10} {:<8} {:<26} {:<10} counts / error",
                    "id", "store", "job", "trigger", "started", "outcome"
                );
                for run in runs {
                    let detail = run.error.clone().unwrap_or_else(|| run.counts.to_string());
                    println!(
                        "{:<6} {:<16} {:<10} {:<8} {:<26} {:<10} {}",
                        run.id,
                        run.store_id,
                        run.job,
                        run.trigger,
                        run.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
                        run.outcome,
                        detail
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate
        | Command::Config { .. }
        | Command::Sandbox(_)
        | Command::Demo(_)
        | Command::Soak(_)
        | Command::Run
        | Command::Status(_) => {
            bail!("unreachable command dispatch")
        }
    }
}

/// Runs one order pull for a store through the job runner, recorded as a job run.
async fn orders_run(app: &App, store_id: &str, pull: &OrderPull) -> anyhow::Result<OrderSyncReport> {
    use crate::jobs::{JobKind, JobRequest, JobRunner, Trigger};
    let params = match pull {
        OrderPull::Incremental => serde_json::json!({}),
        OrderPull::Range { since, until } => serde_json::json!({"since": since, "until": until}),
        OrderPull::Order(id) => serde_json::json!({"order": id}),
    };
    let request = JobRequest {
        store_id: store_id.to_string(),
        job: JobKind::Orders,
        trigger: Trigger::Cli,
        params,
        fence: None,
    };
    let counts = app.run(&request).await?;
    Ok(serde_json::from_value(counts)?)
}

fn print_order_reports(rows: &[(String, anyhow::Result<OrderSyncReport>)], json: bool) {
    if json {
        let out: Vec<serde_json::Value> = rows
            .iter()
            .map(|(store, result)| match result {
                Ok(report) => serde_json::json!({"store": store, "ok": true, "report": report}),
                Err(error) => serde_json::json!({"store": store, "ok": false, "error": format!("{error:#}")}),
            })
            .collect();
        println!("{}", serde_json::Value::Array(out));
        return;
    }
    println!(
        "{:<18} {:>7} {:>8} {:>8} {:>9} {:>11} {:>6}  cursor",
        "store", "windows", "received", "inserted", "updated", "quarantined", "calls"
    );
    for (store, result) in rows {
        match result {
            Ok(r) => println!(
                "{:<18} {:>7} {:>8} {:>8} {:>9} {:>11} {:>6}  {}",
                store,
                r.windows,
                r.received,
                r.inserted,
                r.updated,
                r.quarantined,
                r.calls,
                r.cursor
                    .map(|c| flagsync_market::time::format_beijing(c) + " +08:00")
                    .unwrap_or_else(|| "-".into())
            ),
            Err(error) => println!("{store:<18} failed: {error:#}"),
        }
    }
}

fn listing_label(listing: &ListingRef) -> String {
    match &listing.sku_id {
        Some(sku) => format!("{}:{}", listing.item_id, sku),
        None => listing.item_id.clone(),
    }
}

/// `ITEM:SKU=QTY` or `ITEM=QTY`.
fn parse_stock_arg(text: &str) -> anyhow::Result<StockUpdate> {
    let (target, quantity) =
        text.split_once('=').with_context(|| format!("--sku {text:?}: expected ITEM:SKU=QTY or ITEM=QTY"))?;
    let quantity: i64 = quantity
        .trim()
        .parse()
        .with_context(|| format!("--sku {text:?}: quantity {quantity:?} is not a whole number"))?;
    if quantity < 0 {
        bail!("--sku {text:?}: quantity may not be negative");
    }
    let (item, sku) = match target.split_once(':') {
        Some((item, sku)) => (item.trim(), Some(sku.trim().to_string())),
        None => (target.trim(), None),
    };
    if item.is_empty() || sku.as_deref() == Some("") {
        bail!("--sku {text:?}: item and sku ids may not be empty");
    }
    Ok(StockUpdate { listing: ListingRef { item_id: item.to_string(), sku_id: sku }, quantity })
}

/// `LINE:IMEI` pairs grouped by line.
fn parse_serials(pairs: &[String]) -> anyhow::Result<Vec<LineSerials>> {
    let mut out: Vec<LineSerials> = Vec::new();
    for pair in pairs {
        let (line, imei) =
            pair.split_once(':').with_context(|| format!("--imei {pair:?}: expected LINE:IMEI"))?;
        let (line, imei) = (line.trim(), imei.trim());
        if line.is_empty() || imei.is_empty() || !imei.chars().all(|c| c.is_ascii_alphanumeric()) {
            bail!("--imei {pair:?}: expected LINE:IMEI with a letters-and-digits serial");
        }
        match out.iter_mut().find(|s| s.line_id == line) {
            Some(entry) => entry.serials.push(imei.to_string()),
            None => out.push(LineSerials { line_id: line.to_string(), serials: vec![imei.to_string()] }),
        }
    }
    Ok(out)
}

/// Beijing wall-clock time (`YYYY-MM-DD HH:MM:SS`, what ops read on the marketplace) or
/// RFC 3339 with an explicit offset.
pub fn parse_time(text: &str, flag: &str) -> anyhow::Result<DateTime<Utc>> {
    if !text.trim().starts_with(|c: char| c.is_ascii_digit()) {
        bail!("{flag} {text:?}: expected \"YYYY-MM-DD HH:MM:SS\" (Beijing time) or RFC 3339");
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").with_context(|| {
        format!("{flag} {text:?}: expected \"YYYY-MM-DD HH:MM:SS\" (Beijing time) or RFC 3339")
    })?;
    flagsync_market::time::BEIJING
        .from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
        .with_context(|| format!("{flag} {text:?}: not a valid time"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stock_and_serial_arguments_parse_or_say_what_is_wrong() {
        let update = parse_stock_arg("600000000000:5000000000001=12").unwrap();
        assert_eq!(update.listing.sku_id.as_deref(), Some("5000000000001"));
        assert_eq!(update.quantity, 12);
        assert_eq!(parse_stock_arg("600000000000=3").unwrap().listing.sku_id, None);
        assert!(parse_stock_arg("600:1=-1").unwrap_err().to_string().contains("negative"));
        assert!(parse_stock_arg("600:1").unwrap_err().to_string().contains("ITEM:SKU=QTY"));
        let serials = parse_serials(&["11:860000000000001".into(), "11:860000000000002".into()]).unwrap();
        assert_eq!(serials.len(), 1);
        assert_eq!(serials[0].serials.len(), 2);
        assert!(parse_serials(&["bad".into()]).is_err());
        assert_eq!(
            parse_time("2026-11-11 08:00:00", "--since").unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 11, 0, 0, 0).unwrap()
        );
    }
}
