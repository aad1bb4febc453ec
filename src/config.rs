//! Configuration: a TOML file, then `FLAGSYNC__SECTION__KEY` environment overrides, checked
//! in one pass that reports every problem with its key path (`flagsync config check`).
//!
//! Secrets (app secrets, session keys, access tokens) are never written inline: a secret
//! key takes `{ env = "VAR" }` or `{ file = "/path" }`, and the value is held as a
//! `SecretString` that prints as `[REDACTED]`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;

use crate::inventory::{Allocation, Catalog, ComponentKind, SkuDef};
use crate::jobs::JobKind;
use toml::{Table, Value};

/// Where the database lives and how to talk to it.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// `sqlite://path/file.db` (embedded default) or `postgres://...`.
    pub url: String,
    pub max_connections: u32,
    /// SQLite `synchronous=FULL` (default) rather than NORMAL.
    pub sqlite_synchronous_full: bool,
}

/// How incremental order pulls walk time.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Widest window per order query (capped by each platform's own limit).
    pub window: Duration,
    /// Windows end this long before now, so the platform's index has settled.
    pub settle_delay: Duration,
    /// Each run starts this long before its cursor, to catch late-indexed orders.
    pub overlap: Duration,
    /// Where a store with no cursor starts.
    pub initial_lookback: Duration,
    pub request_timeout: Duration,
}

/// Which marketplace, with its credentials and tuning.
#[derive(Debug, Clone)]
pub enum StoreKind {
    Taobao {
        app_key: String,
        app_secret: SecretString,
        session: SecretString,
        /// md5, hmac or hmac-sha256.
        sign_method: String,
        page_size: u32,
        /// `taobao.trade.fullinfo.get` calls per batch request, 1 to 50 (1: no batching).
        fullinfo_batch: u32,
    },
    Jd {
        app_key: String,
        app_secret: SecretString,
        access_token: SecretString,
        page_size: u32,
        /// The gateway refuses pages beyond this; wider windows are split.
        page_cap: u32,
    },
}

impl StoreKind {
    /// The `type` value in the config.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Taobao { .. } => "taobao",
            Self::Jd { .. } => "jd",
        }
    }
}

/// Where a store's gateway is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gateway {
    Url(String),
    /// The built-in marketplace sandbox, started in-process.
    Sandbox,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub id: String,
    pub kind: StoreKind,
    pub gateway: Gateway,
    pub calls_per_second: u32,
    /// A paused store runs no scheduled job (manual runs still work).
    pub paused: bool,
    /// Per-job cron overrides for this store.
    pub schedules: BTreeMap<JobKind, String>,
    /// Jobs not scheduled for this store.
    pub paused_jobs: Vec<JobKind>,
    /// When stock is held for an order: at payment (default) or as soon as it is placed.
    pub reserve_on_order: bool,
    /// Shares of one component may sum past 1 across shared-pool stores; oversell is then
    /// possible and reported.
    pub shared_pool: bool,
    /// Explicit listing mappings: `ITEM:SKU` (or `ITEM`) -> operator SKU or bundle code.
    /// Listings not named here map by their merchant code.
    pub listings: BTreeMap<String, String>,
    /// Per target (operator SKU or bundle code): this store's share, cap and floor.
    pub allocation: BTreeMap<String, Allocation>,
}

/// The operator's inventory and fulfilment system.
#[derive(Debug, Clone)]
pub struct OperatorConfig {
    pub gateway: Gateway,
    pub key_id: String,
    pub secret: SecretString,
}

/// The daemon (`flagsync run`).
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Names this instance in leases and runs; default `<hostname>-<pid>`.
    pub instance_id: Option<String>,
    /// How long a job lease lasts without renewal; another instance takes over after it.
    pub lease: Duration,
    /// On SIGTERM, how long in-flight runs may take to finish or checkpoint.
    pub drain_timeout: Duration,
    /// Default schedule per job (cron crate syntax, seconds first).
    pub schedules: BTreeMap<JobKind, String>,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            instance_id: None,
            lease: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
            schedules: BTreeMap::new(),
        }
    }
}

/// The admin HTTP API.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: std::net::SocketAddr,
    /// Bearer token for everything but liveness; the API stays off without one.
    pub token: Option<SecretString>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { listen: std::net::SocketAddr::from(([127, 0, 0, 1], 8787)), token: None }
    }
}

/// One operator carrier's codes on each platform (`[carriers.<operator carrier name>]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CarrierCodes {
    /// Taobao `company_code` (`SF`, `YTO`, ... from `taobao.logistics.companies.get`).
    pub taobao: Option<String>,
    /// JD numeric `logiCoprId` (`467` for SF, from `jingdong.delivery.logistics.get`).
    pub jd: Option<String>,
}

impl CarrierCodes {
    /// The code for a platform (`taobao` or `jd`).
    pub fn for_platform(&self, platform: &str) -> Option<&str> {
        match platform {
            "taobao" => self.taobao.as_deref(),
            "jd" => self.jd.as_deref(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseConfig,
    pub sync: SyncConfig,
    pub daemon: DaemonConfig,
    pub admin: AdminConfig,
    /// The operator's SKUs and bundles.
    pub catalog: Catalog,
    /// Where the operator's system is; `None` when not configured (inventory and
    /// fulfilment jobs are then unavailable).
    pub operator: Option<OperatorConfig>,
    /// Sorted by id.
    pub stores: Vec<StoreConfig>,
    /// Operator carrier name -> platform carrier codes, for shipment pushes.
    pub carriers: BTreeMap<String, CarrierCodes>,
}

impl Config {
    pub fn store(&self, id: &str) -> Option<&StoreConfig> {
        self.stores.iter().find(|s| s.id == id)
    }

    /// The cron expression for a job of a store: the store's override, else the default.
    pub fn schedule(&self, store_id: &str, job: JobKind) -> &str {
        self.store(store_id)
            .and_then(|s| s.schedules.get(&job))
            .or_else(|| self.daemon.schedules.get(&job))
            .map(String::as_str)
            .unwrap_or(job.default_schedule())
    }

    /// A carrier's code on a platform: the operator's name as configured, else matched
    /// case-insensitively.
    pub fn carrier_code(&self, carrier: &str, platform: &str) -> Option<&str> {
        crate::sync::shipments::carrier_code(&self.carriers, carrier, platform)
    }
}

/// One problem in the configuration, at a key path such as `stores.tmall.page_size`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Everything wrong with a configuration, all at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {} problem(s):\n{}", problems.len(), problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    pub source_name: String,
    pub problems: Vec<Problem>,
}

const ENV_PREFIX: &str = "FLAGSYNC__";

/// Loads a config file with the process environment's overrides applied.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        source_name: path.display().to_string(),
        problems: vec![Problem {
            path: "(file)".into(),
            message: format!("cannot read {}: {e}", path.display()),
        }],
    })?;
    let env: Vec<(String, String)> = std::env::vars().collect();
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, &path.display().to_string(), &env, base, &|name| std::env::var(name).ok())
}

/// Parses config text. `env` holds candidate overrides; `lookup` reads secret variables;
/// relative secret files resolve against `base`.
pub fn parse(
    text: &str,
    source_name: &str,
    env: &[(String, String)],
    base: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let fail = |problems| ConfigError { source_name: source_name.to_string(), problems };
    let mut root: Table = match text.parse::<Table>() {
        Ok(table) => table,
        Err(e) => {
            return Err(fail(vec![Problem {
                path: "(syntax)".into(),
                message: e.to_string().trim().to_string(),
            }]));
        }
    };
    let mut checker = Checker { problems: Vec::new(), base: base.to_path_buf(), lookup };
    apply_env(&mut root, env, &mut checker);
    let config = checker.config(&root);
    match config {
        Some(config) if checker.problems.is_empty() => Ok(config),
        _ => Err(fail(checker.problems)),
    }
}

/// `FLAGSYNC__DATABASE__URL=...` sets `database.url`; `FLAGSYNC__STORES__TMALL_MAIN__PAUSED=true`
/// sets `stores.tmall-main.paused` (store ids match case-insensitively, `_` for `-`).
/// Values parse as TOML (numbers, booleans) and fall back to plain strings.
fn apply_env(root: &mut Table, env: &[(String, String)], checker: &mut Checker<'_>) {
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else { continue };
        let mut segments: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if segments.iter().any(String::is_empty) {
            checker.problem(name, "malformed override name: empty segment");
            continue;
        }
        if segments.first().map(String::as_str) == Some("stores") && segments.len() >= 3 {
            let wanted = segments[1].replace('-', "_");
            let existing = root.get("stores").and_then(Value::as_table).and_then(|stores| {
                stores.keys().find(|k| k.to_ascii_lowercase().replace('-', "_") == wanted).cloned()
            });
            match existing {
                Some(id) => segments[1] = id,
                None => {
                    checker.problem(name, &format!("no store matches {:?} in the config", segments[1]));
                    continue;
                }
            }
        }
        let value = format!("v = {raw}")
            .parse::<Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| Value::String(raw.clone()));
        if let Err(message) = set_path(root, &segments, value) {
            checker.problem(name, &message);
        }
    }
}

/// Sets `value` at a nested key path, creating tables on the way.
fn set_path(table: &mut Table, segments: &[String], value: Value) -> Result<(), String> {
    match segments {
        [] => Ok(()),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] => {
            let entry = table.entry(first.clone()).or_insert_with(|| Value::Table(Table::new()));
            match entry.as_table_mut() {
                Some(inner) => set_path(inner, rest, value),
                None => Err(format!("{first} is not a table")),
            }
        }
    }
}

struct Checker<'a> {
    problems: Vec<Problem>,
    base: PathBuf,
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Checker<'_> {
    fn problem(&mut self, path: &str, message: &str) {
        self.problems.push(Problem { path: path.to_string(), message: message.to_string() });
    }

    fn unknown_keys(&mut self, table: &Table, known: &[&str], path: &str) {
        for key in table.keys() {
            if !known.contains(&key.as_str()) {
                let at = join(path, key);
                self.problem(&at, &format!("unknown key (expected one of: {})", known.join(", ")));
            }
        }
    }

    fn table<'t>(&mut self, parent: &'t Table, key: &str, path: &str) -> Option<&'t Table> {
        match parent.get(key) {
            None => None,
            Some(Value::Table(table)) => Some(table),
            Some(other) => {
                self.problem(&join(path, key), &format!("expected a table, found {}", other.type_str()));
                None
            }
        }
    }

    fn string(&mut self, table: &Table, key: &str, path: &str, default: Option<&str>) -> Option<String> {
        match table.get(key) {
            None => match default {
                Some(d) => Some(d.to_string()),
                None => {
                    self.problem(&join(path, key), "missing (required)");
                    None
                }
            },
            Some(Value::String(s)) if s.trim().is_empty() => {
                self.problem(&join(path, key), "must not be empty");
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                self.problem(&join(path, key), &format!("expected a string, found {}", other.type_str()));
                None
            }
        }
    }

    fn int(&mut self, table: &Table, key: &str, path: &str, default: i64, range: (i64, i64)) -> Option<i64> {
        match table.get(key) {
            None => Some(default),
            Some(Value::Integer(n)) if (range.0..=range.1).contains(n) => Some(*n),
            Some(Value::Integer(n)) => {
                self.problem(&join(path, key), &format!("{n} is out of range ({} to {})", range.0, range.1));
                None
            }
            Some(other) => {
                self.problem(&join(path, key), &format!("expected an integer, found {}", other.type_str()));
                None
            }
        }
    }

    fn boolean(&mut self, table: &Table, key: &str, path: &str, default: bool) -> Option<bool> {
        match table.get(key) {
            None => Some(default),
            Some(Value::Boolean(b)) => Some(*b),
            Some(other) => {
                self.problem(
                    &join(path, key),
                    &format!("expected true or false, found {}", other.type_str()),
                );
                None
            }
        }
    }

    fn choice(
        &mut self,
        table: &Table,
        key: &str,
        path: &str,
        default: &str,
        allowed: &[&str],
    ) -> Option<String> {
        let value = self.string(table, key, path, Some(default))?;
        if allowed.contains(&value.as_str()) {
            Some(value)
        } else {
            self.problem(&join(path, key), &format!("{value:?} is not one of: {}", allowed.join(", ")));
            None
        }
    }

    /// A secret: `{ env = "VAR" }` or `{ file = "path" }`; never inline. With a sandbox
    /// gateway a missing secret takes the sandbox's documented value.
    fn secret(
        &mut self,
        table: &Table,
        key: &str,
        path: &str,
        sandbox_default: Option<&str>,
    ) -> Option<SecretString> {
        let at = join(path, key);
        let spec = match table.get(key) {
            None => {
                return match sandbox_default {
                    Some(value) => Some(SecretString::from(value.to_string())),
                    None => {
                        self.problem(
                            &at,
                            "missing (required): give { env = \"VAR\" } or { file = \"/path\" }",
                        );
                        None
                    }
                };
            }
            Some(Value::String(_)) => {
                self.problem(
                    &at,
                    "secrets may not be written inline: use { env = \"VAR\" } or { file = \"/path\" }",
                );
                return None;
            }
            Some(Value::Table(spec)) => spec,
            Some(other) => {
                self.problem(
                    &at,
                    &format!(
                        "expected {{ env = \"VAR\" }} or {{ file = \"/path\" }}, found {}",
                        other.type_str()
                    ),
                );
                return None;
            }
        };
        self.unknown_keys(spec, &["env", "file"], &at);
        match (spec.get("env"), spec.get("file")) {
            (Some(Value::String(var)), None) => match (self.lookup)(var) {
                Some(value) if !value.trim().is_empty() => Some(SecretString::from(value.trim().to_string())),
                _ => {
                    self.problem(&at, &format!("environment variable {var} is not set or empty"));
                    None
                }
            },
            (None, Some(Value::String(file))) => {
                let file_path = self.base.join(file);
                match read_secret_file(&file_path) {
                    Ok(value) if !value.trim().is_empty() => {
                        Some(SecretString::from(value.trim().to_string()))
                    }
                    Ok(_) => {
                        self.problem(&at, &format!("secret file {} is empty", file_path.display()));
                        None
                    }
                    Err(e) => {
                        self.problem(&at, &format!("cannot use secret file {}: {e}", file_path.display()));
                        None
                    }
                }
            }
            _ => {
                self.problem(&at, "give exactly one of env = \"VAR\" or file = \"/path\", as a string");
                None
            }
        }
    }

    /// Flags keys a store of this type does not know: the platform's own keys plus the
    /// keys every store has.
    fn store_keys(&mut self, table: &Table, platform_keys: &[&str], path: &str) {
        const EVERY_STORE: [&str; 10] = [
            "type",
            "gateway",
            "calls_per_second",
            "paused",
            "schedules",
            "paused_jobs",
            "reserve_on",
            "shared_pool",
            "listings",
            "allocation",
        ];
        let known: Vec<&str> = EVERY_STORE.iter().chain(platform_keys).copied().collect();
        self.unknown_keys(table, &known, path);
    }

    fn config(&mut self, root: &Table) -> Option<Config> {
        self.unknown_keys(
            root,
            &[
                "database",
                "sync",
                "daemon",
                "admin",
                "schedules",
                "catalog",
                "operator",
                "stores",
                "carriers",
            ],
            "",
        );
        let empty = Table::new();
        let database = self.table(root, "database", "").unwrap_or(&empty);
        self.unknown_keys(database, &["url", "max_connections", "sqlite_synchronous"], "database");
        let url = self.string(database, "url", "database", Some("sqlite://data/flagsync.db"));
        if let Some(url) = &url
            && !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
        {
            self.problem("database.url", "must start with sqlite: or postgres://");
        }
        let max_connections = self.int(database, "max_connections", "database", 8, (1, 256));
        let synchronous =
            self.choice(database, "sqlite_synchronous", "database", "full", &["full", "normal"]);

        let sync = self.table(root, "sync", "").unwrap_or(&empty);
        self.unknown_keys(
            sync,
            &[
                "window_mins",
                "settle_delay_secs",
                "overlap_secs",
                "initial_lookback_hours",
                "request_timeout_secs",
            ],
            "sync",
        );
        let window = self.int(sync, "window_mins", "sync", 30, (1, 1440));
        let settle = self.int(sync, "settle_delay_secs", "sync", 60, (0, 3600));
        let overlap = self.int(sync, "overlap_secs", "sync", 300, (0, 86_400));
        let lookback = self.int(sync, "initial_lookback_hours", "sync", 72, (1, 24 * 90));
        let timeout = self.int(sync, "request_timeout_secs", "sync", 30, (1, 600));

        let daemon = self.table(root, "daemon", "").unwrap_or(&empty);
        self.unknown_keys(daemon, &["instance_id", "lease_secs", "drain_timeout_secs"], "daemon");
        let instance_id = match daemon.get("instance_id") {
            None => Some(None),
            Some(_) => self.string(daemon, "instance_id", "daemon", None).map(Some),
        };
        let lease = self.int(daemon, "lease_secs", "daemon", 30, (5, 3600));
        let drain = self.int(daemon, "drain_timeout_secs", "daemon", 30, (1, 3600));
        let schedules = match self.table(root, "schedules", "") {
            Some(table) => self.schedules(table, "schedules"),
            None => Some(BTreeMap::new()),
        };

        let admin = self.table(root, "admin", "").unwrap_or(&empty);
        self.unknown_keys(admin, &["listen", "token"], "admin");
        let listen =
            self.string(admin, "listen", "admin", Some("127.0.0.1:8787")).and_then(|l| match l.parse() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    self.problem("admin.listen", &format!("{l:?} is not an address like 127.0.0.1:8787"));
                    None
                }
            });
        let token = match admin.get("token") {
            None => Some(None),
            Some(_) => self.secret(admin, "token", "admin", None).map(Some),
        };

        let catalog = match self.table(root, "catalog", "") {
            Some(table) => self.catalog(table),
            None => Some(Catalog::default()),
        };
        let operator = match self.table(root, "operator", "") {
            Some(table) => self.operator(table).map(Some),
            None => Some(None),
        };

        let mut stores = Vec::new();
        let store_tables = self.table(root, "stores", "").unwrap_or(&empty);
        if store_tables.is_empty() {
            self.problem("stores", "no stores configured: add a [stores.<id>] table");
        }
        for (id, value) in store_tables {
            let path = format!("stores.{id}");
            if !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                self.problem(&path, "store ids may only hold letters, digits, '-' and '_'");
            }
            let Some(table) = value.as_table() else {
                self.problem(&path, &format!("expected a table, found {}", value.type_str()));
                continue;
            };
            if let Some(store) = self.store(id, table, &path) {
                stores.push(store);
            }
        }
        stores.sort_by(|a, b| a.id.cmp(&b.id));
        let carriers = match self.table(root, "carriers", "") {
            Some(table) => self.carriers(table),
            None => Some(BTreeMap::new()),
        };
        if let Some(catalog) = &catalog {
            self.check_allocations(catalog, &stores);
        }

        Some(Config {
            database: DatabaseConfig {
                url: url?,
                max_connections: u32::try_from(max_connections?).ok()?,
                sqlite_synchronous_full: synchronous? == "full",
            },
            sync: SyncConfig {
                window: Duration::from_secs(u64::try_from(window?).ok()? * 60),
                settle_delay: Duration::from_secs(u64::try_from(settle?).ok()?),
                overlap: Duration::from_secs(u64::try_from(overlap?).ok()?),
                initial_lookback: Duration::from_secs(u64::try_from(lookback?).ok()? * 3600),
                request_timeout: Duration::from_secs(u64::try_from(timeout?).ok()?),
            },
            daemon: DaemonConfig {
                instance_id: instance_id?,
                lease: Duration::from_secs(u64::try_from(lease?).ok()?),
                drain_timeout: Duration::from_secs(u64::try_from(drain?).ok()?),
                schedules: schedules?,
            },
            admin: AdminConfig { listen: listen?, token: token? },
            catalog: catalog?,
            operator: operator?,
            stores,
            carriers: carriers?,
        })
    }

    /// A `{ job = "cron expression" }` table; each expression must parse.
    fn schedules(&mut self, table: &Table, path: &str) -> Option<BTreeMap<JobKind, String>> {
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (key, value) in table {
            let at = join(path, key);
            let Some(job) = JobKind::parse(key) else {
                let names: Vec<&str> = JobKind::ALL.iter().map(|j| j.as_str()).collect();
                self.problem(&at, &format!("unknown job (expected one of: {})", names.join(", ")));
                ok = false;
                continue;
            };
            match value.as_str() {
                Some(expr) => match <cron::Schedule as std::str::FromStr>::from_str(expr) {
                    Ok(_) => {
                        out.insert(job, expr.to_string());
                    }
                    Err(e) => {
                        self.problem(
                            &at,
                            &format!("{expr:?} is not a cron expression (sec min hour dom month dow): {e}"),
                        );
                        ok = false;
                    }
                },
                None => {
                    self.problem(
                        &at,
                        &format!("expected a cron expression string, found {}", value.type_str()),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn catalog(&mut self, table: &Table) -> Option<Catalog> {
        self.unknown_keys(table, &["skus", "bundles"], "catalog");
        let mut catalog = Catalog::default();
        let mut ok = true;
        let empty = Table::new();
        let skus = self.table(table, "skus", "catalog").unwrap_or(&empty);
        for (code, value) in skus {
            let path = format!("catalog.skus.{code}");
            let Some(def) = value.as_table() else {
                self.problem(&path, "expected a table like { kind = \"handset\", safety_stock = 2 }");
                ok = false;
                continue;
            };
            self.unknown_keys(def, &["kind", "safety_stock"], &path);
            let kind_name =
                self.choice(def, "kind", &path, "handset", &["handset", "accessory", "plan", "number_pool"]);
            let safety = self.int(def, "safety_stock", &path, 0, (0, 1_000_000));
            match (kind_name, safety) {
                (Some(kind_name), Some(safety_stock)) => {
                    let kind = match kind_name.as_str() {
                        "plan" => ComponentKind::PlanQuota,
                        "number_pool" => ComponentKind::NumberPool,
                        _ => ComponentKind::Stock,
                    };
                    catalog
                        .skus
                        .insert(code.clone(), SkuDef { code: code.clone(), kind_name, kind, safety_stock });
                }
                _ => ok = false,
            }
        }
        let bundles = self.table(table, "bundles", "catalog").unwrap_or(&empty);
        for (code, value) in bundles {
            let path = format!("catalog.bundles.{code}");
            if catalog.skus.contains_key(code) {
                self.problem(&path, "a bundle may not share its code with a SKU");
                ok = false;
            }
            let Some(parts) = value.as_table().filter(|t| !t.is_empty()) else {
                self.problem(&path, "expected a table of components like { \"HANDSET\" = 1, \"PLAN\" = 1 }");
                ok = false;
                continue;
            };
            let mut components = Vec::new();
            for (sku, units) in parts {
                let at = join(&path, sku);
                match units.as_integer() {
                    Some(n) if n >= 1 && catalog.skus.contains_key(sku) => components.push((sku.clone(), n)),
                    Some(n) if n >= 1 => {
                        self.problem(&at, "not a SKU of catalog.skus");
                        ok = false;
                    }
                    _ => {
                        self.problem(
                            &at,
                            &format!("units per bundle must be a whole number >= 1, found {units}"),
                        );
                        ok = false;
                    }
                }
            }
            catalog.bundles.insert(code.clone(), components);
        }
        ok.then_some(catalog)
    }

    /// `[carriers.<operator carrier name>] taobao = "SF", jd = "467"`: Taobao codes are
    /// letters and digits, JD ids whole numbers (a string or an integer).
    fn carriers(&mut self, table: &Table) -> Option<BTreeMap<String, CarrierCodes>> {
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (name, value) in table {
            let path = join("carriers", name);
            let Some(codes) = value.as_table() else {
                self.problem(&path, "expected a table like { taobao = \"SF\", jd = \"467\" }");
                ok = false;
                continue;
            };
            self.unknown_keys(codes, &["taobao", "jd"], &path);
            if codes.is_empty() {
                self.problem(&path, "give at least one of taobao = \"CODE\" or jd = \"ID\"");
                ok = false;
                continue;
            }
            let taobao = match codes.get("taobao") {
                None => None,
                Some(Value::String(code))
                    if !code.trim().is_empty() && code.trim().bytes().all(|b| b.is_ascii_alphanumeric()) =>
                {
                    Some(code.trim().to_string())
                }
                Some(other) => {
                    self.problem(
                        &join(&path, "taobao"),
                        &format!("expected a taobao company code such as \"SF\", found {other}"),
                    );
                    ok = false;
                    None
                }
            };
            let jd = match codes.get("jd") {
                None => None,
                Some(Value::Integer(id)) if *id > 0 => Some(id.to_string()),
                Some(Value::String(id))
                    if !id.trim().is_empty() && id.trim().bytes().all(|b| b.is_ascii_digit()) =>
                {
                    Some(id.trim().to_string())
                }
                Some(other) => {
                    self.problem(
                        &join(&path, "jd"),
                        &format!(
                            "expected a numeric jd carrier id (logiCoprId) such as \"467\", found {other}"
                        ),
                    );
                    ok = false;
                    None
                }
            };
            out.insert(name.clone(), CarrierCodes { taobao, jd });
        }
        ok.then_some(out)
    }

    fn operator(&mut self, table: &Table) -> Option<OperatorConfig> {
        self.unknown_keys(table, &["gateway", "key_id", "secret"], "operator");
        let gateway = self.string(table, "gateway", "operator", None).and_then(|g| {
            if g == "sandbox" {
                Some(Gateway::Sandbox)
            } else if url::Url::parse(&g).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
                Some(Gateway::Url(g))
            } else {
                self.problem("operator.gateway", &format!("{g:?} is not an http(s) URL or \"sandbox\""));
                None
            }
        });
        let sandbox = gateway == Some(Gateway::Sandbox);
        let key_id =
            self.string(table, "key_id", "operator", sandbox.then_some(crate::sandbox::OPERATOR_KEY_ID));
        let secret =
            self.secret(table, "secret", "operator", sandbox.then_some(crate::sandbox::OPERATOR_SECRET));
        Some(OperatorConfig { gateway: gateway?, key_id: key_id?, secret: secret? })
    }

    fn allocation(&mut self, table: &Table, path: &str) -> Option<BTreeMap<String, Allocation>> {
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (target, value) in table {
            let at = join(path, target);
            let Some(spec) = value.as_table() else {
                self.problem(&at, "expected { share = 0.5, cap = 200, floor = 2 }");
                ok = false;
                continue;
            };
            self.unknown_keys(spec, &["share", "cap", "floor"], &at);
            let share = match spec.get("share") {
                None => Some(1.0),
                Some(v) => match v.as_float().or_else(|| v.as_integer().map(|i| i as f64)) {
                    Some(share) if share > 0.0 && share <= 1.0 => Some(share),
                    _ => {
                        self.problem(
                            &join(&at, "share"),
                            &format!("{v} is not a fraction above 0 and at most 1"),
                        );
                        None
                    }
                },
            };
            let cap = match spec.get("cap") {
                None => Some(None),
                Some(_) => self.int(spec, "cap", &at, 0, (0, 100_000_000)).map(Some),
            };
            let floor = self.int(spec, "floor", &at, 0, (0, 1_000_000));
            match (share, cap, floor) {
                (Some(share), Some(cap), Some(floor)) => {
                    out.insert(target.clone(), Allocation { share, cap, floor });
                }
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// Mapped targets must exist; explicit shares of one component across allocated stores
    /// must not pass 1.
    fn check_allocations(&mut self, catalog: &Catalog, stores: &[StoreConfig]) {
        let mut sums: BTreeMap<String, (f64, Vec<String>)> = BTreeMap::new();
        for store in stores {
            for (listing, target) in &store.listings {
                if catalog.resolve(target).is_none() {
                    self.problem(
                        &format!("stores.{}.listings.{listing}", store.id),
                        &format!("{target:?} is not a SKU or bundle of the catalog"),
                    );
                }
            }
            for (target, allocation) in &store.allocation {
                let Some(resolved) = catalog.resolve(target) else {
                    self.problem(
                        &format!("stores.{}.allocation.{target}", store.id),
                        "not a SKU or bundle of the catalog",
                    );
                    continue;
                };
                if store.shared_pool {
                    continue;
                }
                for (component, _) in resolved.components {
                    let entry = sums.entry(component.key()).or_default();
                    entry.0 += allocation.share;
                    entry.1.push(format!("{}.{target}", store.id));
                }
            }
        }
        for (component, (sum, places)) in sums {
            if sum > 1.0 + 1e-9 {
                self.problem(
                    "stores.*.allocation",
                    &format!(
                        "shares of {component} sum to {sum:.2} (> 1) across {}: lower them or set shared_pool = true",
                        places.join(", ")
                    ),
                );
            }
        }
    }

    fn jobs(&mut self, table: &Table, key: &str, path: &str) -> Option<Vec<JobKind>> {
        let Some(value) = table.get(key) else { return Some(Vec::new()) };
        let at = join(path, key);
        let Some(items) = value.as_array() else {
            self.problem(&at, &format!("expected a list of job names, found {}", value.type_str()));
            return None;
        };
        let mut out = Vec::new();
        for item in items {
            match item.as_str().and_then(JobKind::parse) {
                Some(job) => out.push(job),
                None => {
                    self.problem(&at, &format!("{item} is not a job name"));
                    return None;
                }
            }
        }
        Some(out)
    }

    fn store(&mut self, id: &str, table: &Table, path: &str) -> Option<StoreConfig> {
        let kind = self.choice(table, "type", path, "", &["taobao", "jd"]);
        let gateway = self.string(table, "gateway", path, None);
        let gateway = gateway.and_then(|g| {
            if g == "sandbox" {
                Some(Gateway::Sandbox)
            } else if url::Url::parse(&g).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
                Some(Gateway::Url(g))
            } else {
                self.problem(&join(path, "gateway"), &format!("{g:?} is not an http(s) URL or \"sandbox\""));
                None
            }
        });
        let sandbox = gateway == Some(Gateway::Sandbox);
        let calls_per_second = self.int(table, "calls_per_second", path, 10, (1, 10_000));
        let paused = self.boolean(table, "paused", path, false);
        let schedules = match self.table(table, "schedules", path) {
            Some(inner) => self.schedules(inner, &join(path, "schedules")),
            None => Some(BTreeMap::new()),
        };
        let paused_jobs = self.jobs(table, "paused_jobs", path);
        let reserve_on = self.choice(table, "reserve_on", path, "payment", &["payment", "order"]);
        let shared_pool = self.boolean(table, "shared_pool", path, false);
        let listings = match self.table(table, "listings", path) {
            Some(inner) => {
                let mut out = BTreeMap::new();
                for (listing, target) in inner {
                    match target.as_str() {
                        Some(t) if !t.trim().is_empty() => {
                            out.insert(listing.clone(), t.trim().to_string());
                        }
                        _ => self.problem(
                            &join(&join(path, "listings"), listing),
                            "expected the operator SKU or bundle code as a string",
                        ),
                    }
                }
                Some(out)
            }
            None => Some(BTreeMap::new()),
        };
        let allocation = match self.table(table, "allocation", path) {
            Some(inner) => self.allocation(inner, &join(path, "allocation")),
            None => Some(BTreeMap::new()),
        };
        let kind = match kind.as_deref() {
            Some("taobao") => {
                self.store_keys(
                    table,
                    &["app_key", "app_secret", "session", "sign_method", "page_size", "fullinfo_batch"],
                    path,
                );
                let app_key =
                    self.string(table, "app_key", path, sandbox.then_some(crate::sandbox::TOP_APP_KEY));
                let app_secret =
                    self.secret(table, "app_secret", path, sandbox.then_some(crate::sandbox::TOP_APP_SECRET));
                let session =
                    self.secret(table, "session", path, sandbox.then_some(crate::sandbox::TOP_SESSION));
                let sign_method =
                    self.choice(table, "sign_method", path, "hmac-sha256", &["md5", "hmac", "hmac-sha256"]);
                let page_size = self.int(table, "page_size", path, 40, (1, 100));
                let fullinfo_batch = self.int(table, "fullinfo_batch", path, 20, (1, 50));
                StoreKind::Taobao {
                    app_key: app_key?,
                    app_secret: app_secret?,
                    session: session?,
                    sign_method: sign_method?,
                    page_size: u32::try_from(page_size?).ok()?,
                    fullinfo_batch: u32::try_from(fullinfo_batch?).ok()?,
                }
            }
            Some("jd") => {
                self.store_keys(
                    table,
                    &["app_key", "app_secret", "access_token", "page_size", "page_cap"],
                    path,
                );
                let app_key =
                    self.string(table, "app_key", path, sandbox.then_some(crate::sandbox::JOS_APP_KEY));
                let app_secret =
                    self.secret(table, "app_secret", path, sandbox.then_some(crate::sandbox::JOS_APP_SECRET));
                let access_token = self.secret(
                    table,
                    "access_token",
                    path,
                    sandbox.then_some(crate::sandbox::JOS_ACCESS_TOKEN),
                );
                let page_size = self.int(table, "page_size", path, 50, (1, 100));
                let page_cap = self.int(table, "page_cap", path, 300, (1, 10_000));
                StoreKind::Jd {
                    app_key: app_key?,
                    app_secret: app_secret?,
                    access_token: access_token?,
                    page_size: u32::try_from(page_size?).ok()?,
                    page_cap: u32::try_from(page_cap?).ok()?,
                }
            }
            _ => return None,
        };
        Some(StoreConfig {
            id: id.to_string(),
            kind,
            gateway: gateway?,
            calls_per_second: u32::try_from(calls_per_second?).ok()?,
            paused: paused?,
            schedules: schedules?,
            paused_jobs: paused_jobs?,
            reserve_on_order: reserve_on? == "order",
            shared_pool: shared_pool?,
            listings: listings?,
            allocation: allocation?,
        })
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

/// Summary of a valid config, for `config check`.
pub fn describe(config: &Config) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert("database".into(), redact_url(&config.database.url));
    for store in &config.stores {
        let gateway = match &store.gateway {
            Gateway::Url(u) => u.clone(),
            Gateway::Sandbox => "built-in sandbox".into(),
        };
        let paused = if store.paused { ", paused" } else { "" };
        out.insert(
            format!("stores.{}", store.id),
            format!("{} via {gateway}{paused}", store.kind.type_name()),
        );
    }
    out
}

/// Hides a password in a database URL.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

/// The most a secret file may hold; keys and tokens are a few hundred bytes.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// Reads a secret file: a regular file (after following links) of at most
/// [`MAX_SECRET_FILE_BYTES`], in UTF-8. A device, FIFO or directory (`/dev/zero`,
/// `/dev/stdin`) is refused instead of being read without end.
fn read_secret_file(path: &Path) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind, Read};
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut text = String::new();
    file.take(MAX_SECRET_FILE_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("larger than {} KiB", MAX_SECRET_FILE_BYTES / 1024),
        ));
    }
    Ok(text)
}
