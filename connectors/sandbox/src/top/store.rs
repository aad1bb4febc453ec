//! The TOP sandbox's state: catalogue and live SKU quantities, trades with their sub-orders,
//! refunds, shipments, stock writes and call counters; and how buyer events change trades and
//! the stock they draw on (taken at payment, given back by a refund before shipment).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::{BuyerStockChange, OrderView, ShipmentRecord, StockWrite, TopConfig, TopListing, TradeView};
use crate::scenario::{BuyerEvent, EventKind};

pub const WAIT_BUYER_PAY: &str = "WAIT_BUYER_PAY";
pub const WAIT_SELLER_SEND_GOODS: &str = "WAIT_SELLER_SEND_GOODS";
pub const SELLER_CONSIGNED_PART: &str = "SELLER_CONSIGNED_PART";
pub const WAIT_BUYER_CONFIRM_GOODS: &str = "WAIT_BUYER_CONFIRM_GOODS";
pub const TRADE_FINISHED: &str = "TRADE_FINISHED";
pub const TRADE_CLOSED: &str = "TRADE_CLOSED";
pub const TRADE_CLOSED_BY_TAOBAO: &str = "TRADE_CLOSED_BY_TAOBAO";
pub const WAIT_PRE_AUTH_CONFIRM: &str = "WAIT_PRE_AUTH_CONFIRM";
pub const PAID_FORBID_CONSIGN: &str = "PAID_FORBID_CONSIGN";

pub const NO_REFUND: &str = "NO_REFUND";
pub const WAIT_SELLER_AGREE: &str = "WAIT_SELLER_AGREE";
pub const REFUND_SUCCESS: &str = "SUCCESS";

pub const TYPE_FIXED: &str = "fixed";
pub const TYPE_PRE_AUTH: &str = "pre_auth_type";

const TID_BASE: i64 = 2_600_000_000_000_000_000;
const REFUND_BASE: i64 = 2_700_000_000_000_000_000;
const NUM_IID_BASE: i64 = 600_000_000_000;
const SKU_ID_BASE: i64 = 5_000_000_000_000;
/// Listings per item: several SKUs (colour / plan variants) share one item.
const SKUS_PER_ITEM: usize = 4;

/// Deterministic per-order noise, so ids and contract details need no RNG state.
pub fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub fn listing_ids(n: usize) -> (i64, i64) {
    (NUM_IID_BASE + (n / SKUS_PER_ITEM) as i64, SKU_ID_BASE + n as i64)
}

pub fn outer_sku_id(config: &TopConfig, n: usize) -> String {
    config.outer_ids.get(n).cloned().unwrap_or_else(|| format!("SKU-{n:05}"))
}

fn is_contract(config: &TopConfig, n: usize) -> bool {
    n < config.contract_listings
}

fn listing_price_fen(config: &TopConfig, n: usize) -> i64 {
    if is_contract(config, n) { 299_900 + (n % 3) as i64 * 100_000 } else { 99_900 + (n % 5) as i64 * 50_000 }
}

fn listing_title(config: &TopConfig, n: usize) -> String {
    let item = n / SKUS_PER_ITEM;
    if is_contract(config, n) {
        format!("【合约机】旗舰5G手机 {item}号 存费送机 24个月合约")
    } else {
        format!("旗舰5G手机 {item}号 全网通 官方正品")
    }
}

fn sku_properties(n: usize) -> String {
    const COLOURS: [&str; 4] = ["黑色", "白色", "蓝色", "金色"];
    format!("机身颜色:{};存储容量:256GB", COLOURS[n % COLOURS.len()])
}

#[derive(Debug, Clone)]
pub struct Sku {
    pub num_iid: i64,
    pub sku_id: i64,
    pub outer_sku_id: String,
    pub quantity: i64,
    pub price_fen: i64,
    pub properties: String,
    pub modified: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Item {
    pub num_iid: i64,
    pub title: String,
    pub price_fen: i64,
    pub created: DateTime<Utc>,
    pub modified: DateTime<Utc>,
    pub skus: Vec<i64>,
}

#[derive(Debug, Clone)]
pub struct Order {
    pub oid: i64,
    pub num_iid: i64,
    pub sku_id: i64,
    pub outer_sku_id: String,
    pub title: String,
    pub properties: String,
    pub price_fen: i64,
    pub num: i64,
    pub status: &'static str,
    pub refund_status: &'static str,
    pub refund_id: Option<i64>,
    pub consign_time: Option<DateTime<Utc>>,
    pub invoice_no: Option<String>,
    pub logistics_company: Option<String>,
    pub end_time: Option<DateTime<Utc>>,
}

/// Contract-phone (网厅) data served by `taobao.trade.wtvertical.get`; all fake.
#[derive(Debug, Clone)]
pub struct Contract {
    pub phone_num: String,
    pub plan_title: String,
    pub out_plan_id: String,
    pub out_package_id: String,
    pub agreement_id: String,
    pub user_type: i64,
    pub contract_type: i64,
    pub deposit_fen: i64,
    pub free_deposit_fen: i64,
    pub owner_name: String,
    pub cert_card_num: String,
}

#[derive(Debug, Clone)]
pub struct Trade {
    pub tid: i64,
    pub scenario_order: u64,
    pub trade_type: &'static str,
    pub status: &'static str,
    pub created: DateTime<Utc>,
    pub modified: DateTime<Utc>,
    pub pay_time: Option<DateTime<Utc>>,
    pub consign_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub contract: Option<Contract>,
    pub orders: Vec<Order>,
}

impl Trade {
    pub fn is_wt(&self) -> bool {
        self.contract.is_some()
    }

    pub fn total_fen(&self) -> i64 {
        self.orders.iter().map(|o| o.price_fen * o.num).sum()
    }

    pub fn buyer_nick(&self) -> String {
        format!("tb_buyer_{}", self.scenario_order)
    }

    /// Paid and not yet (even partly) shipped.
    fn paid_unshipped(&self) -> bool {
        matches!(self.status, WAIT_SELLER_SEND_GOODS | PAID_FORBID_CONSIGN | WAIT_PRE_AUTH_CONFIRM)
    }

    fn set_status(&mut self, status: &'static str) {
        self.status = status;
        for order in self.orders.iter_mut().filter(|o| o.consign_time.is_none()) {
            order.status = status;
        }
    }
}

#[derive(Debug, Clone)]
pub struct Refund {
    pub refund_id: i64,
    pub tid: i64,
    pub oid: i64,
    pub status: &'static str,
    pub created: DateTime<Utc>,
    pub modified: DateTime<Utc>,
    pub fee_fen: i64,
    pub num_iid: i64,
    pub title: String,
    pub num: i64,
    pub buyer_nick: String,
    pub order_status: &'static str,
}

#[derive(Debug, Default)]
pub struct State {
    pub items: BTreeMap<i64, Item>,
    pub skus: BTreeMap<i64, Sku>,
    /// Trades by tid. Their `modified` changes only through [`State::set_modified`], which
    /// keeps `by_modified` in step.
    pub trades: BTreeMap<i64, Trade>,
    /// (modified, tid) of every trade: the increment index, so a page costs what its window
    /// holds rather than a walk over every trade (the real gateway has an index too, and a
    /// sandbox that walks 100,000 trades a page would bill its time to the client in
    /// benchmarks).
    by_modified: BTreeSet<(DateTime<Utc>, i64)>,
    pub by_order: HashMap<u64, i64>,
    pub refunds: BTreeMap<i64, Refund>,
    pending: Vec<BuyerEvent>,
    next_event: usize,
    held_orders: HashSet<u64>,
    pub shipments: Vec<ShipmentRecord>,
    /// Waybill number -> the trade it shipped.
    pub waybills: HashMap<String, i64>,
    pub stock_writes: Vec<StockWrite>,
    /// Units buyers took (payments) and gave back (refunds), apart from the seller's writes.
    pub buyer_stock_changes: Vec<BuyerStockChange>,
    /// Scenario orders whose payment failed for want of stock, in the order it happened.
    pub sold_out: Vec<u64>,
    pub calls: BTreeMap<String, u64>,
    /// Method -> end of its flow-control ban.
    pub bans: HashMap<String, DateTime<Utc>>,
    /// (second on the clock, calls accepted in it) for `calls_per_second`.
    pub rate_window: (i64, u32),
    pub request_seq: u64,
    /// Bumped whenever a trade is placed or modified: what `increment_cache` was built on.
    generation: u64,
    /// The last increment query's matching tids, newest first, while `generation` holds:
    /// a client paging through a window asks the same question once a page.
    increment_cache: Option<(IncrementQuery, u64, Vec<i64>)>,
}

/// What an increment query's matching list depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncrementQuery {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub types: Vec<String>,
    pub status: Option<String>,
}

impl State {
    pub fn new(config: &TopConfig, now: DateTime<Utc>) -> Self {
        let mut state = Self::default();
        for n in 0..config.listings {
            let (num_iid, sku_id) = listing_ids(n);
            let price_fen = listing_price_fen(config, n);
            let item = state.items.entry(num_iid).or_insert_with(|| Item {
                num_iid,
                title: listing_title(config, n),
                price_fen,
                created: now,
                modified: now,
                skus: Vec::new(),
            });
            item.skus.push(sku_id);
            state.skus.insert(
                sku_id,
                Sku {
                    num_iid,
                    sku_id,
                    outer_sku_id: outer_sku_id(config, n),
                    quantity: config.initial_quantity,
                    price_fen,
                    properties: sku_properties(n),
                    modified: now,
                },
            );
        }
        state
    }

    pub fn next_request_id(&mut self) -> String {
        self.request_seq += 1;
        format!("{:x}", self.request_seq.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    pub fn count(&mut self, key: String) {
        *self.calls.entry(key).or_default() += 1;
    }

    pub fn load(&mut self, events: Vec<BuyerEvent>) {
        let mut remaining = self.pending.split_off(self.next_event);
        remaining.extend(events);
        remaining.sort_by(|a, b| a.at.cmp(&b.at).then(a.order.cmp(&b.order)));
        self.held_orders.extend(remaining.iter().filter(|e| e.kind == EventKind::Hold).map(|e| e.order));
        self.pending = remaining;
        self.next_event = 0;
    }

    pub fn apply_due(&mut self, config: &TopConfig, now: DateTime<Utc>) {
        while let Some(event) = self.pending.get(self.next_event).filter(|e| e.at <= now).cloned() {
            self.next_event += 1;
            self.apply(config, &event);
        }
    }

    fn apply(&mut self, config: &TopConfig, event: &BuyerEvent) {
        if let EventKind::Place { lines } = &event.kind {
            self.place(config, event, lines);
            return;
        }
        let Some(trade) = self.by_order.get(&event.order).and_then(|tid| self.trades.get_mut(tid)) else {
            return;
        };
        let at = event.at;
        let changed = match event.kind {
            // Stock is taken at payment (付款减库存): a buyer can only pay for units the
            // listing still shows, so a sold-out SKU fails the payment and the platform closes
            // the trade unpaid.
            EventKind::Pay if trade.status == WAIT_BUYER_PAY => {
                if take_stock(&mut self.skus, &mut self.buyer_stock_changes, trade, at) {
                    let next = if trade.trade_type == TYPE_PRE_AUTH {
                        WAIT_PRE_AUTH_CONFIRM
                    } else {
                        WAIT_SELLER_SEND_GOODS
                    };
                    trade.set_status(next);
                    trade.pay_time = Some(at);
                } else {
                    self.sold_out.push(trade.scenario_order);
                    close_unpaid(trade, at);
                }
                true
            }
            EventKind::Hold if trade.status == WAIT_SELLER_SEND_GOODS => {
                trade.set_status(PAID_FORBID_CONSIGN);
                true
            }
            EventKind::Release if matches!(trade.status, PAID_FORBID_CONSIGN | WAIT_PRE_AUTH_CONFIRM) => {
                trade.set_status(WAIT_SELLER_SEND_GOODS);
                true
            }
            EventKind::Cancel if trade.status == WAIT_BUYER_PAY => {
                close_unpaid(trade, at);
                true
            }
            EventKind::RequestRefund
                if trade.paid_unshipped() && trade.orders.iter().all(|o| o.refund_status == NO_REFUND) =>
            {
                for (index, order) in trade.orders.iter_mut().enumerate() {
                    let refund_id = REFUND_BASE + event.order as i64 * 100 + index as i64;
                    order.refund_status = WAIT_SELLER_AGREE;
                    order.refund_id = Some(refund_id);
                    self.refunds.insert(
                        refund_id,
                        Refund {
                            refund_id,
                            tid: trade.tid,
                            oid: order.oid,
                            status: WAIT_SELLER_AGREE,
                            created: at,
                            modified: at,
                            fee_fen: order.price_fen * order.num,
                            num_iid: order.num_iid,
                            title: order.title.clone(),
                            num: order.num,
                            buyer_nick: format!("tb_buyer_{}", event.order),
                            order_status: trade.status,
                        },
                    );
                }
                true
            }
            EventKind::Refund if trade.paid_unshipped() => {
                give_back_stock(&mut self.skus, &mut self.buyer_stock_changes, trade, at);
                trade.set_status(TRADE_CLOSED);
                trade.end_time = Some(at);
                for (index, order) in trade.orders.iter_mut().enumerate() {
                    let refund_id =
                        order.refund_id.unwrap_or(REFUND_BASE + event.order as i64 * 100 + index as i64);
                    order.refund_status = REFUND_SUCCESS;
                    order.refund_id = Some(refund_id);
                    order.end_time = Some(at);
                    let refund = self.refunds.entry(refund_id).or_insert_with(|| Refund {
                        refund_id,
                        tid: trade.tid,
                        oid: order.oid,
                        status: REFUND_SUCCESS,
                        created: at,
                        modified: at,
                        fee_fen: order.price_fen * order.num,
                        num_iid: order.num_iid,
                        title: order.title.clone(),
                        num: order.num,
                        buyer_nick: format!("tb_buyer_{}", event.order),
                        order_status: TRADE_CLOSED,
                    });
                    refund.status = REFUND_SUCCESS;
                    refund.modified = at;
                    refund.order_status = TRADE_CLOSED;
                }
                true
            }
            EventKind::Touch => true,
            _ => false,
        };
        if changed {
            let tid = trade.tid;
            self.set_modified(tid, at);
        }
    }

    /// Stamps a trade modified at `at` and moves it in the increment index.
    pub fn set_modified(&mut self, tid: i64, at: DateTime<Utc>) {
        let Some(trade) = self.trades.get_mut(&tid) else { return };
        self.by_modified.remove(&(trade.modified, tid));
        trade.modified = at;
        self.by_modified.insert((at, tid));
        self.generation += 1;
    }

    /// The tids an increment query matches, newest first (modified, then tid, descending),
    /// from the cache when no trade changed since it was built.
    pub fn increment_matches(&mut self, query: IncrementQuery, admits: impl Fn(&Trade) -> bool) -> Vec<i64> {
        if let Some((cached, generation, tids)) = &self.increment_cache
            && *cached == query
            && *generation == self.generation
        {
            return tids.clone();
        }
        let tids: Vec<i64> = self
            .modified_between(query.start, query.end)
            .rev()
            .filter(|t| admits(t))
            .map(|t| t.tid)
            .collect();
        self.increment_cache = Some((query, self.generation, tids.clone()));
        tids
    }

    /// Trades modified in `start..=end`, oldest first.
    pub fn modified_between(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> impl DoubleEndedIterator<Item = &Trade> {
        let range = if start <= end {
            Some(self.by_modified.range((start, i64::MIN)..=(end, i64::MAX)))
        } else {
            None
        };
        range.into_iter().flatten().filter_map(|(_, tid)| self.trades.get(tid))
    }

    fn place(&mut self, config: &TopConfig, event: &BuyerEvent, lines: &[(usize, i64)]) {
        if lines.is_empty() || self.by_order.contains_key(&event.order) {
            return;
        }
        let noise = mix(event.order);
        let tid = TID_BASE + event.order as i64 * 100 + (noise % 40) as i64;
        let orders = lines
            .iter()
            .enumerate()
            .map(|(index, &(n, num))| {
                let (num_iid, sku_id) = listing_ids(n);
                Order {
                    oid: tid + 1 + index as i64,
                    num_iid,
                    sku_id,
                    outer_sku_id: outer_sku_id(config, n),
                    title: listing_title(config, n),
                    properties: sku_properties(n),
                    price_fen: listing_price_fen(config, n),
                    num: num.max(1),
                    status: WAIT_BUYER_PAY,
                    refund_status: NO_REFUND,
                    refund_id: None,
                    consign_time: None,
                    invoice_no: None,
                    logistics_company: None,
                    end_time: None,
                }
            })
            .collect();
        let contract_listing = lines.iter().map(|(n, _)| *n).find(|n| is_contract(config, *n));
        let contract = contract_listing.map(|n| contract_for(event.order, n, tid));
        // Pre-authorised zero-down trades wait in WAIT_PRE_AUTH_CONFIRM until a Release, so only
        // orders the scenario later holds and releases may become one.
        let pre_auth =
            contract.is_some() && self.held_orders.contains(&event.order) && (noise >> 8).is_multiple_of(2);
        let trade = Trade {
            tid,
            scenario_order: event.order,
            trade_type: if pre_auth { TYPE_PRE_AUTH } else { TYPE_FIXED },
            status: WAIT_BUYER_PAY,
            created: event.at,
            modified: event.at,
            pay_time: None,
            consign_time: None,
            end_time: None,
            contract,
            orders,
        };
        self.by_order.insert(event.order, tid);
        self.by_modified.insert((trade.modified, tid));
        self.generation += 1;
        self.trades.insert(tid, trade);
    }

    pub fn listing(&self, config: &TopConfig, n: usize) -> TopListing {
        let (num_iid, sku_id) = listing_ids(n);
        TopListing {
            num_iid,
            sku_id,
            outer_sku_id: outer_sku_id(config, n),
            quantity: self.skus.get(&sku_id).map_or(0, |s| s.quantity),
        }
    }

    /// Units of one SKU in trades that were paid and not refunded (shipped ones included).
    pub fn sold_units(&self, num_iid: i64, sku_id: i64) -> i64 {
        self.trades
            .values()
            .filter(|t| t.pay_time.is_some())
            .flat_map(|t| &t.orders)
            .filter(|o| o.num_iid == num_iid && o.sku_id == sku_id && o.refund_status != REFUND_SUCCESS)
            .map(|o| o.num)
            .sum()
    }

    pub fn item_quantity(&self, num_iid: i64) -> Option<i64> {
        let item = self.items.get(&num_iid)?;
        Some(item.skus.iter().filter_map(|id| self.skus.get(id)).map(|s| s.quantity).sum())
    }

    /// Writes one SKU's quantity through the API, recording it.
    pub fn write_sku(&mut self, sku_id: i64, quantity: i64, at: DateTime<Utc>) {
        if let Some(sku) = self.skus.get_mut(&sku_id) {
            sku.quantity = quantity;
            sku.modified = at;
            if let Some(item) = self.items.get_mut(&sku.num_iid) {
                item.modified = at;
            }
            self.stock_writes.push(StockWrite { num_iid: sku.num_iid, sku_id, quantity, at });
        }
    }

    pub fn trade_views(&self) -> Vec<TradeView> {
        self.trades
            .values()
            .map(|t| TradeView {
                tid: t.tid,
                scenario_order: t.scenario_order,
                status: t.status.to_string(),
                created: t.created,
                modified: t.modified,
                is_wt: t.is_wt(),
                trade_type: t.trade_type.to_string(),
                orders: t
                    .orders
                    .iter()
                    .map(|o| OrderView {
                        oid: o.oid,
                        status: o.status.to_string(),
                        refund_status: o.refund_status.to_string(),
                        num_iid: o.num_iid,
                        sku_id: o.sku_id,
                        num: o.num,
                    })
                    .collect(),
            })
            .collect()
    }
}

/// Closes a trade that was never paid (buyer cancel, payment timeout or a failed payment).
fn close_unpaid(trade: &mut Trade, at: DateTime<Utc>) {
    trade.set_status(TRADE_CLOSED_BY_TAOBAO);
    trade.end_time = Some(at);
    for order in &mut trade.orders {
        order.end_time = Some(at);
    }
}

/// Takes every line's units from its SKU, or nothing at all when any SKU lacks them (the
/// payment is all or nothing). Lines are summed per SKU first, so two lines of one SKU
/// cannot each pass on the same units.
fn take_stock(
    skus: &mut BTreeMap<i64, Sku>,
    changes: &mut Vec<BuyerStockChange>,
    trade: &Trade,
    at: DateTime<Utc>,
) -> bool {
    let mut wanted: BTreeMap<i64, i64> = BTreeMap::new();
    for order in &trade.orders {
        *wanted.entry(order.sku_id).or_default() += order.num;
    }
    let enough = wanted.iter().all(|(sku_id, units)| skus.get(sku_id).is_some_and(|s| s.quantity >= *units));
    if enough {
        for order in &trade.orders {
            move_units(skus, changes, trade, order, -order.num, at);
        }
    }
    enough
}

/// Puts back the units of the sub-orders not shipped yet.
fn give_back_stock(
    skus: &mut BTreeMap<i64, Sku>,
    changes: &mut Vec<BuyerStockChange>,
    trade: &Trade,
    at: DateTime<Utc>,
) {
    for order in trade.orders.iter().filter(|o| o.consign_time.is_none()) {
        move_units(skus, changes, trade, order, order.num, at);
    }
}

// A buyer's purchase leaves the SKU's and item's `modified` alone: that stamp tracks the
// seller's edits, and sales moving it would make every item look edited during a sale.
fn move_units(
    skus: &mut BTreeMap<i64, Sku>,
    changes: &mut Vec<BuyerStockChange>,
    trade: &Trade,
    order: &Order,
    delta: i64,
    at: DateTime<Utc>,
) {
    if let Some(sku) = skus.get_mut(&order.sku_id) {
        sku.quantity = sku.quantity.saturating_add(delta);
        changes.push(BuyerStockChange {
            scenario_order: trade.scenario_order,
            tid: trade.tid,
            num_iid: sku.num_iid,
            sku_id: sku.sku_id,
            delta,
            quantity: sku.quantity,
            at,
        });
    }
}

fn contract_for(order: u64, listing: usize, tid: i64) -> Contract {
    const PLANS: [(&str, &str, i64); 3] =
        [("5G畅享套餐59元", "059", 0), ("5G畅享套餐129元", "129", 5_000), ("5G畅享套餐199元", "199", 10_000)];
    let (plan_title, code, deposit_fen) = PLANS[listing % PLANS.len()];
    let noise = mix(order ^ 0x5EED);
    Contract {
        phone_num: format!("1{}{:08}", [38, 39, 58][(noise % 3) as usize], order % 100_000_000),
        plan_title: plan_title.to_string(),
        out_plan_id: format!("PLAN-5G-{code}"),
        out_package_id: format!("PKG-24M-{code}"),
        agreement_id: format!("AGR{tid}"),
        user_type: (noise % 3) as i64,
        contract_type: 0,
        deposit_fen,
        free_deposit_fen: deposit_fen / 2,
        owner_name: format!("测试机主{order}"),
        cert_card_num: format!("33010619900101{:04}", order % 10_000),
    }
}
