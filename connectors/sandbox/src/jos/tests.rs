//! End-to-end tests of the JOS simulator: the router served on a loopback port and called
//! with plain reqwest and a signer written here from the notes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, TimeDelta, Utc};
use md5::{Digest, Md5};
use serde_json::{Value, json};

use super::{JosConfig, JosSandbox};
use crate::clock::SimClock;
use crate::faults::{Fault, FaultPlan};
use crate::scenario::{BuyerEvent, EventKind, ScenarioConfig, generate};
use crate::server::RunningServer;

/// 2026-11-01 10:00:00 Beijing.
fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-01T10:00:00+08:00").unwrap().with_timezone(&Utc)
}

fn beijing(at: DateTime<Utc>) -> String {
    at.with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// The test's own signer, kept apart from the gateway's so one cannot excuse the other.
fn test_sign(secret: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<_> = params.iter().filter(|(k, v)| k != "sign" && !v.is_empty()).collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut text = secret.to_string();
    for (k, v) in sorted {
        text.push_str(k);
        text.push_str(v);
    }
    text.push_str(secret);
    hex::encode_upper(Md5::digest(text.as_bytes()))
}

struct Gw {
    sandbox: JosSandbox,
    clock: SimClock,
    faults: FaultPlan,
    server: RunningServer,
    http: reqwest::Client,
}

impl Gw {
    async fn new(config: JosConfig) -> Self {
        let clock = SimClock::manual(start());
        let faults = FaultPlan::new(7);
        let sandbox = JosSandbox::new(config, clock.clone(), faults.clone());
        let server = sandbox.start().await.unwrap();
        Self { sandbox, clock, faults, server, http: reqwest::Client::new() }
    }

    async fn default() -> Self {
        Self::new(JosConfig::default()).await
    }

    /// Signed common parameters for `method` with `biz` as `360buy_param_json`.
    fn params(&self, method: &str, biz: &Value) -> Vec<(String, String)> {
        let (key, secret, token) = self.sandbox.credentials();
        let mut params: Vec<(String, String)> = vec![
            ("method".into(), method.into()),
            ("app_key".into(), key),
            ("access_token".into(), token),
            ("timestamp".into(), beijing(self.clock.now())),
            ("v".into(), "2.0".into()),
            ("format".into(), "json".into()),
            ("360buy_param_json".into(), biz.to_string()),
        ];
        let sign = test_sign(&secret, &params);
        params.push(("sign".into(), sign));
        params
    }

    fn url(&self) -> String {
        format!("{}/routerjson", self.server.base_url())
    }

    async fn post_raw(&self, params: &[(String, String)]) -> reqwest::Result<String> {
        self.http.post(self.url()).form(params).send().await?.text().await
    }

    async fn post(&self, params: &[(String, String)]) -> Value {
        serde_json::from_str(&self.post_raw(params).await.unwrap()).unwrap()
    }

    async fn call(&self, method: &str, biz: Value) -> Value {
        self.post(&self.params(method, &biz)).await
    }

    /// The result object under `<method>_responce`, after checking the envelope.
    async fn ok(&self, method: &str, biz: Value) -> Value {
        let body = self.call(method, biz).await;
        let root = format!("{}_responce", method.replace('.', "_"));
        let inner = body.get(&root).unwrap_or_else(|| panic!("no {root} in {body}")).clone();
        assert_eq!(inner["code"], "0", "{body}");
        inner
    }

    async fn search(&self, biz: Value) -> Value {
        self.ok("jingdong.pop.order.search", biz).await["searchorderinfo_result"].clone()
    }

    async fn ship(&self, order_id: &str, carrier: Value, waybill: &str) -> Value {
        let biz = json!({"orderId": order_id, "logiCoprId": carrier, "logiNo": waybill});
        self.ok("jingdong.pop.order.shipment", biz).await["sopjosshipment_result"].clone()
    }

    /// Loads `events` and moves the clock past the last of them.
    fn run(&self, events: Vec<BuyerEvent>) {
        let last = events.iter().map(|e| e.at).max().unwrap_or(self.clock.now());
        self.sandbox.load_scenario(events);
        if last > self.clock.now() {
            self.clock.set(last + TimeDelta::seconds(1));
        }
        self.sandbox.apply_due();
    }
}

fn event(order: u64, at: DateTime<Utc>, kind: EventKind) -> BuyerEvent {
    BuyerEvent { at, order, kind }
}

/// Orders `0..count`, each of listing `order % 8` (quantity 1), placed a minute apart and
/// paid 10 s later.
fn paid_orders(count: u64) -> Vec<BuyerEvent> {
    let mut events = Vec::new();
    for n in 0..count {
        let at = start() + TimeDelta::minutes(n as i64);
        events.push(event(n, at, EventKind::Place { lines: vec![((n % 8) as usize, 1)] }));
        events.push(event(n, at + TimeDelta::seconds(10), EventKind::Pay));
    }
    events
}

fn error_code(body: &Value) -> &str {
    body["error_response"]["code"].as_str().unwrap_or_else(|| panic!("not a gateway error: {body}"))
}

fn window(hours: i64) -> Value {
    json!({
        "start_date": beijing(start() - TimeDelta::hours(1)),
        "end_date": beijing(start() + TimeDelta::hours(hours)),
    })
}

fn search_biz(extra: Value) -> Value {
    let mut biz = window(3);
    biz["order_state"] = json!("WAIT_SELLER_STOCK_OUT,POP_ORDER_PAUSE,LOCKED,WAIT_GOODS_RECEIVE_CONFIRM");
    biz["optional_fields"] = json!("orderId,orderState,modified,itemInfoList");
    biz["page"] = json!(1);
    biz["page_size"] = json!(50);
    for (k, v) in extra.as_object().unwrap() {
        biz[k] = v.clone();
    }
    biz
}

fn ids(result: &Value) -> Vec<String> {
    result["orderInfoList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["orderId"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn gateway_refuses_bad_signature_skew_token_and_method() {
    let gw = Gw::default().await;
    let biz = json!({});
    let method = "jingdong.delivery.logistics.get";

    let mut params = gw.params(method, &biz);
    params.last_mut().unwrap().1 = "0".repeat(32);
    let body = gw.post(&params).await;
    assert_eq!(error_code(&body), "12");
    assert_eq!(body["error_response"]["zh_desc"], "无效签名");

    // A value changed after signing is a bad signature too.
    let mut params = gw.params(method, &biz);
    params[6].1 = r#"{"x":1}"#.into();
    assert_eq!(error_code(&gw.post(&params).await), "12");

    let mut params = gw.params(method, &biz);
    params.retain(|(k, _)| k != "sign");
    assert_eq!(error_code(&gw.post(&params).await), "11");

    // Signed 7 minutes ahead of the gateway's clock.
    gw.clock.advance(TimeDelta::minutes(7));
    let ahead = gw.params(method, &biz);
    gw.clock.advance(TimeDelta::minutes(-7));
    assert_eq!(error_code(&gw.post(&ahead).await), "8");
    gw.clock.advance(TimeDelta::minutes(5));
    let within = gw.params(method, &biz);
    gw.clock.advance(TimeDelta::minutes(-5));
    assert!(gw.post(&within).await.get("error_response").is_none(), "5 minutes of skew is tolerated");

    let body = gw.call("jingdong.no.such.method", json!({})).await;
    assert_eq!(error_code(&body), "15");
    let mut params = gw.params(method, &biz);
    params.retain(|(k, _)| k != "method");
    assert_eq!(error_code(&gw.post(&params).await), "14");

    let mut params = gw.params(method, &biz);
    params.retain(|(k, _)| k != "timestamp");
    assert_eq!(error_code(&gw.post(&params).await), "7");

    // Version 1.0 re-signed, so only the version is wrong.
    let (_, secret, _) = gw.sandbox.credentials();
    let mut params = gw.params(method, &biz);
    params.retain(|(k, _)| k != "sign");
    params[4].1 = "1.0".into();
    let sign = test_sign(&secret, &params);
    params.push(("sign".into(), sign));
    assert_eq!(error_code(&gw.post(&params).await), "5");

    let mut params = gw.params(method, &biz);
    params.retain(|(k, _)| k != "sign");
    params[2].1 = "someone-elses-token".into();
    let sign = test_sign(&secret, &params);
    params.push(("sign".into(), sign));
    let body = gw.post(&params).await;
    assert_eq!(error_code(&body), "19");
    assert_eq!(body["error_response"]["zh_desc"], "token已过期或者不存在，请重新授权访问");
    assert!(!body.to_string().contains(&secret), "the secret never appears in a reply");
}

#[tokio::test]
async fn php_timestamps_get_requests_and_json_params_are_checked() {
    let gw = Gw::default().await;
    let (_, secret, _) = gw.sandbox.credentials();
    let mut params = gw.params("jingdong.delivery.logistics.get", &json!({}));
    params.retain(|(k, _)| k != "sign");
    params[3].1 = format!("{}.000+0800", beijing(gw.clock.now()));
    let sign = test_sign(&secret, &params);
    params.push(("sign".into(), sign));
    let text = gw.http.get(gw.url()).query(&params).send().await.unwrap().text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    let list = &body["jingdong_delivery_logistics_get_responce"]["logistics_companies"]["logistics_list"];
    let carriers: Vec<i64> =
        list.as_array().unwrap().iter().map(|c| c["logistics_id"].as_i64().unwrap()).collect();
    for id in [463, 465, 467, 470, 1274, 1327, 1499, 2087] {
        assert!(carriers.contains(&id), "{id} missing from {carriers:?}");
    }

    let mut params = gw.params("jingdong.delivery.logistics.get", &json!({}));
    params.retain(|(k, _)| k != "sign");
    params[6].1 = "not json".into();
    let sign = test_sign(&secret, &params);
    params.push(("sign".into(), sign));
    assert_eq!(error_code(&gw.post(&params).await), "60");
}

#[tokio::test]
async fn expired_token_and_throttling_are_refused_until_they_end() {
    let expiry = start() + TimeDelta::minutes(30);
    let gw = Gw::new(JosConfig {
        token_expires_at: Some(expiry),
        calls_per_second: Some(2),
        ..JosConfig::default()
    })
    .await;
    let method = "jingdong.delivery.logistics.get";
    gw.ok(method, json!({})).await;
    gw.ok(method, json!({})).await;
    assert_eq!(error_code(&gw.call(method, json!({})).await), "32");
    gw.clock.advance(TimeDelta::seconds(1));

    gw.faults.script(Some(method), Fault::Throttle { ban_secs: 60 });
    assert_eq!(error_code(&gw.call(method, json!({})).await), "2");
    gw.clock.advance(TimeDelta::seconds(30));
    assert_eq!(error_code(&gw.call(method, json!({})).await), "2", "the ban lasts");
    // Other methods are not banned.
    gw.search(search_biz(json!({}))).await;
    gw.clock.advance(TimeDelta::seconds(31));
    gw.ok(method, json!({})).await;

    gw.clock.set(expiry);
    assert_eq!(error_code(&gw.call(method, json!({})).await), "19");

    let gw = Gw::default().await;
    gw.faults.script(None, Fault::SessionExpired);
    assert_eq!(error_code(&gw.call(method, json!({})).await), "19");
    gw.ok(method, json!({})).await;
}

#[tokio::test]
async fn search_pages_sorts_and_filters_by_state() {
    let gw = Gw::default().await;
    let mut events = paid_orders(7);
    // Order 0 is held (POP_ORDER_PAUSE), order 8 is never paid.
    events.push(event(0, start() + TimeDelta::minutes(30), EventKind::Hold));
    events.push(event(8, start(), EventKind::Place { lines: vec![(1, 1)] }));
    events.push(event(8, start() + TimeDelta::minutes(40), EventKind::Cancel));
    gw.run(events);

    let all = gw.search(search_biz(json!({}))).await;
    assert_eq!(all["apiResult"]["success"], true);
    assert_eq!(all["orderTotal"], 7);
    let ascending = ids(&all);
    assert!(!ascending.contains(&gw.sandbox.order_id_of(8).unwrap()), "unpaid orders stay hidden");
    let modified: Vec<String> = all["orderInfoList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["modified"].as_str().unwrap().into())
        .collect();
    let mut sorted = modified.clone();
    sorted.sort();
    assert_eq!(modified, sorted);
    assert_eq!(ascending.last().unwrap(), &gw.sandbox.order_id_of(0).unwrap(), "the hold moved order 0");

    let descending = ids(&gw.search(search_biz(json!({"sortType": 1}))).await);
    assert_eq!(descending, ascending.iter().rev().cloned().collect::<Vec<_>>());

    let mut paged = Vec::new();
    for page in 1..=3 {
        let result = gw.search(search_biz(json!({"page": page, "page_size": "3"}))).await;
        assert_eq!(result["orderTotal"], 7);
        paged.extend(ids(&result));
    }
    assert_eq!(paged, ascending);

    let paused = gw.search(search_biz(json!({"order_state": "POP_ORDER_PAUSE"}))).await;
    assert_eq!(ids(&paused), vec![gw.sandbox.order_id_of(0).unwrap()]);
    assert_eq!(paused["orderInfoList"][0]["orderState"], "POP_ORDER_PAUSE");
    let waiting = gw.search(search_biz(json!({"order_state": "WAIT_SELLER_STOCK_OUT"}))).await;
    assert_eq!(waiting["orderTotal"], 6);

    // A created-time window that ends before the last orders were placed.
    let early = json!({"dateType": 1, "end_date": beijing(start() + TimeDelta::minutes(2))});
    assert_eq!(gw.search(search_biz(early)).await["orderTotal"], 3);
}

#[tokio::test]
async fn search_honours_optional_fields_and_renders_jd_types() {
    let gw = Gw::default().await;
    gw.run(paid_orders(2));
    let result = gw.search(search_biz(json!({"optional_fields": "orderId,modified"}))).await;
    let first = result["orderInfoList"][0].as_object().unwrap();
    let keys: Vec<&str> = first.keys().map(String::as_str).collect();
    assert_eq!(keys, vec!["modified", "orderId"]);
    assert!(first["orderId"].as_str().unwrap().len() >= 12);

    let fields =
        "orderId,orderTotalPrice,orderEndTime,paymentConfirmTime,itemInfoList,consigneeInfo,orderSign";
    let full = gw.search(search_biz(json!({"optional_fields": fields}))).await;
    let order = &full["orderInfoList"][0];
    assert_eq!(order["orderEndTime"], "0001-01-01 00:00:00");
    assert_eq!(order["paymentConfirmTime"], beijing(start() + TimeDelta::seconds(10)));
    assert_eq!(order["orderSign"], "3c号卡", "listing 0 is a contract phone");
    let item = &order["itemInfoList"][0];
    assert_eq!(item["skuId"], gw.sandbox.listing(0).sku_id.to_string());
    assert_eq!(item["outerSkuId"], "SKU-00000");
    assert_eq!(item["itemTotal"], "1");
    assert_eq!(order["orderTotalPrice"], item["jdPrice"]);
    assert!(item["jdPrice"].as_str().unwrap().ends_with(".00"));
    assert!(order["consigneeInfo"]["fullname"].is_string());

    for empty in [json!(""), Value::Null] {
        let result = gw.search(search_biz(json!({"optional_fields": empty}))).await;
        assert_eq!(result["apiResult"]["success"], false);
        assert!(result["apiResult"]["englishErrCode"].as_str().unwrap().contains("optional_fields"));
    }
}

#[tokio::test]
async fn search_refuses_wide_old_and_deep_queries() {
    let gw = Gw::new(JosConfig { page_cap: 3, ..JosConfig::default() }).await;
    gw.run(paid_orders(3));
    let refused = |result: &Value, needle: &str| {
        assert_eq!(result["apiResult"]["success"], false, "{result}");
        let en = result["apiResult"]["englishErrCode"].as_str().unwrap();
        assert!(en.contains(needle), "{en}");
        assert!(result["apiResult"]["numberCode"].as_i64().unwrap() != 0);
    };
    let wide = json!({"start_date": "2026-09-01 00:00:00", "end_date": "2026-10-15 00:00:00"});
    refused(&gw.search(search_biz(wide)).await, "exceeds 1 month");
    let old = json!({"start_date": "2026-07-01 00:00:00", "end_date": "2026-07-20 00:00:00"});
    refused(&gw.search(search_biz(old)).await, "older than 3 months");
    // Created-time queries may look back two years.
    let old_created =
        json!({"dateType": 1, "start_date": "2026-07-01 00:00:00", "end_date": "2026-07-20 00:00:00"});
    assert_eq!(gw.search(search_biz(old_created)).await["apiResult"]["success"], true);
    refused(&gw.search(search_biz(json!({"page": 4}))).await, "narrow the time window");
    assert_eq!(gw.search(search_biz(json!({"page": 3}))).await["apiResult"]["success"], true);
    refused(&gw.search(search_biz(json!({"page_size": 51}))).await, "page_size");
    refused(&gw.search(search_biz(json!({"order_state": "SHIPPED"}))).await, "SHIPPED");
    refused(&gw.search(search_biz(json!({"order_state": ""}))).await, "order_state");
}

#[tokio::test]
async fn order_get_returns_one_order_in_its_detail_envelope() {
    let gw = Gw::default().await;
    gw.run(paid_orders(2));
    let id = gw.sandbox.order_id_of(1).unwrap();
    let biz = json!({"order_id": id, "optional_fields": "orderId,orderState", "order_state": "WAIT_SELLER_STOCK_OUT"});
    let detail = gw.ok("jingdong.pop.order.get", biz).await["orderDetailInfo"].clone();
    assert_eq!(detail["apiResult"]["success"], true);
    assert_eq!(detail["orderInfo"]["orderId"], id.as_str());
    let missing = json!({"order_id": "1", "optional_fields": "orderId"});
    let detail = gw.ok("jingdong.pop.order.get", missing).await["orderDetailInfo"].clone();
    assert_eq!(detail["apiResult"]["success"], false);
}

#[tokio::test]
async fn stock_writes_absolute_incremental_and_partial() {
    let gw = Gw::default().await;
    let sku = gw.sandbox.listing(5).sku_id;
    let other = gw.sandbox.listing(6).sku_id;

    let reply = gw.ok("jingdong.stock.write.updateSkuStock", json!({"skuId": sku, "stockNum": 7})).await;
    assert_eq!(reply["success"], true);
    assert_eq!(gw.sandbox.quantity(sku), Some(7));
    let reply = gw.ok("jingdong.stock.write.updateSkuStock", json!({"skuId": sku, "stockNum": -1})).await;
    assert_eq!(reply["success"], false);
    assert!(reply["errorCode"].is_string());
    assert_eq!(gw.sandbox.quantity(sku), Some(7));

    let req = json!({"req": {"skuStocks": [
        {"skuId": sku, "incrStockNum": -10},
        {"skuId": 42, "stockNum": 5},
        {"skuId": other, "stockNum": 3},
    ]}});
    let reply = gw.ok("jingdong.ware.stock.sku.set", req).await;
    assert_eq!(reply["returnType"]["success"], true);
    let results = reply["returnType"]["obj"]["updateStockResult"].as_array().unwrap();
    assert_eq!(results[0]["success"], true);
    assert_eq!(results[0]["data"], "0", "increments clamp at zero");
    assert_eq!(results[1]["success"], false);
    assert!(results[1]["error"].as_str().unwrap().contains("42"));
    assert_eq!(results[2]["success"], true);
    assert_eq!(gw.sandbox.quantity(sku), Some(0));
    assert_eq!(gw.sandbox.quantity(other), Some(3));

    let writes = gw.sandbox.stock_writes();
    assert_eq!(writes.len(), 3);
    assert_eq!((writes[1].before, writes[1].after), (7, 0));

    let query = gw.ok("jingdong.ware.stock.sku.query", json!({"skuId": format!("{sku},{other}")})).await;
    let rows = query["returnType"]["obj"].as_array().unwrap();
    assert_eq!(rows[1]["stockNum"], 3);
    assert_eq!(rows[1]["orderBookingNum"], 0);
}

#[tokio::test]
async fn buyers_take_stock_at_payment_and_cannot_buy_what_is_gone() {
    let gw = Gw::default().await;
    let sku = gw.sandbox.listing(0).sku_id;
    gw.sandbox.set_quantity(sku, 1);
    gw.run(paid_orders(9)); // orders 0 and 8 both want listing 0
    assert_eq!(gw.sandbox.quantity(sku), Some(0));
    assert_eq!(gw.sandbox.sold_out_orders(), vec![8]);
    let query = gw.ok("jingdong.ware.stock.sku.query", json!({"skuId": [sku]})).await;
    assert_eq!(query["returnType"]["obj"][0]["orderBookingNum"], 1);
}

#[tokio::test]
async fn shipment_moves_the_order_once_and_refuses_wrong_states() {
    let gw = Gw::default().await;
    let mut events = paid_orders(3);
    events.push(event(1, start() + TimeDelta::minutes(20), EventKind::Hold));
    gw.run(events);
    let id = gw.sandbox.order_id_of(0).unwrap();

    gw.faults.script(Some("jingdong.pop.order.shipment"), Fault::TransientBusiness);
    let reply = gw.ship(&id, json!(467), "SF1234567890").await;
    assert_eq!((reply["success"].clone(), reply["errorCode"].clone()), (json!(false), json!("999999")));
    assert!(gw.sandbox.shipments().is_empty(), "a transient failure ships nothing");

    assert_eq!(gw.ship(&id, json!("abc"), "SF1").await["success"], false);
    let unknown = gw.ship(&id, json!(9999), "SF1").await;
    assert_eq!(unknown["success"], false);
    assert!(unknown["englishErrCode"].as_str().unwrap().contains("9999"));

    gw.clock.advance(TimeDelta::minutes(1));
    assert_eq!(gw.ship(&id, json!("467"), "SF1234567890").await["success"], true);
    let shipped = gw.sandbox.orders().into_iter().find(|o| o.order_id == id).unwrap();
    assert_eq!(shipped.order_state, "WAIT_GOODS_RECEIVE_CONFIRM");
    assert_eq!(shipped.modified, gw.clock.now());
    let biz = json!({"order_id": id, "optional_fields": "waybill,logisticsId,orderState"});
    let info = gw.ok("jingdong.pop.order.get", biz).await["orderDetailInfo"]["orderInfo"].clone();
    assert_eq!(
        info,
        json!({"waybill": "SF1234567890", "logisticsId": "467", "orderState": "WAIT_GOODS_RECEIVE_CONFIRM"})
    );

    let again = gw.ship(&id, json!(467), "SF1234567890").await;
    assert_eq!(again["success"], false);
    assert!(again["englishErrCode"].as_str().unwrap().contains("already shipped"));
    let paused = gw.ship(&gw.sandbox.order_id_of(1).unwrap(), json!(467), "SF2").await;
    assert_eq!(paused["success"], false);
    assert!(paused["englishErrCode"].as_str().unwrap().contains("paused"));
    assert_eq!(gw.sandbox.shipments().len(), 1);
    assert_eq!(gw.sandbox.shipments()[0].logi_copr_id, 467);
}

/// Visible orders modified since the scenario began, in any state.
async fn count(gw: &Gw) -> u64 {
    let biz = json!({
        "start_date": beijing(start() - TimeDelta::minutes(1)),
        "end_date": beijing(gw.clock.now()),
        "order_state": "WAIT_SELLER_STOCK_OUT,POP_ORDER_PAUSE,LOCKED,TRADE_CANCELED,WAIT_GOODS_RECEIVE_CONFIRM",
        "optional_fields": "orderId",
        "page_size": 50,
    });
    gw.search(biz).await["orderTotal"].as_u64().unwrap()
}

#[tokio::test]
async fn scenario_orders_appear_as_the_clock_passes_them() {
    let gw = Gw::default().await;
    let config =
        ScenarioConfig { orders: 60, start: start(), duration: TimeDelta::hours(1), ..Default::default() };
    gw.sandbox.load_scenario(generate(&config));
    assert_eq!(count(&gw).await, 0);
    gw.clock.advance(TimeDelta::minutes(30));
    let half = count(&gw).await;
    gw.clock.advance(TimeDelta::hours(6));
    let all = count(&gw).await;
    assert!(0 < half && half < all, "{half} then {all}");
    let visible = gw.sandbox.orders().iter().filter(|o| o.visible).count() as u64;
    assert_eq!(all, visible);
    assert!(visible < 60, "unpaid orders never show");
    assert!(
        gw.sandbox.orders().iter().filter(|o| !o.visible).all(|o| o.order_state != "WAIT_SELLER_STOCK_OUT")
    );
}

#[tokio::test]
async fn transport_faults_break_the_reply_not_the_gateway() {
    let gw = Gw::default().await;
    gw.run(paid_orders(4));
    let method = "jingdong.pop.order.search";

    gw.faults.script(Some(method), Fault::DropConnection);
    assert!(gw.post_raw(&gw.params(method, &search_biz(json!({})))).await.is_err());

    gw.faults.script(Some(method), Fault::Truncated);
    let text = gw.post_raw(&gw.params(method, &search_biz(json!({})))).await.unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err());

    gw.faults.script(Some(method), Fault::Malformed);
    let text = gw.post_raw(&gw.params(method, &search_biz(json!({})))).await.unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err());

    gw.faults.script(Some(method), Fault::CorruptRecord);
    let result = gw.search(search_biz(json!({}))).await;
    assert_eq!(result["orderInfoList"][0]["modified"], 12);
    assert!(result["orderInfoList"][1]["modified"].is_string());

    gw.faults.script(Some(method), Fault::RemoteTimeout);
    assert_eq!(error_code(&gw.call(method, search_biz(json!({}))).await), "66");

    // Applied, then the reply is lost.
    let sku = gw.sandbox.listing(9).sku_id;
    gw.faults.script(None, Fault::ApplyThenDrop);
    let params = gw.params("jingdong.stock.write.updateSkuStock", &json!({"skuId": sku, "stockNum": 5}));
    assert!(gw.post_raw(&params).await.is_err());
    assert_eq!(gw.sandbox.quantity(sku), Some(5));

    // A rejected write is a business "try again".
    gw.faults.script(None, Fault::ServiceRejection);
    let reply = gw.ok("jingdong.stock.write.updateSkuStock", json!({"skuId": sku, "stockNum": 6})).await;
    assert_eq!(reply["errorCode"], "999999");
    assert_eq!(gw.sandbox.quantity(sku), Some(5));
}

#[tokio::test]
async fn shuffle_moves_orders_between_pages() {
    let gw = Gw::default().await;
    gw.run(paid_orders(6));
    let first = ids(&gw.search(search_biz(json!({"page_size": 3}))).await);
    gw.faults.script(Some("jingdong.pop.order.search"), Fault::ShuffleDuringPaging { orders: 2 });
    let second = ids(&gw.search(search_biz(json!({"page": 2, "page_size": 3}))).await);
    // Two of page 1's orders moved to the end, so page 2 now repeats them and one page-2
    // order slid onto page 1, unseen by this pull.
    let repeated = second.iter().filter(|id| first.contains(id)).count();
    assert_eq!(repeated, 2, "{first:?} {second:?}");
    let moved: Vec<_> = gw.sandbox.orders().into_iter().filter(|o| o.modified == gw.clock.now()).collect();
    assert_eq!(moved.len(), 2);
}

#[tokio::test]
async fn a_late_index_leaves_recent_modifications_out_of_one_reply() {
    let gw = Gw::default().await;
    gw.run(paid_orders(6));
    // Orders were paid at 0:10, 1:10, ... 5:10 past start; the clock is at 5:11.
    let now = gw.clock.now();
    let indexed = start() + TimeDelta::seconds(2 * 60 + 40);
    let lag = (now - indexed).to_std().unwrap();
    gw.faults.script(Some("jingdong.pop.order.search"), Fault::LateModified { lag });
    let late = gw.search(search_biz(json!({}))).await;
    assert_eq!(late["orderTotal"], 3, "{late}");
    let visible: Vec<String> =
        gw.sandbox.orders().into_iter().filter(|o| o.modified <= indexed).map(|o| o.order_id).collect();
    let mut listed = ids(&late);
    listed.sort();
    let mut expected = visible.clone();
    expected.sort();
    assert_eq!(listed, expected);
    // The next reply has caught up, with the original `modified`.
    assert_eq!(gw.search(search_biz(json!({}))).await["orderTotal"], 6);
}

#[tokio::test]
async fn a_duplicate_page_repeats_its_first_record_and_pushes_its_last_on() {
    let gw = Gw::default().await;
    gw.run(paid_orders(6));
    let clean = ids(&gw.search(search_biz(json!({"page_size": 3}))).await);
    gw.faults.script(Some("jingdong.pop.order.search"), Fault::DuplicatePage);
    let page = gw.search(search_biz(json!({"page_size": 3}))).await;
    assert_eq!(ids(&page), [clean[0].clone(), clean[0].clone(), clean[1].clone()], "{page}");
    assert_eq!(page["orderTotal"], 7);
}

#[tokio::test]
async fn a_round_trip_holds_every_request_and_changes_no_reply() {
    let near = Gw::default().await;
    let far =
        Gw::new(JosConfig { round_trip: std::time::Duration::from_millis(300), ..JosConfig::default() })
            .await;
    near.run(paid_orders(3));
    far.run(paid_orders(3));
    let began = std::time::Instant::now();
    let reply = far.search(search_biz(json!({}))).await;
    // A lower bound only: the wait is there however fast or slow the machine is.
    assert!(began.elapsed() >= std::time::Duration::from_millis(300), "{:?}", began.elapsed());
    assert_eq!(reply["orderTotal"], 3, "{reply}");
    assert_eq!(reply, near.search(search_biz(json!({}))).await);
}
