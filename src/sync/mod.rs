//! Sync jobs, written once against the connector contract: nothing here names a platform.

pub mod fulfilment;
pub mod inventory;
pub mod orders;
pub mod outbox;
pub mod reconcile;
pub mod shipments;
pub mod stock;

use flagsync_market::{ConnectorError, PullError};

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
}

impl From<PullError> for SyncError {
    fn from(error: PullError) -> Self {
        match error {
            PullError::Connector(e) => Self::Connector(e),
            PullError::Sink(e) => match e.0.downcast::<StoreError>() {
                Ok(store) => Self::Store(*store),
                Err(other) => Self::Invalid(other.to_string()),
            },
        }
    }
}
