//! Seeded buyer behaviour over simulated time, independent of any platform: buyers place
//! orders for listings, pay, cancel, ask for and get refunds; contract-phone orders may be
//! held and released. Each gateway applies the events to its own order store, in its own
//! platform's terms (ids, statuses, field names), as its clock passes their times.

use chrono::{DateTime, TimeDelta, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How orders arrive over the scenario's duration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arrivals {
    /// Evenly spread.
    Uniform,
    /// A flash sale: most orders land in the first minutes, then a long tail
    /// (exponential decay with this mean).
    FlashSale { mean: TimeDelta },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioConfig {
    pub seed: u64,
    pub start: DateTime<Utc>,
    /// Orders are placed within this span; later events (payment, refunds) may fall after.
    pub duration: TimeDelta,
    pub orders: usize,
    /// Listings are numbered `0..listings`; each gateway maps a number to its own item and
    /// SKU ids.
    pub listings: usize,
    /// Listings numbered below this are contract phones (合约机).
    pub contract_listings: usize,
    /// Most lines in one order.
    pub max_lines: usize,
    /// Most units in one line.
    pub max_quantity: i64,
    pub arrivals: Arrivals,
    /// Share of orders never paid (closed by the platform after a timeout).
    pub unpaid_share: f64,
    /// Share of paid orders the buyer cancels and gets refunded before shipment.
    pub refund_share: f64,
    /// Share of paid contract-phone orders held (number check, pre-authorisation) and
    /// released later.
    pub hold_share: f64,
    /// Share of orders touched again later (memo, address change): only `modified` moves.
    pub touch_share: f64,
}

impl Default for ScenarioConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            start: DateTime::from_timestamp(1_793_462_400, 0).unwrap_or_default(), // 2026-11-01 00:00:00 +08:00 (2026-10-31 16:00 UTC)
            duration: TimeDelta::hours(2),
            orders: 1_000,
            listings: 20,
            contract_listings: 4,
            max_lines: 2,
            max_quantity: 2,
            arrivals: Arrivals::Uniform,
            unpaid_share: 0.1,
            refund_share: 0.05,
            hold_share: 0.3,
            touch_share: 0.2,
        }
    }
}

/// What a buyer (or the platform on the buyer's behalf) does to an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// A new order: (listing number, quantity) per line.
    Place {
        lines: Vec<(usize, i64)>,
    },
    Pay,
    /// Closed before payment (buyer cancelled or payment timed out).
    Cancel,
    /// A paid contract order is held (not to ship yet).
    Hold,
    /// A held order may ship now.
    Release,
    /// The buyer asks for a refund on a paid, unshipped order.
    RequestRefund,
    /// The refund goes through; the order closes.
    Refund,
    /// Something else changed (memo, address): only `modified` moves.
    Touch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuyerEvent {
    pub at: DateTime<Utc>,
    /// The scenario's order number, `0..orders`; gateways map it to their own ids.
    pub order: u64,
    pub kind: EventKind,
}

/// Generates the whole scenario, sorted by time (ties by order number). The same config
/// always gives the same events.
pub fn generate(config: &ScenarioConfig) -> Vec<BuyerEvent> {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let span_ms = config.duration.num_milliseconds().max(1);
    let listings = config.listings.max(1);
    let mut events = Vec::with_capacity(config.orders * 3);
    for order in 0..config.orders as u64 {
        let offset_ms = match config.arrivals {
            Arrivals::Uniform => rng.random_range(0..span_ms),
            Arrivals::FlashSale { mean } => {
                let mean_ms = mean.num_milliseconds().max(1) as f64;
                let draw: f64 = rng.random_range(f64::EPSILON..1.0);
                ((-draw.ln() * mean_ms) as i64).min(span_ms - 1)
            }
        };
        let placed = config.start + TimeDelta::milliseconds(offset_ms);
        let line_count = rng.random_range(1..=config.max_lines.max(1));
        let mut lines: Vec<(usize, i64)> = Vec::with_capacity(line_count);
        for _ in 0..line_count {
            let listing = rng.random_range(0..listings);
            if lines.iter().any(|(l, _)| *l == listing) {
                continue;
            }
            lines.push((listing, rng.random_range(1..=config.max_quantity.max(1))));
        }
        let contract = lines.iter().any(|(l, _)| *l < config.contract_listings);
        events.push(BuyerEvent { at: placed, order, kind: EventKind::Place { lines } });

        let mut at = placed;
        let mut step = |rng: &mut ChaCha8Rng, lo: i64, hi: i64| {
            at += TimeDelta::milliseconds(rng.random_range(lo..hi));
            at
        };
        if rng.random_bool(config.unpaid_share.clamp(0.0, 1.0)) {
            let at = step(&mut rng, 60_000, 1_800_000);
            events.push(BuyerEvent { at, order, kind: EventKind::Cancel });
            continue;
        }
        let paid = step(&mut rng, 1_000, 300_000);
        events.push(BuyerEvent { at: paid, order, kind: EventKind::Pay });
        if contract && rng.random_bool(config.hold_share.clamp(0.0, 1.0)) {
            let held = step(&mut rng, 1, 2_000);
            events.push(BuyerEvent { at: held, order, kind: EventKind::Hold });
            let released = step(&mut rng, 60_000, 3_600_000);
            events.push(BuyerEvent { at: released, order, kind: EventKind::Release });
        }
        if rng.random_bool(config.touch_share.clamp(0.0, 1.0)) {
            let touched = step(&mut rng, 1_000, 1_800_000);
            events.push(BuyerEvent { at: touched, order, kind: EventKind::Touch });
        }
        if rng.random_bool(config.refund_share.clamp(0.0, 1.0)) {
            let asked = step(&mut rng, 10_000, 1_800_000);
            events.push(BuyerEvent { at: asked, order, kind: EventKind::RequestRefund });
            let refunded = step(&mut rng, 10_000, 3_600_000);
            events.push(BuyerEvent { at: refunded, order, kind: EventKind::Refund });
        }
    }
    events.sort_by(|a, b| a.at.cmp(&b.at).then(a.order.cmp(&b.order)));
    events
}

/// Hands out a generated scenario's events as a clock passes their times.
#[derive(Debug, Clone, Default)]
pub struct EventFeed {
    events: Vec<BuyerEvent>,
    next: usize,
}

impl EventFeed {
    pub fn new(events: Vec<BuyerEvent>) -> Self {
        Self { events, next: 0 }
    }

    /// Events due at or before `now`, each exactly once.
    pub fn due(&mut self, now: DateTime<Utc>) -> &[BuyerEvent] {
        let start = self.next;
        while self.next < self.events.len() && self.events[self.next].at <= now {
            self.next += 1;
        }
        &self.events[start..self.next]
    }

    /// The time of the last event, if any.
    pub fn last_at(&self) -> Option<DateTime<Utc>> {
        self.events.last().map(|e| e.at)
    }

    pub fn remaining(&self) -> usize {
        self.events.len() - self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_scenario_and_events_are_ordered_per_order() {
        let config = ScenarioConfig { orders: 500, ..ScenarioConfig::default() };
        let events = generate(&config);
        assert_eq!(events, generate(&config));
        assert_ne!(events, generate(&ScenarioConfig { seed: 2, ..config.clone() }));
        let places = events.iter().filter(|e| matches!(e.kind, EventKind::Place { .. })).count();
        assert_eq!(places, 500);
        let mut last = std::collections::HashMap::new();
        for event in &events {
            if let Some(previous) = last.insert(event.order, event.at) {
                assert!(previous <= event.at);
            } else {
                assert!(matches!(event.kind, EventKind::Place { .. }), "first event places the order");
            }
        }
    }

    #[test]
    fn feed_hands_out_each_event_once() {
        let config = ScenarioConfig { orders: 50, ..ScenarioConfig::default() };
        let events = generate(&config);
        let total = events.len();
        let mut feed = EventFeed::new(events);
        let half = config.start + config.duration / 2;
        let first = feed.due(half).len();
        let rest = feed.due(half + TimeDelta::days(1)).len();
        assert_eq!(first + rest, total);
        assert_eq!(feed.due(half + TimeDelta::days(2)).len(), 0);
    }
}
