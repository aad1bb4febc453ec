//! Fulfilment commands: the dead-letter list (`deadletters list|retry|drop`), the shipments
//! CSV import, and manual `sync fulfilment` / `sync shipments` runs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use crate::app::App;
use crate::jobs::{JobKind, JobRequest, JobRunner, Trigger};
use crate::store::{OutboxFilter, OutboxRow, OutboxState};

#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// Effects given up on, with their reasons (or the rows in another state).
    List {
        #[arg(long)]
        store: Option<String>,
        #[arg(long, value_enum, default_value = "dead")]
        state: StateArg,
        #[arg(long, default_value_t = 200)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Put dead letters back in line (after fixing what made them fail).
    Retry(RetryArgs),
    /// Give up on a dead (or pending) row for good, saying why.
    Drop {
        id: i64,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The dead letter's id (from `deadletters list`).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub id: Option<i64>,
    /// Every dead letter (of `--store`, when given).
    #[arg(long)]
    pub all: bool,
    #[arg(long, requires = "all")]
    pub store: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StateArg {
    Dead,
    Pending,
    Done,
    Dropped,
}

impl StateArg {
    fn state(self) -> OutboxState {
        match self {
            Self::Dead => OutboxState::Dead,
            Self::Pending => OutboxState::Pending,
            Self::Done => OutboxState::Done,
            Self::Dropped => OutboxState::Dropped,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ShipmentsCommand {
    /// Queue shipments from a CSV export (columns store, order_id, carrier, waybill,
    /// shipped_at, optional lines and imeis); good lines are queued, bad ones reported.
    Import {
        file: PathBuf,
        /// Check the file and report, queuing nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

fn reason_of(row: &OutboxRow) -> &str {
    row.dead_reason.as_deref().or(row.dropped_reason.as_deref()).or(row.last_error.as_deref()).unwrap_or("")
}

pub async fn dead_letters(app: &App, command: DeadLetterCommand) -> anyhow::Result<ExitCode> {
    match command {
        DeadLetterCommand::List { store, state, limit, json } => {
            let rows = app
                .store
                .outbox_rows(&OutboxFilter {
                    store_id: store.as_deref(),
                    state: Some(state.state()),
                    limit,
                    ..OutboxFilter::default()
                })
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!("no {} rows", state.state().as_str());
            } else {
                println!(
                    "{:<7} {:<9} {:<16} {:<22} {:>8} {:<20} reason",
                    "id", "kind", "store", "order", "attempts", "created (UTC)"
                );
                for row in &rows {
                    println!(
                        "{:<7} {:<9} {:<16} {:<22} {:>8} {:<20} {}",
                        row.id,
                        row.kind.as_str(),
                        row.store_id,
                        row.order_id,
                        row.attempts,
                        row.created_at.format("%Y-%m-%d %H:%M:%S"),
                        reason_of(row)
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DeadLetterCommand::Retry(RetryArgs { id, all, store }) => {
            if let Some(id) = id {
                match app.store.outbox_row(id).await? {
                    None => bail!("no outbox row {id}"),
                    Some(row) if row.state != OutboxState::Dead => {
                        bail!("row {id} is {}, not dead: only dead letters are retried", row.state.as_str())
                    }
                    Some(_) => {}
                }
            }
            let id = if all { None } else { id };
            let moved = app.store.retry_dead_letters(id, store.as_deref(), app.clock.now()).await?;
            println!("{moved} dead letter(s) back in line; the next fulfilment or shipments run sends them");
            Ok(ExitCode::SUCCESS)
        }
        DeadLetterCommand::Drop { id, reason } => {
            if reason.trim().is_empty() {
                bail!("--reason may not be empty: say why this effect is given up");
            }
            if app.store.outbox_drop(id, reason.trim()).await? {
                println!("row {id} dropped: {}", reason.trim());
                Ok(ExitCode::SUCCESS)
            } else {
                match app.store.outbox_row(id).await? {
                    None => bail!("no outbox row {id}"),
                    Some(row) => {
                        bail!("row {id} is {}: only dead or pending rows can be dropped", row.state.as_str())
                    }
                }
            }
        }
    }
}

pub async fn shipments(app: &App, command: ShipmentsCommand) -> anyhow::Result<ExitCode> {
    let ShipmentsCommand::Import { file, dry_run } = command;
    let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let (rows, mut errors) = flagsync_operator::parse_shipments_csv(&text);
    let (queued_rows, store_errors) =
        crate::sync::shipments::rows_from_csv(&rows, &app.store_ids(), app.clock.now());
    errors.extend(store_errors);
    errors.sort_by_key(|e| e.line);
    for error in &errors {
        eprintln!("{}: {error}", file.display());
    }
    let queued = if dry_run { 0 } else { app.store.enqueue_outbox(&queued_rows, None).await? };
    let verb = if dry_run { "would queue" } else { "queued" };
    println!(
        "{}: {} good line(s), {} bad; {verb} {} new shipment(s){}",
        file.display(),
        queued_rows.len(),
        errors.len(),
        if dry_run { queued_rows.len() as u64 } else { queued },
        if dry_run { "" } else { " (lines imported before are not queued twice)" }
    );
    Ok(if errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `sync fulfilment` and `sync shipments`: one recorded run per store.
pub async fn sync_outbox(
    app: &App,
    job: JobKind,
    store: Option<String>,
    params: serde_json::Value,
    json_out: bool,
) -> anyhow::Result<ExitCode> {
    let stores: Vec<String> = match store {
        Some(store) => vec![store],
        None => app.config.stores.iter().filter(|s| !s.paused).map(|s| s.id.clone()).collect(),
    };
    let mut failed = false;
    let mut out = Vec::new();
    for store_id in stores {
        let request = JobRequest {
            store_id: store_id.clone(),
            job,
            trigger: Trigger::Cli,
            params: params.clone(),
            fence: None,
        };
        match app.run(&request).await {
            Ok(counts) => out.push(json!({"store": store_id, "ok": true, "report": counts})),
            Err(error) => {
                failed = true;
                out.push(json!({"store": store_id, "ok": false, "error": error.to_string()}));
            }
        }
    }
    if json_out {
        println!("{}", serde_json::Value::Array(out));
    } else {
        println!(
            "{:<18} {:>7} {:>9} {:>7} {:>7} {:>7} {:>5} {:>8}  first error",
            "store", "claimed", "delivered", "already", "retried", "waiting", "dead", "consumed"
        );
        for row in &out {
            let store = row["store"].as_str().unwrap_or("");
            if let Some(error) = row.get("error") {
                println!("{store:<18} failed: {}", error.as_str().unwrap_or(""));
                continue;
            }
            let report = &row["report"];
            let drain = report.get("push").unwrap_or(report);
            let n = |key: &str| drain[key].as_u64().unwrap_or(0);
            println!(
                "{store:<18} {:>7} {:>9} {:>7} {:>7} {:>7} {:>5} {:>8}  {}",
                n("claimed"),
                n("delivered"),
                n("already"),
                n("retried"),
                n("waiting"),
                n("dead"),
                n("consumed"),
                drain["errors"].get(0).and_then(|e| e.as_str()).unwrap_or("")
            );
            if let Some(pull) = report.get("pull").filter(|p| !p.is_null()) {
                println!(
                    "{:<18} pulled {} operator notice(s), {} new, watermark {}",
                    "", pull["notices"], pull["queued"], pull["watermark"]
                );
            }
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
