//! The daemon: cron scheduling with no overlap, leases across instances on PostgreSQL (spread,
//! hand-over when one is killed), the SQLite single-daemon lock, config reloads, every admin
//! endpoint, and the real binary under SIGTERM, SIGHUP, SIGKILL and a CLI sync routed
//! through it. Waits poll a condition with a deadline; nothing sleeps to wait for work.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use flagsync::admin::NotAvailableInbox;
use flagsync::config::Config;
use flagsync::daemon::{Daemon, DaemonOptions, Generation};
use flagsync::jobs::{JobError, JobKind, JobRequest, JobRunner};
use flagsync::sandbox::EmbeddedSandbox;
use flagsync::store::{JobRun, RunOutcome, Store, StoreOptions};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::exactly_once::{store_config, test_config};
use crate::support::{postgres_url, unique_schema};

const TOKEN: &str = "test-admin-token-0123456789";

/// Stands in for the app: records each orders run in `job_runs` like the app does, working
/// for `work`; every other job is "not available yet", as in the app today.
struct FakeRunner {
    store: Store,
    work: Duration,
}

#[async_trait]
impl JobRunner for FakeRunner {
    async fn run(&self, request: &JobRequest) -> Result<Value, JobError> {
        if request.job != JobKind::Orders {
            return Err(JobError::Invalid(format!("job {} is not available yet", request.job)));
        }
        let params = json!({"params": request.params, "fence": request.fence});
        let failed = |e: flagsync::store::StoreError| JobError::Failed(e.to_string());
        let id = self
            .store
            .start_run(&request.store_id, "orders", request.trigger.label(), &params)
            .await
            .map_err(failed)?;
        tokio::time::sleep(self.work).await;
        let counts = json!({"inserted": 1, "updated": 0});
        self.store.finish_run(id, RunOutcome::Succeeded, &counts, None).await.map_err(failed)?;
        Ok(json!({"inserted": 1, "updated": 0, "run_id": id}))
    }
}

/// Polls `check` until it yields a value, or panics after `limit`.
async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < end, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Orders every second; every other job yearly, so only orders runs in a test's lifetime.
fn schedules() -> BTreeMap<JobKind, String> {
    JobKind::ALL
        .into_iter()
        .map(|job| (job, if job == JobKind::Orders { "* * * * * *" } else { "0 0 0 1 1 *" }.to_string()))
        .collect()
}

fn daemon_config(url: &str, stores: &[&str], instance: &str, lease: Duration) -> Config {
    let mut config = test_config(stores.iter().map(|s| store_config(s, "taobao")).collect());
    config.database.url = url.to_string();
    config.daemon.instance_id = Some(instance.to_string());
    config.daemon.lease = lease;
    config.daemon.drain_timeout = Duration::from_secs(5);
    config.daemon.schedules = schedules();
    config.admin.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.admin.token = Some(SecretString::from(TOKEN));
    config
}

async fn start(store: &Store, config: Config, work: Duration, serve_admin: bool) -> Daemon {
    let generation = Generation {
        config: Arc::new(config),
        runner: Arc::new(FakeRunner { store: store.clone(), work }),
        inbox: Arc::new(NotAvailableInbox),
    };
    Daemon::start(generation, store.clone(), DaemonOptions { serve_admin, ..DaemonOptions::default() })
        .await
        .unwrap()
}

async fn sqlite_store(dir: &Path) -> (Store, String) {
    let url = format!("sqlite://{}", dir.join("flagsync.db").display());
    (Store::open(&StoreOptions::new(url.clone())).await.unwrap(), url)
}

/// Checks, from the runs table, that no store's job ever ran twice at once; returns the
/// number of finished runs per (store, job).
async fn assert_no_overlap(store: &Store) -> HashMap<(String, String), usize> {
    let runs = store.runs_of(None, None, 100_000).await.unwrap();
    let mut by_job: HashMap<(String, String), Vec<JobRun>> = HashMap::new();
    for run in runs {
        by_job.entry((run.store_id.clone(), run.job.clone())).or_default().push(run);
    }
    let mut finished = HashMap::new();
    for (key, mut runs) in by_job {
        runs.sort_by_key(|r| (r.started_at, r.id));
        for pair in runs.windows(2) {
            let end = pair[0].finished_at.unwrap_or_else(|| {
                panic!("{key:?}: run {} has no end, yet run {} started after it", pair[0].id, pair[1].id)
            });
            assert!(
                end <= pair[1].started_at,
                "{key:?}: run {} ({} .. {end}) overlaps run {} (from {})",
                pair[0].id,
                pair[0].started_at,
                pair[1].id,
                pair[1].started_at
            );
        }
        finished.insert(key, runs.iter().filter(|r| r.finished_at.is_some()).count());
    }
    finished
}

async fn succeeded_runs(store: &Store, store_id: &str, trigger: &str) -> Vec<JobRun> {
    let runs = store.runs_of(Some(store_id), Some("orders"), 10_000).await.unwrap();
    runs.into_iter().filter(|r| r.outcome == "succeeded" && r.trigger == trigger).collect()
}

#[tokio::test]
async fn scheduled_runs_fire_by_cron_and_a_job_never_overlaps_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (store, url) = sqlite_store(dir.path()).await;
    // Each run takes 1.3 s against a 1 s schedule: firings come while it still runs.
    let began = Utc::now();
    let daemon = start(
        &store,
        daemon_config(&url, &["tmall"], "solo", Duration::from_secs(3)),
        Duration::from_millis(1300),
        false,
    )
    .await;
    let runs = eventually("three scheduled runs", Duration::from_secs(15), || async {
        let runs = succeeded_runs(&store, "tmall", "schedule").await;
        (runs.len() >= 3).then_some(runs)
    })
    .await;
    daemon.trigger_shutdown();
    daemon.wait().await.unwrap();
    let finished = assert_no_overlap(&store).await;
    let elapsed_ms = (Utc::now() - began).num_milliseconds();
    let count = finished[&("tmall".to_string(), "orders".to_string())];
    // Runs never overlap (checked above), so at most one 1.3 s run fits in each 1.3 s.
    assert!(
        (count as i64) * 1300 <= elapsed_ms + 1300,
        "{count} runs in {elapsed_ms} ms: a firing must be skipped while the job runs"
    );
    for run in &runs {
        assert_eq!(run.params["fence"]["key"], "tmall/orders", "every leased run carries its fence");
        assert!(run.params["fence"]["epoch"].as_i64().unwrap() >= 1);
    }
    // Shutdown released the leases and unregistered the instance.
    assert!(store.leases().await.unwrap().iter().all(|l| l.expires_at < Utc::now()));
}

#[tokio::test]
async fn a_second_daemon_on_the_same_sqlite_file_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let (store, url) = sqlite_store(dir.path()).await;
    let first = start(
        &store,
        daemon_config(&url, &["tmall"], "first", Duration::from_secs(5)),
        Duration::ZERO,
        false,
    )
    .await;
    let generation = Generation {
        config: Arc::new(daemon_config(&url, &["tmall"], "second", Duration::from_secs(5))),
        runner: Arc::new(FakeRunner { store: store.clone(), work: Duration::ZERO }),
        inbox: Arc::new(NotAvailableInbox),
    };
    let refused = Daemon::start(generation, store.clone(), DaemonOptions::default()).await;
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("already running"), "{message}");
    assert!(message.contains("flagsync.db"), "the message names the database: {message}");
    assert!(message.contains(&format!("pid {}", std::process::id())), "and the pid holding it: {message}");
    first.trigger_shutdown();
    first.wait().await.unwrap();
}

/// A PostgreSQL schema of its own, dropped at the end.
struct PgSchema {
    url: String,
    schema: String,
}

impl PgSchema {
    async fn new() -> Option<Self> {
        let Some(url) = postgres_url() else {
            eprintln!("postgres daemon test NOT RUN: set {}", crate::support::PG_ENV);
            return None;
        };
        let schema = PgSchema { url, schema: unique_schema() };
        schema.store().await;
        Some(schema)
    }

    async fn store(&self) -> Store {
        let mut options = StoreOptions::new(self.url.clone());
        options.schema = Some(self.schema.clone());
        options.max_connections = 4;
        Store::open(&options).await.unwrap()
    }

    /// A URL that puts a separate process on this schema.
    fn url_for_process(&self) -> String {
        let join = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{join}options=-c%20search_path%3D{}", self.url, self.schema)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let pool = sqlx::PgPool::connect(&url).await.ok()?;
                let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
                sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await.ok()
            })
        })
        .join();
    }
}

/// Unexpired lease holders by key.
async fn holders(store: &Store) -> BTreeMap<String, String> {
    let now = Utc::now();
    store
        .leases()
        .await
        .unwrap()
        .into_iter()
        .filter(|l| l.expires_at > now && !l.holder.is_empty())
        .map(|l| (l.key, l.holder))
        .collect()
}

async fn daemons_share_postgres(instances: usize) {
    let Some(pg) = PgSchema::new().await else { return };
    let lease = Duration::from_secs(2);
    let stores = ["s1", "s2", "s3", "s4"];
    let mut daemons = Vec::new();
    let mut dbs = Vec::new();
    for n in 0..instances {
        let store = pg.store().await;
        let config = daemon_config("postgres://unused", &stores, &format!("d{n}"), lease);
        daemons.push(Some(start(&store, config, Duration::from_millis(300), false).await));
        dbs.push(store);
    }
    let db = &dbs[0];
    let keys: usize = 4 * 5 + 1;
    let share = keys.div_ceil(instances);
    // Stores spread: every instance ends up with its fair share, and every key is held.
    eventually("leases spread over every instance", Duration::from_secs(15), || async {
        let held = holders(db).await;
        let mut per: HashMap<String, usize> = HashMap::new();
        for holder in held.values() {
            *per.entry(holder.clone()).or_default() += 1;
        }
        (held.len() == keys && per.len() == instances && per.values().all(|n| *n <= share)).then_some(())
    })
    .await;
    // Kill the holder of s1's orders job: its tasks stop, its leases stay until they expire.
    let victim_id = holders(db).await["s1/orders"].clone();
    let victim = victim_id.trim_start_matches('d').parse::<usize>().unwrap();
    let victim_keys: BTreeSet<String> =
        holders(db).await.into_iter().filter(|(_, h)| *h == victim_id).map(|(k, _)| k).collect();
    let before = succeeded_runs(db, "s1", "schedule").await.len();
    daemons[victim].take().unwrap().kill();
    let killed_at = Instant::now();
    eventually("the killed instance's leases taken over", Duration::from_secs(10), || async {
        let held = holders(db).await;
        victim_keys.iter().all(|k| held.get(k).is_some_and(|h| *h != victim_id)).then_some(())
    })
    .await;
    let took = killed_at.elapsed();
    assert!(
        took <= lease + lease / 4 + Duration::from_millis(1500),
        "hand-over took {took:?} with a {lease:?} lease"
    );
    // And its stores keep running elsewhere.
    eventually("s1 orders running again", Duration::from_secs(10), || async {
        (succeeded_runs(db, "s1", "schedule").await.len() >= before + 2).then_some(())
    })
    .await;
    for daemon in daemons.into_iter().flatten() {
        daemon.trigger_shutdown();
        daemon.wait().await.unwrap();
    }
    let finished = assert_no_overlap(db).await;
    for store in stores {
        assert!(
            finished.get(&(store.to_string(), "orders".to_string())).is_some_and(|n| *n >= 2),
            "{store} ran: {finished:?}"
        );
    }
    let open =
        db.runs_of(None, None, 100_000).await.unwrap().into_iter().filter(|r| r.outcome == "running").count();
    assert_eq!(open, 0, "a run the killed daemon left behind is closed by the instance that took over");
}

#[tokio::test]
async fn two_daemons_on_postgres_split_the_stores_never_overlap_and_take_over_a_killed_one() {
    daemons_share_postgres(2).await;
}

#[tokio::test]
async fn three_daemons_on_postgres_split_the_stores_never_overlap_and_take_over_a_killed_one() {
    daemons_share_postgres(3).await;
}

const SANDBOX_STORE: &str = "[stores.tmall]\ntype = \"taobao\"\ngateway = \"sandbox\"\n";

fn schedules_toml() -> String {
    let mut out = String::from("[schedules]\n");
    for (job, expr) in schedules() {
        out.push_str(&format!("{job} = \"{expr}\"\n"));
    }
    out
}

#[tokio::test]
async fn a_reload_refuses_a_broken_config_and_swaps_in_a_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let (store, url) = sqlite_store(dir.path()).await;
    let path = dir.path().join("flagsync.toml");
    let text = format!(
        "[database]\nurl = \"{url}\"\n[daemon]\ninstance_id = \"r\"\n{}{SANDBOX_STORE}",
        schedules_toml()
    );
    std::fs::write(&path, &text).unwrap();
    let config = flagsync::config::load(&path).unwrap();
    let generation = Generation {
        config: Arc::new(config),
        runner: Arc::new(FakeRunner { store: store.clone(), work: Duration::ZERO }),
        inbox: Arc::new(NotAvailableInbox),
    };
    let options = DaemonOptions { config_path: Some(path.clone()), ..DaemonOptions::default() };
    let daemon = Daemon::start(generation, store.clone(), options).await.unwrap();
    std::fs::write(&path, format!("{text}page_size = \"many\"\nbogus = 1\n")).unwrap();
    let refused = daemon.reload().await.unwrap_err();
    assert!(refused.contains("2 problem(s)") && refused.contains("old config"), "{refused}");
    assert!(!daemon.control().config().stores[0].paused, "the old config is kept");
    std::fs::write(&path, format!("{text}paused = true\n")).unwrap();
    daemon.reload().await.unwrap();
    assert!(daemon.control().config().stores[0].paused, "a good config is swapped in");
    daemon.trigger_shutdown();
    daemon.wait().await.unwrap();
}

struct Admin {
    base: String,
    http: reqwest::Client,
}

impl Admin {
    async fn send(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, String) {
        let url = format!("{}{path}", self.base);
        let mut request = match method {
            "POST" => self.http.post(url),
            _ => self.http.get(url),
        };
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let reply = request.send().await.unwrap();
        (reply.status().as_u16(), reply.text().await.unwrap())
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let (status, body) = self.send("GET", path, Some(TOKEN), None).await;
        (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
    }

    async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let (status, body) = self.send("POST", path, Some(TOKEN), Some(body)).await;
        (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
    }
}

#[tokio::test]
async fn every_admin_endpoint_wants_the_token_checks_its_input_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (store, url) = sqlite_store(dir.path()).await;
    let daemon = start(
        &store,
        daemon_config(&url, &["tmall", "jd"], "admin", Duration::from_secs(3)),
        Duration::from_millis(200),
        true,
    )
    .await;
    let admin =
        Admin { base: format!("http://{}", daemon.admin_addr().unwrap()), http: reqwest::Client::new() };
    let endpoints = [
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/api/v1/jobs"),
        ("GET", "/api/v1/runs"),
        ("GET", "/api/v1/runs/1"),
        ("POST", "/api/v1/stores/tmall/jobs/orders/runs"),
        ("POST", "/api/v1/stores/tmall/pause"),
        ("POST", "/api/v1/stores/tmall/resume"),
        ("POST", "/api/v1/stores/tmall/jobs/orders/pause"),
        ("POST", "/api/v1/stores/tmall/jobs/orders/resume"),
        ("POST", "/api/v1/operator/stock"),
        ("POST", "/api/v1/operator/shipments"),
        ("GET", "/api/v1/no-such-thing"),
    ];
    for (method, path) in endpoints {
        for token in [None, Some("wrong-token"), Some("test-admin-token-012345678")] {
            let (status, body) = admin.send(method, path, token, Some("{}")).await;
            assert_eq!((status, body.as_str()), (401, ""), "{method} {path} with {token:?}");
        }
    }
    assert_eq!(admin.send("GET", "/healthz", None, None).await.0, 200, "liveness needs no token");

    let (status, ready) = admin.get("/readyz").await;
    assert_eq!((status, &ready["ready"]), (200, &json!(true)));

    // Manual runs: malformed input names the field.
    let trigger = "/api/v1/stores/tmall/jobs/orders/runs";
    let (status, error) = admin.post(trigger, "{\"since\": 5, \"until\": \"2026-11-11 08:00:00\"}").await;
    assert_eq!(status, 400);
    assert!(error["error"].as_str().unwrap().starts_with("params.since"), "{error}");
    let (status, error) = admin.post(trigger, "{\"since\": ").await;
    assert_eq!(status, 400);
    assert!(error["error"].as_str().unwrap().starts_with("body:"), "{error}");
    let (status, error) = admin.post(trigger, "[1]").await;
    assert_eq!(status, 400);
    assert!(error["error"].as_str().unwrap().starts_with("body:"), "{error}");
    let (status, error) = admin.post("/api/v1/stores/tmall/jobs/nope/runs", "{}").await;
    assert_eq!(status, 400);
    assert!(error["error"].as_str().unwrap().starts_with("job:"), "{error}");
    let (status, error) = admin.post("/api/v1/stores/nowhere/jobs/orders/runs", "{}").await;
    assert_eq!(status, 404);
    assert!(error["error"].as_str().unwrap().starts_with("store:"), "{error}");
    let (status, error) = admin.post("/api/v1/stores/tmall/jobs/inventory/runs", "{}").await;
    assert_eq!(status, 400, "operator-wide jobs run under the operator scope: {error}");

    // A good trigger is queued, run by the lease holder, and followed to its end.
    let mut handles = Vec::new();
    for _ in 0..3 {
        let (status, accepted) = admin.post(trigger, "").await;
        assert_eq!(status, 202, "{accepted}");
        handles.push(accepted["run"].as_str().unwrap().to_string());
    }
    for handle in &handles {
        let done = eventually("the manual run to finish", Duration::from_secs(15), || async {
            let (status, run) = admin.get(&format!("/api/v1/runs/{handle}")).await;
            assert_eq!(status, 200);
            (run["state"] == "succeeded").then_some(run)
        })
        .await;
        assert_eq!(done["result"]["inserted"], 1);
        let run_id = done["progress"]["job_run"]["id"].as_i64().unwrap();
        let (status, run) = admin.get(&format!("/api/v1/runs/{run_id}")).await;
        assert_eq!((status, &run["trigger"], &run["state"]), (200, &json!("manual"), &json!("succeeded")));
    }
    assert_eq!(admin.get("/api/v1/runs/req-abc").await.0, 400);
    let (status, error) = admin.get("/api/v1/runs/abc").await;
    assert_eq!(status, 400);
    assert!(error["error"].as_str().unwrap().starts_with("id:"), "{error}");
    assert_eq!(admin.get("/api/v1/runs/999999").await.0, 404);
    assert_eq!(admin.get("/api/v1/runs/req-999999").await.0, 404);

    // Runs list, filtered; its query parameters are checked.
    let (status, runs) = admin.get("/api/v1/runs?store=tmall&job=orders&limit=500").await;
    assert_eq!(status, 200);
    let runs = runs.as_array().unwrap();
    assert!(runs.iter().all(|r| r["store_id"] == "tmall" && r["job"] == "orders"));
    assert!(runs.iter().filter(|r| r["trigger"] == "manual").count() >= 3);
    eventually("scheduled runs beside the manual ones", Duration::from_secs(10), || async {
        (!succeeded_runs(&store, "tmall", "schedule").await.is_empty()).then_some(())
    })
    .await;
    for (query, field) in
        [("limit=abc", "limit:"), ("limit=0", "limit:"), ("job=nope", "job:"), ("colour=red", "colour:")]
    {
        let (status, error) = admin.get(&format!("/api/v1/runs?{query}")).await;
        assert_eq!(status, 400, "{query}");
        assert!(error["error"].as_str().unwrap().starts_with(field), "{query}: {error}");
    }

    // Pauses are persisted and show in the jobs list; resume undoes them.
    let (status, paused) = admin.post("/api/v1/stores/jd/pause", "").await;
    assert_eq!((status, &paused["paused"]), (200, &json!(true)));
    let (status, _) = admin.post("/api/v1/stores/tmall/jobs/orders/pause", "").await;
    assert_eq!(status, 200);
    let (status, jobs) = admin.get("/api/v1/jobs").await;
    assert_eq!(status, 200);
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 2 * 5 + 1, "every store x per-store job, plus the operator's");
    let find = |store: &str, job: &str| {
        jobs.iter().find(|j| j["store"] == store && j["job"] == job).unwrap().clone()
    };
    assert_eq!(find("jd", "stock")["paused"], true);
    assert_eq!(find("tmall", "orders")["paused_by"], json!(["api"]));
    assert_eq!(find("tmall", "stock")["paused"], false);
    assert_eq!(find("tmall", "orders")["lease_holder"], "admin");
    assert_eq!(find("tmall", "orders")["schedule"], "* * * * * *");
    assert!(find("tmall", "orders")["next_fire"].is_string());
    assert_eq!(find("tmall", "orders")["last_run"]["store_id"], "tmall");
    assert_eq!(store.pauses().await.unwrap().len(), 2, "pauses are stored, so they survive restarts");
    assert_eq!(admin.post("/api/v1/stores/jd/resume", "").await.0, 200);
    assert_eq!(admin.post("/api/v1/stores/tmall/jobs/orders/resume", "").await.0, 200);
    assert!(store.pauses().await.unwrap().is_empty());
    assert_eq!(admin.post("/api/v1/stores/tmall/jobs/nope/pause", "").await.0, 400);
    assert_eq!(admin.post("/api/v1/stores/nowhere/pause", "").await.0, 404);

    // Metrics: Prometheus text with per-store labels and no SKU or order label.
    let (status, page) = admin.send("GET", "/metrics", Some(TOKEN), None).await;
    assert_eq!(status, 200);
    for needle in [
        "flagsync_job_runs_total{",
        "store=\"tmall\"",
        "flagsync_orders_ingested_total{store=\"tmall\"}",
        "flagsync_outbox_depth{store=\"jd\"} 0",
        "flagsync_dead_letters{store=\"jd\"} 0",
        "flagsync_quarantine_payloads{store=\"tmall\"} 0",
        "flagsync_job_run_duration_seconds_bucket{",
    ] {
        assert!(page.contains(needle), "/metrics lacks {needle}:\n{page}");
    }
    assert!(!page.contains("sku=") && !page.contains("order="), "no per-SKU or per-order labels");

    // The operator's push endpoints: JSON checked here, handling not available yet.
    for path in ["/api/v1/operator/stock", "/api/v1/operator/shipments"] {
        let (status, error) = admin.post(path, "{\"levels\": [").await;
        assert_eq!(status, 400, "{path}");
        assert!(error["error"].as_str().unwrap().starts_with("body:"), "{error}");
        let (status, error) = admin.post(path, "{\"levels\": []}").await;
        assert_eq!(status, 501, "{path}: {error}");
        assert!(error["error"].as_str().unwrap().contains("not available yet"));
    }

    daemon.trigger_shutdown();
    daemon.wait().await.unwrap();
    assert_no_overlap(&store).await;
}

// ----- the real binary -----

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    fn start(config: &Path, log: PathBuf, args: &[&str]) -> Self {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_flagsync"))
            .arg("--config")
            .arg(config)
            .args(args)
            .env_remove("NOTIFY_SOCKET")
            .env("RUST_LOG", "flagsync=debug,warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self { child, log }
    }

    fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name}");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the exit, at most `limit`.
    async fn exit_within(&mut self, limit: Duration) -> std::process::ExitStatus {
        let end = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < end, "the daemon did not exit within {limit:?}:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the CLI to its end.
async fn cli(config: &Path, args: &[&str]) -> std::process::Output {
    let config = config.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_flagsync"))
            .arg("--config")
            .arg(&config)
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// Writes a config for the real binary: one Tmall store on `sandbox`, orders every second.
fn write_config(
    dir: &Path,
    database: &str,
    instance: &str,
    admin_port: u16,
    sandbox: &EmbeddedSandbox,
    lease_secs: u64,
    drain_secs: u64,
) -> PathBuf {
    std::fs::write(dir.join("admin_token"), TOKEN).unwrap();
    std::fs::write(dir.join("top_secret"), flagsync::sandbox::TOP_APP_SECRET).unwrap();
    std::fs::write(dir.join("top_session"), flagsync::sandbox::TOP_SESSION).unwrap();
    std::fs::write(dir.join("jd_secret"), flagsync::sandbox::JOS_APP_SECRET).unwrap();
    std::fs::write(dir.join("jd_token"), flagsync::sandbox::JOS_ACCESS_TOKEN).unwrap();
    let text = format!(
        "[database]\nurl = \"{database}\"\n\
         [sync]\ninitial_lookback_hours = 12\nsettle_delay_secs = 5\noverlap_secs = 60\n\
         [daemon]\ninstance_id = \"{instance}\"\nlease_secs = {lease_secs}\ndrain_timeout_secs = {drain_secs}\n\
         [admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntoken = {{ file = \"admin_token\" }}\n\
         {schedules}\
         [stores.tmall]\ntype = \"taobao\"\ngateway = \"{top}\"\napp_key = \"{top_key}\"\n\
         app_secret = {{ file = \"top_secret\" }}\nsession = {{ file = \"top_session\" }}\ncalls_per_second = 1000\n\
         [stores.jd]\ntype = \"jd\"\ngateway = \"{jos}\"\napp_key = \"{jd_key}\"\n\
         app_secret = {{ file = \"jd_secret\" }}\naccess_token = {{ file = \"jd_token\" }}\ncalls_per_second = 1000\n",
        schedules = schedules_toml(),
        top = sandbox.gateway_for("taobao"),
        jos = sandbox.gateway_for("jd"),
        top_key = flagsync::sandbox::TOP_APP_KEY,
        jd_key = flagsync::sandbox::JOS_APP_KEY,
    );
    let path = dir.join(format!("{instance}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Every order the sandbox shows as modified before `cursor` is stored (nothing lost).
async fn assert_nothing_lost(db: &Store, sandbox: &EmbeddedSandbox) {
    for (store_id, truth) in [
        (
            "tmall",
            sandbox.top.trades().into_iter().map(|t| (t.tid.to_string(), t.modified)).collect::<Vec<_>>(),
        ),
        (
            "jd",
            sandbox
                .jos
                .orders()
                .into_iter()
                .filter(|o| o.visible)
                .map(|o| (o.order_id, o.modified))
                .collect(),
        ),
    ] {
        let Some(cursor) = db.cursor(store_id, "orders").await.unwrap() else {
            panic!("{store_id} has no cursor")
        };
        let stored: BTreeSet<String> =
            db.order_summaries(store_id).await.unwrap().into_iter().map(|o| o.order_id).collect();
        let due: Vec<&(String, DateTime<Utc>)> =
            truth.iter().filter(|(_, modified)| *modified < cursor).collect();
        assert!(!due.is_empty(), "{store_id}: the scenario has orders before the cursor");
        let missing: Vec<&String> = due.iter().map(|(id, _)| id).filter(|id| !stored.contains(*id)).collect();
        assert!(missing.is_empty(), "{store_id}: orders lost: {missing:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_drains_on_sigterm_resumes_takes_cli_syncs_and_survives_a_broken_reload() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox =
        EmbeddedSandbox::start_with_scenario(SocketAddr::from(([127, 0, 0, 1], 0)), 120, 7).await.unwrap();
    let url = format!("sqlite://{}", dir.path().join("flagsync.db").display());
    let port = free_port();
    let config = write_config(dir.path(), &url, "solo", port, &sandbox, 5, 2);
    let db = Store::open(&StoreOptions::new(url.clone())).await.unwrap();

    // A slow gateway makes the first pull busy when SIGTERM comes; the hours before the
    // scenario's first order pass quickly, so the cursor has moved by then.
    let slow = flagsync_sandbox::faults::Fault::Slow(Duration::from_millis(300));
    sandbox.top_faults.random(Some("taobao.trade.fullinfo.get"), slow, 1.0);
    let mut daemon = Process::start(&config, dir.path().join("first.log"), &["run"]);
    eventually("a run in flight", Duration::from_secs(20), || async {
        let runs = db.runs_of(Some("tmall"), Some("orders"), 10).await.unwrap();
        runs.iter().any(|r| r.outcome == "running").then_some(())
    })
    .await;
    daemon.signal("TERM");
    let signalled = Instant::now();
    let status = daemon.exit_within(Duration::from_secs(10)).await;
    assert!(status.success(), "exit after SIGTERM: {status:?}\n{}", daemon.log());
    assert!(
        signalled.elapsed() < Duration::from_secs(2 + 4),
        "exits within the drain timeout (2 s) and a little"
    );
    let runs = db.runs_of(None, None, 1000).await.unwrap();
    assert!(runs.iter().all(|r| r.outcome != "running"), "no run is left open: {runs:?}");
    let cancelled =
        runs.iter().find(|r| r.error.as_deref().is_some_and(|e| e.contains("cancelled at shutdown")));
    assert!(cancelled.is_some(), "the busy run was cancelled after the drain timeout:\n{}", daemon.log());
    let cursor_before = db.cursor("tmall", "orders").await.unwrap();
    assert!(cursor_before.is_some(), "windows committed before the cancel keep their cursor");

    // A restart resumes from the cursors and loses nothing.
    sandbox.top_faults.clear();
    let mut daemon = Process::start(&config, dir.path().join("second.log"), &["run"]);
    let resumed = eventually("a run after the restart", Duration::from_secs(30), || async {
        let runs = succeeded_runs(&db, "tmall", "schedule").await;
        let jd = succeeded_runs(&db, "jd", "schedule").await;
        (!jd.is_empty()).then(|| runs.first().cloned()).flatten()
    })
    .await;
    let after = db.cursor("tmall", "orders").await.unwrap().unwrap();
    assert!(Some(after) >= cursor_before, "the cursor never moves back");
    // From scratch, 12 hours of 30-minute windows would be 24; from the cursor (less the
    // 60 s overlap) it is what is left.
    let windows = resumed.counts["windows"].as_u64().unwrap();
    let start = cursor_before.unwrap() - chrono::TimeDelta::seconds(60);
    let from_cursor = u64::try_from((resumed.started_at - start).num_seconds()).unwrap().div_ceil(1800);
    assert!(
        windows <= from_cursor && windows < 20,
        "resumed from the cursor, not from scratch: {windows} windows"
    );
    assert_nothing_lost(&db, &sandbox).await;

    // A second daemon on the same SQLite file refuses to start.
    let mut second = Process::start(&config, dir.path().join("refused.log"), &["run"]);
    let status = second.exit_within(Duration::from_secs(15)).await;
    assert!(!status.success());
    assert!(second.log().contains("already running"), "{}", second.log());

    // A CLI sync goes through the daemon: leased, recorded as manual, no overlap.
    let output = cli(&config, &["sync", "orders", "--store", "tmall", "--json"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "cli sync: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report[0]["ok"], true, "{report}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("run by the daemon"));
    let manual = succeeded_runs(&db, "tmall", "manual").await;
    assert_eq!(manual.len(), 1, "the daemon ran the CLI's sync");
    assert!(manual[0].params["fence"]["key"] == "tmall/orders", "under the job's lease");

    // `status` shows the jobs from the database; `status pause` stores a pause.
    let output = cli(&config, &["status"]).await;
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{table}");
    let line = table.lines().find(|l| l.starts_with("tmall") && l.contains(" orders ")).unwrap_or_default();
    assert!(line.contains("held by solo") && line.contains("succeeded"), "{table}");
    assert!(cli(&config, &["status", "pause", "--store", "jd"]).await.status.success());
    let output = cli(&config, &["status", "--json"]).await;
    let views: Value = serde_json::from_slice(&output.stdout).unwrap();
    let jd = views.as_array().unwrap().iter().find(|v| v["store"] == "jd" && v["job"] == "orders").unwrap();
    assert_eq!(jd["paused_by"], json!(["api"]), "{jd}");
    assert!(cli(&config, &["status", "resume", "--store", "jd"]).await.status.success());
    assert!(db.pauses().await.unwrap().is_empty());

    // SIGHUP with a broken config: refused, the old one kept, the daemon goes on.
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{good}\n[stores.broken]\ntype = \"ebay\"\n")).unwrap();
    let last = db.runs_of(Some("tmall"), Some("orders"), 1).await.unwrap()[0].id;
    daemon.signal("HUP");
    eventually("the refusal logged", Duration::from_secs(10), || async {
        daemon.log().contains("config reload refused").then_some(())
    })
    .await;
    eventually("runs going on after the refused reload", Duration::from_secs(10), || async {
        let runs = succeeded_runs(&db, "tmall", "schedule").await;
        runs.iter().any(|r| r.id > last).then_some(())
    })
    .await;
    assert!(daemon.child.try_wait().unwrap().is_none(), "still running");
    std::fs::write(&config, good).unwrap();

    daemon.signal("TERM");
    let status = daemon.exit_within(Duration::from_secs(10)).await;
    assert!(status.success(), "{}", daemon.log());
    assert_no_overlap(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_hands_a_killed_daemons_stores_over_on_postgres_losing_no_order() {
    let Some(pg) = PgSchema::new().await else { return };
    let db = pg.store().await;
    let dir = tempfile::tempdir().unwrap();
    let sandbox =
        EmbeddedSandbox::start_with_scenario(SocketAddr::from(([127, 0, 0, 1], 0)), 120, 11).await.unwrap();
    let url = pg.url_for_process();
    let lease = Duration::from_secs(5);
    let a_config = write_config(dir.path(), &url, "a", free_port(), &sandbox, 5, 2);
    let b_config = write_config(dir.path(), &url, "b", free_port(), &sandbox, 5, 2);
    let mut a = Process::start(&a_config, dir.path().join("a.log"), &["run"]);
    let mut b = Process::start(&b_config, dir.path().join("b.log"), &["run"]);
    // 2 stores x 5 jobs + the operator's: each instance ends with its share of 6.
    eventually("both daemons holding leases", Duration::from_secs(30), || async {
        let held = holders(&db).await;
        let a_count = held.values().filter(|h| *h == "a").count();
        let b_count = held.values().filter(|h| *h == "b").count();
        (held.len() == 11 && a_count > 0 && b_count > 0).then_some(())
    })
    .await;
    eventually("orders pulled for both stores", Duration::from_secs(30), || async {
        let both = !succeeded_runs(&db, "tmall", "schedule").await.is_empty()
            && !succeeded_runs(&db, "jd", "schedule").await.is_empty();
        both.then_some(())
    })
    .await;
    let a_keys: BTreeSet<String> =
        holders(&db).await.into_iter().filter(|(_, h)| h == "a").map(|(k, _)| k).collect();
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let killed = Instant::now();
    eventually("b holding everything a held", Duration::from_secs(15), || async {
        let held = holders(&db).await;
        a_keys.iter().all(|k| held.get(k).is_some_and(|h| h == "b")).then_some(())
    })
    .await;
    let took = killed.elapsed();
    assert!(
        took <= lease + lease / 4 + Duration::from_secs(2),
        "hand-over took {took:?} with a {lease:?} lease"
    );
    let after = Utc::now();
    eventually("b pulling every store after the hand-over", Duration::from_secs(20), || async {
        let mut ok = true;
        for store in ["tmall", "jd"] {
            ok &= succeeded_runs(&db, store, "schedule").await.iter().any(|r| r.started_at > after);
        }
        ok.then_some(())
    })
    .await;
    b.signal("TERM");
    assert!(b.exit_within(Duration::from_secs(15)).await.success(), "{}", b.log());
    assert_nothing_lost(&db, &sandbox).await;
    assert_no_overlap(&db).await;
    let open =
        db.runs_of(None, None, 100_000).await.unwrap().into_iter().filter(|r| r.outcome == "running").count();
    assert_eq!(open, 0, "the killed daemon's run (if any) was closed at the hand-over");
}

/// Orders report a change only while `changes` lasts; stock runs are logged with their
/// trigger; other jobs are not available.
struct FollowRunner {
    changes: std::sync::atomic::AtomicU32,
    log: std::sync::Mutex<Vec<(String, JobKind, &'static str)>>,
}

#[async_trait]
impl JobRunner for FollowRunner {
    async fn run(&self, request: &JobRequest) -> Result<Value, JobError> {
        use std::sync::atomic::Ordering;
        self.log.lock().unwrap().push((request.store_id.clone(), request.job, request.trigger.label()));
        match request.job {
            JobKind::Orders => {
                let changed = self
                    .changes
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                Ok(json!({"inserted": u64::from(changed), "updated": 0, "unchanged": 3}))
            }
            JobKind::Stock => Ok(json!({"pushed": 0})),
            job => Err(JobError::Invalid(format!("job {job} is not available yet"))),
        }
    }
}

#[tokio::test]
async fn an_orders_pull_that_changed_orders_is_followed_by_every_stores_stock_run() {
    let dir = tempfile::tempdir().unwrap();
    let (store, url) = sqlite_store(dir.path()).await;
    let config = daemon_config(&url, &["tmall", "jd"], "solo", Duration::from_secs(10));
    let runner = Arc::new(FollowRunner { changes: 1.into(), log: Default::default() });
    let generation =
        Generation { config: Arc::new(config), runner: runner.clone(), inbox: Arc::new(NotAvailableInbox) };
    let daemon = Daemon::start(generation, store.clone(), DaemonOptions::default()).await.unwrap();
    let log = || runner.log.lock().unwrap().clone();
    let stock_runs = || {
        log()
            .into_iter()
            .filter(|(_, job, _)| *job == JobKind::Stock)
            .map(|(s, _, t)| (s, t))
            .collect::<Vec<_>>()
    };

    // The one orders run that changed something (whichever store ran first) brings a stock
    // run for both stores, long before their yearly schedule.
    eventually("stock follow-ups for both stores", Duration::from_secs(10), || async {
        (stock_runs().len() >= 2).then_some(())
    })
    .await;
    let mut runs = stock_runs();
    runs.sort();
    assert_eq!(
        runs,
        vec![("jd".to_string(), "follow-up"), ("tmall".to_string(), "follow-up")],
        "one follow-up per store: {:?}",
        log()
    );
    let first_stock = log().iter().position(|(_, job, _)| *job == JobKind::Stock).unwrap();
    assert!(log()[..first_stock].iter().any(|(_, job, _)| *job == JobKind::Orders), "after an orders run");

    // Orders runs that change nothing bring no more stock runs.
    let orders_now = log().iter().filter(|(_, job, _)| *job == JobKind::Orders).count();
    eventually("four more orders runs", Duration::from_secs(10), || async {
        (log().iter().filter(|(_, job, _)| *job == JobKind::Orders).count() >= orders_now + 4).then_some(())
    })
    .await;
    assert_eq!(stock_runs().len(), 2, "no follow-up without a change: {:?}", log());
    daemon.trigger_shutdown();
    daemon.wait().await.unwrap();
}
