//! Trade and refund reads: `taobao.trades.sold.increment.get`, `taobao.trades.sold.get`,
//! `taobao.trade.fullinfo.get`, `taobao.trade.wtvertical.get`, `taobao.refunds.receive.get`;
//! with the platform's windows, default type filter, paging and `fields` selection.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value, json};

use super::gateway::Ctx;
use super::store::{self, Order, Refund, State, Trade};
use super::wire::{Fields, Params, Shape, TopError, fmt_time, yuan};
use crate::faults::Fault;

/// What `type` means when the caller leaves it out. `pre_auth_type` is not in it, which is
/// how contract trades "silently disappear" from the lists.
const DEFAULT_TYPES: &str = "guarantee_trade,auto_delivery,ec,cod,step";
/// Trades and refunds older than this are out of reach of the list APIs.
const REACH: TimeDelta = TimeDelta::days(90);
pub const SELLER_NICK: &str = "电信官方旗舰店";

pub struct Paging {
    pub page_no: usize,
    pub page_size: usize,
    pub use_has_next: bool,
}

impl Paging {
    pub fn parse(params: &Params, default_size: usize, max_size: usize) -> Result<Self, TopError> {
        let page_no = params.int("page_no")?.unwrap_or(1);
        if page_no < 1 {
            return Err(TopError::invalid("page_no", "page_no starts at 1"));
        }
        let page_size = params.int("page_size")?.unwrap_or(default_size as i64);
        if page_size < 1 || page_size > max_size as i64 {
            return Err(TopError::invalid(
                "page_size",
                format!("page_size must be between 1 and {max_size}"),
            ));
        }
        Ok(Self {
            page_no: usize::try_from(page_no).unwrap_or(usize::MAX),
            page_size: usize::try_from(page_size).unwrap_or(max_size),
            use_has_next: params.flag("use_has_next"),
        })
    }

    /// One page of `records` under `list`/`item`, with `total_results` or `has_next`. An
    /// empty page leaves the list out entirely, as the platform does.
    pub fn render(&self, shape: Shape, records: Vec<Value>, list: &str, item: &str) -> Map<String, Value> {
        let total = records.len();
        let start = (self.page_no - 1).saturating_mul(self.page_size);
        let page: Vec<Value> = records.into_iter().skip(start).take(self.page_size).collect();
        self.render_page(shape, page, total, list, item)
    }

    /// The bounds of the requested page in a list of `len` records, plus the record after
    /// it, which a repeated record (the `DuplicatePage` fault) pushes onto the page.
    pub fn slice(&self, len: usize) -> (usize, usize) {
        let start = (self.page_no - 1).saturating_mul(self.page_size).min(len);
        (start, start.saturating_add(self.page_size).saturating_add(1).min(len))
    }

    /// The reply for one page already cut from a list of `total` records.
    pub fn render_page(
        &self,
        shape: Shape,
        page: Vec<Value>,
        total: usize,
        list: &str,
        item: &str,
    ) -> Map<String, Value> {
        let start = (self.page_no - 1).saturating_mul(self.page_size);
        let mut out = Map::new();
        if !page.is_empty() {
            out.insert(list.into(), shape.list(item, page));
        }
        if self.use_has_next {
            out.insert("has_next".into(), json!(start.saturating_add(self.page_size) < total));
        } else {
            out.insert("total_results".into(), json!(total));
        }
        out
    }
}

struct TypeFilter(Vec<String>);

impl TypeFilter {
    fn parse(param: Option<&str>) -> Self {
        Self(param.unwrap_or(DEFAULT_TYPES).split(',').map(|t| t.trim().to_string()).collect())
    }

    fn admits(&self, trade_type: &str) -> bool {
        self.0
            .iter()
            .any(|t| t == trade_type || (t == "guarantee_trade" && matches!(trade_type, "fixed" | "auction")))
    }
}

fn status_matches(filter: Option<&str>, status: &str) -> bool {
    match filter {
        None => true,
        Some("ALL_WAIT_PAY") => matches!(status, store::WAIT_BUYER_PAY | "TRADE_NO_CREATE_PAY"),
        Some("ALL_CLOSED") => matches!(status, store::TRADE_CLOSED | store::TRADE_CLOSED_BY_TAOBAO),
        Some(wanted) => wanted == status,
    }
}

fn check_window(
    now: DateTime<Utc>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    start_name: &str,
    end_name: &str,
    max_span: Option<TimeDelta>,
) -> Result<(), TopError> {
    if end < start {
        return Err(TopError::invalid(end_name, format!("{end_name} must not be before {start_name}")));
    }
    if max_span.is_some_and(|max| end - start > max) {
        return Err(TopError::invalid(
            start_name,
            format!("the span between {start_name} and {end_name} must be at most one day"),
        ));
    }
    if start < now - REACH {
        return Err(TopError::invalid(
            start_name,
            format!("{start_name} must be within the last three months"),
        ));
    }
    Ok(())
}

pub fn increment_get(cx: &Ctx, state: &mut State, params: &Params) -> Result<Map<String, Value>, TopError> {
    let fields = Fields::parse(params.required("fields")?);
    let start = params.time("start_modified")?.ok_or_else(|| TopError::missing("start_modified"))?;
    let end = params.time("end_modified")?.ok_or_else(|| TopError::missing("end_modified"))?;
    check_window(cx.now, start, end, "start_modified", "end_modified", Some(TimeDelta::days(1)))?;
    let paging = Paging::parse(params, 40, 100)?;
    let types = TypeFilter::parse(params.get("type"));
    let status = params.get("status");

    if let Some(Fault::ShuffleDuringPaging { orders }) = cx.fault {
        // Buyers keep acting while the client pages: move the oldest trades of the window to now.
        let oldest: Vec<i64> = state.modified_between(start, end).take(orders).map(|t| t.tid).collect();
        for tid in oldest {
            state.set_modified(tid, cx.now);
        }
    }

    // The index may not have caught up with the latest modifications yet.
    let indexed = match cx.fault {
        Some(Fault::LateModified { lag }) => cx.now - TimeDelta::from_std(lag).unwrap_or_default(),
        _ => cx.now,
    };
    let query = store::IncrementQuery {
        start,
        end: end.min(indexed),
        types: types.0.clone(),
        status: status.map(str::to_string),
    };
    let tids =
        state.increment_matches(query, |t| types.admits(t.trade_type) && status_matches(status, t.status));
    // Only the page's trades are looked up; the list length gives the totals.
    let (from, to) = paging.slice(tids.len());
    let page: Vec<&Trade> = tids[from..to].iter().filter_map(|tid| state.trades.get(tid)).collect();
    Ok(trade_page(cx, tids.len(), &page, &fields, &paging))
}

pub fn sold_get(cx: &Ctx, state: &mut State, params: &Params) -> Result<Map<String, Value>, TopError> {
    let fields = Fields::parse(params.required("fields")?);
    let start = params.time("start_created")?.unwrap_or(cx.now - REACH);
    let end = params.time("end_created")?.unwrap_or(cx.now);
    check_window(cx.now, start, end, "start_created", "end_created", None)?;
    let paging = Paging::parse(params, 40, 100)?;
    let types = TypeFilter::parse(params.get("type"));
    let status = params.get("status");
    let mut matching: Vec<&Trade> = state
        .trades
        .values()
        .filter(|t| t.created >= start && t.created <= end)
        .filter(|t| types.admits(t.trade_type) && status_matches(status, t.status))
        .collect();
    matching.sort_by(|a, b| b.created.cmp(&a.created).then(b.tid.cmp(&a.tid)));
    let (from, to) = paging.slice(matching.len());
    Ok(trade_page(cx, matching.len(), &matching[from..to], &fields, &paging))
}

/// One page of a list of `total` trades: `trades` holds the page's records and the record
/// after it (see [`Paging::slice`]).
fn trade_page(
    cx: &Ctx,
    total: usize,
    trades: &[&Trade],
    fields: &Fields,
    paging: &Paging,
) -> Map<String, Value> {
    let mut records: Vec<Value> = trades.iter().map(|t| render_trade(t, fields, cx.shape)).collect();
    let mut total = total;
    if cx.fault == Some(Fault::DuplicatePage) && !records.is_empty() {
        // The page repeats its first record; the rest shift by one toward the next page.
        let first = records[0].clone();
        records.insert(1, first);
        total += 1;
    }
    records.truncate(paging.page_size);
    if cx.corrupt() {
        corrupt(&mut records);
    }
    paging.render_page(cx.shape, records, total, "trades", "trade")
}

/// Gives one record in the middle of `records` a field of the wrong type.
fn corrupt(records: &mut [Value]) {
    let middle = records.len() / 2;
    let Some(Value::Object(record)) = records.get_mut(middle) else { return };
    for (key, bad) in [("modified", json!(12)), ("payment", json!("12,00.x")), ("tid", json!("corrupt"))] {
        if let Some(slot) = record.get_mut(key) {
            *slot = bad;
            return;
        }
    }
    record.insert("modified".into(), json!(12));
}

pub fn fullinfo_get(cx: &Ctx, state: &mut State, params: &Params) -> Result<Map<String, Value>, TopError> {
    let fields = Fields::parse(params.required("fields")?);
    let tid = params.required_int("tid")?;
    let trade = state
        .trades
        .get(&tid)
        .ok_or_else(|| TopError::business("isv.trade-not-exist", format!("trade {tid} does not exist")))?;
    let mut record = [render_trade(trade, &fields, cx.shape)];
    if cx.corrupt() {
        corrupt(&mut record);
    }
    let [trade] = record;
    let mut out = Map::new();
    out.insert("trade".into(), trade);
    Ok(out)
}

pub fn wtvertical_get(cx: &Ctx, state: &mut State, params: &Params) -> Result<Map<String, Value>, TopError> {
    let tids = params
        .required("tids")?
        .split(',')
        .map(|t| {
            t.trim()
                .parse::<i64>()
                .map_err(|_| TopError::invalid("tids", format!("tid {t:?} is not a number")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if tids.len() > 15 {
        return Err(TopError::invalid("tids", format!("at most 15 tids per call, got {}", tids.len())));
    }
    let results: Vec<Value> = tids
        .iter()
        .filter_map(|tid| state.trades.get(tid))
        .filter_map(|trade| {
            let c = trade.contract.as_ref()?;
            Some(json!({
                "tid": trade.tid,
                "tid_str": trade.tid.to_string(),
                "phone_num": c.phone_num,
                "phone_province_code": "330000",
                "phone_city_code": "330100",
                "phone_deposit": c.deposit_fen,
                "phone_free_deposit": c.free_deposit_fen,
                "plan_title": c.plan_title,
                "out_plan_id": c.out_plan_id,
                "out_package_id": c.out_package_id,
                "agreement_id": c.agreement_id,
                "effect_rule": "次月生效",
                "phone_owner_name": c.owner_name,
                "cert_type": "1",
                "cert_card_num": c.cert_card_num,
                "auth_type": "V2",
                "user_type": c.user_type,
                "contract_type": c.contract_type,
            }))
        })
        .collect();
    let mut out = Map::new();
    if !results.is_empty() {
        out.insert("wtext_results".into(), cx.shape.list("wt_ext_result", results));
    }
    Ok(out)
}

pub fn refunds_receive_get(
    cx: &Ctx,
    state: &mut State,
    params: &Params,
) -> Result<Map<String, Value>, TopError> {
    let fields = Fields::parse(params.required("fields")?);
    let start = params.time("start_modified")?.unwrap_or(cx.now - REACH);
    let end = params.time("end_modified")?.unwrap_or(cx.now);
    check_window(cx.now, start, end, "start_modified", "end_modified", None)?;
    let paging = Paging::parse(params, 40, 100)?;
    let status = params.get("status");
    let mut matching: Vec<&Refund> = state
        .refunds
        .values()
        .filter(|r| r.modified >= start && r.modified <= end && status.is_none_or(|s| s == r.status))
        .collect();
    matching.sort_by(|a, b| b.modified.cmp(&a.modified).then(b.refund_id.cmp(&a.refund_id)));
    let mut records: Vec<Value> =
        matching.iter().map(|r| Value::Object(fields.select(refund_map(r)))).collect();
    if cx.corrupt() {
        corrupt(&mut records);
    }
    Ok(paging.render(cx.shape, records, "refunds", "refund"))
}

fn refund_map(refund: &Refund) -> Map<String, Value> {
    let value = json!({
        "refund_id": refund.refund_id,
        "refund_id_str": refund.refund_id.to_string(),
        "tid": refund.tid,
        "tid_str": refund.tid.to_string(),
        "oid": refund.oid,
        "oid_str": refund.oid.to_string(),
        "status": refund.status,
        "refund_fee": yuan(refund.fee_fen),
        "total_fee": yuan(refund.fee_fen),
        "payment": yuan(refund.fee_fen),
        "good_status": "BUYER_NOT_RECEIVED",
        "has_good_return": false,
        "created": fmt_time(refund.created),
        "modified": fmt_time(refund.modified),
        "order_status": refund.order_status,
        "refund_phase": "onsale",
        "buyer_nick": refund.buyer_nick,
        "seller_nick": SELLER_NICK,
        "title": refund.title,
        "num": refund.num,
        "num_iid": refund.num_iid,
        "reason": "不想要了",
    });
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// A trade with the requested fields, its sub-orders under `orders` when asked for.
pub fn render_trade(trade: &Trade, fields: &Fields, shape: Shape) -> Value {
    let mut out = trade_map(trade, &|key| fields.keeps(key));
    let wants_oaid = ["receiver_name", "receiver_address", "created", "receiver_mobile", "receiver_phone"]
        .iter()
        .all(|f| fields.wants(f));
    if wants_oaid {
        out.insert("oaid".into(), json!(format!("1Fc{:016x}", store::mix(trade.scenario_order ^ 0x0A1D))));
    }
    if fields.wants_orders() {
        let orders = trade
            .orders
            .iter()
            .map(|o| Value::Object(order_map(o, &|key| fields.keeps_order(key))))
            .collect();
        out.insert("orders".into(), shape.list("order", orders));
    }
    Value::Object(out)
}

/// A record under construction that holds only the keys a call asked for: a value is
/// built only when its key is kept (a list page asks for two of forty trade fields).
struct Record<'a> {
    map: Map<String, Value>,
    keep: &'a dyn Fn(&str) -> bool,
}

impl<'a> Record<'a> {
    fn new(keep: &'a dyn Fn(&str) -> bool) -> Self {
        Self { map: Map::new(), keep }
    }

    fn put(&mut self, key: &str, value: impl FnOnce() -> Value) {
        if (self.keep)(key) {
            self.map.insert(key.to_string(), value());
        }
    }

    fn put_time(&mut self, key: &str, at: Option<DateTime<Utc>>) {
        if let Some(at) = at {
            self.put(key, || json!(fmt_time(at)));
        }
    }
}

/// Every Trade field the sandbox knows (§1.4), orders aside. Receiver data is fake.
fn trade_map(t: &Trade, keep: &dyn Fn(&str) -> bool) -> Map<String, Value> {
    let n = t.scenario_order;
    let total = yuan(t.total_fen());
    let mut m = Record::new(keep);
    m.put("tid", || json!(t.tid));
    m.put("tid_str", || json!(t.tid.to_string()));
    m.put("status", || json!(t.status));
    m.put("type", || json!(t.trade_type));
    m.put("created", || json!(fmt_time(t.created)));
    m.put("modified", || json!(fmt_time(t.modified)));
    m.put_time("pay_time", t.pay_time);
    m.put_time("consign_time", t.consign_time);
    m.put_time("end_time", t.end_time);
    m.put("payment", || json!(total));
    m.put("total_fee", || json!(total));
    m.put("post_fee", || json!("0.00"));
    m.put("discount_fee", || json!("0.00"));
    m.put("adjust_fee", || json!("0.00"));
    let received = if t.status == store::TRADE_FINISHED { total } else { "0.00".to_string() };
    m.put("received_payment", || json!(received));
    m.put("num", || json!(t.orders.iter().map(|o| o.num).sum::<i64>()));
    // Product fields on the trade exist only for single-order trades.
    if let [only] = t.orders.as_slice() {
        m.put("num_iid", || json!(only.num_iid));
        m.put("title", || json!(only.title));
        m.put("price", || json!(yuan(only.price_fen)));
    }
    m.put("buyer_nick", || json!(t.buyer_nick()));
    m.put("buyer_open_uid", || json!(format!("AAH{:020x}", store::mix(n))));
    m.put("seller_nick", || json!(SELLER_NICK));
    m.put("receiver_name", || json!(format!("测试买家{n}")));
    m.put("receiver_state", || json!("浙江省"));
    m.put("receiver_city", || json!("杭州市"));
    m.put("receiver_district", || json!("西湖区"));
    m.put("receiver_town", || json!("文新街道"));
    m.put("receiver_address", || json!(format!("文三路{}号 测试小区{}幢", n % 999 + 1, n % 30 + 1)));
    m.put("receiver_zip", || json!("310012"));
    m.put("receiver_mobile", || json!(format!("139{:08}", n % 100_000_000)));
    m.put("receiver_phone", || json!(format!("0571-8{:07}", n % 10_000_000)));
    m.put("buyer_message", || json!(""));
    m.put("seller_flag", || json!(0));
    m.put("shipping_type", || json!("express"));
    m.put("trade_from", || json!("WAP,TAOBAO"));
    m.put("is_part_consign", || json!(t.status == store::SELLER_CONSIGNED_PART));
    m.put("is_wt", || json!(t.is_wt()));
    m.put("is_sh_ship", || json!(t.status == store::PAID_FORBID_CONSIGN));
    if let Some(c) = &t.contract {
        let wtt = json!({
            "phone_num": c.phone_num,
            "out_plan_id": c.out_plan_id,
            "out_package_id": c.out_package_id,
            "plan_title": c.plan_title,
        });
        m.put("wtt_param", || json!(wtt.to_string()));
    }
    m.map
}

/// Every Order field the sandbox knows (§1.4).
fn order_map(o: &Order, keep: &dyn Fn(&str) -> bool) -> Map<String, Value> {
    let total = yuan(o.price_fen * o.num);
    let mut m = Record::new(keep);
    m.put("oid", || json!(o.oid));
    m.put("oid_str", || json!(o.oid.to_string()));
    m.put("num_iid", || json!(o.num_iid));
    // TOP sends sku_id as a string.
    m.put("sku_id", || json!(o.sku_id.to_string()));
    m.put("outer_iid", || json!(format!("ITEM-{}", o.num_iid)));
    m.put("outer_sku_id", || json!(o.outer_sku_id));
    m.put("title", || json!(o.title));
    m.put("num", || json!(o.num));
    m.put("price", || json!(yuan(o.price_fen)));
    m.put("sku_properties_name", || json!(o.properties));
    m.put("total_fee", || json!(total));
    m.put("payment", || json!(total));
    m.put("divide_order_fee", || json!(total));
    m.put("discount_fee", || json!("0.00"));
    m.put("adjust_fee", || json!("0.00"));
    m.put("status", || json!(o.status));
    m.put("refund_status", || json!(o.refund_status));
    if let Some(refund_id) = o.refund_id {
        m.put("refund_id", || json!(refund_id.to_string()));
    }
    m.put_time("end_time", o.end_time);
    m.put_time("consign_time", o.consign_time);
    m.put("shipping_type", || json!("express"));
    if let Some(company) = &o.logistics_company {
        m.put("logistics_company", || json!(company));
    }
    if let Some(invoice_no) = &o.invoice_no {
        m.put("invoice_no", || json!(invoice_no));
    }
    m.put("is_oversold", || json!(false));
    m.put("cid", || json!(1512));
    m.map
}
