//! Job runs: one row per run, scheduled or manual, with its trigger, parameters, outcome,
//! counts and error.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError, with_pool};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Running,
    Succeeded,
    Failed,
}

impl RunOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRun {
    pub id: i64,
    pub store_id: String,
    pub job: String,
    pub trigger: String,
    pub params: serde_json::Value,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: String,
    pub counts: serde_json::Value,
    pub error: Option<String>,
}

impl Store {
    /// Records the start of a run and returns its id.
    pub async fn start_run(
        &self,
        store_id: &str,
        job: &str,
        trigger: &str,
        params: &serde_json::Value,
    ) -> Result<i64, StoreError> {
        let id: i64 = with_pool!(self, write, pool => {
            sqlx::query_scalar(
                "INSERT INTO job_runs (store_id, job, trigger, params, started_at, outcome, counts) \
                 VALUES ($1, $2, $3, $4, $5, $6, '{}') RETURNING id",
            )
            .bind(store_id)
            .bind(job)
            .bind(trigger)
            .bind(params.to_string())
            .bind(Utc::now())
            .bind(RunOutcome::Running.as_str())
            .fetch_one(pool)
            .await?
        });
        Ok(id)
    }

    /// Records how a run ended.
    pub async fn finish_run(
        &self,
        run_id: i64,
        outcome: RunOutcome,
        counts: &serde_json::Value,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        with_pool!(self, write, pool => {
            sqlx::query("UPDATE job_runs SET finished_at = $1, outcome = $2, counts = $3, error = $4 WHERE id = $5")
                .bind(Utc::now())
                .bind(outcome.as_str())
                .bind(counts.to_string())
                .bind(error)
                .bind(run_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The latest runs, newest first.
    pub async fn runs(&self, store_id: Option<&str>, limit: i64) -> Result<Vec<JobRun>, StoreError> {
        let mut out = Vec::new();
        with_pool!(self, read, pool => {
            let rows = sqlx::query(
                "SELECT id, store_id, job, trigger, params, started_at, finished_at, outcome, counts, error \
                 FROM job_runs WHERE (CAST($1 AS TEXT) IS NULL OR store_id = $1) ORDER BY id DESC LIMIT $2",
            )
            .bind(store_id)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            for row in rows {
                let params: String = row.try_get("params")?;
                let counts: String = row.try_get("counts")?;
                out.push(JobRun {
                    id: row.try_get("id")?,
                    store_id: row.try_get("store_id")?,
                    job: row.try_get("job")?,
                    trigger: row.try_get("trigger")?,
                    params: serde_json::from_str(&params).unwrap_or(serde_json::Value::String(params)),
                    started_at: row.try_get("started_at")?,
                    finished_at: row.try_get("finished_at")?,
                    outcome: row.try_get("outcome")?,
                    counts: serde_json::from_str(&counts).unwrap_or(serde_json::Value::String(counts)),
                    error: row.try_get("error")?,
                });
            }
        });
        Ok(out)
    }
}
