//! Orders to the operator: paid orders go to the operator's fulfilment, orders cancelled or
//! refunded before shipment are withdrawn. The outbox rows come from `Store::ingest`; here
//! the worker builds each request from the order as stored at send time, so a hold, a
//! release or a refunded line that arrived since is seen.
//!
//! A request carries the order's lines mapped to operator SKUs (by the store's listing
//! mappings, else the merchant code), the receiver and, for contract phones, the number,
//! plan and package the connector read with the order (where the platform offers them)
//! and the number pool of the listing's bundle. Personal data goes to the operator and nowhere
//! else: it is never logged and never part of an error.

use chrono::TimeDelta;
use flagsync_market::{Order, OrderStatus, RefundState};
use flagsync_operator::{FulfilmentAck, FulfilmentLine, FulfilmentRequest, WithdrawAck};

use super::SyncError;
use super::outbox::{Delivered, DrainReport, OutboxContext, Outcome, drain};
use crate::inventory::{ComponentKind, ReservationRules, listing_key};
use crate::store::{OutboxKind, OutboxRow};

/// How long a held order waits before the worker looks at it again.
pub const HELD_RECHECK: TimeDelta = TimeDelta::minutes(5);

/// Fulfilment lines beyond the first of one order line (a bundle with several physical
/// components) get this separator and a number after the line id; shipments map them back.
pub const LINE_PART_SEPARATOR: char = '~';

/// Why no request can be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// A line maps to no operator SKU: ops must map it.
    #[error("{0}")]
    Unmapped(String),
    /// Every line was refunded.
    #[error("no line left to fulfil (every line refunded)")]
    NothingToShip,
}

/// The marketplace line a fulfilment line id stands for.
pub fn market_line(fulfilment_line: &str) -> &str {
    match fulfilment_line.rsplit_once(LINE_PART_SEPARATOR) {
        Some((line, part)) if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) => line,
        _ => fulfilment_line,
    }
}

/// The operator's request for an order. `rules` maps listings to the catalogue; without
/// them (no catalogue configured) each line's merchant code is taken as the operator SKU.
pub fn build_request(
    store_id: &str,
    platform: &str,
    order: &Order,
    rules: Option<&ReservationRules>,
) -> Result<FulfilmentRequest, BuildError> {
    let mut lines = Vec::new();
    let mut number_pool = None;
    for line in order.lines.iter().filter(|l| l.refund != RefundState::Refunded) {
        let listing = listing_key(&line.item_id, line.sku_id.as_deref());
        let code = line.outer_sku_id.as_deref().map(str::trim).filter(|c| !c.is_empty());
        let Some(rules) = rules else {
            let Some(code) = code else {
                return Err(BuildError::Unmapped(format!(
                    "line {} (listing {listing}) has no merchant code, and the catalogue is empty: \
                     configure [catalog] and stores.{store_id}.listings",
                    line.line_id
                )));
            };
            lines.push(FulfilmentLine {
                line_id: line.line_id.clone(),
                operator_sku: code.to_string(),
                quantity: line.quantity,
            });
            continue;
        };
        let Some(resolved) = rules.target_of(&line.item_id, line.sku_id.as_deref(), code) else {
            return Err(BuildError::Unmapped(format!(
                "line {} (listing {listing}, merchant code {}) maps to no operator sku or bundle: add \
                 stores.{store_id}.listings.\"{listing}\" or fix the merchant code",
                line.line_id,
                code.unwrap_or("none")
            )));
        };
        let physical: Vec<(String, i64)> = resolved
            .components
            .iter()
            .filter(|(c, _)| c.kind == ComponentKind::Stock)
            .map(|(c, per)| (c.code.clone(), *per))
            .collect();
        if let Some((pool, _)) = resolved.components.iter().find(|(c, _)| c.kind == ComponentKind::NumberPool)
        {
            number_pool.get_or_insert_with(|| pool.code.clone());
        }
        // A SIM-only bundle has nothing physical but the target itself.
        let physical = if physical.is_empty() { vec![(resolved.target.clone(), 1)] } else { physical };
        for (n, (sku, per)) in physical.into_iter().enumerate() {
            let line_id = if n == 0 {
                line.line_id.clone()
            } else {
                format!("{}{LINE_PART_SEPARATOR}{}", line.line_id, n + 1)
            };
            lines.push(FulfilmentLine { line_id, operator_sku: sku, quantity: line.quantity * per });
        }
    }
    if lines.is_empty() {
        return Err(BuildError::NothingToShip);
    }
    Ok(FulfilmentRequest {
        store_id: store_id.to_string(),
        order_id: order.order_id.clone(),
        platform: platform.to_string(),
        paid_at: order.paid_at,
        lines,
        receiver: order.receiver.clone(),
        contract: order.contract.clone(),
        number_pool,
    })
}

/// Sends one `fulfil` row: the stored order, if still paid and not held.
pub(super) async fn submit(ctx: &OutboxContext<'_>, row: &OutboxRow) -> Result<Outcome, SyncError> {
    let Some(operator) = ctx.operator else {
        return Err(SyncError::Invalid("no [operator] in the config: fulfilment is unavailable".into()));
    };
    let Some(stored) = ctx.store.order(&row.store_id, &row.order_id).await? else {
        return Ok(Outcome::Dead { reason: format!("order {} is not stored", row.order_id) });
    };
    let order = &stored.order;
    match order.status {
        OrderStatus::Paid => {}
        OrderStatus::Held => return Ok(Outcome::Wait { until: ctx.clock.now() + HELD_RECHECK }),
        OrderStatus::Cancelled | OrderStatus::Refunded => {
            return Ok(Outcome::Dropped(format!(
                "{}: order {} at the marketplace ({})",
                crate::store::WITHDRAWN_BEFORE_SENDING,
                order.status.as_str(),
                order.platform_status
            )));
        }
        other => {
            return Ok(Outcome::Dropped(format!(
                "not sent: the marketplace shows the order {} ({}) without a fulfilment from flagsync",
                other.as_str(),
                order.platform_status
            )));
        }
    }
    let platform = ctx.market.map_or("unknown", |m| m.platform());
    let request = match build_request(&row.store_id, platform, order, ctx.rules) {
        Ok(request) => request,
        Err(BuildError::NothingToShip) => return Ok(Outcome::Dropped(BuildError::NothingToShip.to_string())),
        Err(error) => return Ok(Outcome::Dead { reason: error.to_string() }),
    };
    Ok(match operator.submit_fulfilment(&request).await {
        Ok(FulfilmentAck::Accepted) => Outcome::Done { how: Delivered::Sent, consume: None },
        Ok(FulfilmentAck::AlreadyAccepted) => Outcome::Done { how: Delivered::Already, consume: None },
        Err(error) => Outcome::from_error(error),
    })
}

/// Sends one `withdraw` row.
pub(super) async fn withdraw(ctx: &OutboxContext<'_>, row: &OutboxRow) -> Result<Outcome, SyncError> {
    let Some(operator) = ctx.operator else {
        return Err(SyncError::Invalid("no [operator] in the config: fulfilment is unavailable".into()));
    };
    let reason = row.payload.get("reason").and_then(|r| r.as_str()).unwrap_or("closed at the marketplace");
    Ok(match operator.withdraw_fulfilment(&row.store_id, &row.order_id, reason).await {
        Ok(WithdrawAck::Withdrawn) => Outcome::Done { how: Delivered::Sent, consume: None },
        Ok(WithdrawAck::NotFound) => Outcome::Done { how: Delivered::Already, consume: None },
        Ok(WithdrawAck::AlreadyShipped) => {
            tracing::warn!(store = %row.store_id, order = %row.order_id, "withdrawal too late: the operator has shipped");
            Outcome::Done { how: Delivered::TooLate, consume: None }
        }
        Err(error) => Outcome::from_error(error),
    })
}

/// Drains a store's fulfilment requests and withdrawals.
pub async fn sync_fulfilment(ctx: &OutboxContext<'_>, limit: usize) -> Result<DrainReport, SyncError> {
    if ctx.operator.is_none() {
        return Err(SyncError::Invalid("no [operator] in the config: fulfilment is unavailable".into()));
    }
    drain(ctx, &[OutboxKind::Fulfil, OutboxKind::Withdraw], limit).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::Utc;
    use flagsync_market::{ContractInfo, OrderLine, pii::Pii};

    use super::*;
    use crate::inventory::{Catalog, SkuDef};

    fn line(id: &str, outer: &str, quantity: i64, refund: RefundState) -> OrderLine {
        OrderLine {
            line_id: id.into(),
            item_id: "600".into(),
            sku_id: Some(format!("sku-{outer}")),
            outer_sku_id: Some(outer.into()),
            title: "phone".into(),
            quantity,
            price_fen: 100,
            payment_fen: 100,
            refund,
            platform_status: None,
        }
    }

    fn order(lines: Vec<OrderLine>) -> Order {
        Order {
            order_id: "4001".into(),
            status: OrderStatus::Paid,
            platform_status: "WAIT_SELLER_SEND_GOODS".into(),
            created_at: Utc::now(),
            modified_at: Utc::now(),
            paid_at: Some(Utc::now()),
            total_fen: 100,
            payment_fen: 100,
            post_fee_fen: 0,
            buyer: Pii::new("nick"),
            receiver: None,
            lines,
            contract: Some(ContractInfo { plan_code: "P129".into(), ..ContractInfo::default() }),
            raw: String::new(),
        }
    }

    fn rules() -> ReservationRules {
        let sku = |code: &str, kind| {
            (code.to_string(), SkuDef { code: code.into(), kind_name: "x".into(), kind, safety_stock: 0 })
        };
        ReservationRules {
            catalog: Catalog {
                skus: [
                    sku("PHONE", ComponentKind::Stock),
                    sku("CASE", ComponentKind::Stock),
                    sku("P129", ComponentKind::PlanQuota),
                    sku("POOL-1", ComponentKind::NumberPool),
                ]
                .into_iter()
                .collect(),
                bundles: [(
                    "HY".to_string(),
                    vec![("PHONE".into(), 1), ("CASE".into(), 2), ("P129".into(), 1), ("POOL-1".into(), 1)],
                )]
                .into_iter()
                .collect(),
            },
            explicit: BTreeMap::new(),
            reserve_on_order: false,
        }
    }

    #[test]
    fn a_bundle_line_becomes_its_physical_parts_with_the_pool_and_refunded_lines_stay_out() {
        let order = order(vec![
            line("11", "HY", 1, RefundState::None),
            line("12", "PHONE", 2, RefundState::Refunded),
        ]);
        let request = build_request("store-1", "alpha", &order, Some(&rules())).unwrap();
        let lines: Vec<(&str, &str, i64)> =
            request.lines.iter().map(|l| (l.line_id.as_str(), l.operator_sku.as_str(), l.quantity)).collect();
        assert_eq!(lines, vec![("11", "PHONE", 1), ("11~2", "CASE", 2)]);
        assert_eq!(request.number_pool.as_deref(), Some("POOL-1"));
        assert_eq!(request.contract.unwrap().plan_code, "P129");
        assert_eq!(market_line("11~2"), "11");
        assert_eq!(market_line("5000#2"), "5000#2", "other suffixes pass through");
        assert_eq!(market_line("a~b"), "a~b");
    }

    #[test]
    fn an_unmapped_line_names_the_key_to_add_and_all_refunded_is_nothing_to_ship() {
        let unmapped = build_request(
            "store-1",
            "alpha",
            &order(vec![line("11", "NOPE", 1, RefundState::None)]),
            Some(&rules()),
        )
        .unwrap_err()
        .to_string();
        assert!(unmapped.contains("stores.store-1.listings"), "{unmapped}");
        assert!(unmapped.contains("NOPE"), "{unmapped}");
        let refunded = order(vec![line("11", "PHONE", 1, RefundState::Refunded)]);
        assert_eq!(
            build_request("store-1", "alpha", &refunded, Some(&rules())),
            Err(BuildError::NothingToShip)
        );
        let plain =
            build_request("store-1", "alpha", &order(vec![line("11", "ANY", 1, RefundState::None)]), None)
                .unwrap();
        assert_eq!(plain.lines[0].operator_sku, "ANY", "without a catalogue the merchant code is the sku");
    }
}
