//! Job names, triggers and the runner interface the daemon, the admin API and the CLI all
//! go through. A job run is identified by (store, job); the daemon leases that pair.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Every job flagsync runs. `Inventory` is operator-wide; the others run per store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Pull orders from a marketplace store.
    Orders,
    /// Pull stock levels and resources from the operator.
    Inventory,
    /// Plan and push available-to-sell quantities to a store.
    Stock,
    /// Send paid orders to the operator's fulfilment (drain the outbox).
    Fulfilment,
    /// Pull operator shipment notices and push shipments to a store.
    Shipments,
    /// Read live quantities back and report (or fix) what differs.
    Reconcile,
}

/// The pseudo store id operator-wide jobs run under.
pub const OPERATOR_SCOPE: &str = "operator";

impl JobKind {
    pub const ALL: [JobKind; 6] =
        [Self::Orders, Self::Inventory, Self::Stock, Self::Fulfilment, Self::Shipments, Self::Reconcile];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Orders => "orders",
            Self::Inventory => "inventory",
            Self::Stock => "stock",
            Self::Fulfilment => "fulfilment",
            Self::Shipments => "shipments",
            Self::Reconcile => "reconcile",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// Whether the job runs once per marketplace store (else once, under [`OPERATOR_SCOPE`]).
    pub fn per_store(self) -> bool {
        !matches!(self, Self::Inventory)
    }

    /// The default schedule (cron crate syntax: sec min hour day-of-month month day-of-week).
    pub fn default_schedule(self) -> &'static str {
        match self {
            Self::Orders => "0 * * * * *",
            Self::Inventory => "30 */2 * * * *",
            Self::Stock => "*/20 * * * * *",
            Self::Fulfilment => "*/30 * * * * *",
            Self::Shipments => "45 * * * * *",
            Self::Reconcile => "0 0 */6 * * *",
        }
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who asked for a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Trigger {
    Schedule,
    /// Through the admin API (the CLI uses it when a daemon is up).
    Manual {
        by: String,
    },
    /// In-process from the CLI, no daemon running.
    Cli,
    /// Started by the daemon right after another run changed what it depends on (a stock
    /// run after an orders pull that stored new or changed orders).
    FollowUp,
}

impl Trigger {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Schedule => "schedule",
            Self::Manual { .. } => "manual",
            Self::Cli => "cli",
            Self::FollowUp => "follow-up",
        }
    }
}

/// A fencing token: the lease epoch a run holds. Writes made because of the lease carry
/// it, and the store refuses them once another instance has taken the lease over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fence {
    /// `store/job`
    pub key: String,
    pub epoch: i64,
}

/// One run to execute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRequest {
    pub store_id: String,
    pub job: JobKind,
    pub trigger: Trigger,
    /// Job-specific options, as the CLI's flags (e.g. `{"since": .., "until": ..}` or
    /// `{"order": ".."}` for orders; `{"fix": true}` for reconcile).
    pub params: serde_json::Value,
    pub fence: Option<Fence>,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The request itself is wrong (unknown store, bad params): a 400 for the admin API.
    #[error("{0}")]
    Invalid(String),
    /// The run started and failed.
    #[error("{0}")]
    Failed(String),
    /// The run lost its lease while working; its writes were refused.
    #[error("lease lost: {0}")]
    LeaseLost(String),
}

/// Runs jobs. The app implements it; the daemon schedules and leases around it.
#[async_trait]
pub trait JobRunner: Send + Sync {
    /// Runs one job to its end and returns its counts (a JSON object).
    async fn run(&self, request: &JobRequest) -> Result<serde_json::Value, JobError>;
}
