//! Test helpers: a fresh store per test (a temp SQLite file, or a PostgreSQL schema of its
//! own), and sample orders.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, TimeZone, Utc};
use flagsync::store::{Store, StoreOptions};
use flagsync_market::{Order, OrderLine, OrderStatus, RefundState};

pub const PG_ENV: &str = "FLAGSYNC_TEST_POSTGRES_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A store that cleans up after itself.
pub struct TestStore {
    pub store: Store,
    _dir: Option<tempfile::TempDir>,
    schema: Option<(String, String)>,
}

impl std::ops::Deref for TestStore {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let Some((url, schema)) = self.schema.take() {
            // Best effort: drop the schema on a fresh runtime-free connection.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
                runtime.block_on(async {
                    let pool = sqlx::PgPool::connect(&url).await.ok()?;
                    let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
                    sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await.ok()?;
                    Some(())
                })
            })
            .join();
        }
    }
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// Where PostgreSQL tests connect, if anywhere.
pub fn postgres_url() -> Option<String> {
    std::env::var(PG_ENV).ok().filter(|u| !u.is_empty())
}

pub fn unique_schema() -> String {
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
    format!(
        "fs_test_{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000,
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// A migrated, empty store; `None` (with a notice) when PostgreSQL is not configured.
pub async fn test_store(backend: Backend) -> Option<TestStore> {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("flagsync.db").display());
            let store = Store::open(&StoreOptions::new(url)).await.unwrap();
            Some(TestStore { store, _dir: Some(dir), schema: None })
        }
        Backend::Postgres => {
            let Some(url) = postgres_url() else {
                eprintln!(
                    "postgres test NOT RUN: set {PG_ENV} (e.g. postgres://postgres@127.0.0.1:5432/test)"
                );
                return None;
            };
            let schema = unique_schema();
            let mut options = StoreOptions::new(url.clone());
            options.schema = Some(schema.clone());
            options.max_connections = 4;
            let store = Store::open(&options).await.unwrap();
            Some(TestStore { store, _dir: None, schema: Some((url, schema)) })
        }
    }
}

pub fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 11, h, m, s).single().unwrap()
}

/// A paid order with one line.
pub fn order(id: &str, modified: DateTime<Utc>, status: OrderStatus) -> Order {
    Order {
        order_id: id.to_string(),
        status,
        platform_status: format!("{status:?}").to_uppercase(),
        created_at: at(0, 0, 0),
        modified_at: modified,
        paid_at: Some(at(0, 0, 1)),
        total_fen: 399_900,
        payment_fen: 399_900,
        post_fee_fen: 0,
        buyer: flagsync_market::pii::Pii::new("buyer-nick"),
        receiver: None,
        lines: vec![OrderLine {
            line_id: format!("{id}-1"),
            item_id: "600000000000".into(),
            sku_id: Some("5000000000000".into()),
            outer_sku_id: Some("SKU-00001".into()),
            title: "Handset".into(),
            quantity: 1,
            price_fen: 399_900,
            payment_fen: 399_900,
            refund: RefundState::None,
            platform_status: None,
        }],
        contract: None,
        raw: format!("{{\"tid\":{id}}}"),
    }
}

/// Runs each named async test against SQLite and PostgreSQL.
macro_rules! backend_suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(store) = $crate::support::test_store($crate::support::Backend::Sqlite).await {
                        super::$name(store).await;
                    }
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(store) = $crate::support::test_store($crate::support::Backend::Postgres).await {
                        super::$name(store).await;
                    }
                }
            )*
        }
    };
}
pub(crate) use backend_suite;
