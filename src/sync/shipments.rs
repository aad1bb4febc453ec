//! Shipments back: operator shipment notices (pulled after the 'shipments' watermark, or
//! imported from a CSV export) become `ship` outbox rows in the transaction that moves the
//! watermark, and the worker pushes each to its marketplace.
//!
//! A push maps the operator's carrier name to the platform's code through `[carriers]`,
//! reports IMEIs (where the platform's shipping call takes them), ships split packages by
//! sub-order (where the platform can; elsewhere a second package finds the order shipped
//! and counts as done), and treats "already shipped" as done once the connector has
//! re-read the order. A confirmed push consumes the order's reservations at the notice's
//! stock watermark in the same transaction that marks the row done. A refusal because the
//! order is held (paused, locked by a refund request) waits for the release, as
//! fulfilment does; other refusals (a closed order, an unknown carrier) go to the
//! dead-letter list with the reason.
//!
//! A corrected waybill (`corrects`) replaces its original while the original has not
//! reached the marketplace; once it has, the shipping call cannot change it (that takes
//! the platforms' resend / modify APIs, which the connectors do not call), so the
//! correction goes to the dead-letter list saying so.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use flagsync_market::{ErrorKind, Fetched, LineSerials, OrderStatus, Shipment, ShipmentOutcome};
use flagsync_operator::{CsvError, OperatorApi, ShipmentNotice, ShipmentRow};
use serde::{Deserialize, Serialize};

use super::SyncError;
use super::fulfilment::{HELD_RECHECK, market_line};
use super::outbox::{Delivered, DrainReport, OutboxContext, Outcome, drain};
use crate::config::CarrierCodes;
use crate::store::{
    Consume, NewOutboxRow, OutboxKind, OutboxRow, OutboxState, ShippedLines, Store, ship_key,
};

/// The watermark of the operator's notice stream.
pub const SHIPMENTS_WATERMARK: &str = "shipments";

/// Notices per operator call (the API's maximum).
pub const PAGE: u32 = 500;

/// Pages read per pull, so one run cannot loop forever on a misbehaving server.
const MAX_PAGES: usize = 200;

/// What a `ship` row carries: the notice, as the operator (or the CSV) gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipPayload {
    pub notice_id: String,
    /// Fulfilment line ids in this package; empty = the whole order.
    pub line_ids: Vec<String>,
    /// The operator's carrier name.
    pub carrier: String,
    pub waybill: String,
    pub serials: Vec<LineSerials>,
    pub shipped_at: DateTime<Utc>,
    /// Where the units left the operator's on-hand; unknown for CSV imports.
    pub stock_watermark: Option<i64>,
    pub corrects: Option<String>,
    /// `operator` or `csv`.
    pub source: String,
}

impl ShipPayload {
    pub fn from_notice(notice: &ShipmentNotice) -> Self {
        Self {
            notice_id: notice.notice_id.clone(),
            line_ids: notice.line_ids.clone(),
            carrier: notice.carrier.clone(),
            waybill: notice.waybill.clone(),
            serials: notice.serials.clone(),
            shipped_at: notice.shipped_at,
            stock_watermark: Some(notice.stock_watermark),
            corrects: notice.corrects.clone(),
            source: "operator".into(),
        }
    }

    /// The marketplace lines of this package (empty = the whole order).
    pub fn market_lines(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for id in &self.line_ids {
            let line = market_line(id).to_string();
            if !out.contains(&line) {
                out.push(line);
            }
        }
        out
    }

    /// The shipment to push, with the platform's carrier code.
    pub fn shipment(&self, order_id: &str, carrier_code: &str) -> Shipment {
        let mut serials: Vec<LineSerials> = Vec::new();
        for entry in &self.serials {
            let line = market_line(&entry.line_id);
            match serials.iter_mut().find(|s| s.line_id == line) {
                Some(existing) => existing.serials.extend(entry.serials.iter().cloned()),
                None => {
                    serials.push(LineSerials { line_id: line.to_string(), serials: entry.serials.clone() })
                }
            }
        }
        Shipment {
            order_id: order_id.to_string(),
            line_ids: self.market_lines(),
            carrier: carrier_code.to_string(),
            waybill: self.waybill.clone(),
            serials,
        }
    }
}

/// A carrier's code on a platform, by the operator's name (exact, else case-insensitive).
pub fn carrier_code<'a>(
    carriers: &'a BTreeMap<String, CarrierCodes>,
    carrier: &str,
    platform: &str,
) -> Option<&'a str> {
    let name = carrier.trim();
    carriers
        .get(name)
        .or_else(|| carriers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
        .and_then(|codes| codes.for_platform(platform))
}

fn ship_row(
    store_id: &str,
    order_id: &str,
    payload: &ShipPayload,
    due: DateTime<Utc>,
    known: &BTreeSet<String>,
) -> Result<NewOutboxRow, String> {
    let dead_reason = (!known.contains(store_id)).then(|| {
        format!(
            "store {store_id:?} is not in the config: add [stores.{store_id}], then retry this dead letter"
        )
    });
    Ok(NewOutboxRow {
        kind: OutboxKind::Ship,
        store_id: store_id.to_string(),
        order_id: order_id.to_string(),
        dedupe_key: ship_key(store_id, &payload.notice_id),
        payload: serde_json::to_value(payload).map_err(|e| format!("notice {}: {e}", payload.notice_id))?,
        due,
        dead_reason,
    })
}

/// What a notice pull did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticePull {
    pub notices: u64,
    /// New `ship` rows (a notice seen before adds none).
    pub queued: u64,
    pub watermark: i64,
}

/// Pulls operator notices after the stored watermark, page by page, each page's rows and
/// the watermark committed together. Notices for stores not in the config go straight to
/// the dead-letter list.
pub async fn pull_notices(
    store: &Store,
    operator: &dyn OperatorApi,
    known: &BTreeSet<String>,
    now: DateTime<Utc>,
) -> Result<NoticePull, SyncError> {
    let mut report = NoticePull::default();
    for _ in 0..MAX_PAGES {
        let since = store.watermark(SHIPMENTS_WATERMARK).await?.unwrap_or(0);
        let batch = operator.shipments(since, PAGE).await?;
        if batch.watermark < since {
            return Err(SyncError::Invalid(format!(
                "operator answered shipments watermark {} after {since}: it went backwards",
                batch.watermark
            )));
        }
        report.queued += record_notices(store, &batch.notices, Some(batch.watermark), known, now).await?;
        report.notices += batch.notices.len() as u64;
        report.watermark = batch.watermark;
        if batch.notices.len() < PAGE as usize || batch.watermark == since {
            break;
        }
    }
    Ok(report)
}

/// Queues one `ship` row per notice (a notice seen before adds none; its id is the dedupe
/// key) and, with a pull, moves the notice watermark in the same transaction. Returns the
/// rows queued. Notices pushed to the admin API come here too, with no watermark.
pub async fn record_notices(
    store: &Store,
    notices: &[ShipmentNotice],
    watermark: Option<i64>,
    known: &BTreeSet<String>,
    now: DateTime<Utc>,
) -> Result<u64, SyncError> {
    let rows = notices
        .iter()
        .map(|n| ship_row(&n.store_id, &n.order_id, &ShipPayload::from_notice(n), now, known))
        .collect::<Result<Vec<_>, _>>()
        .map_err(SyncError::Invalid)?;
    // The operator confirmed these shipments: their reservations are consumed now, at
    // the stock watermark that deducted them, so the ledger never counts a shipped unit
    // as on hand and reserved at once (the marketplace push may come later). In the same
    // transaction as the rows and the watermark: a notice behind the watermark is never
    // pulled again, so its consumption must not be left for later.
    let shipped: Vec<ShippedLines> = notices
        .iter()
        .filter(|n| known.contains(&n.store_id))
        .map(|notice| ShippedLines {
            store_id: notice.store_id.clone(),
            order_id: notice.order_id.clone(),
            consume: Consume {
                line_ids: notice
                    .line_ids
                    .iter()
                    .map(|l| crate::sync::fulfilment::market_line(l).to_string())
                    .collect(),
                watermark: notice.stock_watermark,
            },
        })
        .collect();
    let queued =
        store.enqueue_outbox_consuming(&rows, watermark.map(|w| (SHIPMENTS_WATERMARK, w)), &shipped).await?;
    Ok(queued)
}

/// What a pushed notice must satisfy before anything is written.
pub fn validate_notices(notices: &[ShipmentNotice]) -> Result<(), String> {
    let mut problems = Vec::new();
    for (i, n) in notices.iter().enumerate() {
        for (field, value) in [
            ("notice_id", &n.notice_id),
            ("store_id", &n.store_id),
            ("order_id", &n.order_id),
            ("carrier", &n.carrier),
            ("waybill", &n.waybill),
        ] {
            if value.trim().is_empty() {
                problems.push(format!("notices[{i}].{field}: empty"));
            }
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
}

/// Turns CSV rows into `ship` rows: a store not in the config is an error on its line. The
/// notice id is made from the order and waybill, so importing a file twice adds nothing.
pub fn rows_from_csv(
    rows: &[ShipmentRow],
    known: &BTreeSet<String>,
    now: DateTime<Utc>,
) -> (Vec<NewOutboxRow>, Vec<CsvError>) {
    let mut good = Vec::new();
    let mut errors = Vec::new();
    for row in rows {
        if !known.contains(&row.store_id) {
            errors.push(CsvError {
                line: row.line,
                column: "store".into(),
                message: format!("store {:?} is not in the config", row.store_id),
            });
            continue;
        }
        let payload = ShipPayload {
            notice_id: format!("csv-{}-{}", row.order_id, row.waybill),
            line_ids: row.line_ids.clone(),
            carrier: row.carrier.clone(),
            waybill: row.waybill.clone(),
            serials: row.serials.clone(),
            shipped_at: row.shipped_at,
            stock_watermark: None,
            corrects: None,
            source: "csv".into(),
        };
        match ship_row(&row.store_id, &row.order_id, &payload, now, known) {
            Ok(new) => good.push(new),
            Err(message) => errors.push(CsvError { line: row.line, column: String::new(), message }),
        }
    }
    (good, errors)
}

/// Pushes one `ship` row to the marketplace.
pub(super) async fn push(ctx: &OutboxContext<'_>, row: &OutboxRow) -> Result<Outcome, SyncError> {
    let Some(market) = ctx.market else {
        return Err(SyncError::Invalid(format!("no store {:?} in the config", ctx.store_id)));
    };
    let payload: ShipPayload = match serde_json::from_value(row.payload.clone()) {
        Ok(payload) => payload,
        Err(e) => return Ok(Outcome::Dead { reason: format!("unreadable shipment payload: {e}") }),
    };
    let platform = market.platform();
    let Some(code) = carrier_code(ctx.carriers, &payload.carrier, platform) else {
        return Ok(Outcome::Dead {
            reason: format!(
                "carrier {:?} has no {platform} code: add carriers.{}.{platform} to the config, then retry",
                payload.carrier,
                toml_key(payload.carrier.trim())
            ),
        });
    };
    let correction = match &payload.corrects {
        None => None,
        Some(original) => {
            let original_row = ctx.store.outbox_by_key(&ship_key(&row.store_id, original)).await?;
            match original_row {
                Some(first) if first.state == OutboxState::Done => {
                    return Ok(Outcome::Dead { reason: correction_reason(original, &payload.waybill) });
                }
                Some(first) if matches!(first.state, OutboxState::Pending | OutboxState::Dead) => {
                    let reason =
                        format!("replaced by correction {} (waybill {})", payload.notice_id, payload.waybill);
                    ctx.store.outbox_drop(first.id, &reason).await?;
                }
                _ => {}
            }
            Some(original.clone())
        }
    };
    let shipment = payload.shipment(&row.order_id, code);
    let how = match market.push_shipment(&shipment).await {
        Ok(ShipmentOutcome::Shipped) => Delivered::Sent,
        Ok(ShipmentOutcome::AlreadyShipped) => match &correction {
            // The marketplace shows a shipment, but not necessarily this waybill.
            Some(original) => {
                return Ok(Outcome::Dead { reason: correction_reason(original, &payload.waybill) });
            }
            None => Delivered::Already,
        },
        Err(error) if error.kind == ErrorKind::Rejected => {
            // A held order (paused, locked by a refund request) refuses shipping for now,
            // not for good: look again later, as for fulfilment.
            if let Ok(Fetched::Order(order)) = market.fetch_order(&row.order_id).await
                && order.status == OrderStatus::Held
            {
                return Ok(Outcome::Wait { until: ctx.clock.now() + HELD_RECHECK });
            }
            return Ok(Outcome::from_error(error));
        }
        Err(error) => return Ok(Outcome::from_error(error)),
    };
    let watermark = match payload.stock_watermark {
        Some(w) => w,
        // A CSV shipment's deduction time is unknown: count its units as leaving after the
        // snapshot the ledger has, so the next snapshot is what takes them off.
        None => ctx.store.watermark("stock").await?.unwrap_or(0) + 1,
    };
    Ok(Outcome::Done { how, consume: Some(Consume { line_ids: payload.market_lines(), watermark }) })
}

fn correction_reason(original: &str, waybill: &str) -> String {
    format!(
        "correction of notice {original} to waybill {waybill}: the marketplace already has the first \
         waybill, and changing it needs the platform's resend API, which flagsync does not call; fix it \
         in the seller console, then drop this dead letter"
    )
}

/// A config key segment: bare when TOML allows, else quoted.
fn toml_key(name: &str) -> String {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        name.to_string()
    } else {
        format!("{name:?}")
    }
}

/// What a shipments run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentsReport {
    /// The operator pull, when it ran.
    pub pull: Option<NoticePull>,
    pub push: DrainReport,
}

/// Pulls new operator notices (when an operator is configured and `pull` is set), then
/// pushes the store's due shipments.
pub async fn sync_shipments(
    ctx: &OutboxContext<'_>,
    known: &BTreeSet<String>,
    pull: bool,
    limit: usize,
) -> Result<ShipmentsReport, SyncError> {
    let pull = match (pull, ctx.operator) {
        (true, Some(operator)) => Some(pull_notices(ctx.store, operator, known, ctx.clock.now()).await?),
        _ => None,
    };
    let push = drain(ctx, &[OutboxKind::Ship], limit).await?;
    Ok(ShipmentsReport { pull, push })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_package_maps_bundle_parts_back_to_marketplace_lines_and_carriers_by_platform() {
        let payload = ShipPayload {
            notice_id: "OPN-1".into(),
            line_ids: vec!["11".into(), "11~2".into(), "12".into()],
            carrier: "sf".into(),
            waybill: "SF1400000000001".into(),
            serials: vec![
                LineSerials { line_id: "11".into(), serials: vec!["A".into()] },
                LineSerials { line_id: "11~2".into(), serials: vec!["B".into()] },
            ],
            shipped_at: Utc::now(),
            stock_watermark: Some(7),
            corrects: None,
            source: "operator".into(),
        };
        let shipment = payload.shipment("4001", "SF");
        assert_eq!(shipment.line_ids, vec!["11".to_string(), "12".to_string()]);
        assert_eq!(
            shipment.serials,
            vec![LineSerials { line_id: "11".into(), serials: vec!["A".into(), "B".into()] }]
        );
        assert_eq!(toml_key("顺丰"), "\"顺丰\"");
    }
}
