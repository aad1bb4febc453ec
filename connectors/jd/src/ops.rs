//! Single-order reads, stock writes and reads, and shipments (with the re-read that makes a
//! repeated shipment safe).

use flagsync_market::{
    ConnectorError, ErrorKind, Fetched, ListingQty, ListingRef, Shipment, ShipmentOutcome, StockResult,
    StockUpdate,
};
use serde_json::json;

use crate::envelope::PLATFORM;
use crate::parse::{self, OPTIONAL_FIELDS, ORDER_GET, SHIPMENT, STOCK_QUERY, STOCK_SET};
use crate::{JdConnector, STOCK_BATCH};

/// Business refusals of a shipment get one more send (after a re-read) in case the order
/// was mid-transition; transient failures get the retry policy's attempts.
const REJECTED_SENDS: u32 = 2;

/// What the re-read of an order says about a shipment.
enum ShipState {
    Done,
    Blocked(String),
    Open,
}

fn ship_state(state: &str) -> ShipState {
    match state {
        "WAIT_GOODS_RECEIVE_CONFIRM" | "FINISHED_L" | "RECEIPT_CONFIRM" => ShipState::Done,
        "WAIT_SELLER_STOCK_OUT" | "WAIT_SELLER_DELIVERY" => ShipState::Open,
        other => ShipState::Blocked(other.to_string()),
    }
}

fn local(api: &str, message: String) -> ConnectorError {
    ConnectorError::new(PLATFORM, api, ErrorKind::Rejected, message)
}

fn numeric_sku(api: &str, listing: &ListingRef) -> Result<u64, ConnectorError> {
    let Some(sku) = listing.sku_id.as_deref() else {
        return Err(local(
            api,
            format!("listing {} has no sku id; jd stock is set per sku", listing.item_id),
        ));
    };
    sku.trim().parse::<u64>().map_err(|_| local(api, format!("sku id {sku:?} is not a jd numeric sku id")))
}

impl JdConnector {
    pub(crate) async fn fetch(&self, order_id: &str) -> Result<Fetched, ConnectorError> {
        let business = json!({
            "order_id": order_id,
            "optional_fields": OPTIONAL_FIELDS,
            "order_state": self.order_states(),
        });
        self.with_retry(ORDER_GET, &business, parse::order_get, &mut 0)
            .await?
            .ok_or_else(|| local(ORDER_GET, format!("order {order_id} not found")))
    }

    /// Absolute (`stockNum`) or incremental (`incrStockNum`, never sent twice after an
    /// ambiguous failure) updates, in batches.
    pub(crate) async fn set_stock(
        &self,
        updates: &[StockUpdate],
        incremental: bool,
    ) -> Result<Vec<StockResult>, ConnectorError> {
        let mut outcomes: Vec<Option<Result<i64, ConnectorError>>> = vec![None; updates.len()];
        let mut valid: Vec<(usize, u64)> = Vec::new();
        for (index, update) in updates.iter().enumerate() {
            if update.quantity < 0 && !incremental {
                outcomes[index] =
                    Some(Err(local(STOCK_SET, format!("negative quantity {} refused", update.quantity))));
                continue;
            }
            match numeric_sku(STOCK_SET, &update.listing) {
                Ok(sku) => valid.push((index, sku)),
                Err(error) => outcomes[index] = Some(Err(error)),
            }
        }
        for chunk in valid.chunks(STOCK_BATCH) {
            let stocks: Vec<_> = chunk
                .iter()
                .map(|(index, sku)| {
                    if incremental {
                        json!({"skuId": sku, "incrStockNum": updates[*index].quantity})
                    } else {
                        json!({"skuId": sku, "stockNum": updates[*index].quantity})
                    }
                })
                .collect();
            let business = json!({"req": {"skuStocks": stocks}});
            let result = if incremental {
                self.not_twice(STOCK_SET, &business, parse::stock_set, &mut 0).await
            } else {
                self.with_retry(STOCK_SET, &business, parse::stock_set, &mut 0).await
            };
            match result {
                Ok(results) => {
                    let named = results.iter().all(|r| r.sku_id.is_some());
                    for (position, (index, sku)) in chunk.iter().enumerate() {
                        let sku_text = sku.to_string();
                        let found = if results.is_empty() {
                            Some(Ok(()))
                        } else if named {
                            results
                                .iter()
                                .find(|r| r.sku_id.as_deref() == Some(&sku_text))
                                .map(|r| r.outcome.clone())
                        } else if results.len() == chunk.len() {
                            Some(results[position].outcome.clone())
                        } else {
                            None
                        };
                        outcomes[*index] = Some(match found {
                            Some(Ok(())) => Ok(updates[*index].quantity),
                            Some(Err(error)) => Err(error),
                            None => Err(ConnectorError::new(
                                PLATFORM,
                                STOCK_SET,
                                ErrorKind::Malformed,
                                format!("reply has no result for sku {sku}"),
                            )),
                        });
                    }
                }
                Err(error) if error.kind == ErrorKind::Auth => return Err(error),
                Err(error) => {
                    for (index, _) in chunk {
                        outcomes[*index] = Some(Err(error.clone()));
                    }
                }
            }
        }
        Ok(updates
            .iter()
            .zip(outcomes)
            .map(|(update, outcome)| StockResult {
                listing: update.listing.clone(),
                outcome: outcome.unwrap_or_else(|| Err(local(STOCK_SET, "update was not sent".into()))),
            })
            .collect())
    }

    pub(crate) async fn query_stock(
        &self,
        listings: &[ListingRef],
    ) -> Result<Vec<ListingQty>, ConnectorError> {
        let mut out = Vec::with_capacity(listings.len());
        for listing in listings {
            let sku = numeric_sku(STOCK_QUERY, listing)?;
            let found =
                self.with_retry(STOCK_QUERY, &json!({"skuId": sku}), parse::stock_query, &mut 0).await?;
            let sku_text = sku.to_string();
            let quantity = found
                .iter()
                .find(|(id, _)| *id == sku_text)
                .or_else(|| if found.len() == 1 { found.first() } else { None })
                .map(|(_, quantity)| *quantity)
                .ok_or_else(|| {
                    ConnectorError::new(
                        PLATFORM,
                        STOCK_QUERY,
                        ErrorKind::Malformed,
                        format!("reply has no stock for sku {sku}"),
                    )
                })?;
            out.push(ListingQty { listing: listing.clone(), quantity, outer_id: None });
        }
        Ok(out)
    }

    /// Sends the shipment; after any failure that may not be final (a business refusal, a
    /// lost reply, a transient error) it re-reads the order before deciding, so a shipment
    /// is never sent twice without a read in between.
    pub(crate) async fn ship(&self, shipment: &Shipment) -> Result<ShipmentOutcome, ConnectorError> {
        let order_id: u64 = shipment.order_id.trim().parse().map_err(|_| {
            local(SHIPMENT, format!("order id {:?} is not a jd numeric order id", shipment.order_id))
        })?;
        let carrier: u64 = shipment.carrier.trim().parse().map_err(|_| {
            local(
                SHIPMENT,
                format!(
                    "carrier {:?} is not a jd numeric logistics id (logiCoprId, from jingdong.delivery.logistics.get)",
                    shipment.carrier
                ),
            )
        })?;
        // 1274 is 厂家自送 (the maker's own delivery), the one carrier JD takes without a waybill.
        if shipment.waybill.trim().is_empty() && carrier != 1274 {
            return Err(local(SHIPMENT, format!("order {order_id}: empty waybill for carrier {carrier}")));
        }
        let business = json!({
            "orderId": order_id,
            "logiCoprId": carrier.to_string(),
            "logiNo": shipment.waybill.trim(),
        })
        .to_string();
        let policy = self.config.retry;
        let mut sends = 0u32;
        let mut rejected_sends = 0u32;
        loop {
            sends += 1;
            let error = match self.once(SHIPMENT, &business, parse::shipment).await {
                Ok(()) => return Ok(ShipmentOutcome::Shipped),
                Err(error) => error,
            };
            match error.kind {
                ErrorKind::Auth => return Err(error),
                // A gateway refusal (bad signature, method...) means JD never looked at it.
                ErrorKind::Rejected if error.code.as_deref().is_some_and(is_gateway_code) => {
                    return Err(error);
                }
                ErrorKind::Rejected => rejected_sends += 1,
                _ => {}
            }
            let state = self.reread_state(&shipment.order_id).await?;
            match state.as_deref().map(ship_state) {
                Some(ShipState::Done) => return Ok(ShipmentOutcome::AlreadyShipped),
                Some(ShipState::Blocked(state)) => {
                    let mut refused = error;
                    refused.kind = ErrorKind::Rejected;
                    refused.message = format!("order {order_id} is {state}: {}", refused.message);
                    return Err(refused);
                }
                None => {
                    let mut refused = error;
                    refused.kind = ErrorKind::Rejected;
                    refused.message = format!("order {order_id} not found on re-read: {}", refused.message);
                    return Err(refused);
                }
                Some(ShipState::Open) => {}
            }
            if sends >= policy.max_attempts || rejected_sends >= REJECTED_SENDS {
                return Err(error_after(error, sends));
            }
            let wait = match error.retry_after {
                Some(hint) if hint <= policy.max_hint => hint + std::time::Duration::from_secs(1),
                _ => policy.delay_for(sends),
            };
            tokio::time::sleep(wait).await;
        }
    }

    async fn reread_state(&self, order_id: &str) -> Result<Option<String>, ConnectorError> {
        let business = json!({
            "order_id": order_id,
            "optional_fields": "orderId,orderState",
            "order_state": self.order_states(),
        });
        self.with_retry(ORDER_GET, &business, parse::order_state, &mut 0).await
    }
}

fn error_after(mut error: ConnectorError, sends: u32) -> ConnectorError {
    error.message = format!("{} (after {sends} sends, order still awaiting shipment)", error.message);
    error
}

/// Gateway-level codes (from `error_response`), as opposed to business `errorCode`s.
fn is_gateway_code(code: &str) -> bool {
    matches!(code, "4" | "5" | "7" | "11" | "12" | "14" | "15")
}
