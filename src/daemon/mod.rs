//! The daemon (`flagsync run`): fires each store's jobs on their cron schedules, runs a job
//! only while this instance holds its lease in the database (so several daemons sharing one
//! PostgreSQL never run the same `store/job` at once and split the stores between them),
//! picks up manual runs queued through the admin API, drains on shutdown and swaps in a
//! reloaded config between runs.
//!
//! Leases. Every `store/job` key has a row in `leases`. A keeper task, every quarter of the
//! lease period, heartbeats this instance, renews what it holds in one statement, and, when
//! it holds fewer keys than its fair share (keys / live instances), claims free or expired
//! ones; above its share it releases idle ones, so a new instance gets work. A run carries
//! its lease's epoch as a [`Fence`]; if a renewal shows the lease gone (or the database
//! cannot be reached for two thirds of a lease), the run is cancelled and recorded as lease
//! lost. A killed instance's leases expire one lease period after its last renewal and are
//! claimed by the others at their next keeper tick.

pub mod lockfile;
pub mod shutdown;
pub mod systemd;
mod view;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot};
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;

use crate::admin::OperatorInbox;
use crate::config::Config;
use crate::jobs::{Fence, JobError, JobKind, JobRequest, JobRunner, OPERATOR_SCOPE, Trigger};
use crate::store::{EpochMatch, Store, StoreError};

pub use lockfile::{FileLock, LockError};
pub use shutdown::Shutdown;
pub use view::{JobView, job_views};

/// A run on this instance running longer than this makes `/readyz` report the store stuck.
pub const STUCK_AFTER: Duration = Duration::from_secs(30 * 60);

/// How often queued manual runs are looked for (runs queued through this instance's own
/// admin API are picked up at once).
const REQUEST_POLL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Locked(#[from] LockError),
    #[error("admin api: {0}")]
    Admin(String),
}

/// What a configuration builds: the runner the daemon drives and the inbox the admin API's
/// operator endpoints forward to.
#[derive(Clone)]
pub struct Generation {
    pub config: Arc<Config>,
    pub runner: Arc<dyn JobRunner>,
    pub inbox: Arc<dyn OperatorInbox>,
}

/// Builds a new generation from a reloaded config (the app: new connectors).
pub type Rebuild = Arc<dyn Fn(Config) -> BoxFuture<'static, Result<Generation, String>> + Send + Sync>;

#[derive(Default)]
pub struct DaemonOptions {
    /// Reread on SIGHUP ([`Daemon::reload`]).
    pub config_path: Option<PathBuf>,
    pub rebuild: Option<Rebuild>,
    /// Serve the admin API on the config's `admin.listen` (when a token is configured).
    pub serve_admin: bool,
    /// The SQLite lock, when the caller took it already.
    pub lock: Option<FileLock>,
}

/// One job of one store (or of the operator scope).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobKey {
    pub store_id: String,
    pub job: JobKind,
}

impl JobKey {
    /// `store/job`: the lease key and the fence key.
    pub fn lease_key(&self) -> String {
        format!("{}/{}", self.store_id, self.job)
    }
}

/// Every job the config asks for: per-store jobs for each store, the others once under
/// [`OPERATOR_SCOPE`].
pub fn job_keys(config: &Config) -> Vec<JobKey> {
    let mut keys = Vec::new();
    for job in JobKind::ALL {
        if job.per_store() {
            for store in &config.stores {
                keys.push(JobKey { store_id: store.id.clone(), job });
            }
        } else {
            keys.push(JobKey { store_id: OPERATOR_SCOPE.to_string(), job });
        }
    }
    keys.sort();
    keys
}

/// Whether an orders run's counts say it stored new or changed orders.
fn orders_changed(counts: &Value) -> bool {
    ["inserted", "updated"].iter().any(|key| counts.get(key).and_then(Value::as_u64).unwrap_or(0) > 0)
}

/// The next time a cron expression fires after `after`. Expressions are read in Beijing
/// time, the time the stores and their operators live by.
pub fn next_fire(expression: &str, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let schedule = cron::Schedule::from_str(expression).ok()?;
    let local = after.with_timezone(&flagsync_market::time::BEIJING);
    schedule.after(&local).next().map(|t| t.with_timezone(&Utc))
}

/// Whether config or a stored pause keeps `key` from running on schedule.
pub fn paused_by(config: &Config, pauses: &HashSet<(String, String)>, key: &JobKey) -> Vec<&'static str> {
    let mut by = Vec::new();
    if let Some(store) = config.store(&key.store_id)
        && (store.paused || store.paused_jobs.contains(&key.job))
    {
        by.push("config");
    }
    if pauses.contains(&(key.store_id.clone(), "*".to_string()))
        || pauses.contains(&(key.store_id.clone(), key.job.as_str().to_string()))
    {
        by.push("api");
    }
    by
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cancel {
    LeaseLost,
    Shutdown,
}

struct Running {
    cancel: Option<oneshot::Sender<Cancel>>,
    abort: Option<AbortHandle>,
    since: Instant,
    trigger: &'static str,
}

#[derive(Default)]
struct State {
    /// lease key -> epoch this instance holds it at
    held: HashMap<String, i64>,
    /// When the last successful renewal was sent (leases last at least a period from then).
    renewed_at: Option<Instant>,
    running: HashMap<String, Running>,
    /// lease key -> (cron expression, next fire)
    next: HashMap<String, (String, DateTime<Utc>)>,
    /// Jobs the runner said are not available yet (skipped quietly until a reload).
    unavailable: HashSet<JobKind>,
    pauses: HashSet<(String, String)>,
    last_tick: Option<DateTime<Utc>>,
    /// Runs to start as soon as their job is idle (lease key -> job): stock runs after an
    /// orders pull changed orders. A key already running stays queued and runs after it.
    follow_ups: HashMap<String, JobKey>,
}

struct Inner {
    instance: String,
    store: Store,
    generation: RwLock<Generation>,
    state: Mutex<State>,
    /// Wakes the scheduler: a manual run was queued, a run ended, a config was swapped.
    wake: Notify,
    /// Signalled whenever a run ends (the drain waits on it).
    idle: Notify,
    shutdown: Shutdown,
    /// Stops the keeper and the admin API, after the drain.
    stopped: Shutdown,
    config_path: Option<PathBuf>,
    rebuild: Option<Rebuild>,
}

/// A cloneable handle on a running daemon, for the admin API.
#[derive(Clone)]
pub struct Control {
    inner: Arc<Inner>,
}

/// A running daemon.
pub struct Daemon {
    control: Control,
    tasks: Vec<JoinHandle<()>>,
    admin_addr: Option<SocketAddr>,
    _lock: Option<FileLock>,
}

fn default_instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "flagsync".into());
    format!("{host}-{}", std::process::id())
}

impl Daemon {
    /// Takes the SQLite lock (unless given), claims a first share of the leases, and starts
    /// the keeper, the scheduler and (if asked) the admin API.
    pub async fn start(
        generation: Generation,
        store: Store,
        options: DaemonOptions,
    ) -> Result<Self, DaemonError> {
        let config = generation.config.clone();
        let lock = match options.lock {
            Some(lock) => Some(lock),
            None => lockfile::lock_database(&config.database.url)?,
        };
        let instance = config.daemon.instance_id.clone().unwrap_or_else(default_instance_id);
        let inner = Arc::new(Inner {
            instance,
            store,
            generation: RwLock::new(generation),
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            idle: Notify::new(),
            shutdown: Shutdown::new(),
            stopped: Shutdown::new(),
            config_path: options.config_path,
            rebuild: options.rebuild,
        });
        // Bind before claiming anything, so a busy port leaves no lease behind.
        let admin = match (&config.admin.token, options.serve_admin) {
            (Some(token), true) => {
                let listener = tokio::net::TcpListener::bind(config.admin.listen).await.map_err(|e| {
                    DaemonError::Admin(format!("cannot listen on {}: {e}", config.admin.listen))
                })?;
                Some((listener, token.clone()))
            }
            (None, true) => {
                tracing::warn!("admin api off: set admin.token to turn it on");
                None
            }
            (_, false) => None,
        };
        inner.keep_leases().await;
        let mut tasks = Vec::new();
        let mut admin_addr = None;
        if let Some((listener, token)) = admin {
            admin_addr = listener.local_addr().ok();
            let router = crate::admin::router(Control { inner: inner.clone() }, token);
            let stopped = inner.stopped.clone();
            tasks.push(tokio::spawn(async move {
                let serve =
                    axum::serve(listener, router).with_graceful_shutdown(async move { stopped.wait().await });
                if let Err(error) = serve.await {
                    tracing::error!(error = %error, "admin api stopped");
                }
            }));
            tracing::info!(listen = ?admin_addr, "admin api listening");
        }
        tasks.push(tokio::spawn(inner.clone().keeper()));
        tasks.push(tokio::spawn(inner.clone().scheduler()));
        let summary = inner.status_line();
        tracing::info!(instance = %inner.instance, "daemon started");
        systemd::ready(&summary);
        Ok(Self { control: Control { inner }, tasks, admin_addr, _lock: lock })
    }

    pub fn control(&self) -> Control {
        self.control.clone()
    }

    pub fn instance_id(&self) -> &str {
        &self.control.inner.instance
    }

    /// Where the admin API listens, when it does.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// What SIGTERM does: stop scheduling and start draining ([`Daemon::wait`] finishes it).
    pub fn trigger_shutdown(&self) {
        self.control.inner.shutdown.trigger();
    }

    pub fn shutdown_signal(&self) -> Shutdown {
        self.control.inner.shutdown.clone()
    }

    /// Rereads the config file and swaps it in between runs (SIGHUP). An invalid config is
    /// refused, every problem logged, and the old one kept.
    pub async fn reload(&self) -> Result<(), String> {
        self.control.reload().await
    }

    /// Waits for shutdown, then drains: in-flight runs get the drain timeout to finish and
    /// are cancelled after it (a cancelled run loses nothing: cursors only move with
    /// committed data); then leases are released and the instance unregistered.
    pub async fn wait(mut self) -> Result<(), DaemonError> {
        let inner = self.control.inner.clone();
        inner.shutdown.wait().await;
        systemd::stopping("draining in-flight runs");
        let drain = inner.generation().config.daemon.drain_timeout;
        tracing::info!(drain_secs = drain.as_secs(), running = inner.lock().running.len(), "shutting down");
        let deadline = Instant::now() + drain;
        if !inner.wait_idle(deadline).await {
            let cancelled = inner.cancel_all(Cancel::Shutdown);
            tracing::warn!(cancelled, "drain timeout reached: cancelling the runs still in flight");
            inner.wait_idle(Instant::now() + Duration::from_secs(10)).await;
        }
        inner.stopped.trigger();
        for mut task in self.tasks.drain(..) {
            // The admin API waits for open requests; a client that hangs on does not hold
            // the exit up for long.
            if tokio::time::timeout(Duration::from_secs(5), &mut task).await.is_err() {
                task.abort();
            }
        }
        // Only now, with the lease keeper stopped, can no renewal or claim race the release.
        let held: Vec<(String, i64)> = inner.lock().held.drain().collect();
        for (key, epoch) in held {
            if let Err(error) = inner.store.release_lease(&key, &inner.instance, epoch).await {
                tracing::warn!(key, error = %error, "could not release a lease; it expires by itself");
            }
        }
        if let Err(error) = inner.store.remove_instance(&inner.instance).await {
            tracing::warn!(error = %error, "could not unregister the instance");
        }
        tracing::info!("daemon stopped");
        Ok(())
    }

    /// Stops every task at once, releasing nothing: what `kill -9` leaves behind (tests).
    pub fn kill(mut self) {
        let inner = &self.control.inner;
        inner.shutdown.trigger();
        for running in inner.lock().running.values() {
            if let Some(abort) = &running.abort {
                abort.abort();
            }
        }
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Control {
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn instance_id(&self) -> &str {
        &self.inner.instance
    }

    pub fn generation(&self) -> Generation {
        self.inner.generation()
    }

    pub fn config(&self) -> Arc<Config> {
        self.inner.generation().config
    }

    /// Every job with its schedule, pauses, next fire time, last run and lease holder.
    pub async fn jobs(&self) -> Result<Vec<JobView>, StoreError> {
        let config = self.config();
        let mut views = job_views(&self.inner.store, &config, Utc::now()).await?;
        let state = self.inner.lock();
        for view in &mut views {
            let key = format!("{}/{}", view.store, view.job);
            view.running_here = state.running.contains_key(&key);
        }
        Ok(views)
    }

    /// Queues a manual run; the holder of the job's lease runs it when the job is idle.
    pub async fn request_run(
        &self,
        store_id: &str,
        job: JobKind,
        params: &Value,
        requested_by: &str,
    ) -> Result<i64, StoreError> {
        let id = self.inner.store.queue_run_request(store_id, job.as_str(), params, requested_by).await?;
        self.inner.wake.notify_one();
        Ok(id)
    }

    /// Pauses or resumes a store or one of its jobs (persisted; manual runs still work).
    pub async fn set_paused(
        &self,
        store_id: &str,
        job: Option<JobKind>,
        paused: bool,
    ) -> Result<(), StoreError> {
        self.inner.store.set_paused(store_id, job.map(JobKind::as_str), paused).await?;
        self.inner.refresh_pauses().await;
        Ok(())
    }

    /// Why the daemon is not ready, if it is not: the database unreachable or a run stuck.
    pub async fn not_ready(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(error) = self.inner.store.ping().await {
            problems.push(format!("database unreachable: {error}"));
        }
        let state = self.inner.lock();
        for (key, running) in &state.running {
            if running.since.elapsed() > STUCK_AFTER {
                problems.push(format!(
                    "{key} stuck: its {} run has been going for {} min",
                    running.trigger,
                    running.since.elapsed().as_secs() / 60
                ));
            }
        }
        if self.inner.shutdown.is_triggered() {
            problems.push("shutting down".into());
        }
        problems
    }

    /// Keys this instance holds, with their epochs.
    pub fn held_leases(&self) -> HashMap<String, i64> {
        self.inner.lock().held.clone()
    }

    /// Rereads the config file and swaps the new generation in.
    pub async fn reload(&self) -> Result<(), String> {
        self.inner.reload().await
    }

    /// Swaps a generation in directly (tests, or a caller that built it).
    pub fn swap(&self, generation: Generation) {
        self.inner.swap(generation);
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep going with it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn generation(&self) -> Generation {
        self.generation.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn swap(&self, generation: Generation) {
        *self.generation.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = generation;
        let mut state = self.lock();
        state.unavailable.clear();
        state.next.clear();
        drop(state);
        self.wake.notify_one();
    }

    fn status_line(&self) -> String {
        let state = self.lock();
        format!(
            "{}: holding {} job leases, {} runs in progress{}",
            self.instance,
            state.held.len(),
            state.running.len(),
            state.last_tick.map(|t| format!(", last tick {}", t.format("%H:%M:%S UTC"))).unwrap_or_default()
        )
    }

    async fn reload(&self) -> Result<(), String> {
        let Some(path) = &self.config_path else {
            return Err("no config file to reload from".into());
        };
        systemd::reloading();
        let result = self.reload_from(path).await;
        let summary = self.status_line();
        match &result {
            Ok(()) => systemd::ready(&summary),
            Err(error) => systemd::ready(&format!("{summary}; config reload refused: {error}")),
        }
        result
    }

    async fn reload_from(&self, path: &std::path::Path) -> Result<(), String> {
        let config = match crate::config::load(path) {
            Ok(config) => config,
            Err(error) => {
                for problem in &error.problems {
                    tracing::error!(key = %problem.path, problem = %problem.message, "config reload refused");
                }
                return Err(format!(
                    "{} has {} problem(s); still running on the old config",
                    error.source_name,
                    error.problems.len()
                ));
            }
        };
        let old = self.generation().config;
        if config.database.url != old.database.url || config.admin.listen != old.admin.listen {
            tracing::warn!("database.url and admin.listen changes take effect on restart only");
        }
        let generation = match &self.rebuild {
            Some(rebuild) => rebuild(config).await.map_err(|e| {
                tracing::error!(error = %e, "config reload refused: the app could not be built");
                format!("the new config could not be applied: {e}")
            })?,
            None => {
                let current = self.generation();
                Generation { config: Arc::new(config), ..current }
            }
        };
        self.swap(generation);
        tracing::info!(path = %path.display(), "config reloaded");
        Ok(())
    }

    async fn refresh_pauses(&self) {
        match self.store.pauses().await {
            Ok(pauses) => self.lock().pauses = pauses.into_iter().collect(),
            Err(error) => tracing::warn!(error = %error, "could not read pauses"),
        }
    }

    /// Sends `reason` to runs of the given keys (all when None); returns how many.
    fn cancel(&self, keys: Option<&[String]>, reason: Cancel) -> usize {
        let mut state = self.lock();
        let mut count = 0;
        for (key, running) in state.running.iter_mut() {
            if keys.is_some_and(|keys| !keys.contains(key)) {
                continue;
            }
            if let Some(cancel) = running.cancel.take() {
                let _ = cancel.send(reason);
                count += 1;
            }
        }
        count
    }

    fn cancel_all(&self, reason: Cancel) -> usize {
        self.cancel(None, reason)
    }

    /// Waits until no run is in flight, or the deadline; true if idle.
    async fn wait_idle(&self, deadline: Instant) -> bool {
        loop {
            let notified = self.idle.notified();
            if self.lock().running.is_empty() {
                return true;
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => return self.lock().running.is_empty(),
            }
        }
    }

    async fn keeper(self: Arc<Self>) {
        loop {
            let period = self.generation().config.daemon.lease / 4;
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = self.stopped.wait() => return,
            }
            self.keep_leases().await;
        }
    }

    /// One keeper tick: heartbeat, renew, drop what was lost, claim or release toward the
    /// fair share.
    async fn keep_leases(&self) {
        let generation = self.generation();
        let lease = generation.config.daemon.lease;
        let sent_at = Instant::now();
        let info = json!({"pid": std::process::id(), "version": env!("CARGO_PKG_VERSION")}).to_string();
        let renewal = tokio::time::timeout(lease / 4, async {
            self.store.heartbeat_instance(&self.instance, &info).await?;
            self.store.renew_leases(&self.instance, lease).await
        })
        .await;
        let renewed = match renewal {
            Ok(Ok(renewed)) => renewed,
            failure => {
                let error = match failure {
                    Ok(Err(error)) => error.to_string(),
                    _ => "timed out".to_string(),
                };
                let mut state = self.lock();
                let expired = state.renewed_at.is_none_or(|at| at.elapsed() >= lease * 2 / 3);
                tracing::warn!(error = %error, giving_up = expired, "could not renew job leases");
                if expired && !state.held.is_empty() {
                    let lost: Vec<String> = state.held.drain().map(|(k, _)| k).collect();
                    drop(state);
                    self.cancel(Some(&lost), Cancel::LeaseLost);
                }
                return;
            }
        };
        let renewed: HashMap<String, i64> = renewed.into_iter().collect();
        let (lost, adopted): (Vec<String>, Vec<(String, i64)>) = {
            let mut state = self.lock();
            let lost = state
                .held
                .iter()
                .filter(|(k, e)| renewed.get(*k) != Some(*e))
                .map(|(k, _)| k.clone())
                .collect();
            // Leases under this instance id that this process never took: an earlier process
            // with the same id held them and died (killed, crashed) before they expired.
            let adopted = renewed
                .iter()
                .filter(|(k, _)| !state.held.contains_key(*k))
                .map(|(k, e)| (k.clone(), *e))
                .collect();
            state.held = renewed;
            state.renewed_at = Some(sent_at);
            state.last_tick = Some(Utc::now());
            (lost, adopted)
        };
        for (key, epoch) in adopted {
            // Its runs under that epoch (and earlier) were abandoned with it.
            tracing::info!(key, epoch, "job lease taken back from an earlier process of this instance");
            self.close_abandoned(&key, epoch.saturating_add(1)).await;
        }
        if !lost.is_empty() {
            tracing::warn!(keys = ?lost, "job leases lost to another instance");
            self.cancel(Some(&lost), Cancel::LeaseLost);
        }
        self.refresh_pauses().await;
        if !self.shutdown.is_triggered() {
            self.balance(&generation.config, lease).await;
        }
        let held = self.lock().held.len();
        crate::metrics::set_leases_held(held);
        systemd::status(&self.status_line());
    }

    async fn balance(&self, config: &Config, lease: Duration) {
        let keys: Vec<String> = job_keys(config).iter().map(JobKey::lease_key).collect();
        // Leases of jobs no longer configured go back at once (when idle).
        let stale: Vec<(String, i64)> = {
            let state = self.lock();
            state
                .held
                .iter()
                .filter(|(k, _)| !keys.contains(k) && !state.running.contains_key(*k))
                .map(|(k, e)| (k.clone(), *e))
                .collect()
        };
        for (key, epoch) in &stale {
            self.release(key, *epoch).await;
        }
        let live = match self.store.live_instances(lease).await {
            Ok(live) => usize::try_from(live).unwrap_or(1).max(1),
            Err(error) => {
                tracing::warn!(error = %error, "could not count live instances");
                return;
            }
        };
        let share = keys.len().div_ceil(live);
        let (held, free): (usize, Vec<String>) = {
            let state = self.lock();
            let held = state.held.keys().filter(|k| keys.contains(k)).count();
            (held, keys.iter().filter(|k| !state.held.contains_key(*k)).cloned().collect())
        };
        if held < share {
            match self.store.claim_leases(&self.instance, &free, share - held, lease).await {
                Ok(claimed) => {
                    for (key, epoch) in claimed {
                        tracing::info!(key, epoch, "job lease taken");
                        self.lock().held.insert(key.clone(), epoch);
                        self.close_abandoned(&key, epoch).await;
                    }
                }
                Err(error) => tracing::warn!(error = %error, "could not claim job leases"),
            }
        } else if held > share {
            let extra: Vec<(String, i64)> = {
                let state = self.lock();
                let mut idle: Vec<(String, i64)> = state
                    .held
                    .iter()
                    .filter(|(k, _)| !state.running.contains_key(*k))
                    .map(|(k, e)| (k.clone(), *e))
                    .collect();
                idle.sort();
                idle.into_iter().rev().take(held - share).collect()
            };
            for (key, epoch) in extra {
                tracing::info!(key, "job lease handed back for another instance to take");
                self.release(&key, epoch).await;
            }
        }
    }

    async fn release(&self, key: &str, epoch: i64) {
        {
            let mut state = self.lock();
            if state.running.contains_key(key) {
                return;
            }
            state.held.remove(key);
        }
        if let Err(error) = self.store.release_lease(key, &self.instance, epoch).await {
            tracing::warn!(key, error = %error, "could not release a lease; it expires by itself");
        }
    }

    /// After taking a lease over: runs and manual requests an earlier holder left running
    /// (it died) are closed as failed, so the runs table tells the truth.
    async fn close_abandoned(&self, key: &str, epoch: i64) {
        let Some((store_id, job)) = key.rsplit_once('/') else { return };
        let error = "abandoned: the daemon running it stopped renewing its lease";
        if let Err(e) =
            self.store.fail_fenced_runs(store_id, job, key, EpochMatch::Before(epoch), error).await
        {
            tracing::warn!(key, error = %e, "could not close abandoned runs");
        }
        if let Err(e) = self.store.fail_abandoned_requests(store_id, job, epoch, error).await {
            tracing::warn!(key, error = %e, "could not close abandoned manual runs");
        }
    }

    async fn scheduler(self: Arc<Self>) {
        let watchdog = systemd::watchdog_interval();
        let mut next_ping = Instant::now();
        let mut next_poll = Instant::now();
        while !self.shutdown.is_triggered() {
            let generation = self.generation();
            let now = Utc::now();
            let mut due = Vec::new();
            let mut earliest = Instant::now() + REQUEST_POLL;
            {
                let mut state = self.lock();
                for key in job_keys(&generation.config) {
                    let lease_key = key.lease_key();
                    let expression = generation.config.schedule(&key.store_id, key.job).to_string();
                    let fresh = match state.next.get(&lease_key) {
                        Some((expr, _)) if *expr == expression => None,
                        _ => Some(next_fire(&expression, now)),
                    };
                    if let Some(first) = fresh {
                        match first {
                            Some(at) => {
                                state.next.insert(lease_key.clone(), (expression.clone(), at));
                            }
                            None => {
                                tracing::warn!(key = %lease_key, schedule = %expression, "schedule never fires");
                                continue;
                            }
                        }
                    }
                    let Some((_, at)) = state.next.get(&lease_key).cloned() else { continue };
                    let at = if at <= now {
                        let following = next_fire(&expression, now).unwrap_or(DateTime::<Utc>::MAX_UTC);
                        state.next.insert(lease_key.clone(), (expression.clone(), following));
                        if state.held.contains_key(&lease_key)
                            && !state.unavailable.contains(&key.job)
                            && paused_by(&generation.config, &state.pauses, &key).is_empty()
                        {
                            due.push(key.clone());
                        }
                        following
                    } else {
                        at
                    };
                    let wait = (at - now).to_std().unwrap_or_default();
                    earliest = earliest.min(Instant::now() + wait);
                }
            }
            for key in self.due_follow_ups(&generation) {
                if self.start_run(&generation, key.clone(), Trigger::FollowUp, json!({}), None) {
                    tracing::debug!(key = %key.lease_key(), "follow-up run started");
                }
            }
            for key in due {
                if !self.start_run(&generation, key.clone(), Trigger::Schedule, json!({}), None) {
                    tracing::debug!(key = %key.lease_key(), "scheduled run skipped: the previous one is still running");
                }
            }
            if Instant::now() >= next_poll {
                self.pick_up_requests(&generation).await;
                next_poll = Instant::now() + REQUEST_POLL;
            }
            if let Some(interval) = watchdog
                && Instant::now() >= next_ping
            {
                systemd::watchdog();
                next_ping = Instant::now() + interval;
                earliest = earliest.min(next_ping);
            }
            let woken = self.wake.notified();
            tokio::select! {
                _ = tokio::time::sleep_until(earliest) => {}
                _ = woken => { next_poll = Instant::now(); }
                _ = self.shutdown.wait() => {}
            }
        }
    }

    /// Follow-ups whose job is idle now; those whose job is running stay queued. A
    /// follow-up for a job this instance no longer holds, or that is paused, is dropped
    /// (its holder's schedule covers it).
    fn due_follow_ups(&self, generation: &Generation) -> Vec<JobKey> {
        let mut state = self.lock();
        let idle: Vec<String> =
            state.follow_ups.keys().filter(|key| !state.running.contains_key(*key)).cloned().collect();
        let mut due = Vec::new();
        for lease_key in idle {
            let Some(key) = state.follow_ups.remove(&lease_key) else { continue };
            if state.held.contains_key(&lease_key)
                && !state.unavailable.contains(&key.job)
                && paused_by(&generation.config, &state.pauses, &key).is_empty()
            {
                due.push(key);
            }
        }
        due
    }

    /// After an orders run that stored new or changed orders, every store's stock job is
    /// due: reservations moved, and in a shared pool another store's quantity too. Jobs
    /// this instance holds start as soon as they are idle; the others are queued as
    /// manual requests for their holder (unless one is queued already).
    async fn follow_orders(&self, generation: &Generation, after: &str) {
        let stock: Vec<JobKey> =
            job_keys(&generation.config).into_iter().filter(|key| key.job == JobKind::Stock).collect();
        let mut remote = Vec::new();
        {
            let mut state = self.lock();
            for key in stock {
                if !paused_by(&generation.config, &state.pauses, &key).is_empty() {
                    continue;
                }
                if state.held.contains_key(&key.lease_key()) {
                    state.follow_ups.insert(key.lease_key(), key);
                } else {
                    remote.push(key);
                }
            }
        }
        if remote.is_empty() {
            return;
        }
        let queued = match self.store.queued_run_requests().await {
            Ok(queued) => queued,
            Err(error) => {
                tracing::warn!(error = %error, "could not read queued runs for stock follow-ups");
                return;
            }
        };
        for key in remote {
            let already =
                queued.iter().any(|(_, store, job)| *store == key.store_id && job == key.job.as_str());
            if already {
                continue;
            }
            let by = format!("follow-up after orders of {after}");
            if let Err(error) =
                self.store.queue_run_request(&key.store_id, key.job.as_str(), &json!({}), &by).await
            {
                tracing::warn!(key = %key.lease_key(), error = %error, "could not queue a stock follow-up");
            }
        }
    }

    /// Starts queued manual runs of jobs this instance holds and that are idle.
    async fn pick_up_requests(self: &Arc<Self>, generation: &Generation) {
        let queued = match self.store.queued_run_requests().await {
            Ok(queued) => queued,
            Err(error) => {
                tracing::warn!(error = %error, "could not read queued manual runs");
                return;
            }
        };
        for (id, store_id, job) in queued {
            let Some(job) = JobKind::parse(&job) else { continue };
            let key = JobKey { store_id, job };
            let epoch = {
                let state = self.lock();
                if self.shutdown.is_triggered() || state.running.contains_key(&key.lease_key()) {
                    continue;
                }
                match state.held.get(&key.lease_key()) {
                    Some(epoch) => *epoch,
                    None => continue,
                }
            };
            match self.store.claim_run_request(id, &self.instance, epoch).await {
                Ok(Some(request)) => {
                    let trigger = Trigger::Manual { by: request.requested_by.clone() };
                    if !self.start_run(generation, key, trigger, request.params, Some(id)) {
                        let error = "the job's lease moved before the run could start; ask again";
                        let _ = self.store.finish_run_request(id, false, &json!({}), Some(error)).await;
                    }
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(id, error = %error, "could not claim a manual run"),
            }
        }
    }

    /// Starts a run of `key` under its lease, unless one is in flight or the lease is not
    /// held; returns whether it started.
    fn start_run(
        self: &Arc<Self>,
        generation: &Generation,
        key: JobKey,
        trigger: Trigger,
        params: Value,
        request_id: Option<i64>,
    ) -> bool {
        let lease_key = key.lease_key();
        let (tx, rx) = oneshot::channel();
        let epoch = {
            let mut state = self.lock();
            if self.shutdown.is_triggered() || state.running.contains_key(&lease_key) {
                return false;
            }
            let Some(epoch) = state.held.get(&lease_key).copied() else { return false };
            state.running.insert(
                lease_key.clone(),
                Running { cancel: Some(tx), abort: None, since: Instant::now(), trigger: trigger.label() },
            );
            crate::metrics::set_running(state.running.len());
            epoch
        };
        let request = JobRequest {
            store_id: key.store_id.clone(),
            job: key.job,
            trigger,
            params,
            fence: Some(Fence { key: lease_key.clone(), epoch }),
        };
        let task = tokio::spawn(self.clone().run(generation.runner.clone(), request, rx, request_id));
        if let Some(running) = self.lock().running.get_mut(&lease_key) {
            running.abort = Some(task.abort_handle());
        }
        true
    }

    async fn run(
        self: Arc<Self>,
        runner: Arc<dyn JobRunner>,
        request: JobRequest,
        cancel: oneshot::Receiver<Cancel>,
        request_id: Option<i64>,
    ) {
        let Some(fence) = request.fence.clone() else { return };
        let (store_id, job) = (request.store_id.clone(), request.job);
        let span =
            tracing::info_span!("run", store = %store_id, job = %job, trigger = request.trigger.label());
        let started = Instant::now();
        tracing::debug!(parent: &span, epoch = fence.epoch, "run started");
        let ended = tokio::select! {
            result = runner.run(&request) => Ok(result),
            reason = cancel => Err(reason.unwrap_or(Cancel::Shutdown)),
        };
        let (outcome, counts, error) = match ended {
            Ok(Ok(counts)) => ("succeeded", counts, None),
            Ok(Err(JobError::Invalid(message))) if message.ends_with("is not available yet") => {
                let first = self.lock().unavailable.insert(job);
                if first {
                    tracing::debug!(parent: &span, "job not available yet: skipped until a reload");
                }
                ("unavailable", json!({}), Some(message))
            }
            Ok(Err(error @ JobError::LeaseLost(_))) => {
                tracing::warn!(parent: &span, error = %error, "run stopped: its writes were fenced off");
                ("lease_lost", json!({}), Some(error.to_string()))
            }
            Ok(Err(error)) => {
                tracing::warn!(parent: &span, error = %error, "run failed");
                ("failed", json!({}), Some(error.to_string()))
            }
            Err(reason) => {
                let message = match reason {
                    Cancel::LeaseLost => "lease lost: another instance took the job over; run cancelled",
                    Cancel::Shutdown => {
                        "cancelled at shutdown after the drain timeout; resumes from its cursor"
                    }
                };
                tracing::warn!(parent: &span, reason = message, "run cancelled");
                let closed = self
                    .store
                    .fail_fenced_runs(
                        &store_id,
                        job.as_str(),
                        &fence.key,
                        EpochMatch::Exactly(fence.epoch),
                        message,
                    )
                    .await;
                if let Err(e) = closed {
                    tracing::warn!(parent: &span, error = %e, "could not record the cancelled run");
                }
                let outcome = if reason == Cancel::LeaseLost { "lease_lost" } else { "cancelled" };
                (outcome, json!({}), Some(message.to_string()))
            }
        };
        if outcome != "unavailable" {
            crate::metrics::record_run(&store_id, job.as_str(), outcome, started.elapsed(), &counts);
        }
        if job == JobKind::Orders && outcome == "succeeded" && orders_changed(&counts) {
            self.follow_orders(&self.generation(), &store_id).await;
        }
        if let Some(id) = request_id
            && let Err(e) =
                self.store.finish_run_request(id, outcome == "succeeded", &counts, error.as_deref()).await
        {
            tracing::warn!(parent: &span, id, error = %e, "could not record the end of a manual run");
        }
        tracing::debug!(parent: &span, outcome, "run ended");
        {
            let mut state = self.lock();
            state.running.remove(&fence.key);
            crate::metrics::set_running(state.running.len());
        }
        self.idle.notify_waiters();
        self.wake.notify_one();
    }
}
