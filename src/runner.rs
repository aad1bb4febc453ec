//! The app as a [`JobRunner`]: one entry point for every job, used by the daemon, the
//! admin API and the CLI, so a run is recorded the same way whoever asked for it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::app::App;
use crate::jobs::{JobError, JobKind, JobRequest, JobRunner, OPERATOR_SCOPE};
use crate::store::RunOutcome;
use crate::sync::orders::{OrderPull, sync_orders};

fn param_time(params: &Value, key: &str) -> Result<Option<DateTime<Utc>>, JobError> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => crate::cli::parse_time(text, key)
            .map(Some)
            .map_err(|e| JobError::Invalid(format!("params.{key}: {e:#}"))),
        Some(other) => Err(JobError::Invalid(format!("params.{key}: expected a time string, found {other}"))),
    }
}

/// Outbox rows one fulfilment or shipments run drains (`params.limit`, default 10,000).
fn outbox_limit(params: &Value) -> Result<usize, JobError> {
    match params.get("limit") {
        None | Some(Value::Null) => Ok(10_000),
        Some(value) => {
            value.as_u64().filter(|n| *n > 0).and_then(|n| usize::try_from(n).ok()).ok_or_else(|| {
                JobError::Invalid(format!("params.limit: expected a whole number > 0, found {value}"))
            })
        }
    }
}

/// The order pull a request's params ask for.
pub fn order_pull(params: &Value) -> Result<OrderPull, JobError> {
    if let Some(order) = params.get("order").filter(|v| !v.is_null()) {
        let Some(order) = order.as_str().filter(|o| !o.trim().is_empty()) else {
            return Err(JobError::Invalid(format!(
                "params.order: expected an order id string, found {order}"
            )));
        };
        return Ok(OrderPull::Order(order.trim().to_string()));
    }
    match (param_time(params, "since")?, param_time(params, "until")?) {
        (Some(since), Some(until)) => Ok(OrderPull::Range { since, until }),
        (None, None) => Ok(OrderPull::Incremental),
        _ => Err(JobError::Invalid("params: since and until go together".into())),
    }
}

impl App {
    async fn run_job(&self, request: &JobRequest) -> Result<Value, JobError> {
        let store_id = request.store_id.as_str();
        match request.job {
            JobKind::Orders => {
                let market = self.market(store_id).map_err(|e| JobError::Invalid(e.to_string()))?;
                let pull = order_pull(&request.params)?;
                let mut options = self.order_sync_options_for(store_id);
                options.fence = request.fence.clone();
                let report =
                    sync_orders(&self.store, store_id, market.as_ref(), self.clock.as_ref(), &options, &pull)
                        .await
                        .map_err(|e| match e {
                            crate::sync::SyncError::Store(crate::store::StoreError::FenceLost(what)) => {
                                JobError::LeaseLost(what)
                            }
                            other => JobError::Failed(other.to_string()),
                        })?;
                serde_json::to_value(report).map_err(|e| JobError::Failed(e.to_string()))
            }
            JobKind::Inventory => {
                let operator = self.operator().map_err(|e| JobError::Invalid(e.to_string()))?;
                let full = request.params.get("full").and_then(Value::as_bool).unwrap_or(false);
                let known = self.store_ids();
                let report = crate::sync::inventory::sync_inventory(
                    &self.store,
                    operator.as_ref(),
                    full,
                    &known,
                    self.clock.now(),
                )
                .await
                .map_err(|e| JobError::Failed(e.to_string()))?;
                serde_json::to_value(report).map_err(|e| JobError::Failed(e.to_string()))
            }
            JobKind::Stock => {
                let market = self.market(store_id).map_err(|e| JobError::Invalid(e.to_string()))?;
                let policy = self.stock_policy(store_id).map_err(|e| JobError::Invalid(e.to_string()))?;
                let report = crate::sync::stock::sync_stock(
                    &self.store,
                    store_id,
                    market.as_ref(),
                    &policy,
                    &self.config.catalog,
                    self.clock.as_ref(),
                )
                .await
                .map_err(|e| JobError::Failed(e.to_string()))?;
                serde_json::to_value(report).map_err(|e| JobError::Failed(e.to_string()))
            }
            JobKind::Reconcile => {
                let market = self.market(store_id).map_err(|e| JobError::Invalid(e.to_string()))?;
                let policy = self.stock_policy(store_id).map_err(|e| JobError::Invalid(e.to_string()))?;
                let fix = request.params.get("fix").and_then(Value::as_bool).unwrap_or(false);
                let overlap = chrono::TimeDelta::from_std(self.config.sync.overlap).unwrap_or_default();
                let known = self
                    .store
                    .cursor(store_id, "orders")
                    .await
                    .map_err(|e| JobError::Failed(e.to_string()))?
                    .map(|cursor| cursor - overlap);
                let report = crate::sync::reconcile::reconcile(
                    &self.store,
                    store_id,
                    market.as_ref(),
                    &policy,
                    &self.config.catalog,
                    crate::sync::reconcile::ReconcileOptions {
                        fix,
                        now: self.clock.now(),
                        sales_known_until: known,
                    },
                )
                .await
                .map_err(|e| JobError::Failed(e.to_string()))?;
                serde_json::to_value(report).map_err(|e| JobError::Failed(e.to_string()))
            }
            JobKind::Fulfilment => {
                let rules = self.reservation_rules(store_id);
                let ctx = self
                    .outbox_context(store_id, rules.as_deref())
                    .map_err(|e| JobError::Invalid(e.to_string()))?;
                let limit = outbox_limit(&request.params)?;
                let report = crate::sync::fulfilment::sync_fulfilment(&ctx, limit)
                    .await
                    .map_err(|e| JobError::Failed(e.to_string()))?;
                serde_json::to_value(report).map_err(|e| JobError::Failed(e.to_string()))
            }
            JobKind::Shipments => {
                let ctx =
                    self.outbox_context(store_id, None).map_err(|e| JobError::Invalid(e.to_string()))?;
                let limit = outbox_limit(&request.params)?;
                let pull = request.params.get("pull").and_then(Value::as_bool).unwrap_or(true);
                let report = crate::sync::shipments::sync_shipments(&ctx, &self.store_ids(), pull, limit)
                    .await
                    .map_err(|e| JobError::Failed(e.to_string()))?;
                serde_json::to_value(report).map_err(|e| JobError::Failed(e.to_string()))
            }
        }
    }

    fn check_scope(&self, request: &JobRequest) -> Result<(), JobError> {
        if request.job.per_store() {
            self.market(&request.store_id).map(|_| ()).map_err(|e| JobError::Invalid(e.to_string()))
        } else if request.store_id == OPERATOR_SCOPE {
            Ok(())
        } else {
            Err(JobError::Invalid(format!("job {} runs under store {OPERATOR_SCOPE:?}", request.job)))
        }
    }
}

#[async_trait]
impl JobRunner for App {
    /// Records the run (trigger, params, outcome, counts, error) around the job itself.
    async fn run(&self, request: &JobRequest) -> Result<Value, JobError> {
        self.check_scope(request)?;
        let params = json!({"params": request.params, "fence": request.fence});
        let run_id = self
            .store
            .start_run(&request.store_id, request.job.as_str(), request.trigger.label(), &params)
            .await
            .map_err(|e| JobError::Failed(e.to_string()))?;
        let result = self.run_job(request).await;
        let (outcome, counts, error) = match &result {
            Ok(counts) => (RunOutcome::Succeeded, counts.clone(), None),
            Err(error) => (RunOutcome::Failed, json!({}), Some(error.to_string())),
        };
        if let Err(e) = self.store.finish_run(run_id, outcome, &counts, error.as_deref()).await {
            tracing::error!(run_id, error = %e, "could not record the end of a run");
        }
        result.map(|mut counts| {
            if let Value::Object(map) = &mut counts {
                map.insert("run_id".into(), json!(run_id));
            }
            counts
        })
    }
}
