//! The store: the only module that holds SQL. SQLite is the embedded default, PostgreSQL
//! serves several daemon instances; both run the same statements (`$N` placeholders work
//! on both through sqlx), written once and dispatched per backend by [`with_pool!`].
//!
//! SQLite runs in WAL mode with `synchronous=FULL`, foreign keys on and a busy timeout,
//! behind a one-connection writer pool (so write transactions never race to upgrade a
//! read lock) and a small reader pool.

mod audit;
mod inventory;
mod leases;
mod orders;
mod outbox;
mod reports;
mod runs;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub use audit::ReservationAudit;
pub use inventory::{ListingRow, ListingWrite, OpenReservation, SeenListing, SnapshotStats, UnitsMoved};
#[allow(unused_imports)]
pub(crate) use leases::fence_clause;
pub use leases::{EpochMatch, FENCE_HOLDS_SQL, LeaseRow, RunRequest};
pub use orders::{IngestStats, QuarantineRow, StoredOrder, StoredOrderSummary};
pub use outbox::{
    Consume, Finish, NewOutboxRow, OutboxCounts, OutboxFilter, OutboxKind, OutboxRow, OutboxState,
    ShippedLines, WITHDRAWN_BEFORE_SENDING, fulfil_key, ship_key, withdraw_key,
};
pub use runs::{JobRun, RunOutcome};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database url {0:?} is not sqlite:// or postgres://")]
    UnknownUrl(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// A write made under a job lease found the lease taken over; nothing was written.
    #[error("lease lost: {0}")]
    FenceLost(String),
}

/// Which database, with its pools.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    Sqlite { write: SqlitePool, read: SqlitePool },
    Postgres(PgPool),
}

/// Runs the same body against whichever pool the store has. `write` picks SQLite's writer
/// pool, `read` its reader pool; PostgreSQL has one pool for both.
macro_rules! with_pool {
    ($store:expr, write, $pool:ident => $body:expr) => {
        match &$store.backend {
            $crate::store::Backend::Sqlite { write: $pool, .. } => $body,
            $crate::store::Backend::Postgres($pool) => $body,
        }
    };
    ($store:expr, read, $pool:ident => $body:expr) => {
        match &$store.backend {
            $crate::store::Backend::Sqlite { read: $pool, .. } => $body,
            $crate::store::Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

/// Records, inside a write transaction, that these ledger components (`sku:X`, `plan:Y`)
/// changed: every registered store's `stock_dirty` row for each is bumped, so each store's
/// next stock run plans the listings that use them (and only those).
macro_rules! mark_components {
    ($tx:ident, $components:expr) => {{
        let components: &std::collections::BTreeSet<String> = $components;
        let list: Vec<&String> = components.iter().collect();
        for chunk in list.chunks(1_000) {
            let mut query = sqlx::QueryBuilder::new(
                "INSERT INTO stock_dirty (store_id, component, gen) SELECT s.id, c.column1, 1 FROM stores s CROSS JOIN (",
            );
            query.push_values(chunk, |mut row, component| {
                row.push_bind(*component);
            });
            query.push(
                ") AS c WHERE true ON CONFLICT (store_id, component) DO UPDATE SET gen = stock_dirty.gen + 1",
            );
            query.build().execute(&mut *$tx).await?;
        }
    }};
}
pub(crate) use mark_components;

/// The writer's page cache, in KiB (SQLite's negative `cache_size`). The default 2 MiB
/// spills a large ingest's dirty pages to the WAL before commit (`pagerStress`) and reads
/// index pages back; 32 MiB holds a flash sale's working set of order and line indexes.
const SQLITE_WRITER_CACHE: &str = "-32768";

/// Pages the WAL may hold before the writer copies them back into the database file (the
/// default is 1,000). Every commit of a page of orders appends the index pages it touched;
/// a checkpoint writes each distinct page once however many commits touched it, so a longer
/// interval copies the hot index pages fewer times.
const SQLITE_WAL_AUTOCHECKPOINT: &str = "10000";

/// Bytes the `-wal` file is cut back to after a checkpoint resets it, should a long read
/// have let it grow past the checkpoint interval (about 40 MiB).
const SQLITE_WAL_SIZE_LIMIT: &str = "67108864";

/// How every flagsync connection to a SQLite file is opened: WAL, `synchronous` FULL (or
/// NORMAL), foreign keys, a busy timeout, and statement journals and temporary tables in
/// memory (`temp_store=MEMORY`). A multi-row upsert needs a statement journal, and by
/// default SQLite spills one past 64 KiB into a temporary file, written page by page: that
/// was a fifth of the time of an ingest. Public so that benchmarks open their files the same
/// way.
pub fn sqlite_connect_options(url: &str, synchronous_full: bool) -> Result<SqliteConnectOptions, StoreError> {
    Ok(SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(if synchronous_full { SqliteSynchronous::Full } else { SqliteSynchronous::Normal })
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10))
        .pragma("temp_store", "memory"))
}

/// [`sqlite_connect_options`] plus what only the one writer connection sets: its page cache,
/// the checkpoint interval and the WAL size limit. Public so that benchmarks write the way
/// the store writes.
pub fn sqlite_writer_options(url: &str, synchronous_full: bool) -> Result<SqliteConnectOptions, StoreError> {
    Ok(sqlite_connect_options(url, synchronous_full)?
        .pragma("cache_size", SQLITE_WRITER_CACHE)
        .pragma("wal_autocheckpoint", SQLITE_WAL_AUTOCHECKPOINT)
        .pragma("journal_size_limit", SQLITE_WAL_SIZE_LIMIT))
}

/// Handle on the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) backend: Backend,
}

/// How to open the database.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub url: String,
    /// PostgreSQL: the schema to use (created if missing); tests use one per run.
    pub schema: Option<String>,
    pub max_connections: u32,
    /// SQLite: `synchronous=FULL` (default) survives power loss; NORMAL only app crashes.
    pub sqlite_synchronous_full: bool,
}

impl StoreOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), schema: None, max_connections: 8, sqlite_synchronous_full: true }
    }
}

impl Store {
    /// Opens (creating a SQLite file if missing) and migrates.
    pub async fn open(options: &StoreOptions) -> Result<Self, StoreError> {
        let store = Self::connect(options).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Opens without migrating.
    pub async fn connect(options: &StoreOptions) -> Result<Self, StoreError> {
        let url = options.url.as_str();
        if url.starts_with("sqlite:") {
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(sqlite_writer_options(url, options.sqlite_synchronous_full)?)
                .await?;
            let read = SqlitePoolOptions::new()
                .max_connections(options.max_connections.clamp(1, 16))
                .connect_with(sqlite_connect_options(url, options.sqlite_synchronous_full)?.read_only(true))
                .await?;
            Ok(Self { backend: Backend::Sqlite { write, read } })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let mut connect = PgConnectOptions::from_str(url)?;
            if let Some(schema) = &options.schema {
                // Create the schema first, on a connection of its own.
                let bootstrap = PgPoolOptions::new().max_connections(1).connect_with(connect.clone()).await?;
                let create = format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", schema.replace('"', ""));
                sqlx::query(sqlx::AssertSqlSafe(create)).execute(&bootstrap).await?;
                bootstrap.close().await;
                connect = connect.options([("search_path", schema.as_str())]);
            }
            // Plan every execution with its values. sqlx prepares each statement once per
            // connection, and after five executions PostgreSQL may keep a generic plan made
            // while the tables were small and had no statistics: at 100,000 orders, such a
            // plan deleted a page's lines through `order_lines_by_sku` (store prefix only,
            // then a filter on every line), 0.6 s a page, and ingest fell to 218 orders/s.
            connect = connect.options([("plan_cache_mode", "force_custom_plan")]);
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections.max(2))
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(connect)
                .await?;
            Ok(Self { backend: Backend::Postgres(pool) })
        } else {
            Err(StoreError::UnknownUrl(url.to_string()))
        }
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite { write, .. } => SQLITE_MIGRATIONS.run(write).await?,
            Backend::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await?,
        }
        Ok(())
    }

    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite { .. } => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, read, pool => { sqlx::query("SELECT 1").execute(pool).await?; });
        Ok(())
    }

    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite { write, read } => {
                read.close().await;
                write.close().await;
            }
            Backend::Postgres(pool) => pool.close().await,
        }
    }

    /// Records a configured store (idempotent).
    pub async fn register_store(&self, store_id: &str, platform: &str) -> Result<(), StoreError> {
        with_pool!(self, write, pool => {
            sqlx::query(
                "INSERT INTO stores (id, platform, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET platform = excluded.platform",
            )
            .bind(store_id)
            .bind(platform)
            .bind(Utc::now())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Where a store's incremental job stands.
    pub async fn cursor(&self, store_id: &str, job: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let position: Option<DateTime<Utc>> = with_pool!(self, read, pool => {
            sqlx::query_scalar("SELECT position FROM sync_cursors WHERE store_id = $1 AND job = $2")
                .bind(store_id)
                .bind(job)
                .fetch_optional(pool)
                .await?
        });
        Ok(position)
    }
}
