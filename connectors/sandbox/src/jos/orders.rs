//! `jingdong.pop.order.search` and `jingdong.pop.order.get`: query validation with JD's
//! limits (1-month window, 3-month modified horizon, page size and page cap), filtering,
//! sorting and paging, and OrderInfo rendering restricted to `optional_fields`.
//!
//! Business failures use `apiResult.numberCode` values chosen here (the notes give none):
//! 10100001 bad parameter, 10100003 time window refused, 10100004 page beyond the cap,
//! 10100005 order not found, 999999 transient.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value, json};

use super::gateway::Call;
use super::state::{JosOrder, KNOWN_STATES, OrderState, SearchKey, State, sku_id, ware_id};
use super::wire::{
    Failure, UNSET_TIME, api_result_ok, format_time, int_param, parse_time, shift_months, str_param, success,
    to_second, yuan,
};

const BAD_PARAM: &str = "10100001";
const BAD_WINDOW: &str = "10100003";
const PAGE_CAP: &str = "10100004";
const NOT_FOUND: &str = "10100005";
const DEFAULT_PAGE_SIZE: i64 = 20;

fn bad(zh: &str, en: String) -> Failure {
    Failure::new(BAD_PARAM, zh, en)
}

#[derive(Debug)]
struct SearchQuery {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    by_created: bool,
    descending: bool,
    states: Vec<String>,
    fields: Vec<String>,
    page: i64,
    page_size: i64,
}

fn list_param(params: &Value, name: &str) -> Vec<String> {
    str_param(params, name)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `order_state`: required for search, optional for get; every name must be one JD knows.
fn states_param(params: &Value, required: bool) -> Result<Vec<String>, Failure> {
    let states = list_param(params, "order_state");
    if states.is_empty() && required {
        return Err(bad("order_state不能为空", "order_state is required".into()));
    }
    if let Some(unknown) = states.iter().find(|s| !KNOWN_STATES.contains(&s.as_str())) {
        return Err(bad("order_state参数错误", format!("unknown order_state {unknown}")));
    }
    Ok(states)
}

fn fields_param(params: &Value) -> Result<Vec<String>, Failure> {
    let fields = list_param(params, "optional_fields");
    if fields.is_empty() {
        return Err(bad("optional_fields不能为空", "optional_fields is required".into()));
    }
    Ok(fields)
}

fn time_param(params: &Value, name: &str) -> Result<Option<DateTime<Utc>>, Failure> {
    match str_param(params, name).filter(|s| !s.trim().is_empty()) {
        None => Ok(None),
        Some(text) => parse_time(&text)
            .map(Some)
            .ok_or_else(|| bad("时间格式错误", format!("{name} must be yyyy-MM-dd HH:mm:ss, got {text:?}"))),
    }
}

fn int_or_bad(params: &Value, name: &str) -> Result<Option<i64>, Failure> {
    int_param(params, name).map_err(|e| bad("参数类型错误", e))
}

impl SearchQuery {
    fn parse(params: &Value, now: DateTime<Utc>, state: &State) -> Result<Self, Failure> {
        let states = states_param(params, true)?;
        let fields = fields_param(params)?;
        let by_created = int_or_bad(params, "dateType")? == Some(1);
        let descending = int_or_bad(params, "sortType")? == Some(1);
        let end = time_param(params, "end_date")?.unwrap_or(to_second(now));
        // Without a start JD searches the last month.
        let start = time_param(params, "start_date")?.unwrap_or_else(|| shift_months(end, -1));
        if start > end {
            return Err(Failure::new(BAD_WINDOW, "开始时间不能晚于结束时间", "start_date is after end_date"));
        }
        if end > shift_months(start, 1) {
            return Err(Failure::new(
                BAD_WINDOW,
                "查询时间跨度不能超过一个月",
                "the window between start_date and end_date exceeds 1 month",
            ));
        }
        let horizon = if by_created { shift_months(now, -24) } else { shift_months(now, -3) };
        if start < to_second(horizon) {
            let what = if by_created { "2 years" } else { "3 months" };
            return Err(Failure::new(
                BAD_WINDOW,
                "开始时间超出可查询范围",
                format!("start_date is older than {what}"),
            ));
        }
        let page = int_or_bad(params, "page")?.unwrap_or(1);
        if page < 1 {
            return Err(bad("page参数错误", format!("page must be at least 1, got {page}")));
        }
        let cap = i64::from(state.config.page_cap);
        if page > cap {
            return Err(Failure::new(
                PAGE_CAP,
                format!("页码不能超过{cap}，请缩小查询时间范围"),
                format!("page {page} is beyond the last page {cap}; narrow the time window"),
            ));
        }
        let page_size = int_or_bad(params, "page_size")?.unwrap_or(DEFAULT_PAGE_SIZE);
        let max = i64::from(state.config.max_page_size);
        if !(1..=max).contains(&page_size) {
            return Err(bad("page_size参数错误", format!("page_size must be 1 to {max}, got {page_size}")));
        }
        Ok(Self { start, end, by_created, descending, states, fields, page, page_size })
    }

    fn key(&self, order: &JosOrder) -> DateTime<Utc> {
        to_second(if self.by_created { order.placed } else { order.modified })
    }

    fn matches(&self, order: &JosOrder) -> bool {
        let key = self.key(order);
        order.visible()
            && self.states.iter().any(|s| s == order.state.name())
            && self.start <= key
            && key <= self.end
    }

    /// Matching scenario order numbers in reply order, from the cache while no order
    /// changed since the same query (any page) built it.
    fn select(&self, state: &mut State) -> Vec<u64> {
        let key = SearchKey {
            start: self.start,
            end: self.end,
            by_created: self.by_created,
            descending: self.descending,
            states: self.states.clone(),
        };
        if let Some((cached, generation, hits)) = &state.search_cache
            && *cached == key
            && *generation == state.generation
        {
            return hits.clone();
        }
        let hits = self.select_uncached(state);
        state.search_cache = Some((key, state.generation, hits.clone()));
        hits
    }

    fn select_uncached(&self, state: &State) -> Vec<u64> {
        let candidates: Box<dyn Iterator<Item = &JosOrder>> = if self.by_created {
            Box::new(state.orders.values())
        } else {
            // The key is `modified` cut to the second, and the bounds are whole seconds:
            // start <= key <= end holds exactly for start <= modified < end + 1 s.
            let upper = self.end + TimeDelta::seconds(1);
            Box::new(
                state.by_modified.range((self.start, 0)..(upper, 0)).filter_map(|(_, n)| state.orders.get(n)),
            )
        };
        let mut hits: Vec<(DateTime<Utc>, &str, u64)> = candidates
            .filter(|o| self.matches(o))
            .map(|o| (self.key(o), o.order_id.as_str(), o.scenario))
            .collect();
        hits.sort();
        if self.descending {
            hits.reverse();
        }
        hits.into_iter().map(|(_, _, n)| n).collect()
    }
}

pub(crate) fn search(state: &mut State, call: &Call<'_>) -> Value {
    let respond = |result: Value| {
        let mut map = Map::new();
        map.insert("searchorderinfo_result".into(), result);
        success(call.method, map)
    };
    let fail = |failure: Failure| {
        respond(json!({"apiResult": failure.api_result(), "orderTotal": 0, "orderInfoList": []}))
    };
    if call.transient {
        return fail(Failure::transient());
    }
    let query = match SearchQuery::parse(call.params, call.now, state) {
        Ok(query) => query,
        Err(failure) => return fail(failure),
    };
    if call.shuffle > 0 {
        // Orders on earlier pages change while the client pages, so later pages shift.
        for n in query.select(state).into_iter().take(call.shuffle) {
            state.touch(n, call.now);
        }
    }
    let mut hits = query.select(state);
    if let Some(lag) = call.late {
        let indexed = call.now - TimeDelta::from_std(lag).unwrap_or_default();
        hits.retain(|n| state.orders.get(n).is_some_and(|o| o.modified <= indexed));
    }
    let skip = usize::try_from((query.page - 1) * query.page_size).unwrap_or(usize::MAX);
    if call.duplicate && skip < hits.len() {
        // The page repeats its first record; the rest shift by one toward the next page.
        hits.insert(skip + 1, hits[skip]);
    }
    let total = hits.len();
    let take = usize::try_from(query.page_size).unwrap_or(0);
    let mut list: Vec<Value> = hits
        .iter()
        .skip(skip)
        .take(take)
        .filter_map(|n| state.orders.get(n))
        .map(|order| render(state, order, &query.fields))
        .collect();
    if call.corrupt
        && let Some(first) = list.first_mut()
    {
        corrupt(first);
    }
    respond(json!({"apiResult": api_result_ok(), "orderTotal": total, "orderInfoList": list}))
}

pub(crate) fn get(state: &mut State, call: &Call<'_>) -> Value {
    let respond = |detail: Value| {
        let mut map = Map::new();
        map.insert("orderDetailInfo".into(), detail);
        success(call.method, map)
    };
    let fail = |failure: Failure| respond(json!({"apiResult": failure.api_result()}));
    if call.transient {
        return fail(Failure::transient());
    }
    let Some(order_id) = str_param(call.params, "order_id").filter(|s| !s.trim().is_empty()) else {
        return fail(bad("order_id不能为空", "order_id is required".into()));
    };
    let fields = match fields_param(call.params) {
        Ok(fields) => fields,
        Err(failure) => return fail(failure),
    };
    let states = match states_param(call.params, false) {
        Ok(states) => states,
        Err(failure) => return fail(failure),
    };
    let order = state.by_id.get(order_id.trim()).and_then(|n| state.orders.get(n)).filter(|o| o.visible());
    let Some(order) = order else {
        return fail(Failure::new(NOT_FOUND, "订单不存在", format!("order {} not found", order_id.trim())));
    };
    if !states.is_empty() && !states.iter().any(|s| s == order.state.name()) {
        // JD answers a state filter that excludes the order with no orderInfo, not a failure.
        return respond(json!({"apiResult": api_result_ok()}));
    }
    let mut info = render(state, order, &fields);
    if call.corrupt {
        corrupt(&mut info);
    }
    respond(json!({"apiResult": api_result_ok(), "orderInfo": info}))
}

/// Puts a value of the wrong type where a client expects a string.
fn corrupt(order: &mut Value) {
    let Some(map) = order.as_object_mut() else { return };
    if map.contains_key("modified") {
        map.insert("modified".into(), json!(12));
    } else if let Some(item) =
        map.get_mut("itemInfoList").and_then(Value::as_array_mut).and_then(|items| items.first_mut())
    {
        item["itemTotal"] = json!("两件");
    } else if let Some(key) = map.keys().next().cloned() {
        map.insert(key, json!(12));
    }
}

fn state_remark(state: OrderState) -> &'static str {
    match state {
        OrderState::WaitPay => "等待付款",
        OrderState::WaitSellerStockOut => "等待出库",
        OrderState::PopOrderPause => "暂停",
        OrderState::Locked => "已锁定",
        OrderState::TradeCanceled => "已取消",
        OrderState::WaitGoodsReceiveConfirm => "等待确认收货",
    }
}

const SURNAMES: &[&str] = &["张", "李", "王", "刘", "陈", "杨", "赵", "黄"];

/// The whole OrderInfo, then only the requested keys. Consignee data is made up.
fn render(state: &State, order: &JosOrder, fields: &[String]) -> Value {
    let n = order.scenario;
    let total: i64 = order.lines.iter().map(|(l, q)| state.price_fen(*l) * q).sum();
    let items: Vec<Value> = order
        .lines
        .iter()
        .map(|(l, q)| {
            json!({
                "skuId": sku_id(*l).to_string(),
                "outerSkuId": state.outer_id(*l),
                "skuName": state.sku_name(*l),
                "jdPrice": yuan(state.price_fen(*l)),
                "itemTotal": q.to_string(),
                "wareId": ware_id(*l).to_string(),
                "productNo": "",
                "giftPoint": "0",
                "serviceName": "",
                "newStoreId": "0",
            })
        })
        .collect();
    let surname = SURNAMES[(n % SURNAMES.len() as u64) as usize];
    let pause = if order.state == OrderState::PopOrderPause {
        json!({
            "pauseBizType": "3c号卡",
            "pauseReason": "号卡资质审核中，暂停出库",
            "pauseTime": order.paused_at.map(format_time).unwrap_or_else(|| UNSET_TIME.into()),
        })
    } else {
        Value::Null
    };
    let full = json!({
        "orderId": order.order_id,
        "venderId": "10086001",
        "orderType": "22",
        "payType": "4-在线支付",
        "orderState": order.state.name(),
        "orderStateRemark": state_remark(order.state),
        "orderTotalPrice": yuan(total),
        "orderSellerPrice": yuan(total),
        "orderPayment": yuan(total),
        "freightPrice": "0.00",
        "sellerDiscount": "0.00",
        "balanceUsed": "0.00",
        "orderStartTime": format_time(order.placed),
        "orderEndTime": order.ended.map(format_time).unwrap_or_else(|| UNSET_TIME.into()),
        "paymentConfirmTime": order.paid.map(format_time).unwrap_or_else(|| UNSET_TIME.into()),
        "modified": format_time(order.modified),
        "consigneeInfo": {
            "fullname": format!("{surname}测试{n:04}"),
            "mobile": format!("138{:08}", n % 100_000_000),
            "telephone": "",
            "fullAddress": format!("浙江杭州市西湖区文三路{}号测试小区", n % 500 + 1),
            "province": "浙江",
            "provinceId": "15",
            "city": "杭州市",
            "cityId": "1213",
            "county": "西湖区",
            "countyId": "3411",
            "town": "",
            "townId": "0",
        },
        "itemInfoList": items,
        "waybill": order.waybill.clone().unwrap_or_default(),
        "logisticsId": order.logistics_id.map(|id| id.to_string()).unwrap_or_default(),
        "idSopShipmenttype": "",
        "pauseBizInfo": pause,
        "orderSign": if order.contract { "3c号卡" } else { "" },
        "orderRemark": "",
        "venderRemark": "",
        "pin": format!("jd_test_{n}"),
        "orderSource": "移动端订单",
        "storeOrder": "",
        "storeId": "0",
        "parentOrderId": "0",
        "directParentOrderId": "0",
    });
    let Value::Object(mut map) = full else { return full };
    map.retain(|key, _| fields.iter().any(|f| f == key));
    Value::Object(map)
}
