//! The gateway's store: listings and their stock, orders and the buyer events that move
//! them, and the records tests assert on (shipments, stock writes, call counts, bans).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use crate::scenario::{BuyerEvent, EventFeed, EventKind};

use super::{JosConfig, JosListing, OrderView, ShipmentRecord, StockWrite};

const ORDER_ID_BASE: i64 = 230_000_000_000;
const WARE_ID_BASE: i64 = 100_000_000;
const SKU_ID_BASE: i64 = 10_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OrderState {
    /// Placed, not paid: JD POP search does not show it.
    WaitPay,
    WaitSellerStockOut,
    PopOrderPause,
    Locked,
    TradeCanceled,
    WaitGoodsReceiveConfirm,
}

impl OrderState {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::WaitPay => "WAIT_PAY",
            Self::WaitSellerStockOut => "WAIT_SELLER_STOCK_OUT",
            Self::PopOrderPause => "POP_ORDER_PAUSE",
            Self::Locked => "LOCKED",
            Self::TradeCanceled => "TRADE_CANCELED",
            Self::WaitGoodsReceiveConfirm => "WAIT_GOODS_RECEIVE_CONFIRM",
        }
    }
}

/// State names `order_state` accepts: every POP/LOC state JD documents, including those
/// this sandbox never produces (a filter on them is valid and simply matches nothing).
pub(crate) const KNOWN_STATES: &[&str] = &[
    "WAIT_SELLER_STOCK_OUT",
    "WAIT_GOODS_RECEIVE_CONFIRM",
    "WAIT_SELLER_DELIVERY",
    "PAUSE",
    "POP_ORDER_PAUSE",
    "FINISHED_L",
    "TRADE_CANCELED",
    "LOCKED",
    "WAIT_SEND_CODE",
];

#[derive(Debug, Clone)]
pub(crate) struct JosOrder {
    pub(crate) scenario: u64,
    pub(crate) order_id: String,
    /// `(listing number, quantity)`.
    pub(crate) lines: Vec<(usize, i64)>,
    pub(crate) state: OrderState,
    pub(crate) placed: DateTime<Utc>,
    pub(crate) paid: Option<DateTime<Utc>>,
    pub(crate) ended: Option<DateTime<Utc>>,
    pub(crate) modified: DateTime<Utc>,
    pub(crate) paused_at: Option<DateTime<Utc>>,
    pub(crate) waybill: Option<String>,
    pub(crate) logistics_id: Option<i64>,
    pub(crate) contract: bool,
}

impl JosOrder {
    pub(crate) fn visible(&self) -> bool {
        self.paid.is_some()
    }
}

/// What a search's matches depend on: its window, date type, order and states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SearchKey {
    pub(crate) start: DateTime<Utc>,
    pub(crate) end: DateTime<Utc>,
    pub(crate) by_created: bool,
    pub(crate) descending: bool,
    pub(crate) states: Vec<String>,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) config: JosConfig,
    pub(crate) stock: BTreeMap<i64, i64>,
    /// Orders by scenario number. Their `modified` changes only through [`State::touch`],
    /// which keeps `by_modified` in step.
    pub(crate) orders: BTreeMap<u64, JosOrder>,
    /// (modified, scenario number) of every order: the search index, so a page costs what
    /// its window holds rather than a walk over every order (the real gateway has an index
    /// too, and a sandbox that walks 100,000 orders a page would bill its time to the
    /// client in benchmarks).
    pub(crate) by_modified: BTreeSet<(DateTime<Utc>, u64)>,
    /// Bumped by every change to an order: what `search_cache` was built on.
    pub(crate) generation: u64,
    /// The last search's matches (its query without the page, the generation, the order
    /// numbers in reply order): a client paging through one window asks the same query
    /// page after page, and the real gateway does not re-sort the window for each.
    pub(crate) search_cache: Option<(SearchKey, u64, Vec<u64>)>,
    pub(crate) by_id: HashMap<String, u64>,
    pub(crate) feed: EventFeed,
    pub(crate) sold_out: Vec<u64>,
    pub(crate) shipments: Vec<ShipmentRecord>,
    pub(crate) stock_writes: Vec<StockWrite>,
    pub(crate) calls: BTreeMap<String, u64>,
    /// Throttle bans per method, until this instant.
    pub(crate) bans: BTreeMap<String, DateTime<Utc>>,
    /// (second of the sandbox clock, calls admitted in it).
    pub(crate) rate_window: (i64, u32),
}

/// A deterministic 0..7 spread so order ids do not look sequential, yet stay unique.
fn id_noise(order: u64) -> i64 {
    let mut x = order.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((x ^ (x >> 31)) % 7) as i64
}

pub(crate) fn sku_id(n: usize) -> i64 {
    SKU_ID_BASE + n as i64
}

pub(crate) fn ware_id(n: usize) -> i64 {
    WARE_ID_BASE + (n / 4) as i64
}

impl State {
    pub(crate) fn new(config: JosConfig) -> Self {
        let stock = (0..config.listings).map(|n| (sku_id(n), config.initial_quantity)).collect();
        Self {
            config,
            stock,
            orders: BTreeMap::new(),
            by_modified: BTreeSet::new(),
            generation: 0,
            search_cache: None,
            by_id: HashMap::new(),
            feed: EventFeed::default(),
            sold_out: Vec::new(),
            shipments: Vec::new(),
            stock_writes: Vec::new(),
            calls: BTreeMap::new(),
            bans: BTreeMap::new(),
            rate_window: (i64::MIN, 0),
        }
    }

    pub(crate) fn load(&mut self, events: Vec<BuyerEvent>) {
        self.feed = EventFeed::new(events);
    }

    pub(crate) fn listing_of_sku(&self, sku: i64) -> Option<usize> {
        let n = usize::try_from(sku.checked_sub(SKU_ID_BASE)?).ok()?;
        (n < self.config.listings).then_some(n)
    }

    pub(crate) fn outer_id(&self, n: usize) -> String {
        self.config.outer_ids.get(n).cloned().unwrap_or_else(|| format!("SKU-{n:05}"))
    }

    pub(crate) fn is_contract(&self, n: usize) -> bool {
        n < self.config.contract_listings
    }

    /// Unit price in fen: contract phones dearer, every listing distinct.
    pub(crate) fn price_fen(&self, n: usize) -> i64 {
        let base = if self.is_contract(n) { 399_900 } else { 129_900 };
        base + (n as i64 % 50) * 10_000
    }

    pub(crate) fn sku_name(&self, n: usize) -> String {
        if self.is_contract(n) {
            format!("合约机 5G手机 {n}号 (含号卡套餐)")
        } else {
            format!("5G手机 {n}号 全网通")
        }
    }

    pub(crate) fn listing(&self, n: usize) -> JosListing {
        JosListing {
            ware_id: ware_id(n),
            sku_id: sku_id(n),
            outer_sku_id: self.outer_id(n),
            quantity: self.stock.get(&sku_id(n)).copied().unwrap_or(0),
        }
    }

    pub(crate) fn order_views(&self) -> Vec<OrderView> {
        self.orders
            .values()
            .map(|o| OrderView {
                scenario_order: o.scenario,
                order_id: o.order_id.clone(),
                order_state: o.state.name().to_string(),
                modified: o.modified,
                lines: o.lines.iter().map(|(n, q)| (sku_id(*n), *q)).collect(),
                visible: o.visible(),
            })
            .collect()
    }

    pub(crate) fn order_by_id_mut(&mut self, order_id: &str) -> Option<&mut JosOrder> {
        let key = *self.by_id.get(order_id)?;
        self.generation += 1;
        self.orders.get_mut(&key)
    }

    pub(crate) fn apply_due(&mut self, now: DateTime<Utc>) {
        let due = self.feed.due(now).to_vec();
        for event in &due {
            self.apply(event);
        }
    }

    /// One buyer event in JD's terms; an event that no longer fits the order's state
    /// (say a refund request after shipment) is ignored, as the platform would refuse it.
    fn apply(&mut self, event: &BuyerEvent) {
        self.generation += 1;
        let at = event.at;
        if let EventKind::Place { lines } = &event.kind {
            if self.orders.contains_key(&event.order) {
                return;
            }
            let order_id = (ORDER_ID_BASE + event.order as i64 * 7 + id_noise(event.order)).to_string();
            let contract = lines.iter().any(|(n, _)| self.is_contract(*n));
            self.by_id.insert(order_id.clone(), event.order);
            self.by_modified.insert((at, event.order));
            self.orders.insert(
                event.order,
                JosOrder {
                    scenario: event.order,
                    order_id,
                    lines: lines.clone(),
                    state: OrderState::WaitPay,
                    placed: at,
                    paid: None,
                    ended: None,
                    modified: at,
                    paused_at: None,
                    waybill: None,
                    logistics_id: None,
                    contract,
                },
            );
            return;
        }
        let Some(order) = self.orders.get(&event.order) else { return };
        let state = order.state;
        let lines = order.lines.clone();
        match (&event.kind, state) {
            (EventKind::Pay, OrderState::WaitPay) => {
                let enough = lines.iter().all(|(n, qty)| {
                    self.listing_of_sku(sku_id(*n)).is_some()
                        && self.stock.get(&sku_id(*n)).copied().unwrap_or(0) >= *qty
                });
                if enough {
                    for (n, qty) in &lines {
                        if let Some(stock) = self.stock.get_mut(&sku_id(*n)) {
                            *stock -= qty;
                        }
                    }
                } else {
                    self.sold_out.push(event.order);
                }
                if let Some(order) = self.orders.get_mut(&event.order) {
                    if enough {
                        order.state = OrderState::WaitSellerStockOut;
                        order.paid = Some(at);
                    } else {
                        order.state = OrderState::TradeCanceled;
                        order.ended = Some(at);
                    }
                }
                self.touch(event.order, at);
            }
            (EventKind::Cancel, OrderState::WaitPay) => self.update(event.order, at, |o| {
                o.state = OrderState::TradeCanceled;
                o.ended = Some(at);
            }),
            (EventKind::Hold, OrderState::WaitSellerStockOut) => self.update(event.order, at, |o| {
                o.state = OrderState::PopOrderPause;
                o.paused_at = Some(at);
            }),
            (EventKind::Release, OrderState::PopOrderPause) => self.update(event.order, at, |o| {
                o.state = OrderState::WaitSellerStockOut;
                o.paused_at = None;
            }),
            (EventKind::RequestRefund, OrderState::WaitSellerStockOut | OrderState::PopOrderPause) => self
                .update(event.order, at, |o| {
                    o.state = OrderState::Locked;
                    o.paused_at = None;
                }),
            (EventKind::Refund, OrderState::Locked) => {
                for (n, qty) in &lines {
                    if let Some(stock) = self.stock.get_mut(&sku_id(*n)) {
                        *stock += qty;
                    }
                }
                self.update(event.order, at, |o| {
                    o.state = OrderState::TradeCanceled;
                    o.ended = Some(at);
                })
            }
            (EventKind::Touch, _) => self.update(event.order, at, |_| {}),
            _ => {}
        }
    }

    fn update(&mut self, order: u64, at: DateTime<Utc>, change: impl FnOnce(&mut JosOrder)) {
        if let Some(stored) = self.orders.get_mut(&order) {
            change(stored);
            self.touch(order, at);
        }
    }

    /// Stamps an order modified at `at`, never backwards (a shuffle or shipment may already
    /// have stamped a later time), and moves it in the search index.
    pub(crate) fn touch(&mut self, order: u64, at: DateTime<Utc>) {
        let Some(stored) = self.orders.get_mut(&order) else { return };
        if at <= stored.modified {
            return;
        }
        self.generation += 1;
        self.by_modified.remove(&(stored.modified, order));
        stored.modified = at;
        self.by_modified.insert((at, order));
    }

    /// Units held by paid orders that have neither shipped nor closed (JD's
    /// `orderBookingNum`).
    pub(crate) fn booked(&self, sku: i64) -> i64 {
        self.orders
            .values()
            .filter(|o| {
                matches!(
                    o.state,
                    OrderState::WaitSellerStockOut | OrderState::PopOrderPause | OrderState::Locked
                )
            })
            .flat_map(|o| o.lines.iter())
            .filter(|(n, _)| sku_id(*n) == sku)
            .map(|(_, qty)| qty)
            .sum()
    }

    pub(crate) fn write_stock(&mut self, sku: i64, after: i64, method: &str, at: DateTime<Utc>) {
        let before = self.stock.insert(sku, after).unwrap_or(0);
        self.stock_writes.push(StockWrite { sku_id: sku, method: method.to_string(), before, after, at });
    }
}
