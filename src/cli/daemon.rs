//! The daemon's side of the command line: `flagsync run` (signals, reloads), `flagsync
//! status` (and its pause/resume), and the client that hands manual runs to a running
//! daemon's admin API, so they are leased and recorded like scheduled ones.

use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::Utc;
use clap::{Args, Subcommand};
use flagsync_market::SystemClock;
use indicatif::ProgressBar;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::signal::unix::{SignalKind, signal};

use super::{Command, SyncCommand};
use crate::app::{App, AppOptions};
use crate::config::Config;
use crate::daemon::{Daemon, DaemonOptions, Generation, JobView, Rebuild, job_views};
use crate::jobs::{JobKind, JobRequest, JobRunner, OPERATOR_SCOPE, Trigger};
use crate::sync::orders::OrderSyncReport;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub action: Option<StatusAction>,
}

#[derive(Debug, Subcommand)]
pub enum StatusAction {
    /// Stop scheduled runs of a store, or of one of its jobs (manual runs still work).
    Pause {
        #[arg(long)]
        store: String,
        #[arg(long)]
        job: Option<String>,
    },
    /// Undo a pause made with `status pause` or the admin API (config pauses stay).
    Resume {
        #[arg(long)]
        store: String,
        #[arg(long)]
        job: Option<String>,
    },
}

pub fn generation_of(app: Arc<App>) -> Generation {
    Generation { config: Arc::new(app.config.clone()), runner: app.clone(), inbox: app }
}

/// `flagsync run`: the daemon, until SIGTERM (or Ctrl-C) has drained it. SIGHUP rereads
/// the config; an invalid one is refused and the old one kept.
pub async fn run_daemon(config_path: &Path, config: Config) -> anyhow::Result<ExitCode> {
    // Before anything touches the database: a second daemon on one SQLite file stops here.
    let lock = crate::daemon::lockfile::lock_database(&config.database.url)?;
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let mut hangup = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    let app = Arc::new(App::build(config, &AppOptions::default()).await?);
    let store = app.store.clone();
    let sandbox = app.sandbox.clone();
    let rebuild_store = store.clone();
    let rebuild: Rebuild = Arc::new(move |config| {
        let store = rebuild_store.clone();
        let sandbox = sandbox.clone();
        Box::pin(async move {
            let app = App::build_with(config, &AppOptions::default(), Arc::new(SystemClock), sandbox, store)
                .await
                .map_err(|e| e.to_string())?;
            Ok(generation_of(Arc::new(app)))
        })
    });
    let options = DaemonOptions {
        config_path: Some(config_path.to_path_buf()),
        rebuild: Some(rebuild),
        serve_admin: true,
        lock,
    };
    let daemon = Daemon::start(generation_of(app), store, options).await?;
    loop {
        tokio::select! {
            _ = terminate.recv() => {
                tracing::info!("SIGTERM: no new runs; draining");
                break;
            }
            _ = interrupt.recv() => {
                tracing::info!("SIGINT: no new runs; draining");
                break;
            }
            _ = hangup.recv() => {
                match daemon.reload().await {
                    Ok(()) => tracing::info!("SIGHUP: config reloaded"),
                    Err(error) => tracing::error!(error = %error, "SIGHUP: config reload refused"),
                }
            }
        }
    }
    daemon.trigger_shutdown();
    daemon.wait().await?;
    Ok(ExitCode::SUCCESS)
}

/// `flagsync status`: each store's jobs as a table (or JSON), read from the database, so it
/// works with the daemon up or down; `status pause|resume` store a pause the daemon obeys.
pub async fn status(config: &Config, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let store = crate::app::open_store(config).await?;
    if let Some(action) = args.action {
        let (store_id, job, paused) = match action {
            StatusAction::Pause { store, job } => (store, job, true),
            StatusAction::Resume { store, job } => (store, job, false),
        };
        let job = match job.as_deref() {
            Some(name) => Some(JobKind::parse(name).with_context(|| format!("--job {name:?} is not a job"))?),
            None => None,
        };
        if config.store(&store_id).is_none() && store_id != OPERATOR_SCOPE {
            bail!("--store {store_id:?}: no such store in the config");
        }
        store.set_paused(&store_id, job.map(JobKind::as_str), paused).await?;
        let what = job.map_or(format!("store {store_id}"), |j| format!("job {j} of store {store_id}"));
        println!("{what}: {}", if paused { "paused (scheduled runs stop)" } else { "resumed" });
        return Ok(ExitCode::SUCCESS);
    }
    let views = job_views(&store, config, Utc::now()).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&views)?);
    } else {
        print!("{}", status_table(&views));
    }
    Ok(ExitCode::SUCCESS)
}

/// The status table: one line per job.
pub fn status_table(views: &[JobView]) -> String {
    let mut out = format!(
        "{:<16} {:<10} {:<22} {:<20} {:<10} {:>8} {:>5} {:>6} {:>5}  error\n",
        "store", "job", "state", "last run", "outcome", "lag", "fails", "outbox", "dead"
    );
    for v in views {
        let state = if v.paused {
            format!("paused ({})", v.paused_by.join("+"))
        } else {
            v.lease_holder.clone().map_or("idle (no holder)".into(), |h| format!("held by {h}"))
        };
        let (last, outcome, error) = match &v.last_run {
            Some(run) => (
                run.started_at.format("%m-%d %H:%M:%S UTC").to_string(),
                run.outcome.clone(),
                run.error.clone().unwrap_or_default(),
            ),
            None => ("-".into(), "-".into(), String::new()),
        };
        let lag = v.cursor_lag_secs.map_or("-".into(), human_secs);
        let error: String = error.chars().take(60).collect();
        out.push_str(&format!(
            "{:<16} {:<10} {:<22} {:<20} {:<10} {:>8} {:>5} {:>6} {:>5}  {}\n",
            v.store,
            v.job,
            truncate(&state, 22),
            last,
            outcome,
            lag,
            v.failures_in_a_row,
            v.outbox,
            v.dead_letters,
            error
        ));
    }
    out
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        text.chars().take(width.saturating_sub(1)).chain(std::iter::once('…')).collect()
    }
}

fn human_secs(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s => format!("{}h", s / 3600),
    }
}

/// A running daemon's admin API, as the CLI talks to it.
pub struct DaemonClient {
    base: String,
    token: SecretString,
    http: reqwest::Client,
}

impl DaemonClient {
    /// The daemon the config names, if its admin API answers `/healthz` and a token is
    /// configured to talk to it.
    pub async fn probe(config: &Config) -> Option<Self> {
        let token = config.admin.token.clone()?;
        let mut addr = config.admin.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(30))
            .build()
            .ok()?;
        let base = format!("http://{addr}");
        let reply = http.get(format!("{base}/healthz")).timeout(Duration::from_secs(2)).send().await.ok()?;
        reply.status().is_success().then_some(Self { base, token, http })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let reply = request
            .bearer_auth(self.token.expose_secret())
            .header("x-flagsync-user", whoami())
            .send()
            .await
            .with_context(|| format!("calling the daemon at {}", self.base))?;
        let status = reply.status();
        let body = reply.text().await.unwrap_or_default();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            bail!("the daemon at {} refused admin.token (401)", self.base);
        }
        let value: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
        if !status.is_success() {
            let message =
                value.get("error").and_then(Value::as_str).map(str::to_string).unwrap_or(value.to_string());
            bail!("the daemon answered {status}: {message}");
        }
        Ok(value)
    }

    /// Queues a manual run; returns its handle (`req-N`).
    pub async fn trigger(&self, store_id: &str, job: JobKind, params: &Value) -> anyhow::Result<String> {
        let url = format!("{}/api/v1/stores/{store_id}/jobs/{job}/runs", self.base);
        let reply = self.call(self.http.post(url).json(params)).await?;
        reply
            .get("run")
            .and_then(Value::as_str)
            .map(str::to_string)
            .context("the daemon's reply has no run handle")
    }

    pub async fn run_status(&self, handle: &str) -> anyhow::Result<Value> {
        self.call(self.http.get(format!("{}/api/v1/runs/{handle}", self.base))).await
    }

    /// Triggers a run and follows it to its end; returns its counts, or its error.
    pub async fn run(
        &self,
        store_id: &str,
        job: JobKind,
        params: &Value,
        bar: &ProgressBar,
    ) -> anyhow::Result<Value> {
        let handle = self.trigger(store_id, job, params).await?;
        loop {
            let status = self.run_status(&handle).await?;
            let state = status.get("state").and_then(Value::as_str).unwrap_or("unknown").to_string();
            let elapsed = status.pointer("/progress/elapsed_secs").and_then(Value::as_f64).unwrap_or(0.0);
            bar.set_message(format!("{store_id} {job}: {state} ({handle}, {elapsed:.0}s)"));
            match state.as_str() {
                "succeeded" => return Ok(status.get("result").cloned().unwrap_or(json!({}))),
                "failed" => {
                    let error = status.get("error").and_then(Value::as_str).unwrap_or("failed");
                    bail!("{error} (run {handle})");
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

fn whoami() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

/// A spinner on a terminal, nothing otherwise.
pub fn spinner(message: String) -> ProgressBar {
    let bar =
        if std::io::stderr().is_terminal() { ProgressBar::new_spinner() } else { ProgressBar::hidden() };
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Runs a job through the daemon when one is up (leased, recorded with trigger `manual`),
/// in-process otherwise (on `local`, or an app built from `config`; trigger `cli`).
/// Returns the job's counts.
pub async fn run_via_daemon_or_local(
    config: &Config,
    local: Option<&App>,
    request: &JobRequest,
) -> anyhow::Result<Value> {
    if let Some(client) = DaemonClient::probe(config).await {
        let bar = spinner(format!("{} {}: via the daemon", request.store_id, request.job));
        let result = client.run(&request.store_id, request.job, &request.params, &bar).await;
        bar.finish_and_clear();
        return result;
    }
    let built;
    let app = match local {
        Some(app) => app,
        None => {
            built = App::build(config.clone(), &AppOptions::default()).await?;
            &built
        }
    };
    let request = JobRequest { trigger: Trigger::Cli, fence: None, ..request.clone() };
    let bar = spinner(format!("{} {}: running", request.store_id, request.job));
    let result = app.run(&request).await;
    bar.finish_and_clear();
    Ok(result?)
}

/// `sync orders` through a running daemon; `None` when no daemon answers (or the command
/// records fixtures, which only an in-process run can do).
pub async fn sync_orders_via_daemon(config: &Config, command: &Command) -> anyhow::Result<Option<ExitCode>> {
    let Command::Sync { command: SyncCommand::Orders { store, since, until, order, json, record } } = command
    else {
        return Ok(None);
    };
    if record.record.is_some() {
        return Ok(None);
    }
    let Some(client) = DaemonClient::probe(config).await else { return Ok(None) };
    let params = match (since, until, order) {
        (_, _, Some(order)) => json!({"order": order}),
        (Some(since), Some(until), None) => json!({
            "since": super::parse_time(since, "--since")?.to_rfc3339(),
            "until": super::parse_time(until, "--until")?.to_rfc3339(),
        }),
        _ => json!({}),
    };
    let stores: Vec<String> = match store {
        Some(store) => vec![store.clone()],
        None => config.stores.iter().filter(|s| !s.paused).map(|s| s.id.clone()).collect(),
    };
    let mut failed = false;
    let mut rows = Vec::new();
    for store_id in stores {
        let bar = spinner(format!("{store_id} orders: queued"));
        let result = client
            .run(&store_id, JobKind::Orders, &params, &bar)
            .await
            .and_then(|counts| Ok(serde_json::from_value::<OrderSyncReport>(counts)?));
        bar.finish_and_clear();
        failed |= result.is_err();
        rows.push((store_id, result));
    }
    eprintln!("run by the daemon at {}", client.base_url());
    super::print_order_reports(&rows, *json);
    Ok(Some(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }))
}
