//! Read-only figures for reports (the demo, status).

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, StoreError, with_pool};

impl Store {
    /// For every paid order of a store: when the marketplace says it was paid, and when
    /// flagsync first stored it.
    pub async fn paid_to_ingested(
        &self,
        store_id: &str,
    ) -> Result<Vec<(DateTime<Utc>, DateTime<Utc>)>, StoreError> {
        let mut out = Vec::new();
        with_pool!(self, read, pool => {
            let rows = sqlx::query("SELECT paid_at, ingested_at FROM orders WHERE store_id = $1 AND paid_at IS NOT NULL")
                .bind(store_id)
                .fetch_all(pool)
                .await?;
            for row in rows {
                out.push((row.try_get("paid_at")?, row.try_get("ingested_at")?));
            }
        });
        Ok(out)
    }
}
