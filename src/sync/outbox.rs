//! The outbox worker: claims a store's due outbox rows, makes each call outside any
//! transaction, and records what came of it (done, retry later, dead with the reason).
//!
//! Delivery is at least once; every effect is idempotent on the other side (the operator's
//! fulfilment by store and order, withdrawals, and shipment pushes, which the connectors
//! re-read before resending and where "already shipped" counts as done), so a repeat after
//! a crash or a lost reply changes nothing.
//!
//! Backoff after the n-th failed attempt: **5 s, 15 s, 1 min, 5 min, 15 min, then every
//! hour**; a platform's own wait (`retry_after`: the seconds a ban has left, or the
//! operator's `Retry-After`) is honoured when it is longer. A refusal that
//! will never succeed (`Rejected`) goes to the dead-letter list at once, anything else after
//! [`MAX_ATTEMPTS`] attempts, with the platform's code and message as the reason.
//!
//! A claim counts as an attempt before the call and holds the row for [`CLAIM_TIMEOUT`],
//! tagged with the drain that made it: a worker killed mid-call leaves the row pending and
//! claimed, and the next drain of the store's rows (the next holder of the job's lease)
//! takes it at once; the timeout is the backstop. Rows of one order are handled in order, one at a time; different orders run
//! [`CONCURRENCY`] at a time.
//!
//! Stock pushes do not pass through this table: the stock job writes a `pending` intent on
//! the listing row before pushing, which is their outbox, coalesced per listing (only the
//! newest absolute quantity matters).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use flagsync_market::{Clock, ConnectorError, ErrorKind, Marketplace};
use flagsync_operator::OperatorApi;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::SyncError;
use crate::config::CarrierCodes;
use crate::inventory::ReservationRules;
use crate::store::{Consume, Finish, OutboxKind, OutboxRow, Store};

/// How long a claim holds a row: longer than a call with all its retries can take.
pub const CLAIM_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Attempts before a retryable failure goes to the dead-letter list (about 7 hours).
pub const MAX_ATTEMPTS: i64 = 12;

/// Rows of different orders in flight at once.
pub const CONCURRENCY: usize = 8;

/// Rows claimed per round.
const BATCH: usize = 64;

/// Errors kept in a report.
const REPORTED_ERRORS: usize = 20;

/// The wait after the n-th failed attempt (1-based): 5 s, 15 s, 1 min, 5 min, 15 min, then
/// hourly.
pub fn backoff(attempt: i64) -> Duration {
    Duration::from_secs(match attempt {
        i64::MIN..=1 => 5,
        2 => 15,
        3 => 60,
        4 => 300,
        5 => 900,
        _ => 3600,
    })
}

/// How a delivered effect was delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// This call did it.
    Sent,
    /// An earlier attempt had (already accepted, already shipped, nothing to withdraw).
    Already,
    /// A withdrawal came too late: the operator had shipped.
    TooLate,
}

/// What came of one row's call.
#[derive(Debug)]
pub enum Outcome {
    Done {
        how: Delivered,
        consume: Option<Consume>,
    },
    /// Not sent (the order is held): back in line untried until then.
    Wait {
        until: DateTime<Utc>,
    },
    /// Failed in a way a later attempt may get past.
    Retry(ConnectorError),
    /// Will never succeed as it is: into the dead-letter list.
    Dead {
        reason: String,
    },
    /// No longer wanted, with the reason.
    Dropped(String),
}

impl Outcome {
    /// Retryable connector errors (and credentials, which ops can fix) are retried;
    /// refusals are dead at once.
    pub fn from_error(error: ConnectorError) -> Self {
        if error.is_retryable() || error.kind == ErrorKind::Auth {
            Outcome::Retry(error)
        } else {
            Outcome::Dead { reason: error.to_string() }
        }
    }
}

/// What one drain did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainReport {
    /// Rows an interrupted earlier drain had claimed, and withdrawals that waited on its
    /// sends, taken over at the start.
    #[serde(default)]
    pub released: u64,
    pub claimed: u64,
    /// Delivered by this run's calls.
    pub delivered: u64,
    /// Found delivered by an earlier attempt.
    pub already: u64,
    /// Withdrawals that came after the operator shipped.
    pub too_late: u64,
    pub retried: u64,
    /// Put back untried (held orders).
    pub waiting: u64,
    /// Moved to the dead-letter list.
    pub dead: u64,
    pub dropped: u64,
    /// Reservation rows consumed by confirmed shipments.
    pub consumed: u64,
    /// The first errors and dead reasons, as `row ID (order): reason`.
    pub errors: Vec<String>,
}

impl DrainReport {
    fn note(&mut self, row: &OutboxRow, text: &str) {
        if self.errors.len() < REPORTED_ERRORS {
            self.errors.push(format!("row {} ({} {}): {text}", row.id, row.kind.as_str(), row.order_id));
        }
    }
}

/// Everything a worker needs for one store.
pub struct OutboxContext<'a> {
    pub store: &'a Store,
    pub store_id: &'a str,
    pub clock: &'a dyn Clock,
    pub market: Option<&'a dyn Marketplace>,
    pub operator: Option<&'a dyn OperatorApi>,
    /// How the store's lines map to operator SKUs (`None`: the merchant code is the SKU).
    pub rules: Option<&'a ReservationRules>,
    pub carriers: &'a BTreeMap<String, CarrierCodes>,
}

async fn perform(ctx: &OutboxContext<'_>, row: &OutboxRow) -> Result<Outcome, SyncError> {
    match row.kind {
        OutboxKind::Fulfil => super::fulfilment::submit(ctx, row).await,
        OutboxKind::Withdraw => super::fulfilment::withdraw(ctx, row).await,
        OutboxKind::Ship => super::shipments::push(ctx, row).await,
    }
}

/// What an outcome means for the row, the report and the log.
fn finish(
    ctx: &OutboxContext<'_>,
    row: &OutboxRow,
    outcome: Outcome,
    now: DateTime<Utc>,
) -> (Finish, Tally, Option<String>) {
    match outcome {
        Outcome::Done { how, consume } => (Finish::Done { consume }, Tally::Done(how), None),
        Outcome::Wait { until } => (Finish::Wait { at: until }, Tally::Waiting, None),
        Outcome::Retry(error) => {
            let text = error.to_string();
            if row.attempts >= MAX_ATTEMPTS {
                let reason = format!("gave up after {} attempts: {text}", row.attempts);
                tracing::warn!(store = ctx.store_id, row = row.id, kind = row.kind.as_str(), order = %row.order_id, error = %text, "outbox row dead");
                (Finish::Dead { reason: reason.clone(), error: Some(text) }, Tally::Dead, Some(reason))
            } else {
                let wait = backoff(row.attempts).max(error.retry_after.unwrap_or_default());
                let at = now + TimeDelta::from_std(wait).unwrap_or(TimeDelta::hours(1));
                tracing::debug!(store = ctx.store_id, row = row.id, kind = row.kind.as_str(), wait_secs = wait.as_secs(), error = %text, "outbox row retried later");
                (Finish::RetryAt { at, error: text.clone() }, Tally::Retried, Some(text))
            }
        }
        Outcome::Dead { reason } => {
            tracing::warn!(store = ctx.store_id, row = row.id, kind = row.kind.as_str(), order = %row.order_id, error = %reason, "outbox row dead");
            (Finish::Dead { reason: reason.clone(), error: Some(reason.clone()) }, Tally::Dead, Some(reason))
        }
        Outcome::Dropped(reason) => (Finish::Drop { reason }, Tally::Dropped, None),
    }
}

enum Tally {
    Done(Delivered),
    Waiting,
    Retried,
    Dead,
    Dropped,
}

/// Makes one order's claimed rows' calls, in id order.
async fn run_group(
    ctx: &OutboxContext<'_>,
    rows: Vec<OutboxRow>,
) -> Result<Vec<(OutboxRow, Outcome)>, SyncError> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let outcome = perform(ctx, &row).await?;
        out.push((row, outcome));
    }
    Ok(out)
}

/// Drains up to `limit` due rows of the given kinds for the context's store. A store error
/// stops the drain (what was recorded stays recorded); a failed call never does.
pub async fn drain(
    ctx: &OutboxContext<'_>,
    kinds: &[OutboxKind],
    limit: usize,
) -> Result<DrainReport, SyncError> {
    let mut report = DrainReport::default();
    let claimant = format!("drain-{:016x}", rand::random::<u64>());
    report.released =
        ctx.store.release_abandoned_claims(ctx.store_id, kinds, &claimant, ctx.clock.now()).await?;
    if report.released > 0 {
        tracing::info!(
            store = ctx.store_id,
            rows = report.released,
            "took over rows an interrupted drain had claimed"
        );
    }
    let mut left = limit;
    while left > 0 {
        let now = ctx.clock.now();
        let claim_until = now + TimeDelta::from_std(CLAIM_TIMEOUT).unwrap_or(TimeDelta::minutes(10));
        let want = i64::try_from(left.min(BATCH)).unwrap_or(BATCH as i64);
        let rows = ctx.store.claim_outbox(ctx.store_id, kinds, now, claim_until, want, &claimant).await?;
        if rows.is_empty() {
            break;
        }
        left = left.saturating_sub(rows.len());
        report.claimed += rows.len() as u64;
        let mut groups: Vec<Vec<OutboxRow>> = Vec::new();
        let mut by_order: BTreeMap<String, usize> = BTreeMap::new();
        for row in rows {
            match by_order.get(&row.order_id) {
                Some(&index) => groups[index].push(row),
                None => {
                    by_order.insert(row.order_id.clone(), groups.len());
                    groups.push(vec![row]);
                }
            }
        }
        let results: Vec<Result<Vec<(OutboxRow, Outcome)>, SyncError>> =
            futures::stream::iter(groups.into_iter().map(|group| run_group(ctx, group)))
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
        // Outcomes of calls that were made are recorded even if another group failed.
        let mut first_error = None;
        let mut done: Vec<(OutboxRow, Outcome)> = Vec::new();
        for result in results {
            match result {
                Ok(outcomes) => done.extend(outcomes),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        let now = ctx.clock.now();
        let mut rows = Vec::with_capacity(done.len());
        let mut finishes = Vec::with_capacity(done.len());
        for (row, outcome) in done {
            let (finish, tally, text) = finish(ctx, &row, outcome, now);
            match tally {
                Tally::Done(Delivered::Sent) => report.delivered += 1,
                Tally::Done(Delivered::Already) => report.already += 1,
                Tally::Done(Delivered::TooLate) => report.too_late += 1,
                Tally::Waiting => report.waiting += 1,
                Tally::Retried => report.retried += 1,
                Tally::Dead => report.dead += 1,
                Tally::Dropped => report.dropped += 1,
            }
            if let Some(text) = text {
                report.note(&row, &text);
            }
            rows.push(row);
            finishes.push(finish);
        }
        let items: Vec<(&OutboxRow, Finish)> = rows.iter().zip(finishes).collect();
        report.consumed += ctx.store.finish_outbox(&items, now).await?;
        if let Some(error) = first_error {
            return Err(error);
        }
    }
    Ok(report)
}

impl crate::app::App {
    /// The worker context of one configured store.
    pub fn outbox_context<'a>(
        &'a self,
        store_id: &'a str,
        rules: Option<&'a ReservationRules>,
    ) -> Result<OutboxContext<'a>, crate::app::AppError> {
        let market = self.market(store_id)?;
        Ok(OutboxContext {
            store: &self.store,
            store_id,
            clock: self.clock.as_ref(),
            market: Some(market.as_ref()),
            operator: self.operator.as_deref(),
            rules,
            carriers: &self.config.carriers,
        })
    }

    /// The ids of the configured stores.
    pub fn store_ids(&self) -> std::collections::BTreeSet<String> {
        self.config.stores.iter().map(|s| s.id.clone()).collect()
    }
}
