//! The outbox and the dead-letter list: effects on other systems (fulfilment requests,
//! their withdrawals, shipment pushes) written as rows in the transaction of the state
//! change that causes them, claimed by workers, and finished as done, dead (with the
//! reason, until ops retry or drop them) or dropped (with the reason). Nothing is deleted.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{Backend, Store, StoreError, with_pool};

/// What an outbox row asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxKind {
    /// Send a paid order to the operator's fulfilment.
    Fulfil,
    /// Withdraw an order cancelled or refunded at the marketplace from fulfilment.
    Withdraw,
    /// Push an operator shipment notice to the marketplace.
    Ship,
}

impl OutboxKind {
    pub const ALL: [OutboxKind; 3] = [Self::Fulfil, Self::Withdraw, Self::Ship];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fulfil => "fulfil",
            Self::Withdraw => "withdraw",
            Self::Ship => "ship",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// Where an outbox row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxState {
    Pending,
    Done,
    /// Given up on: in the dead-letter list with its reason.
    Dead,
    /// Not to be sent (withdrawn before sending, replaced, or dropped by ops), with the reason.
    Dropped,
}

impl OutboxState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Done => "done",
            Self::Dead => "dead",
            Self::Dropped => "dropped",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Pending, Self::Done, Self::Dead, Self::Dropped].into_iter().find(|s| s.as_str() == text)
    }
}

/// One outbox row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxRow {
    pub id: i64,
    pub kind: OutboxKind,
    pub store_id: String,
    pub order_id: String,
    pub dedupe_key: String,
    pub payload: serde_json::Value,
    pub state: OutboxState,
    /// Claims so far (a claim counts before its call is made).
    pub attempts: i64,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub done_at: Option<DateTime<Utc>>,
    pub dead_reason: Option<String>,
    pub dropped_reason: Option<String>,
}

/// A row to add (shipments pulled from the operator or imported from CSV).
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutboxRow {
    pub kind: OutboxKind,
    pub store_id: String,
    pub order_id: String,
    pub dedupe_key: String,
    pub payload: serde_json::Value,
    /// First due at.
    pub due: DateTime<Utc>,
    /// Set when the row cannot ever be sent (e.g. its store is not configured): it is
    /// written straight into the dead-letter list with this reason, never dropped.
    pub dead_reason: Option<String>,
}

/// Rows per state for one store (or all).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutboxCounts {
    pub pending: i64,
    pub done: i64,
    pub dead: i64,
    pub dropped: i64,
}

/// Which rows a listing wants.
#[derive(Debug, Clone, Default)]
pub struct OutboxFilter<'a> {
    pub store_id: Option<&'a str>,
    pub state: Option<OutboxState>,
    pub kind: Option<OutboxKind>,
    pub order_id: Option<&'a str>,
    pub limit: i64,
}

pub fn fulfil_key(store_id: &str, order_id: &str) -> String {
    format!("fulfil:{store_id}:{order_id}")
}

pub fn withdraw_key(store_id: &str, order_id: &str) -> String {
    format!("withdraw:{store_id}:{order_id}")
}

pub fn ship_key(store_id: &str, notice_id: &str) -> String {
    format!("ship:{store_id}:{notice_id}")
}

/// The reason a fulfilment never sent is dropped when its order closes.
pub const WITHDRAWN_BEFORE_SENDING: &str = "withdrawn before sending";

pub(super) const INSERT_ROW: &str = "INSERT INTO outbox (kind, store_id, order_id, dedupe_key, payload, state, \
     attempts, next_attempt_at, created_at, dead_reason) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, $9) \
     ON CONFLICT (dedupe_key) DO NOTHING";

/// A fulfilment never claimed cannot have reached the operator: dropping it is enough.
pub(super) const DROP_UNTRIED_FULFIL: &str = "UPDATE outbox SET state = 'dropped', dropped_reason = $1 \
     WHERE dedupe_key = $2 AND state = 'pending' AND attempts = 0 AND last_error IS NULL";

pub(super) const FULFIL_STATE: &str = "SELECT state, attempts, CAST(CASE WHEN last_error IS NULL THEN 0 ELSE 1 END AS BIGINT) AS tried, \
     CAST(CASE WHEN claimed_by IS NULL THEN 0 ELSE 1 END AS BIGINT) AS claimed, next_attempt_at FROM outbox WHERE dedupe_key = $1";

pub(super) const DROP_OPEN_FULFIL: &str = "UPDATE outbox SET state = 'dropped', dropped_reason = $1 WHERE dedupe_key = $2 AND state IN ('pending', 'dead')";

/// Writes the outbox rows an order's new state asks for, inside `Store::ingest`'s
/// transaction: a paid order gets its `fulfil` row once; a cancelled or refunded order
/// drops a fulfilment never sent, or else queues a `withdraw` (due no earlier than a
/// possibly in-flight send's claim ends, so the withdrawal lands after it; the next drain
/// takes it at once, as no send of an earlier drain can still be in flight then). Held orders get
/// nothing until they come back as paid. Evaluates to the rows written.
macro_rules! write_order_effects {
    ($tx:ident, $store_id:expr, $order:expr, $now:expr) => {{
        use $crate::store::outbox::{
            DROP_OPEN_FULFIL, DROP_UNTRIED_FULFIL, FULFIL_STATE, INSERT_ROW, WITHDRAWN_BEFORE_SENDING,
            fulfil_key, withdraw_key,
        };
        let store_id: &str = $store_id;
        let order: &flagsync_market::Order = $order;
        let mut written: u64 = 0;
        match order.status {
            flagsync_market::OrderStatus::Paid => {
                written += sqlx::query(INSERT_ROW)
                    .bind("fulfil")
                    .bind(store_id)
                    .bind(&order.order_id)
                    .bind(fulfil_key(store_id, &order.order_id))
                    .bind("{}")
                    .bind("pending")
                    .bind(order.modified_at)
                    .bind($now)
                    .bind(None::<String>)
                    .execute(&mut *$tx)
                    .await?
                    .rows_affected();
            }
            flagsync_market::OrderStatus::Cancelled | flagsync_market::OrderStatus::Refunded => {
                let key = fulfil_key(store_id, &order.order_id);
                let untried = sqlx::query(DROP_UNTRIED_FULFIL)
                    .bind(WITHDRAWN_BEFORE_SENDING)
                    .bind(&key)
                    .execute(&mut *$tx)
                    .await?
                    .rows_affected();
                written += untried;
                if untried == 0 {
                    let row: Option<(String, i64, i64, i64, chrono::DateTime<chrono::Utc>)> =
                        sqlx::query_as(FULFIL_STATE).bind(&key).fetch_optional(&mut *$tx).await?;
                    if let Some((state, attempts, tried, claimed, next)) = row
                        && (state == "done" || attempts > 0 || tried == 1)
                    {
                        let reason = format!(
                            "order {} at the marketplace ({})",
                            order.status.as_str(),
                            order.platform_status
                        );
                        sqlx::query(DROP_OPEN_FULFIL)
                            .bind(format!("{reason}: withdrawal queued"))
                            .bind(&key)
                            .execute(&mut *$tx)
                            .await?;
                        // Only a send in flight (a claim) is waited for; a send waiting out a
                        // backoff was just dropped and will never be made.
                        let due = if state == "pending" && claimed == 1 {
                            next.max(order.modified_at)
                        } else {
                            order.modified_at
                        };
                        written += sqlx::query(INSERT_ROW)
                            .bind("withdraw")
                            .bind(store_id)
                            .bind(&order.order_id)
                            .bind(withdraw_key(store_id, &order.order_id))
                            .bind(serde_json::json!({ "reason": reason }).to_string())
                            .bind("pending")
                            .bind(due)
                            .bind($now)
                            .bind(None::<String>)
                            .execute(&mut *$tx)
                            .await?
                            .rows_affected();
                    }
                }
            }
            _ => {}
        }
        written
    }};
}
pub(crate) use write_order_effects;

const COLUMNS: &str = "id, kind, store_id, order_id, dedupe_key, payload, state, attempts, next_attempt_at, \
     last_error, created_at, done_at, dead_reason, dropped_reason";

/// Claims due rows: each claim counts as an attempt and pushes `next_attempt_at` to the end
/// of the claim, so a worker that dies mid-call leaves a row that comes due again later.
const CLAIM_SQLITE: &str = "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1, claimed_by = $8 \
     WHERE id IN (SELECT id FROM outbox WHERE store_id = $2 AND state = 'pending' AND kind IN ($3, $4, $5) \
     AND next_attempt_at <= $6 ORDER BY id LIMIT $7) \
     RETURNING id, kind, store_id, order_id, dedupe_key, payload, state, attempts, next_attempt_at, \
     last_error, created_at, done_at, dead_reason, dropped_reason";

/// Several instances drain in parallel: rows another one holds are skipped, not waited on.
const CLAIM_POSTGRES: &str = "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1, claimed_by = $8 \
     WHERE id IN (SELECT id FROM outbox WHERE store_id = $2 AND state = 'pending' AND kind IN ($3, $4, $5) \
     AND next_attempt_at <= $6 ORDER BY id LIMIT $7 FOR UPDATE SKIP LOCKED) \
     RETURNING id, kind, store_id, order_id, dedupe_key, payload, state, attempts, next_attempt_at, \
     last_error, created_at, done_at, dead_reason, dropped_reason";

fn row_from<R>(row: &R) -> Result<OutboxRow, StoreError>
where
    R: Row,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> DateTime<Utc>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<DateTime<Utc>>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let id: i64 = row.try_get("id")?;
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    let payload: String = row.try_get("payload")?;
    Ok(OutboxRow {
        id,
        kind: OutboxKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("outbox row {id}: unknown kind {kind:?}")))?,
        store_id: row.try_get("store_id")?,
        order_id: row.try_get("order_id")?,
        dedupe_key: row.try_get("dedupe_key")?,
        payload: serde_json::from_str(&payload)
            .map_err(|e| StoreError::Corrupt(format!("outbox row {id}: payload: {e}")))?,
        state: OutboxState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("outbox row {id}: unknown state {state:?}")))?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        done_at: row.try_get("done_at")?,
        dead_reason: row.try_get("dead_reason")?,
        dropped_reason: row.try_get("dropped_reason")?,
    })
}

/// Reservations a confirmed shipment consumes: the order's lines (all when empty) and the
/// operator's stock watermark at which the units left on-hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consume {
    pub line_ids: Vec<String>,
    pub watermark: i64,
}

/// An order's lines the operator shipped (all of them when `consume.line_ids` is empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShippedLines {
    pub store_id: String,
    pub order_id: String,
    pub consume: Consume,
}

/// How a claimed row ends this attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// Delivered; a shipment also consumes the order's reservations.
    Done { consume: Option<Consume> },
    /// Failed; try again at `at`.
    RetryAt { at: DateTime<Utc>, error: String },
    /// Not sent (held): back in line untried, due at `at`.
    Wait { at: DateTime<Utc> },
    /// Into the dead-letter list.
    Dead { reason: String, error: Option<String> },
    /// No longer wanted.
    Drop { reason: String },
}

const CONSUME: &str = "UPDATE reservations SET state = 'consumed', consumed_watermark = $1, closed_at = $2 \
     WHERE store_id = $3 AND order_id = $4 AND state = 'open' AND (CAST($5 AS TEXT) IS NULL OR line_id = $5) \
     RETURNING component";

/// Consumes an order's open reservations for a [`Consume`] (every line when it names none)
/// inside the transaction `$tx`, adding their components to `$touched`; evaluates to the
/// rows moved. A macro because each backend has its own transaction type.
macro_rules! consume {
    ($tx:ident, $consume:expr, $now:expr, $store_id:expr, $order_id:expr, $touched:ident) => {{
        let consume: &Consume = $consume;
        let lines: Vec<Option<&str>> = if consume.line_ids.is_empty() {
            vec![None]
        } else {
            consume.line_ids.iter().map(|l| Some(l.as_str())).collect()
        };
        let mut moved = 0_u64;
        for line in lines {
            let rows = sqlx::query(CONSUME)
                .bind(consume.watermark)
                .bind($now)
                .bind($store_id)
                .bind($order_id)
                .bind(line)
                .fetch_all(&mut *$tx)
                .await?;
            moved += rows.len() as u64;
            for row in rows {
                $touched.insert(row.try_get::<String, _>("component")?);
            }
        }
        moved
    }};
}

impl Store {
    /// Adds rows (duplicates by dedupe key are ignored) and, when given, moves a named
    /// watermark forward, in one transaction: a pulled notice is never lost or taken twice.
    /// Returns the rows inserted.
    pub async fn enqueue_outbox(
        &self,
        rows: &[NewOutboxRow],
        watermark: Option<(&str, i64)>,
    ) -> Result<u64, StoreError> {
        self.enqueue_outbox_consuming(rows, watermark, &[]).await
    }

    /// [`Self::enqueue_outbox`], also consuming the reservations of orders the operator
    /// shipped, in the same transaction: the notices that say so and the watermark that
    /// passes them commit together with the consumption, so a crash between them cannot
    /// leave a shipped line reserved with its notice already behind the watermark.
    pub async fn enqueue_outbox_consuming(
        &self,
        rows: &[NewOutboxRow],
        watermark: Option<(&str, i64)>,
        consumes: &[ShippedLines],
    ) -> Result<u64, StoreError> {
        let now = Utc::now();
        let mut inserted = 0;
        with_pool!(self, write, pool => {
            let mut tx = pool.begin().await?;
            let mut touched = std::collections::BTreeSet::new();
            for shipped in consumes {
                consume!(tx, &shipped.consume, now, &shipped.store_id, &shipped.order_id, touched);
            }
            // The stock job re-plans what uses these components.
            super::mark_components!(tx, &touched);
            for row in rows {
                let state = if row.dead_reason.is_some() { "dead" } else { "pending" };
                inserted += sqlx::query(INSERT_ROW)
                    .bind(row.kind.as_str())
                    .bind(&row.store_id)
                    .bind(&row.order_id)
                    .bind(&row.dedupe_key)
                    .bind(row.payload.to_string())
                    .bind(state)
                    .bind(row.due)
                    .bind(now)
                    .bind(&row.dead_reason)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            if let Some((name, value)) = watermark {
                sqlx::query(
                    "INSERT INTO watermarks (name, value, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at \
                     WHERE excluded.value > watermarks.value",
                )
                .bind(name)
                .bind(value)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(inserted)
    }

    /// Claims up to `limit` due pending rows of a store of the given kinds, oldest first.
    /// Each claim counts an attempt and holds the row until `claim_until`.
    pub async fn claim_outbox(
        &self,
        store_id: &str,
        kinds: &[OutboxKind],
        now: DateTime<Utc>,
        claim_until: DateTime<Utc>,
        limit: i64,
        claimant: &str,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let Some(first) = kinds.first() else { return Ok(Vec::new()) };
        let kind = |n: usize| kinds.get(n).unwrap_or(first).as_str();
        let mut out = Vec::new();
        match &self.backend {
            Backend::Sqlite { write, .. } => {
                let rows = sqlx::query(CLAIM_SQLITE)
                    .bind(claim_until)
                    .bind(store_id)
                    .bind(kind(0))
                    .bind(kind(1))
                    .bind(kind(2))
                    .bind(now)
                    .bind(limit)
                    .bind(claimant)
                    .fetch_all(write)
                    .await?;
                for row in &rows {
                    out.push(row_from(row)?);
                }
            }
            Backend::Postgres(pool) => {
                let rows = sqlx::query(CLAIM_POSTGRES)
                    .bind(claim_until)
                    .bind(store_id)
                    .bind(kind(0))
                    .bind(kind(1))
                    .bind(kind(2))
                    .bind(now)
                    .bind(limit)
                    .bind(claimant)
                    .fetch_all(pool)
                    .await?;
                for row in &rows {
                    out.push(row_from(row)?);
                }
            }
        }
        out.sort_by_key(|r| r.id);
        Ok(out)
    }

    /// Makes due at once the pending rows of these kinds that a drain other than
    /// `claimant` claimed and never finished: one drain of a store's kinds runs at a time
    /// (the job's lease), so such a drain died (a killed daemon, an aborted run). Without
    /// this they would wait for their claim to lapse. Withdrawals queued behind a send
    /// that was in flight (never tried, due later) are made due too: that send is over or
    /// abandoned now. Returns the rows released.
    pub async fn release_abandoned_claims(
        &self,
        store_id: &str,
        kinds: &[OutboxKind],
        claimant: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let Some(first) = kinds.first() else { return Ok(0) };
        let kind = |n: usize| kinds.get(n).unwrap_or(first).as_str();
        let withdrawals = kinds.contains(&OutboxKind::Withdraw);
        let released = with_pool!(self, write, pool => {
            let claimed = sqlx::query(
                "UPDATE outbox SET next_attempt_at = $1, claimed_by = NULL WHERE store_id = $2 \
                 AND state = 'pending' AND kind IN ($3, $4, $5) AND claimed_by IS NOT NULL AND claimed_by <> $6",
            )
            .bind(now)
            .bind(store_id)
            .bind(kind(0))
            .bind(kind(1))
            .bind(kind(2))
            .bind(claimant)
            .execute(pool)
            .await?
            .rows_affected();
            // Never tried and due later: queued behind a send's claim (withdrawals never wait
            // for anything else).
            let behind_a_send = if withdrawals {
                sqlx::query(
                    "UPDATE outbox SET next_attempt_at = $1 WHERE store_id = $2 AND state = 'pending' \
                     AND kind = 'withdraw' AND attempts = 0 AND last_error IS NULL AND next_attempt_at > $1",
                )
                .bind(now)
                .bind(store_id)
                .execute(pool)
                .await?
                .rows_affected()
            } else {
                0
            };
            claimed + behind_a_send
        });
        Ok(released)
    }

    /// Records what came of claimed rows, all in one transaction (one disk sync for a whole
    /// batch). A delivered shipment consumes its order's reservations in that transaction.
    /// Returns the reservation rows consumed (a repeat consumes none).
    pub async fn finish_outbox(
        &self,
        items: &[(&OutboxRow, Finish)],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut consumed = 0;
        with_pool!(self, write, pool => {
            let mut tx = pool.begin().await?;
            for (row, finish) in items {
                match finish {
                    Finish::Done { consume } => {
                        // Delivered is the truth even if ops dropped the row while in flight.
                        sqlx::query(
                            "UPDATE outbox SET state = 'done', done_at = $1, last_error = NULL, dead_reason = NULL \
                             WHERE id = $2 AND state <> 'done'",
                        )
                        .bind(now)
                        .bind(row.id)
                        .execute(&mut *tx)
                        .await?;
                        let Some(consume) = consume else { continue };
                        let mut touched = std::collections::BTreeSet::new();
                        consumed += consume!(tx, consume, now, &row.store_id, &row.order_id, touched);
                        // The stock job re-plans what uses these components.
                        super::mark_components!(tx, &touched);
                    }
                    Finish::RetryAt { at, error } => {
                        sqlx::query(
                            "UPDATE outbox SET next_attempt_at = $1, last_error = $2, claimed_by = NULL \
                             WHERE id = $3 AND state = 'pending'",
                        )
                        .bind(at)
                        .bind(error)
                        .bind(row.id)
                        .execute(&mut *tx)
                        .await?;
                    }
                    Finish::Wait { at } => {
                        sqlx::query(
                            "UPDATE outbox SET next_attempt_at = $1, attempts = attempts - 1, claimed_by = NULL \
                             WHERE id = $2 AND state = 'pending' AND attempts > 0",
                        )
                        .bind(at)
                        .bind(row.id)
                        .execute(&mut *tx)
                        .await?;
                    }
                    Finish::Dead { reason, error } => {
                        sqlx::query(
                            "UPDATE outbox SET state = 'dead', dead_reason = $1, last_error = COALESCE($2, last_error) \
                             WHERE id = $3 AND state = 'pending'",
                        )
                        .bind(reason)
                        .bind(error)
                        .bind(row.id)
                        .execute(&mut *tx)
                        .await?;
                    }
                    Finish::Drop { reason } => {
                        sqlx::query(
                            "UPDATE outbox SET state = 'dropped', dropped_reason = $1 \
                             WHERE id = $2 AND state IN ('pending', 'dead')",
                        )
                        .bind(reason)
                        .bind(row.id)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
            }
            tx.commit().await?;
        });
        Ok(consumed)
    }

    /// Drops a pending or dead row with the reason; false when there is no such row in
    /// those states.
    pub async fn outbox_drop(&self, id: i64, reason: &str) -> Result<bool, StoreError> {
        let done = with_pool!(self, write, pool => {
            sqlx::query(
                "UPDATE outbox SET state = 'dropped', dropped_reason = $1 WHERE id = $2 AND state IN ('pending', 'dead')",
            )
            .bind(reason)
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(done == 1)
    }

    /// Puts dead rows back in line, due at `now` with a fresh attempt count: one row by id,
    /// or every dead row (of a store, when given). The last error is kept for history.
    pub async fn retry_dead_letters(
        &self,
        id: Option<i64>,
        store_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let done = with_pool!(self, write, pool => {
            sqlx::query(
                "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = $1, dead_reason = NULL \
                 WHERE state = 'dead' AND (CAST($2 AS BIGINT) IS NULL OR id = $2) \
                 AND (CAST($3 AS TEXT) IS NULL OR store_id = $3)",
            )
            .bind(now)
            .bind(id)
            .bind(store_id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(done)
    }

    /// One row by id.
    pub async fn outbox_row(&self, id: i64) -> Result<Option<OutboxRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM outbox WHERE id = $1");
        with_pool!(self, read, pool => {
            match sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await? {
                Some(row) => Ok(Some(row_from(&row)?)),
                None => Ok(None),
            }
        })
    }

    /// One row by dedupe key.
    pub async fn outbox_by_key(&self, key: &str) -> Result<Option<OutboxRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM outbox WHERE dedupe_key = $1");
        with_pool!(self, read, pool => {
            match sqlx::query(sqlx::AssertSqlSafe(sql)).bind(key).fetch_optional(pool).await? {
                Some(row) => Ok(Some(row_from(&row)?)),
                None => Ok(None),
            }
        })
    }

    /// Rows matching the filter, oldest first.
    pub async fn outbox_rows(&self, filter: &OutboxFilter<'_>) -> Result<Vec<OutboxRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM outbox WHERE (CAST($1 AS TEXT) IS NULL OR store_id = $1) \
             AND (CAST($2 AS TEXT) IS NULL OR state = $2) AND (CAST($3 AS TEXT) IS NULL OR kind = $3) \
             AND (CAST($4 AS TEXT) IS NULL OR order_id = $4) ORDER BY id LIMIT $5"
        );
        let limit = if filter.limit > 0 { filter.limit } else { i64::MAX };
        let mut out = Vec::new();
        with_pool!(self, read, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(filter.store_id)
                .bind(filter.state.map(OutboxState::as_str))
                .bind(filter.kind.map(OutboxKind::as_str))
                .bind(filter.order_id)
                .bind(limit)
                .fetch_all(pool)
                .await?;
            for row in &rows {
                out.push(row_from(row)?);
            }
        });
        Ok(out)
    }

    /// Rows per state, for one store or all.
    pub async fn outbox_counts(&self, store_id: Option<&str>) -> Result<OutboxCounts, StoreError> {
        let mut counts = OutboxCounts::default();
        with_pool!(self, read, pool => {
            let rows = sqlx::query(
                "SELECT state, COUNT(*) AS n FROM outbox WHERE (CAST($1 AS TEXT) IS NULL OR store_id = $1) GROUP BY state",
            )
            .bind(store_id)
            .fetch_all(pool)
            .await?;
            for row in rows {
                let state: String = row.try_get("state")?;
                let n: i64 = row.try_get("n")?;
                match OutboxState::parse(&state) {
                    Some(OutboxState::Pending) => counts.pending = n,
                    Some(OutboxState::Done) => counts.done = n,
                    Some(OutboxState::Dead) => counts.dead = n,
                    Some(OutboxState::Dropped) => counts.dropped = n,
                    None => return Err(StoreError::Corrupt(format!("outbox: unknown state {state:?}"))),
                }
            }
        });
        Ok(counts)
    }

    /// Effects of a store waiting to be sent (for status and metrics).
    pub async fn outbox_depth(&self, store_id: &str) -> Result<i64, StoreError> {
        Ok(self.outbox_counts(Some(store_id)).await?.pending)
    }

    /// A store's dead letters (for status and metrics).
    pub async fn dead_letter_count(&self, store_id: &str) -> Result<i64, StoreError> {
        Ok(self.outbox_counts(Some(store_id)).await?.dead)
    }
}
