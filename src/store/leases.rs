//! Job leases, daemon instances, manual run requests and pauses: the SQL behind the daemon's
//! exclusion (one holder per `store/job` key, fenced by an epoch) and its manual-run queue.
//!
//! Lease statements use the database's clock on PostgreSQL (`now()`), so instances with
//! skewed clocks still agree on expiry; SQLite has one daemon per file (a file lock makes
//! sure), so its statements take the process clock.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::Row;

use super::{Backend, JobRun, Store, StoreError, with_pool};
use crate::jobs::Fence;

/// A condition to `AND` into the `WHERE` of a write made because of a lease, inside the
/// write's transaction: the write matches nothing once another instance has taken the
/// lease over (its epoch moved). `fence_clause!(3, 4)` reads the lease key from `$3` and
/// the epoch from `$4`; it expands to a string literal, so it composes with `concat!`:
///
/// ```ignore
/// sqlx::query(concat!("UPDATE sync_cursors SET position = $1 WHERE store_id = $2 AND ",
///     fence_clause!(3, 4)))
/// ```
// Unused until the jobs' writes adopt fencing; a unit test below keeps it honest.
#[allow(unused_macros)]
macro_rules! fence_clause {
    ($key:literal, $epoch:literal) => {
        concat!(
            "EXISTS (SELECT 1 FROM leases WHERE leases.key = $",
            $key,
            " AND leases.epoch = $",
            $epoch,
            ")"
        )
    };
}
#[allow(unused_imports)]
pub(crate) use fence_clause;

/// The standalone check: one row (count 1) while the fence holds. Binds key, epoch, holder.
pub const FENCE_HOLDS_SQL: &str = "SELECT COUNT(*) FROM leases WHERE key = $1 AND epoch = $2 AND holder = $3";

/// A lease as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseRow {
    pub key: String,
    pub holder: String,
    pub epoch: i64,
    pub expires_at: DateTime<Utc>,
}

/// Which fenced runs [`Store::fail_fenced_runs`] closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochMatch {
    /// The run of this exact tenure (a run the daemon cancelled).
    Exactly(i64),
    /// Runs of earlier tenures (their daemon died while they ran).
    Before(i64),
}

impl EpochMatch {
    fn matches(self, epoch: i64) -> bool {
        match self {
            Self::Exactly(e) => epoch == e,
            Self::Before(e) => epoch < e,
        }
    }
}

/// A manual run asked for through the admin API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRequest {
    pub id: i64,
    pub store_id: String,
    pub job: String,
    pub params: Value,
    pub requested_by: String,
    /// queued, running, succeeded or failed
    pub state: String,
    pub holder: Option<String>,
    pub epoch: Option<i64>,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn later(duration: Duration) -> DateTime<Utc> {
    Utc::now() + TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

fn json_text(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

/// The fence a run recorded in its params (`{"params": .., "fence": {"key", "epoch"}}`).
fn recorded_fence(params: &str) -> Option<Fence> {
    let value: Value = serde_json::from_str(params).ok()?;
    serde_json::from_value(value.get("fence")?.clone()).ok()
}

macro_rules! job_run_from_row {
    ($row:expr) => {{
        let row = $row;
        let params: String = row.try_get("params")?;
        let counts: String = row.try_get("counts")?;
        JobRun {
            id: row.try_get("id")?,
            store_id: row.try_get("store_id")?,
            job: row.try_get("job")?,
            trigger: row.try_get("trigger")?,
            params: json_text(params),
            started_at: row.try_get("started_at")?,
            finished_at: row.try_get("finished_at")?,
            outcome: row.try_get("outcome")?,
            counts: json_text(counts),
            error: row.try_get("error")?,
        }
    }};
}

macro_rules! run_request_from_row {
    ($row:expr) => {{
        let row = $row;
        let params: String = row.try_get("params")?;
        let result: Option<String> = row.try_get("result")?;
        RunRequest {
            id: row.try_get("id")?,
            store_id: row.try_get("store_id")?,
            job: row.try_get("job")?,
            params: json_text(params),
            requested_by: row.try_get("requested_by")?,
            state: row.try_get("state")?,
            holder: row.try_get("holder")?,
            epoch: row.try_get("epoch")?,
            result: result.map(json_text),
            error: row.try_get("error")?,
            requested_at: row.try_get("requested_at")?,
            started_at: row.try_get("started_at")?,
            finished_at: row.try_get("finished_at")?,
        }
    }};
}

impl Store {
    /// Records that this instance is alive (and what it is, for `status`).
    pub async fn heartbeat_instance(&self, id: &str, info: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite { write, .. } => {
                let now = Utc::now();
                sqlx::query(
                    "INSERT INTO instances (id, started_at, seen_at, info) VALUES ($1, $2, $2, $3) \
                     ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at, info = excluded.info",
                )
                .bind(id)
                .bind(now)
                .bind(info)
                .execute(write)
                .await?;
                sqlx::query("DELETE FROM instances WHERE seen_at < $1")
                    .bind(now - TimeDelta::days(1))
                    .execute(write)
                    .await?;
            }
            Backend::Postgres(pool) => {
                sqlx::query(
                    "INSERT INTO instances (id, started_at, seen_at, info) VALUES ($1, now(), now(), $2) \
                     ON CONFLICT (id) DO UPDATE SET seen_at = now(), info = excluded.info",
                )
                .bind(id)
                .bind(info)
                .execute(pool)
                .await?;
                // Instances killed without a goodbye; a day later nobody needs them in status.
                sqlx::query("DELETE FROM instances WHERE seen_at < now() - interval '1 day'")
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// Forgets an instance that stopped cleanly.
    pub async fn remove_instance(&self, id: &str) -> Result<(), StoreError> {
        with_pool!(self, write, pool => {
            sqlx::query("DELETE FROM instances WHERE id = $1").bind(id).execute(pool).await?;
        });
        Ok(())
    }

    /// Instances whose heartbeat is younger than `within` (at least 1: the caller).
    pub async fn live_instances(&self, within: Duration) -> Result<i64, StoreError> {
        let count: i64 = match &self.backend {
            Backend::Sqlite { write, .. } => {
                let since = Utc::now() - TimeDelta::from_std(within).unwrap_or(TimeDelta::MAX);
                sqlx::query_scalar("SELECT COUNT(*) FROM instances WHERE seen_at > $1")
                    .bind(since)
                    .fetch_one(write)
                    .await?
            }
            Backend::Postgres(pool) => {
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM instances WHERE seen_at > now() - $1::float8 * interval '1 millisecond'",
                )
                .bind(millis(within))
                .fetch_one(pool)
                .await?
            }
        };
        Ok(count.max(1))
    }

    /// Extends every unexpired lease `holder` has; returns what it still holds (key, epoch).
    /// A lease that expired is not renewed: it must be claimed again, with a new epoch.
    pub async fn renew_leases(
        &self,
        holder: &str,
        lease: Duration,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = match &self.backend {
            Backend::Sqlite { write, .. } => {
                let rows = sqlx::query(
                    "UPDATE leases SET expires_at = $2, updated_at = $3 \
                     WHERE holder = $1 AND expires_at > $3 RETURNING key, epoch",
                )
                .bind(holder)
                .bind(later(lease))
                .bind(Utc::now())
                .fetch_all(write)
                .await?;
                rows.iter()
                    .map(|r| Ok((r.try_get("key")?, r.try_get("epoch")?)))
                    .collect::<Result<Vec<_>, sqlx::Error>>()?
            }
            Backend::Postgres(pool) => {
                let rows = sqlx::query(
                    "UPDATE leases SET expires_at = now() + $2::float8 * interval '1 millisecond', \
                     updated_at = now() WHERE holder = $1 AND expires_at > now() RETURNING key, epoch",
                )
                .bind(holder)
                .bind(millis(lease))
                .fetch_all(pool)
                .await?;
                rows.iter()
                    .map(|r| Ok((r.try_get("key")?, r.try_get("epoch")?)))
                    .collect::<Result<Vec<_>, sqlx::Error>>()?
            }
        };
        Ok(rows)
    }

    /// Takes up to `limit` of `keys` whose lease is free or expired, bumping each one's
    /// epoch; returns what was taken (key, epoch). On PostgreSQL, rows another instance is
    /// claiming at the same moment are skipped (`FOR UPDATE SKIP LOCKED`), never waited for.
    pub async fn claim_leases(
        &self,
        holder: &str,
        keys: &[String],
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        if keys.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        match &self.backend {
            Backend::Sqlite { write, .. } => {
                let mut taken = Vec::new();
                for key in keys {
                    if i64::try_from(taken.len()).unwrap_or(i64::MAX) >= limit {
                        break;
                    }
                    let now = Utc::now();
                    sqlx::query(
                        "INSERT INTO leases (key, holder, epoch, expires_at, updated_at) \
                         VALUES ($1, '', 0, $2, $2) ON CONFLICT (key) DO NOTHING",
                    )
                    .bind(key)
                    .bind(now)
                    .execute(write)
                    .await?;
                    let row = sqlx::query(
                        "UPDATE leases SET holder = $2, epoch = epoch + 1, expires_at = $3, updated_at = $4 \
                         WHERE key = $1 AND expires_at <= $4 RETURNING key, epoch",
                    )
                    .bind(key)
                    .bind(holder)
                    .bind(later(lease))
                    .bind(now)
                    .fetch_optional(write)
                    .await?;
                    if let Some(row) = row {
                        taken.push((row.try_get("key")?, row.try_get("epoch")?));
                    }
                }
                Ok(taken)
            }
            Backend::Postgres(pool) => {
                sqlx::query(
                    "INSERT INTO leases (key, holder, epoch, expires_at, updated_at) \
                     SELECT k, '', 0, now(), now() FROM unnest($1::text[]) AS k ON CONFLICT (key) DO NOTHING",
                )
                .bind(keys)
                .execute(pool)
                .await?;
                let rows = sqlx::query(
                    "WITH free AS ( \
                       SELECT key FROM leases WHERE key = ANY($1) AND expires_at <= now() \
                       ORDER BY key LIMIT $2 FOR UPDATE SKIP LOCKED) \
                     UPDATE leases SET holder = $3, epoch = leases.epoch + 1, \
                       expires_at = now() + $4::float8 * interval '1 millisecond', updated_at = now() \
                     FROM free WHERE leases.key = free.key RETURNING leases.key, leases.epoch",
                )
                .bind(keys)
                .bind(limit)
                .bind(holder)
                .bind(millis(lease))
                .fetch_all(pool)
                .await?;
                Ok(rows
                    .iter()
                    .map(|r| Ok((r.try_get("key")?, r.try_get("epoch")?)))
                    .collect::<Result<Vec<_>, sqlx::Error>>()?)
            }
        }
    }

    /// Gives a lease up now (it stays recorded, expired, so the next holder bumps the epoch).
    pub async fn release_lease(&self, key: &str, holder: &str, epoch: i64) -> Result<(), StoreError> {
        let expired = DateTime::<Utc>::UNIX_EPOCH;
        with_pool!(self, write, pool => {
            sqlx::query("UPDATE leases SET expires_at = $4 WHERE key = $1 AND holder = $2 AND epoch = $3")
                .bind(key)
                .bind(holder)
                .bind(epoch)
                .bind(expired)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Every lease, by key.
    pub async fn leases(&self) -> Result<Vec<LeaseRow>, StoreError> {
        let mut out = Vec::new();
        with_pool!(self, read, pool => {
            let rows = sqlx::query("SELECT key, holder, epoch, expires_at FROM leases ORDER BY key")
                .fetch_all(pool)
                .await?;
            for row in rows {
                out.push(LeaseRow {
                    key: row.try_get("key")?,
                    holder: row.try_get("holder")?,
                    epoch: row.try_get("epoch")?,
                    expires_at: row.try_get("expires_at")?,
                });
            }
        });
        Ok(out)
    }

    /// Whether `holder` still holds the lease at the fence's epoch: false once another
    /// instance has taken it over, whatever this one believes.
    pub async fn fence_holds(&self, fence: &Fence, holder: &str) -> Result<bool, StoreError> {
        let count: i64 = with_pool!(self, write, pool => {
            sqlx::query_scalar(FENCE_HOLDS_SQL)
                .bind(&fence.key)
                .bind(fence.epoch)
                .bind(holder)
                .fetch_one(pool)
                .await?
        });
        Ok(count > 0)
    }

    /// Closes runs of `store/job` still marked running under the lease `key` whose fence
    /// epoch matches, as failed with `error`; returns how many. Unfenced (CLI) runs are
    /// never touched.
    pub async fn fail_fenced_runs(
        &self,
        store_id: &str,
        job: &str,
        key: &str,
        epochs: EpochMatch,
        error: &str,
    ) -> Result<u64, StoreError> {
        let mut closed = 0;
        with_pool!(self, write, pool => {
            let rows = sqlx::query(
                "SELECT id, params FROM job_runs WHERE store_id = $1 AND job = $2 AND outcome = 'running'",
            )
            .bind(store_id)
            .bind(job)
            .fetch_all(pool)
            .await?;
            for row in rows {
                let params: String = row.try_get("params")?;
                let id: i64 = row.try_get("id")?;
                let Some(fence) = recorded_fence(&params) else { continue };
                if fence.key != key || !epochs.matches(fence.epoch) {
                    continue;
                }
                closed += sqlx::query(
                    "UPDATE job_runs SET finished_at = $1, outcome = 'failed', error = $2 \
                     WHERE id = $3 AND outcome = 'running'",
                )
                .bind(Utc::now())
                .bind(error)
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected();
            }
        });
        Ok(closed)
    }

    /// The run of `store/job` in progress under `fence`, if any.
    pub async fn running_run(
        &self,
        store_id: &str,
        job: &str,
        fence: &Fence,
    ) -> Result<Option<JobRun>, StoreError> {
        let mut found = None;
        with_pool!(self, read, pool => {
            let rows = sqlx::query(
                "SELECT id, store_id, job, trigger, params, started_at, finished_at, outcome, counts, error \
                 FROM job_runs WHERE store_id = $1 AND job = $2 AND outcome = 'running' ORDER BY id DESC",
            )
            .bind(store_id)
            .bind(job)
            .fetch_all(pool)
            .await?;
            for row in rows {
                let params: String = row.try_get("params")?;
                if recorded_fence(&params).as_ref() == Some(fence) {
                    found = Some(job_run_from_row!(row));
                    break;
                }
            }
        });
        Ok(found)
    }

    /// One run by id.
    pub async fn run(&self, id: i64) -> Result<Option<JobRun>, StoreError> {
        let mut found = None;
        with_pool!(self, read, pool => {
            let row = sqlx::query(
                "SELECT id, store_id, job, trigger, params, started_at, finished_at, outcome, counts, error \
                 FROM job_runs WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?;
            if let Some(row) = row {
                found = Some(job_run_from_row!(row));
            }
        });
        Ok(found)
    }

    /// The latest runs, newest first, optionally of one store and/or job.
    pub async fn runs_of(
        &self,
        store_id: Option<&str>,
        job: Option<&str>,
        limit: i64,
    ) -> Result<Vec<JobRun>, StoreError> {
        let mut out = Vec::new();
        with_pool!(self, read, pool => {
            let rows = sqlx::query(
                "SELECT id, store_id, job, trigger, params, started_at, finished_at, outcome, counts, error \
                 FROM job_runs WHERE (CAST($1 AS TEXT) IS NULL OR store_id = $1) \
                 AND (CAST($2 AS TEXT) IS NULL OR job = $2) ORDER BY id DESC LIMIT $3",
            )
            .bind(store_id)
            .bind(job)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            for row in rows {
                out.push(job_run_from_row!(row));
            }
        });
        Ok(out)
    }

    /// The latest run of every (store, job) that has one.
    pub async fn last_runs(&self) -> Result<Vec<JobRun>, StoreError> {
        let mut out = Vec::new();
        with_pool!(self, read, pool => {
            let rows = sqlx::query(
                "SELECT id, store_id, job, trigger, params, started_at, finished_at, outcome, counts, error \
                 FROM job_runs WHERE id IN (SELECT MAX(id) FROM job_runs GROUP BY store_id, job) ORDER BY id",
            )
            .fetch_all(pool)
            .await?;
            for row in rows {
                out.push(job_run_from_row!(row));
            }
        });
        Ok(out)
    }

    /// How many of the latest runs of `store/job` failed in a row (up to `window`).
    pub async fn failures_in_a_row(&self, store_id: &str, job: &str, window: i64) -> Result<i64, StoreError> {
        let outcomes: Vec<String> = with_pool!(self, read, pool => {
            sqlx::query_scalar(
                "SELECT outcome FROM job_runs WHERE store_id = $1 AND job = $2 AND outcome <> 'running' \
                 ORDER BY id DESC LIMIT $3",
            )
            .bind(store_id)
            .bind(job)
            .bind(window)
            .fetch_all(pool)
            .await?
        });
        Ok(i64::try_from(outcomes.iter().take_while(|o| o.as_str() == "failed").count()).unwrap_or(i64::MAX))
    }

    /// Every incremental cursor: (store, job, position).
    pub async fn cursors(&self) -> Result<Vec<(String, String, DateTime<Utc>)>, StoreError> {
        let mut out = Vec::new();
        with_pool!(self, read, pool => {
            let rows = sqlx::query("SELECT store_id, job, position FROM sync_cursors ORDER BY store_id, job")
                .fetch_all(pool)
                .await?;
            for row in rows {
                out.push((row.try_get("store_id")?, row.try_get("job")?, row.try_get("position")?));
            }
        });
        Ok(out)
    }

    /// Pauses or resumes a store (`job` None) or one of its jobs; persisted across restarts.
    pub async fn set_paused(
        &self,
        store_id: &str,
        job: Option<&str>,
        paused: bool,
    ) -> Result<(), StoreError> {
        let job = job.unwrap_or("*");
        with_pool!(self, write, pool => {
            if paused {
                sqlx::query(
                    "INSERT INTO job_pauses (store_id, job, paused_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (store_id, job) DO NOTHING",
                )
                .bind(store_id)
                .bind(job)
                .bind(Utc::now())
                .execute(pool)
                .await?;
            } else {
                sqlx::query("DELETE FROM job_pauses WHERE store_id = $1 AND job = $2")
                    .bind(store_id)
                    .bind(job)
                    .execute(pool)
                    .await?;
            }
        });
        Ok(())
    }

    /// Stored pauses: (store, job or `*` for the whole store).
    pub async fn pauses(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut out = Vec::new();
        with_pool!(self, read, pool => {
            let rows = sqlx::query("SELECT store_id, job FROM job_pauses ORDER BY store_id, job")
                .fetch_all(pool)
                .await?;
            for row in rows {
                out.push((row.try_get("store_id")?, row.try_get("job")?));
            }
        });
        Ok(out)
    }

    /// Queues a manual run; returns its request id.
    pub async fn queue_run_request(
        &self,
        store_id: &str,
        job: &str,
        params: &Value,
        requested_by: &str,
    ) -> Result<i64, StoreError> {
        let id: i64 = with_pool!(self, write, pool => {
            sqlx::query_scalar(
                "INSERT INTO run_requests (store_id, job, params, requested_by, state, requested_at) \
                 VALUES ($1, $2, $3, $4, 'queued', $5) RETURNING id",
            )
            .bind(store_id)
            .bind(job)
            .bind(params.to_string())
            .bind(requested_by)
            .bind(Utc::now())
            .fetch_one(pool)
            .await?
        });
        Ok(id)
    }

    /// Queued requests, oldest first: (id, store, job).
    pub async fn queued_run_requests(&self) -> Result<Vec<(i64, String, String)>, StoreError> {
        let mut out = Vec::new();
        with_pool!(self, write, pool => {
            let rows = sqlx::query("SELECT id, store_id, job FROM run_requests WHERE state = 'queued' ORDER BY id")
                .fetch_all(pool)
                .await?;
            for row in rows {
                out.push((row.try_get("id")?, row.try_get("store_id")?, row.try_get("job")?));
            }
        });
        Ok(out)
    }

    /// Marks a queued request running under `holder`'s lease; None if someone else got it.
    pub async fn claim_run_request(
        &self,
        id: i64,
        holder: &str,
        epoch: i64,
    ) -> Result<Option<RunRequest>, StoreError> {
        let mut found = None;
        with_pool!(self, write, pool => {
            let row = sqlx::query(
                "UPDATE run_requests SET state = 'running', holder = $2, epoch = $3, started_at = $4 \
                 WHERE id = $1 AND state = 'queued' RETURNING id, store_id, job, params, requested_by, state, \
                 holder, epoch, result, error, requested_at, started_at, finished_at",
            )
            .bind(id)
            .bind(holder)
            .bind(epoch)
            .bind(Utc::now())
            .fetch_optional(pool)
            .await?;
            if let Some(row) = row {
                found = Some(run_request_from_row!(row));
            }
        });
        Ok(found)
    }

    /// Records how a manual run ended.
    pub async fn finish_run_request(
        &self,
        id: i64,
        succeeded: bool,
        result: &Value,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let state = if succeeded { "succeeded" } else { "failed" };
        with_pool!(self, write, pool => {
            sqlx::query(
                "UPDATE run_requests SET state = $2, result = $3, error = $4, finished_at = $5 WHERE id = $1",
            )
            .bind(id)
            .bind(state)
            .bind(result.to_string())
            .bind(error)
            .bind(Utc::now())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Fails requests of `store/job` left running by an earlier lease tenure.
    pub async fn fail_abandoned_requests(
        &self,
        store_id: &str,
        job: &str,
        before_epoch: i64,
        error: &str,
    ) -> Result<u64, StoreError> {
        let done = with_pool!(self, write, pool => {
            sqlx::query(
                "UPDATE run_requests SET state = 'failed', error = $4, finished_at = $5 \
                 WHERE store_id = $1 AND job = $2 AND state = 'running' AND epoch < $3",
            )
            .bind(store_id)
            .bind(job)
            .bind(before_epoch)
            .bind(error)
            .bind(Utc::now())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(done)
    }

    /// One manual run request by id.
    pub async fn run_request(&self, id: i64) -> Result<Option<RunRequest>, StoreError> {
        let mut found = None;
        with_pool!(self, read, pool => {
            let row = sqlx::query(
                "SELECT id, store_id, job, params, requested_by, state, holder, epoch, result, error, \
                 requested_at, started_at, finished_at FROM run_requests WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?;
            if let Some(row) = row {
                found = Some(run_request_from_row!(row));
            }
        });
        Ok(found)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    #[tokio::test]
    async fn a_fenced_write_is_refused_once_the_lease_changed_hands() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("f.db").display());
        let store = Store::open(&StoreOptions::new(url)).await.unwrap();
        let key = "tmall/orders".to_string();
        let lease = Duration::from_secs(30);
        let taken = store.claim_leases("a", std::slice::from_ref(&key), 5, lease).await.unwrap();
        assert_eq!(taken, vec![(key.clone(), 1)]);
        assert!(store.claim_leases("b", std::slice::from_ref(&key), 5, lease).await.unwrap().is_empty());
        let fence = Fence { key: key.clone(), epoch: 1 };
        assert!(store.fence_holds(&fence, "a").await.unwrap());
        let fenced_write = |epoch: i64| {
            let store = store.clone();
            let key = key.clone();
            async move {
                with_pool!(store, write, pool => {
                    sqlx::query(concat!("UPDATE leases SET updated_at = $1 WHERE key = $2 AND ", fence_clause!(2, 3)))
                        .bind(Utc::now())
                        .bind(&key)
                        .bind(epoch)
                        .execute(pool)
                        .await
                        .unwrap()
                        .rows_affected()
                })
            }
        };
        assert_eq!(fenced_write(1).await, 1);
        store.release_lease(&key, "a", 1).await.unwrap();
        assert_eq!(
            store.claim_leases("b", std::slice::from_ref(&key), 5, lease).await.unwrap(),
            vec![(key.clone(), 2)]
        );
        assert!(!store.fence_holds(&fence, "a").await.unwrap());
        assert_eq!(fenced_write(1).await, 0, "the old holder's write must match nothing");
        assert_eq!(store.renew_leases("a", lease).await.unwrap(), vec![]);
        assert_eq!(store.renew_leases("b", lease).await.unwrap(), vec![(key, 2)]);
    }
}
