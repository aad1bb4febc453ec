//! The simulated operator's books: on-hand per SKU and warehouse, plan quotas and number
//! pools, each stamped with the watermark of its last change; fulfilment requests; and the
//! shipment notices it has emitted. Nothing is reserved: on-hand moves only by
//! `set_on_hand` and by shipping.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeDelta, Utc};

use super::{FulfilmentState, FulfilmentView, OperatorSimConfig, ShipError, SimLine, SimNotice, SimResource};

/// A quantity and the watermark at which it last changed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Level {
    pub(crate) value: i64,
    pub(crate) changed_at: i64,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) config: OperatorSimConfig,
    pub(crate) watermark: i64,
    pub(crate) levels: BTreeMap<(String, String), Level>,
    pub(crate) resources: BTreeMap<(SimResource, String), Level>,
    /// In order of first acceptance.
    pub(crate) fulfilments: Vec<FulfilmentView>,
    pub(crate) notices: Vec<SimNotice>,
    pub(crate) auto_ship: Option<TimeDelta>,
    /// Nonce -> the timestamp it came with, kept while that timestamp is inside the window.
    pub(crate) nonces: HashMap<String, i64>,
    /// Endpoint -> end of a throttle ban.
    pub(crate) bans: HashMap<&'static str, DateTime<Utc>>,
    pub(crate) calls: BTreeMap<String, u64>,
    waybills: u64,
    imeis: u64,
}

/// Appends the Luhn check digit IMEIs carry.
fn with_luhn(body: &str) -> String {
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let doubled = d * 2;
                doubled / 10 + doubled % 10
            } else {
                d
            }
        })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

impl State {
    pub(crate) fn new(config: OperatorSimConfig) -> Self {
        Self {
            config,
            watermark: 0,
            levels: BTreeMap::new(),
            resources: BTreeMap::new(),
            fulfilments: Vec::new(),
            notices: Vec::new(),
            auto_ship: None,
            nonces: HashMap::new(),
            bans: HashMap::new(),
            calls: BTreeMap::new(),
            waybills: 0,
            imeis: 0,
        }
    }

    pub(crate) fn set_on_hand(&mut self, sku: &str, warehouse: &str, n: i64) {
        let key = (sku.to_string(), warehouse.to_string());
        if self.levels.get(&key).is_some_and(|l| l.value == n) {
            return;
        }
        self.watermark += 1;
        self.levels.insert(key, Level { value: n, changed_at: self.watermark });
    }

    pub(crate) fn set_resource(&mut self, kind: SimResource, code: &str, n: i64) {
        let key = (kind, code.to_string());
        if self.resources.get(&key).is_some_and(|l| l.value == n) {
            return;
        }
        self.watermark += 1;
        self.resources.insert(key, Level { value: n, changed_at: self.watermark });
    }

    pub(crate) fn on_hand(&self, sku: &str) -> i64 {
        self.levels.iter().filter(|((s, _), _)| s == sku).map(|(_, l)| l.value).sum()
    }

    pub(crate) fn resource(&self, kind: SimResource, code: &str) -> i64 {
        self.resources.get(&(kind, code.to_string())).map_or(0, |l| l.value)
    }

    pub(crate) fn find(&self, store_id: &str, order_id: &str) -> Option<usize> {
        self.fulfilments.iter().position(|f| f.store_id == store_id && f.order_id == order_id)
    }

    /// Warehouses holding `sku`, configured ones first in their order, then the rest by name.
    fn warehouses_for(&self, sku: &str) -> Vec<String> {
        let mut order: Vec<String> = self.config.warehouses.clone();
        for (s, warehouse) in self.levels.keys() {
            if s == sku && !order.contains(warehouse) {
                order.push(warehouse.clone());
            }
        }
        order.retain(|w| self.levels.contains_key(&(sku.to_string(), w.clone())));
        order
    }

    /// Ships the whole request: checks stock and resources, then deducts them at one new
    /// watermark and emits a notice. Either all of it happens or none.
    pub(crate) fn ship(
        &mut self,
        now: DateTime<Utc>,
        store_id: &str,
        order_id: &str,
        carrier: &str,
        waybill: &str,
        serials_by_line: Vec<(String, Vec<String>)>,
    ) -> Result<String, ShipError> {
        let index = self.find(store_id, order_id).ok_or(ShipError::UnknownOrder)?;
        let view = self.fulfilments[index].clone();
        match view.state {
            FulfilmentState::Pending => {}
            FulfilmentState::Withdrawn { .. } => return Err(ShipError::Withdrawn),
            FulfilmentState::Shipped { .. } => return Err(ShipError::AlreadyShipped),
        }
        let mut wanted: BTreeMap<&str, i64> = BTreeMap::new();
        for line in &view.lines {
            *wanted.entry(line.sku.as_str()).or_default() += line.quantity;
        }
        for (sku, quantity) in &wanted {
            let have: i64 =
                self.levels.iter().filter(|((s, _), _)| s == sku).map(|(_, l)| l.value.max(0)).sum();
            if have < *quantity {
                return Err(ShipError::ShortOfStock {
                    sku: sku.to_string(),
                    wanted: *quantity,
                    on_hand: have,
                });
            }
        }
        let needs: Vec<(SimResource, String)> = [
            view.plan_code.clone().map(|c| (SimResource::PlanQuota, c)),
            view.number_pool.clone().map(|c| (SimResource::NumberPool, c)),
        ]
        .into_iter()
        .flatten()
        .collect();
        for (kind, code) in &needs {
            if self.resource(*kind, code) < 1 {
                return Err(ShipError::ShortOfResource { kind: *kind, code: code.clone() });
            }
        }
        self.watermark += 1;
        let at = self.watermark;
        for (sku, quantity) in wanted {
            let mut left = quantity;
            for warehouse in self.warehouses_for(sku) {
                if left == 0 {
                    break;
                }
                if let Some(level) = self.levels.get_mut(&(sku.to_string(), warehouse)) {
                    let take = level.value.max(0).min(left);
                    if take > 0 {
                        level.value -= take;
                        level.changed_at = at;
                        left -= take;
                    }
                }
            }
        }
        for key in needs {
            if let Some(level) = self.resources.get_mut(&key) {
                level.value -= 1;
                level.changed_at = at;
            }
        }
        let sequence = self.notices.len() as i64 + 1;
        let notice_id = format!("OPN-{sequence:06}");
        self.notices.push(SimNotice {
            notice_id: notice_id.clone(),
            sequence,
            store_id: store_id.to_string(),
            order_id: order_id.to_string(),
            line_ids: Vec::new(),
            carrier: carrier.to_string(),
            waybill: waybill.to_string(),
            serials: serials_by_line,
            shipped_at: now,
            stock_watermark: at,
            corrects: None,
        });
        self.fulfilments[index].state = FulfilmentState::Shipped { notice_id: notice_id.clone() };
        Ok(notice_id)
    }

    /// A new notice replacing `notice_id`'s waybill; stock is not touched again.
    pub(crate) fn correct_waybill(
        &mut self,
        now: DateTime<Utc>,
        notice_id: &str,
        new_waybill: &str,
    ) -> Result<String, ShipError> {
        let original = self
            .notices
            .iter()
            .find(|n| n.notice_id == notice_id)
            .cloned()
            .ok_or(ShipError::UnknownNotice)?;
        let sequence = self.notices.len() as i64 + 1;
        let id = format!("OPN-{sequence:06}");
        self.notices.push(SimNotice {
            notice_id: id.clone(),
            sequence,
            waybill: new_waybill.to_string(),
            shipped_at: now,
            corrects: Some(original.notice_id.clone()),
            ..original.clone()
        });
        if let Some(index) = self.find(&original.store_id, &original.order_id) {
            self.fulfilments[index].state = FulfilmentState::Shipped { notice_id: id.clone() };
        }
        Ok(id)
    }

    /// In auto-ship mode, ships every pending request accepted at least `after` ago whose
    /// stock and resources suffice; the rest wait for a later pass.
    pub(crate) fn apply_due(&mut self, now: DateTime<Utc>) {
        let Some(after) = self.auto_ship else { return };
        let due: Vec<(String, String)> = self
            .fulfilments
            .iter()
            .filter(|f| matches!(f.state, FulfilmentState::Pending) && f.accepted_at + after <= now)
            .map(|f| (f.store_id.clone(), f.order_id.clone()))
            .collect();
        for (store_id, order_id) in due {
            let Some(index) = self.find(&store_id, &order_id) else { continue };
            let lines = self.fulfilments[index].lines.clone();
            let mut imeis = self.imeis;
            let serials: Vec<(String, Vec<String>)> = lines
                .iter()
                .filter(|line| !self.config.accessories.contains(&line.sku))
                .map(|line| {
                    let serials = (0..line.quantity)
                        .map(|_| {
                            imeis += 1;
                            with_luhn(&format!("86{imeis:012}"))
                        })
                        .collect();
                    (line.line_id.clone(), serials)
                })
                .collect();
            let waybill = format!("SF{:013}", 1_400_000_000_000 + self.waybills + 1);
            match self.ship(now, &store_id, &order_id, "SF", &waybill, serials) {
                Ok(_) => {
                    self.waybills += 1;
                    self.imeis = imeis;
                }
                Err(error) => {
                    tracing::debug!(store_id, error = %error, "operator sandbox cannot auto-ship yet")
                }
            }
        }
    }

    /// Forgets nonces whose timestamps have left the window; they fail the skew check now.
    pub(crate) fn prune_nonces(&mut self, now_secs: i64, window_secs: i64) {
        self.nonces.retain(|_, ts| *ts >= now_secs - window_secs);
    }
}

/// Lines of a request as the simulator compares them for idempotency.
pub(crate) fn same_lines(a: &[SimLine], b: &[SimLine]) -> bool {
    let key = |lines: &[SimLine]| {
        let mut v: Vec<(String, String, i64)> =
            lines.iter().map(|l| (l.line_id.clone(), l.sku.clone(), l.quantity)).collect();
        v.sort();
        v
    };
    key(a) == key(b)
}

#[cfg(test)]
mod tests {
    use super::with_luhn;

    #[test]
    fn imeis_carry_a_valid_luhn_digit() {
        // A published example IMEI.
        assert_eq!(with_luhn("49015420323751"), "490154203237518");
    }
}
