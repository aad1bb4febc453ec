//! What `flagsync status` and `GET /api/v1/jobs` show for each job: schedule, pauses, next
//! fire time, lease holder, last run, failures in a row, cursor lag, outbox and dead letters.
//! Read from the database, so any instance (or the CLI with no daemon) shows the same.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{job_keys, next_fire, paused_by};
use crate::config::Config;
use crate::store::{JobRun, Store, StoreError};

#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub store: String,
    pub job: String,
    pub schedule: String,
    pub paused: bool,
    /// "config" and/or "api" (a stored pause from the CLI or the admin API).
    pub paused_by: Vec<&'static str>,
    pub next_fire: Option<DateTime<Utc>>,
    /// The instance holding the job's lease, while it is unexpired.
    pub lease_holder: Option<String>,
    pub lease_epoch: Option<i64>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub last_run: Option<JobRun>,
    pub failures_in_a_row: i64,
    /// Seconds between now and the job's cursor, for incremental jobs.
    pub cursor_lag_secs: Option<i64>,
    pub outbox: i64,
    pub dead_letters: i64,
    /// Whether this instance is running it now (admin API only).
    pub running_here: bool,
}

/// One view per job of the config, in store then job order.
pub async fn job_views(
    store: &Store,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Vec<JobView>, StoreError> {
    let pauses: HashSet<(String, String)> = store.pauses().await?.into_iter().collect();
    let leases = store.leases().await?;
    let last_runs = store.last_runs().await?;
    let cursors = store.cursors().await?;
    let mut views = Vec::new();
    for key in job_keys(config) {
        let lease_key = key.lease_key();
        let job = key.job.as_str();
        let schedule = config.schedule(&key.store_id, key.job).to_string();
        let by = paused_by(config, &pauses, &key);
        let lease = leases.iter().find(|l| l.key == lease_key && l.expires_at > now && !l.holder.is_empty());
        let cursor = cursors.iter().find(|(s, j, _)| *s == key.store_id && j == job);
        views.push(JobView {
            next_fire: next_fire(&schedule, now),
            schedule,
            paused: !by.is_empty(),
            paused_by: by,
            lease_holder: lease.map(|l| l.holder.clone()),
            lease_epoch: lease.map(|l| l.epoch),
            lease_expires_at: lease.map(|l| l.expires_at),
            last_run: last_runs.iter().find(|r| r.store_id == key.store_id && r.job == job).cloned(),
            failures_in_a_row: store.failures_in_a_row(&key.store_id, job, 20).await?,
            cursor_lag_secs: cursor.map(|(_, _, position)| (now - *position).num_seconds()),
            outbox: crate::metrics::outbox_depth(store, &key.store_id).await?,
            dead_letters: crate::metrics::dead_letters(store, &key.store_id).await?,
            running_here: false,
            store: key.store_id,
            job: job.to_string(),
        });
    }
    Ok(views)
}
