//! Inventory commands: pull operator stock, plan and push a store's stock, explain one
//! listing, reconcile against the marketplaces, and import an ERP stock export.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use crate::app::App;
use crate::inventory::listing_key;
use crate::jobs::{JobKind, JobRequest, JobRunner, OPERATOR_SCOPE, Trigger};
use crate::sync::reconcile::ReconcileReport;
use crate::sync::stock::{StockReport, plan_listings};

#[derive(Debug, Subcommand)]
pub enum StockCommand {
    /// Why a listing shows what it shows: on hand, reservations, safety stock, share, cap,
    /// floor, the bundle component that binds, last pushed and live.
    Explain {
        #[arg(long)]
        store: String,
        /// `ITEM:SKU`, `ITEM`, or the listing's merchant code.
        listing: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum InventoryCommand {
    /// Apply an ERP stock export (columns sku, warehouse, on_hand): all rows or none.
    Import {
        file: PathBuf,
        /// Check the file and report, changing nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// One store; every store when left out.
    #[arg(long)]
    pub store: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Push the expected quantities to the listings that differ.
    #[arg(long)]
    pub fix: bool,
}

fn request(store_id: &str, job: JobKind, params: serde_json::Value) -> JobRequest {
    JobRequest { store_id: store_id.to_string(), job, trigger: Trigger::Cli, params, fence: None }
}

pub async fn sync_inventory(app: &App, full: bool, as_json: bool) -> anyhow::Result<ExitCode> {
    let counts = app.run(&request(OPERATOR_SCOPE, JobKind::Inventory, json!({"full": full}))).await?;
    if as_json {
        println!("{counts}");
    } else {
        println!(
            "operator stock: {} level(s), {} resource(s) at watermark {}{}",
            counts["levels"],
            counts["resources"],
            counts["watermark"],
            if counts["stale"] == true { " (stale answer ignored)" } else { "" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn sync_stock(app: &App, store: Option<String>, as_json: bool) -> anyhow::Result<ExitCode> {
    let stores: Vec<String> = match store {
        Some(store) => vec![store],
        None => app.config.stores.iter().filter(|s| !s.paused).map(|s| s.id.clone()).collect(),
    };
    let mut failed = false;
    let mut out = Vec::new();
    for store_id in stores {
        match app.run(&request(&store_id, JobKind::Stock, json!({}))).await {
            Ok(counts) => {
                let report: StockReport = serde_json::from_value(counts.clone())?;
                failed |= report.failed > 0;
                out.push((store_id, Ok(report)));
            }
            Err(error) => {
                failed = true;
                out.push((store_id, Err(error.to_string())));
            }
        }
    }
    if as_json {
        let rows: Vec<_> = out
            .iter()
            .map(|(store, r)| match r {
                Ok(report) => json!({"store": store, "ok": true, "report": report}),
                Err(e) => json!({"store": store, "ok": false, "error": e}),
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
    } else {
        println!(
            "{:<18} {:>8} {:>7} {:>9} {:>7} {:>9} {:>8}",
            "store", "listings", "pushed", "unchanged", "failed", "unmapped", "flagged"
        );
        for (store, result) in &out {
            match result {
                Ok(r) => {
                    println!(
                        "{:<18} {:>8} {:>7} {:>9} {:>7} {:>9} {:>8}",
                        store,
                        r.listings,
                        r.pushed,
                        r.unchanged,
                        r.failed,
                        r.unmapped.len(),
                        r.flagged.len()
                    );
                    for listing in &r.unmapped {
                        println!(
                            "  unmapped: {listing} (its merchant code is not in the catalog; map it in stores.{store}.listings)"
                        );
                    }
                    for order in &r.flagged {
                        println!("  cannot be served: order {order}");
                    }
                    for error in &r.errors {
                        println!("  error: {error}");
                    }
                }
                Err(e) => println!("{store:<18} failed: {e}"),
            }
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

pub async fn explain(app: &App, store_id: &str, wanted: &str, as_json: bool) -> anyhow::Result<ExitCode> {
    let policy = app.stock_policy(store_id)?;
    let levels = app.store.component_levels(&app.config.catalog).await?;
    let (plans, unmapped) = plan_listings(&app.store, store_id, &policy, &levels).await?;
    let Some(plan) = plans.iter().find(|p| {
        p.input.key == wanted || p.row.outer_id.as_deref() == Some(wanted) || p.row.item_id == wanted
    }) else {
        if unmapped.iter().any(|u| u == wanted) {
            bail!(
                "listing {wanted} of {store_id} maps to nothing in the catalog: add it to stores.{store_id}.listings"
            );
        }
        bail!("no listing {wanted:?} in store {store_id} (use ITEM:SKU, ITEM or the merchant code)");
    };
    let components: Vec<_> = plan
        .input
        .target
        .components
        .iter()
        .map(|(component, per)| {
            let level = levels.get(component).copied().unwrap_or_default();
            json!({
                "component": component.key(), "units_per_listing": per, "on_hand": level.on_hand,
                "reserved": level.reserved, "shipped_not_yet_deducted": level.consumed_pending,
                "shipped_deducted": level.consumed_in_snapshot, "safety_stock": level.safety,
                "available": level.available(), "supply": level.supply(),
            })
        })
        .collect();
    let allocation = &plan.input.allocation;
    let out = json!({
        "store": store_id,
        "listing": listing_key(&plan.row.item_id, plan.row.sku()),
        "merchant_code": plan.row.outer_id,
        "target": plan.input.target.target,
        "mode": if plan.input.shared_pool { "shared_pool" } else { "allocated" },
        "share": allocation.share, "cap": allocation.cap, "floor": allocation.floor,
        "binding_component": plan.target.binding,
        "planned": plan.target.value,
        "grant": plan.row.state.grant, "allowance": plan.row.state.allowance,
        "last_pushed": plan.row.state.last_pushed, "last_pushed_at": plan.row.last_pushed_at,
        "push_pending": plan.row.state.pending.is_some(),
        "live": plan.row.live, "live_at": plan.row.live_at,
        "components": components,
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "listing {} of {store_id} (merchant code {})",
        out["listing"],
        plan.row.outer_id.as_deref().unwrap_or("-")
    );
    println!("  target:      {} ({})", plan.input.target.target, out["mode"].as_str().unwrap_or(""));
    for c in &components {
        println!(
            "  component {:<22} x{}: on hand {}, reserved {}, shipped not yet deducted {}, safety {} -> available {}, supply {}",
            c["component"].as_str().unwrap_or(""),
            c["units_per_listing"],
            c["on_hand"],
            c["reserved"],
            c["shipped_not_yet_deducted"],
            c["safety_stock"],
            c["available"],
            c["supply"]
        );
    }
    println!(
        "  share {:.3}, cap {}, floor {}; binding component {}",
        allocation.share,
        allocation.cap.map_or("none".to_string(), |c| c.to_string()),
        allocation.floor,
        plan.target.binding
    );
    let show = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
    if plan.input.shared_pool {
        println!("  shows now:   {}", plan.target.value);
    } else {
        println!(
            "  grant:       {} now (was {}); allowance left {}",
            plan.target.value,
            show(plan.row.state.grant),
            show(plan.row.state.allowance)
        );
    }
    println!(
        "  last pushed: {} at {}; live {} at {}{}",
        show(plan.row.state.last_pushed),
        plan.row.last_pushed_at.map_or("-".to_string(), |t| t.to_rfc3339()),
        show(plan.row.live),
        plan.row.live_at.map_or("-".to_string(), |t| t.to_rfc3339()),
        if plan.row.state.pending.is_some() { " (a push of unknown outcome is pending)" } else { "" }
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn reconcile(app: &App, args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let stores: Vec<String> = match args.store {
        Some(store) => vec![store],
        None => app.config.stores.iter().map(|s| s.id.clone()).collect(),
    };
    let mut all = Vec::new();
    let mut errors = Vec::new();
    for store_id in &stores {
        let counts = app.run(&request(store_id, JobKind::Reconcile, json!({"fix": args.fix}))).await?;
        let report: ReconcileReport = serde_json::from_value(counts)?;
        all.extend(report.differing);
        errors.extend(report.errors.into_iter().map(|e| format!("{store_id}: {e}")));
    }
    match args.format {
        Format::Json => {
            println!("{}", serde_json::to_string_pretty(&json!({"differing": all, "errors": errors}))?)
        }
        Format::Csv => {
            println!("store,listing,target,expected,expected_max,last_pushed,live,fixed,note");
            for d in &all {
                println!(
                    "{},{},{},{},{},{},{},{},\"{}\"",
                    d.store,
                    d.listing,
                    d.target,
                    d.expected,
                    d.expected_max,
                    d.last_pushed.map_or(String::new(), |v| v.to_string()),
                    d.live,
                    d.fixed,
                    d.note.as_deref().unwrap_or("").replace('"', "\"\"")
                );
            }
        }
        Format::Table => {
            if all.is_empty() {
                println!("every pushed listing shows what flagsync expects");
            } else {
                println!(
                    "{:<16} {:<32} {:<20} {:>11} {:>11} {:>6} fixed",
                    "store", "listing", "target", "expected", "last pushed", "live"
                );
                for d in &all {
                    println!(
                        "{:<16} {:<32} {:<20} {:>11} {:>11} {:>6} {}",
                        d.store,
                        d.listing,
                        d.target,
                        if d.expected == d.expected_max {
                            d.expected.to_string()
                        } else {
                            format!("{}-{}", d.expected, d.expected_max)
                        },
                        d.last_pushed.map_or("-".into(), |v| v.to_string()),
                        d.live,
                        if d.fixed { "yes" } else { "no" }
                    );
                    if let Some(note) = &d.note {
                        println!("  {note}");
                    }
                }
            }
            for e in &errors {
                eprintln!("error: {e}");
            }
        }
    }
    Ok(if errors.is_empty() && (args.fix || all.is_empty()) { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

pub async fn import(app: &App, file: &std::path::Path, dry_run: bool) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let levels = match flagsync_operator::parse_stock_csv(&text) {
        Ok(levels) => levels,
        Err(errors) => {
            eprintln!("{}: {} problem(s), nothing applied:", file.display(), errors.0.len());
            for error in &errors.0 {
                eprintln!("  {error}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let unknown: Vec<&str> = levels
        .iter()
        .filter(|l| !app.config.catalog.skus.contains_key(&l.sku))
        .map(|l| l.sku.as_str())
        .collect();
    if !unknown.is_empty() {
        eprintln!("note: SKUs not in the catalog (stored, not sold anywhere): {}", unknown.join(", "));
    }
    if dry_run {
        println!("{}: {} row(s) valid; nothing applied (--dry-run)", file.display(), levels.len());
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<(String, String, i64)> =
        levels.into_iter().map(|l| (l.sku, l.warehouse, l.on_hand)).collect();
    let stats = app.store.import_stock_levels(&rows).await?;
    println!("{}: {} level(s) applied at watermark {}", file.display(), stats.levels, stats.watermark);
    Ok(ExitCode::SUCCESS)
}
