//! Read-only views for the reliability checkers (`flagsync soak`, the chaos rig): every
//! reservation row with its state, so a checker can follow each one's history.

use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError, with_pool};

/// One reservation row as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReservationAudit {
    pub store_id: String,
    pub order_id: String,
    pub line_id: String,
    pub component: String,
    pub quantity: i64,
    /// `open`, `released` or `consumed`.
    pub state: String,
}

impl Store {
    /// Every reservation row, by key.
    pub async fn audit_reservations(&self) -> Result<Vec<ReservationAudit>, StoreError> {
        let mut out = Vec::new();
        with_pool!(self, read, pool => {
            let rows = sqlx::query(
                "SELECT store_id, order_id, line_id, component, quantity, state FROM reservations \
                 ORDER BY store_id, order_id, line_id, component",
            )
            .fetch_all(pool)
            .await?;
            for row in rows {
                out.push(ReservationAudit {
                    store_id: row.try_get("store_id")?,
                    order_id: row.try_get("order_id")?,
                    line_id: row.try_get("line_id")?,
                    component: row.try_get("component")?,
                    quantity: row.try_get("quantity")?,
                    state: row.try_get("state")?,
                });
            }
        });
        Ok(out)
    }
}
