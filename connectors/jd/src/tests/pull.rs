//! Window pulls against a fake order search whose result set moves while the connector pages.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use flagsync_market::time::{format_beijing, parse_beijing};
use flagsync_market::{ErrorKind, Marketplace, PullError, TimeWindow};
use serde_json::{Value, json};

use super::{Collect, Scripted, business, config, connector_with, now, ok};

/// The orders the fake holds (id -> modified), and every page number it was asked for.
struct Fake {
    orders: BTreeMap<u64, DateTime<Utc>>,
    pages_asked: Vec<u64>,
    windows: HashSet<(String, String)>,
    calls: u32,
}

fn order_json(id: u64, modified: DateTime<Utc>) -> Value {
    json!({
        "orderId": id.to_string(), "orderState": "WAIT_SELLER_STOCK_OUT",
        "orderStartTime": "2026-11-01 08:00:00", "modified": format_beijing(modified),
        "paymentConfirmTime": "2026-11-01 08:00:30", "orderTotalPrice": "10.00",
        "orderPayment": "10.00", "freightPrice": "0.00", "pin": "p",
        "itemInfoList": [{"skuId": "9", "wareId": "8", "skuName": "x", "jdPrice": "10.00", "itemTotal": "1"}]
    })
}

/// Serves `jingdong.pop.order.search` like JOS: inclusive modified window, newest first,
/// pages beyond the cap refused. `mutate` runs after each call with the call number.
fn serve(
    fake: Arc<Mutex<Fake>>,
    page_cap: u64,
    mutate: impl FnMut(u32, &mut BTreeMap<u64, DateTime<Utc>>) + Send + 'static,
) -> Arc<Scripted> {
    serve_with_ties(fake, page_cap, mutate, |_| false)
}

/// Like `serve`, with ties in `modified` sorted by descending id on the calls (1-based)
/// `reversed` picks, ascending otherwise.
fn serve_with_ties(
    fake: Arc<Mutex<Fake>>,
    page_cap: u64,
    mut mutate: impl FnMut(u32, &mut BTreeMap<u64, DateTime<Utc>>) + Send + 'static,
    reversed: impl Fn(u32) -> bool + Send + Sync + 'static,
) -> Arc<Scripted> {
    Scripted::new(move |request| {
        let params = business(request);
        let text = |key: &str| params[key].as_str().unwrap().to_string();
        let (start, end) =
            (parse_beijing(&text("start_date")).unwrap(), parse_beijing(&text("end_date")).unwrap());
        let page: u64 = text("page").parse().unwrap();
        let size: u64 = text("page_size").parse().unwrap();
        let mut fake = fake.lock().unwrap();
        fake.calls += 1;
        let flip = reversed(fake.calls);
        fake.pages_asked.push(page);
        fake.windows.insert((text("start_date"), text("end_date")));
        let mut rows: Vec<(u64, DateTime<Utc>)> =
            fake.orders.iter().filter(|(_, m)| **m >= start && **m <= end).map(|(i, m)| (*i, *m)).collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(if flip { b.0.cmp(&a.0) } else { a.0.cmp(&b.0) }));
        let reply = if page > page_cap {
            json!({"jingdong_pop_order_search_responce": {"code": "0", "searchorderinfo_result": {
                "apiResult": {"success": false, "chineseErrCode": "页码超出范围", "numberCode": 100}}}})
        } else {
            let list: Vec<Value> = rows
                .iter()
                .skip(((page - 1) * size) as usize)
                .take(size as usize)
                .map(|(id, modified)| order_json(*id, *modified))
                .collect();
            json!({"jingdong_pop_order_search_responce": {"code": "0", "searchorderinfo_result": {
                "apiResult": {"success": true}, "orderTotal": rows.len(), "orderInfoList": list}}})
        };
        let call = fake.calls;
        mutate(call, &mut fake.orders);
        ok(reply)
    })
}

fn fake(orders: BTreeMap<u64, DateTime<Utc>>) -> Arc<Mutex<Fake>> {
    Arc::new(Mutex::new(Fake { orders, pages_asked: vec![], windows: HashSet::new(), calls: 0 }))
}

#[tokio::test]
async fn a_window_past_the_page_cap_is_split_and_every_order_arrives() {
    let start = now() - TimeDelta::days(10);
    let orders: BTreeMap<u64, DateTime<Utc>> =
        (0..25u64).map(|i| (1000 + i, start + TimeDelta::minutes(576 * i as i64 + 7))).collect();
    let state = fake(orders.clone());
    let transport = serve(state.clone(), 3, |_, _| {});
    let connector = connector_with(crate::JdConfig { page_size: 2, page_cap: 3, ..config() }, transport);
    let mut sink = Collect::default();
    let stats = connector.pull_orders(TimeWindow { start, end: now() }, &mut sink).await.unwrap();

    let got: HashSet<String> = sink.orders().iter().map(|o| o.order_id.clone()).collect();
    let want: HashSet<String> = orders.keys().map(|id| id.to_string()).collect();
    assert_eq!(got, want);
    assert_eq!(stats.orders, 25, "each order handed over once");
    let state = state.lock().unwrap();
    assert!(state.pages_asked.iter().all(|p| *p <= 3), "asked past the cap: {:?}", state.pages_asked);
    assert!(state.windows.len() > 2, "the window was not split");
}

#[tokio::test]
async fn orders_moving_while_paging_are_not_missed() {
    // o1 is the newest; ten orders one hour apart, three per page (four pages).
    let at = |k: i64| now() - TimeDelta::hours(k);
    let orders: BTreeMap<u64, DateTime<Utc>> = (1..=10).map(|k| (k as u64, at(k))).collect();
    let state = fake(orders);
    let newest = now() - TimeDelta::minutes(30);
    let transport = serve(state.clone(), 300, move |call, orders| {
        if call == 2 {
            // After the last page is read: two orders leave the window (modified after its
            // end), shifting the rest toward page 1, and o10 is modified again inside the
            // window, jumping to the top and pushing the others back a place.
            orders.insert(1, now() + TimeDelta::hours(1));
            orders.insert(2, now() + TimeDelta::hours(1));
            orders.insert(10, newest);
        }
    });
    let connector = connector_with(crate::JdConfig { page_size: 3, ..config() }, transport);
    let mut sink = Collect::default();
    let window = TimeWindow { start: now() - TimeDelta::days(1), end: now() };
    connector.pull_orders(window, &mut sink).await.unwrap();

    let got: HashSet<String> = sink.orders().iter().map(|o| o.order_id.clone()).collect();
    let want: HashSet<String> = (1..=10).map(|k: u64| k.to_string()).collect();
    assert_eq!(got, want);
    let last_o10 = sink.orders().into_iter().rfind(|o| o.order_id == "10").unwrap().modified_at;
    assert_eq!(last_o10, newest, "the newest version of a moved order arrives last");
}

#[tokio::test]
async fn orders_leaving_the_window_while_paging_shift_nothing_past_the_reader() {
    let at = |k: i64| now() - TimeDelta::hours(k);
    let orders: BTreeMap<u64, DateTime<Utc>> = (1..=10).map(|k| (k as u64, at(k))).collect();
    let state = fake(orders);
    let transport = serve(state.clone(), 300, move |call, orders| {
        if call == 2 {
            // Modified after the window's end: they leave it, and every later order moves
            // two places toward page 1 (a forward reader would now skip two).
            orders.insert(1, now() + TimeDelta::hours(1));
            orders.insert(2, now() + TimeDelta::hours(1));
        }
    });
    let connector = connector_with(crate::JdConfig { page_size: 3, ..config() }, transport);
    let mut sink = Collect::default();
    let window = TimeWindow { start: now() - TimeDelta::days(1), end: now() };
    let stats = connector.pull_orders(window, &mut sink).await.unwrap();
    let got: HashSet<String> = sink.orders().iter().map(|o| o.order_id.clone()).collect();
    assert_eq!(got, (1..=10).map(|k: u64| k.to_string()).collect::<HashSet<_>>());
    assert_eq!(stats.orders, 10, "no order handed over twice at one version");
}

#[tokio::test]
async fn the_search_request_carries_what_jos_needs() {
    let state = fake(BTreeMap::new());
    let transport = serve(state, 300, |_, _| {});
    let connector = connector_with(config(), transport.clone());
    let window = TimeWindow { start: now() - TimeDelta::hours(1), end: now() };
    connector.pull_orders(window, &mut Collect::default()).await.unwrap();
    let sent = business(&transport.requests()[0]);
    assert_eq!(sent["start_date"], "2026-11-10 23:10:00");
    assert_eq!(sent["end_date"], "2026-11-11 00:10:00");
    assert_eq!((sent["dateType"].clone(), sent["sortType"].clone()), (json!(0), json!(1)));
    let states = sent["order_state"].as_str().unwrap();
    for state in ["POP_ORDER_PAUSE", "LOCKED", "TRADE_CANCELED", "FINISHED_L", "WAIT_GOODS_RECEIVE_CONFIRM"] {
        assert!(states.split(',').any(|s| s == state), "{state} missing from {states}");
    }
    let fields = sent["optional_fields"].as_str().unwrap();
    for field in
        ["orderId", "modified", "paymentConfirmTime", "consigneeInfo", "itemInfoList", "orderPayment"]
    {
        assert!(fields.split(',').any(|f| f == field), "{field} missing from {fields}");
    }
}

#[tokio::test]
async fn windows_jd_cannot_serve_are_refused_before_any_call() {
    let transport = Scripted::new(|_| panic!("no call expected"));
    let connector = connector_with(config(), transport.clone());
    for window in [
        TimeWindow { start: now() - TimeDelta::days(31), end: now() },
        TimeWindow { start: now() - TimeDelta::days(91), end: now() - TimeDelta::days(90) },
        TimeWindow { start: now(), end: now() - TimeDelta::seconds(1) },
    ] {
        let error = connector.pull_orders(window, &mut Collect::default()).await.unwrap_err();
        let PullError::Connector(error) = error else { panic!("expected a connector error") };
        assert_eq!(error.kind, ErrorKind::Rejected);
    }
    assert!(transport.requests().is_empty());
}

/// A flash sale stamps many orders with the same second, and the search orders ties
/// differently from one call to the next: a page may repeat an order of another page and
/// so skip one. A page that repeats an order makes the connector read every page again,
/// even in a closed window whose total never moved.
#[tokio::test]
async fn ties_ordered_differently_between_calls_lose_no_order() {
    let second = now() - TimeDelta::hours(2);
    let orders: BTreeMap<u64, DateTime<Utc>> = (1..=6).map(|k| (k, second)).collect();
    let state = fake(orders);
    let transport = serve_with_ties(state.clone(), 300, |_, _| {}, |call| call == 2);
    let connector = connector_with(crate::JdConfig { page_size: 3, ..config() }, transport);
    let mut sink = Collect::default();
    let window = TimeWindow { start: now() - TimeDelta::days(1), end: now() - TimeDelta::hours(1) };
    let stats = connector.pull_orders(window, &mut sink).await.unwrap();
    let got: HashSet<String> = sink.orders().iter().map(|o| o.order_id.clone()).collect();
    assert_eq!(got, (1..=6).map(|k: u64| k.to_string()).collect::<HashSet<_>>());
    assert_eq!(stats.orders, 6);
}
