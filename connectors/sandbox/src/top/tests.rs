//! End-to-end tests of the TOP sandbox over HTTP: a plain reqwest client signs its own
//! requests and reads the platform's envelopes, as any TOP client pointed at it would.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

use super::sign::{SignMethod, sign};
use super::wire::{fmt_time, parse_time};
use super::{TopConfig, TopSandbox};
use crate::clock::SimClock;
use crate::faults::{Fault, FaultPlan};
use crate::scenario::{BuyerEvent, EventKind, ScenarioConfig, generate};
use crate::server::RunningServer;

mod batch;

const INCREMENT: &str = "taobao.trades.sold.increment.get";
const SEND: &str = "taobao.logistics.offline.send";

struct Harness {
    sandbox: TopSandbox,
    clock: SimClock,
    faults: FaultPlan,
    config: TopConfig,
    server: RunningServer,
    http: reqwest::Client,
}

fn t0() -> DateTime<Utc> {
    parse_time("2026-11-01 10:00:00").unwrap()
}

async fn harness(config: TopConfig) -> Harness {
    let clock = SimClock::manual(t0());
    let faults = FaultPlan::new(3);
    let sandbox = TopSandbox::new(config.clone(), clock.clone(), faults.clone());
    let server = sandbox.start().await.unwrap();
    Harness { sandbox, clock, faults, config, server, http: reqwest::Client::new() }
}

impl Harness {
    fn url(&self) -> String {
        format!("{}/router/rest", self.server.base_url())
    }

    fn unsigned(&self, method: &str, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut params: BTreeMap<String, String> = [
            ("method", method.to_string()),
            ("app_key", self.config.app_key.clone()),
            ("session", self.config.session.clone()),
            ("timestamp", fmt_time(self.clock.now())),
            ("v", "2.0".to_string()),
            ("format", "json".to_string()),
            ("sign_method", "md5".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in extra {
            params.insert(k.to_string(), v.to_string());
        }
        params
    }

    fn signed(&self, method: &str, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut params = self.unsigned(method, extra);
        let method = SignMethod::parse(params.get("sign_method").map(String::as_str)).unwrap();
        let signature = sign(method, &self.config.app_secret, &params);
        params.insert("sign".into(), signature);
        params
    }

    async fn send(&self, params: &BTreeMap<String, String>) -> Value {
        let reply = self.http.get(self.url()).query(params).send().await.unwrap();
        assert_eq!(reply.status(), 200);
        reply.json().await.unwrap()
    }

    async fn call(&self, method: &str, extra: &[(&str, &str)]) -> Value {
        self.send(&self.signed(method, extra)).await
    }

    async fn raw(&self, method: &str, extra: &[(&str, &str)]) -> Result<String, reqwest::Error> {
        let params = self.signed(method, extra);
        self.http.get(self.url()).query(&params).send().await?.text().await
    }

    fn load(&self, events: Vec<BuyerEvent>) {
        self.sandbox.load_scenario(events);
    }
}

fn code(reply: &Value) -> Option<i64> {
    reply["error_response"]["code"].as_i64()
}

fn sub_code(reply: &Value) -> &str {
    reply["error_response"]["sub_code"].as_str().unwrap_or("")
}

fn sub_msg(reply: &Value) -> &str {
    reply["error_response"]["sub_msg"].as_str().unwrap_or("")
}

fn at(minutes: i64) -> DateTime<Utc> {
    t0() + TimeDelta::minutes(minutes)
}

fn event(minutes: i64, order: u64, kind: EventKind) -> BuyerEvent {
    BuyerEvent { at: at(minutes), order, kind }
}

fn place(minutes: i64, order: u64, lines: &[(usize, i64)]) -> BuyerEvent {
    event(minutes, order, EventKind::Place { lines: lines.to_vec() })
}

/// Orders placed and paid at minutes 1..=n, one line of listing 10 (not a contract phone).
fn paid_orders(n: u64) -> Vec<BuyerEvent> {
    (0..n)
        .flat_map(|o| [place(o as i64 + 1, o, &[(10, 1)]), event(o as i64 + 1, o, EventKind::Pay)])
        .collect()
}

fn window() -> [(&'static str, String); 2] {
    [("start_modified", fmt_time(at(-60))), ("end_modified", fmt_time(at(600)))]
}

async fn increment(h: &Harness, extra: &[(&str, &str)]) -> Value {
    let [(s, start), (e, end)] = window();
    let mut params = vec![(s, start.as_str()), (e, end.as_str())];
    params.extend_from_slice(extra);
    h.call(INCREMENT, &params).await
}

fn tids(list: &Value) -> Vec<i64> {
    list.as_array().map(|a| a.iter().filter_map(|t| t["tid"].as_i64()).collect()).unwrap_or_default()
}

#[tokio::test]
async fn signatures_are_checked_exactly_for_get_and_post() {
    let h = harness(TopConfig::default()).await;
    let ok = h.call("taobao.user.seller.get", &[("fields", "nick")]).await;
    assert_eq!(ok["user_seller_get_response"]["user"]["nick"], "电信官方旗舰店", "{ok}");

    let mut tampered = h.signed("taobao.user.seller.get", &[("fields", "nick")]);
    tampered.insert("fields".into(), "nick,user_id".into());
    let refused = h.send(&tampered).await;
    assert_eq!(code(&refused), Some(25), "{refused}");
    assert!(refused["error_response"]["request_id"].is_string());

    let mut unsigned = h.unsigned("taobao.user.seller.get", &[("fields", "nick")]);
    assert_eq!(code(&h.send(&unsigned).await), Some(24));
    unsigned.insert("sign_method".into(), "hmac-sha256".into());
    unsigned.insert("sign".into(), sign(SignMethod::HmacSha256, &h.config.app_secret, &unsigned));
    assert!(h.send(&unsigned).await.get("user_seller_get_response").is_some());

    // Official Java SDK style: common parameters in the query, business ones in a UTF-8 form.
    let all = h.signed("taobao.user.seller.get", &[("fields", "nick"), ("note", "测试 +&=")]);
    let (query, form): (Vec<_>, Vec<_>) =
        all.iter().partition(|(k, _)| k.as_str() != "fields" && k.as_str() != "note");
    let reply: Value =
        h.http.post(h.url()).query(&query).form(&form).send().await.unwrap().json().await.unwrap();
    assert!(reply.get("user_seller_get_response").is_some(), "{reply}");
}

#[tokio::test]
async fn protocol_errors_use_the_platform_codes() {
    let h = harness(TopConfig { session_expires_at: Some(at(30)), ..TopConfig::default() }).await;
    let wrong_session = h.call("taobao.user.seller.get", &[("fields", "nick"), ("session", "stolen")]).await;
    assert_eq!(code(&wrong_session), Some(27));
    assert_eq!(sub_code(&wrong_session), "invalid-sessionkey");
    assert!(!wrong_session.to_string().contains("stolen"), "the session is not echoed");

    let mut no_session = h.unsigned("taobao.user.seller.get", &[("fields", "nick")]);
    no_session.remove("session");
    no_session.insert("sign".into(), sign(SignMethod::Md5, &h.config.app_secret, &no_session));
    assert_eq!(code(&h.send(&no_session).await), Some(26));
    // Carrier codes need no seller session.
    let mut public = h.unsigned("taobao.logistics.companies.get", &[]);
    public.remove("session");
    public.insert("sign".into(), sign(SignMethod::Md5, &h.config.app_secret, &public));
    let companies = h.send(&public).await;
    let list = &companies["logistics_companies_get_response"]["logistics_companies"]["logistics_company"];
    assert!(list.as_array().unwrap().iter().any(|c| c["code"] == "ZTO"), "{companies}");

    assert_eq!(
        code(&h.call("taobao.user.seller.get", &[("fields", "nick"), ("format", "xml")]).await),
        Some(23)
    );
    assert_eq!(code(&h.call("taobao.user.seller.get", &[("fields", "nick"), ("v", "1.0")]).await), Some(34));
    assert_eq!(code(&h.call("taobao.no.such.api", &[]).await), Some(22));
    assert_eq!(
        code(&h.call("taobao.user.seller.get", &[("fields", "nick"), ("app_key", "999")]).await),
        Some(29)
    );

    let skewed = fmt_time(h.clock.now() + TimeDelta::minutes(11));
    let reply = h.call("taobao.user.seller.get", &[("fields", "nick"), ("timestamp", &skewed)]).await;
    assert_eq!(code(&reply), Some(31));
    let garbage = h.call("taobao.user.seller.get", &[("fields", "nick"), ("timestamp", "yesterday")]).await;
    assert_eq!(code(&garbage), Some(31));
    let millis = (h.clock.now() - TimeDelta::minutes(9)).timestamp_millis().to_string();
    let reply = h.call("taobao.user.seller.get", &[("fields", "nick"), ("timestamp", &millis)]).await;
    assert!(reply.get("user_seller_get_response").is_some(), "epoch milliseconds are accepted: {reply}");

    h.clock.set(at(30));
    let expired = h.call("taobao.user.seller.get", &[("fields", "nick")]).await;
    assert_eq!((code(&expired), sub_code(&expired)), (Some(27), "invalid-sessionkey"));
    let counts = h.sandbox.calls();
    assert_eq!(counts.get("error:27"), Some(&2));
    assert_eq!(counts.get("error:31"), Some(&2));
}

#[tokio::test]
async fn increment_windows_are_validated() {
    let h = harness(TopConfig::default()).await;
    let missing = h.call(INCREMENT, &[("fields", "tid"), ("start_modified", &fmt_time(at(-60)))]).await;
    assert_eq!(code(&missing), Some(40));
    assert!(missing["error_response"]["msg"].as_str().unwrap().contains("end_modified"));

    let too_long = h
        .call(
            INCREMENT,
            &[
                ("fields", "tid"),
                ("start_modified", &fmt_time(at(-60))),
                ("end_modified", &fmt_time(at(1441))),
            ],
        )
        .await;
    assert_eq!((code(&too_long), sub_code(&too_long)), (Some(41), "isv.invalid-parameter"));
    assert!(sub_msg(&too_long).contains("one day"), "{too_long}");

    let old = t0() - TimeDelta::days(91);
    let too_old = h
        .call(
            INCREMENT,
            &[
                ("fields", "tid"),
                ("start_modified", &fmt_time(old)),
                ("end_modified", &fmt_time(old + TimeDelta::hours(1))),
            ],
        )
        .await;
    assert_eq!(code(&too_old), Some(41));
    assert!(sub_msg(&too_old).contains("three months"), "{too_old}");

    let bad_page = increment(&h, &[("fields", "tid"), ("page_size", "101")]).await;
    assert_eq!(code(&bad_page), Some(41));
}

#[tokio::test]
async fn throttle_bans_the_method_until_the_sandbox_clock_passes() {
    let h = harness(TopConfig::default()).await;
    h.faults.script(Some("taobao.user.seller.get"), Fault::Throttle { ban_secs: 30 });
    let first = h.call("taobao.user.seller.get", &[("fields", "nick")]).await;
    assert_eq!(code(&first), Some(7));
    assert_eq!(first["error_response"]["msg"], "App Call Limited");
    assert_eq!(sub_code(&first), "accesscontrol.limited-by-api-access-count");
    assert_eq!(sub_msg(&first), "This ban will last for 30 more seconds");

    h.clock.advance(TimeDelta::seconds(12));
    let still = h.call("taobao.user.seller.get", &[("fields", "nick")]).await;
    assert_eq!(sub_msg(&still), "This ban will last for 18 more seconds");
    let other = h.call("taobao.items.onsale.get", &[("fields", "num_iid")]).await;
    assert!(other.get("items_onsale_get_response").is_some(), "other methods are not banned: {other}");

    h.clock.advance(TimeDelta::seconds(18));
    assert!(h.call("taobao.user.seller.get", &[("fields", "nick")]).await.get("error_response").is_none());
    assert_eq!(h.sandbox.calls().get("error:7"), Some(&2));
}

#[tokio::test]
async fn calls_per_second_is_a_real_flow_limit() {
    let h = harness(TopConfig { calls_per_second: Some(2), ..TopConfig::default() }).await;
    for _ in 0..2 {
        assert!(
            h.call("taobao.user.seller.get", &[("fields", "nick")]).await.get("error_response").is_none()
        );
    }
    let third = h.call("taobao.user.seller.get", &[("fields", "nick")]).await;
    assert_eq!((code(&third), sub_msg(&third)), (Some(7), "This ban will last for 1 more seconds"));
    h.clock.advance(TimeDelta::seconds(1));
    assert!(h.call("taobao.user.seller.get", &[("fields", "nick")]).await.get("error_response").is_none());
}

#[tokio::test]
async fn increment_pages_newest_first_with_total_results_or_has_next() {
    let h = harness(TopConfig::default()).await;
    h.load(paid_orders(5));
    h.clock.set(at(10));
    let newest_first: Vec<i64> = (0..5).rev().map(|o| h.sandbox.tid_of(o).unwrap()).collect();

    let page1 = increment(&h, &[("fields", "tid,modified"), ("page_size", "2")]).await;
    let body = &page1["trades_sold_increment_get_response"];
    assert_eq!(body["total_results"], 5, "{page1}");
    assert!(body.get("has_next").is_none());
    assert!(body["request_id"].is_string());
    assert_eq!(tids(&body["trades"]["trade"]), newest_first[..2]);

    let page2 =
        increment(&h, &[("fields", "tid"), ("page_size", "2"), ("page_no", "2"), ("use_has_next", "true")])
            .await;
    let body = &page2["trades_sold_increment_get_response"];
    assert_eq!(body["has_next"], true);
    assert!(body.get("total_results").is_none(), "{page2}");
    assert_eq!(tids(&body["trades"]["trade"]), newest_first[2..4]);

    let page3 = increment(
        &h,
        &[
            ("fields", "tid"),
            ("page_size", "2"),
            ("page_no", "3"),
            ("use_has_next", "true"),
            ("simplify", "true"),
        ],
    )
    .await;
    assert_eq!(page3["has_next"], false, "{page3}");
    assert_eq!(tids(&page3["trades"]), newest_first[4..]);
    assert!(page3["request_id"].is_string());

    let beyond = increment(&h, &[("fields", "tid"), ("page_size", "2"), ("page_no", "4")]).await;
    let body = &beyond["trades_sold_increment_get_response"];
    assert_eq!(body["total_results"], 5);
    assert!(body.get("trades").is_none(), "an empty page has no trades key: {beyond}");

    let paid_only = increment(&h, &[("fields", "tid"), ("status", "WAIT_BUYER_PAY")]).await;
    assert_eq!(paid_only["trades_sold_increment_get_response"]["total_results"], 0);
}

#[tokio::test]
async fn fields_select_trade_and_order_fields() {
    let h = harness(TopConfig::default()).await;
    h.load(vec![place(1, 7, &[(10, 2), (11, 1)]), event(2, 7, EventKind::Pay)]);
    h.clock.set(at(5));
    let tid = h.sandbox.tid_of(7).unwrap();
    assert!(tid > (1_i64 << 53));

    let reply =
        increment(&h, &[("fields", "tid,modified,orders.oid,orders.sku_id"), ("simplify", "true")]).await;
    let trade = &reply["trades"][0];
    let keys: Vec<&str> = trade.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["modified", "orders", "tid", "tid_str"], "{reply}");
    assert_eq!(trade["tid"].as_i64(), Some(tid), "ids above 2^53 stay exact JSON numbers");
    assert_eq!(trade["tid_str"], tid.to_string());
    assert_eq!(trade["modified"], "2026-11-01 10:02:00");
    let order = &trade["orders"][0];
    assert_eq!(order.as_object().unwrap().len(), 3, "{order}");
    assert_eq!(order["oid"].as_i64(), Some(tid + 1));
    assert_eq!(order["sku_id"], h.sandbox.listing(10).sku_id.to_string());

    let bare = increment(&h, &[("fields", "tid,status")]).await;
    let trade = &bare["trades_sold_increment_get_response"]["trades"]["trade"][0];
    assert!(trade.get("orders").is_none());
    assert_eq!(trade["status"], "WAIT_SELLER_SEND_GOODS");

    let full = h
        .call(
            "taobao.trade.fullinfo.get",
            &[("tid", &tid.to_string()), ("fields", "tid,payment,receiver_mobile,orders")],
        )
        .await;
    let trade = &full["trade_fullinfo_get_response"]["trade"];
    let price = |n: usize| trade["orders"]["order"][n]["price"].as_str().unwrap().to_string();
    assert_eq!((price(0), price(1)), ("999.00".to_string(), "1499.00".to_string()));
    assert_eq!(trade["payment"], "3497.00", "money is yuan strings: {full}");
    assert!(trade["receiver_mobile"].is_string());
}

/// Contract orders that are held and released; some become pre-authorised trades.
fn contract_orders() -> Vec<BuyerEvent> {
    (0..16)
        .flat_map(|o| {
            let m = o as i64;
            [
                place(m, o, &[(0, 1)]),
                event(m, o, EventKind::Pay),
                event(m, o, EventKind::Hold),
                event(m + 300, o, EventKind::Release),
            ]
        })
        .collect()
}

#[tokio::test]
async fn pre_auth_trades_hide_behind_the_default_type_filter() {
    let h = harness(TopConfig::default()).await;
    h.load(contract_orders());
    h.clock.set(at(60));
    let trades = h.sandbox.trades();
    let pre_auth: Vec<_> = trades.iter().filter(|t| t.trade_type == "pre_auth_type").collect();
    let fixed: Vec<_> = trades.iter().filter(|t| t.trade_type == "fixed").collect();
    assert!(!pre_auth.is_empty() && !fixed.is_empty());
    assert!(trades.iter().all(|t| t.is_wt));
    assert!(pre_auth.iter().all(|t| t.status == "WAIT_PRE_AUTH_CONFIRM"));
    assert!(fixed.iter().all(|t| t.status == "PAID_FORBID_CONSIGN"));

    let default = increment(&h, &[("fields", "tid,type"), ("page_size", "100"), ("simplify", "true")]).await;
    let seen = tids(&default["trades"]);
    assert_eq!(seen.len(), fixed.len(), "{default}");
    assert!(pre_auth.iter().all(|t| !seen.contains(&t.tid)));

    let all_types = "guarantee_trade,auto_delivery,ec,cod,step,pre_auth_type";
    let asked =
        increment(&h, &[("fields", "tid"), ("page_size", "100"), ("type", all_types), ("simplify", "true")])
            .await;
    assert_eq!(tids(&asked["trades"]).len(), trades.len());

    let sold = h.call("taobao.trades.sold.get", &[("fields", "tid"), ("simplify", "true")]).await;
    assert_eq!(sold["total_results"], fixed.len(), "{sold}");

    let tid = pre_auth[0].tid.to_string();
    let vertical = h.call("taobao.trade.wtvertical.get", &[("tids", &tid)]).await;
    let result = &vertical["trade_wtvertical_get_response"]["wtext_results"]["wt_ext_result"][0];
    assert!(result["out_plan_id"].as_str().unwrap().starts_with("PLAN-"), "{vertical}");
    assert!(result["out_package_id"].as_str().unwrap().starts_with("PKG-"));
    assert!(result["phone_deposit"].is_i64());
    let sixteen = vec![tid.as_str(); 16].join(",");
    assert_eq!(code(&h.call("taobao.trade.wtvertical.get", &[("tids", &sixteen)]).await), Some(41));

    h.clock.set(at(400));
    assert!(h.sandbox.trades().iter().all(|t| t.status == "WAIT_SELLER_SEND_GOODS"), "release moves them on");
}

#[tokio::test]
async fn stock_updates_enforce_the_batch_limit_and_clamp() {
    let h = harness(TopConfig { listings: 24, ..TopConfig::default() }).await;
    let l8 = h.sandbox.listing(8);
    let l9 = h.sandbox.listing(9);
    assert_eq!(l8.num_iid, l9.num_iid, "listings share items");
    let num_iid = l8.num_iid.to_string();

    let batch: Vec<String> = (0..21).map(|i| format!("{}:5", l8.sku_id + i)).collect();
    let too_many = h
        .call("taobao.skus.quantity.update", &[("num_iid", &num_iid), ("skuid_quantities", &batch.join(";"))])
        .await;
    assert_eq!(code(&too_many), Some(41), "{too_many}");
    assert!(sub_msg(&too_many).contains("20"));

    let unknown = format!("{}:5;{}:5", l8.sku_id, 777);
    let refused =
        h.call("taobao.skus.quantity.update", &[("num_iid", &num_iid), ("skuid_quantities", &unknown)]).await;
    assert!(sub_msg(&refused).contains("777"), "{refused}");
    assert_eq!(h.sandbox.quantity(l8.num_iid, Some(l8.sku_id)), Some(100), "a refused batch changes nothing");

    let mixed = format!("{}:-500;{}:7", l8.sku_id, l9.sku_id);
    let reply = h
        .call(
            "taobao.skus.quantity.update",
            &[("num_iid", &num_iid), ("skuid_quantities", &mixed), ("type", "2")],
        )
        .await;
    assert_eq!(
        reply["skus_quantity_update_response"]["item"]["num_iid"].as_i64(),
        Some(l8.num_iid),
        "{reply}"
    );
    assert_eq!(h.sandbox.quantity(l8.num_iid, Some(l8.sku_id)), Some(0), "incremental clamps at zero");
    assert_eq!(h.sandbox.quantity(l8.num_iid, Some(l9.sku_id)), Some(107));

    let negative = h
        .call(
            "taobao.item.quantity.update",
            &[("num_iid", &num_iid), ("sku_id", &l9.sku_id.to_string()), ("quantity", "-1")],
        )
        .await;
    assert_eq!(code(&negative), Some(41));
    let by_outer = h
        .call(
            "taobao.item.quantity.update",
            &[("num_iid", &num_iid), ("outer_id", &l9.outer_sku_id), ("quantity", "3"), ("simplify", "true")],
        )
        .await;
    // Item num is the sum of its SKUs: 0 (sku 8) + 3 (sku 9) + 100 + 100.
    assert_eq!(by_outer["item"]["num"], 203, "{by_outer}");
    assert_eq!(h.sandbox.listing(9).quantity, 3);

    let writes = h.sandbox.stock_writes();
    let quantities: Vec<(i64, i64)> = writes.iter().map(|w| (w.sku_id, w.quantity)).collect();
    assert_eq!(quantities, [(l8.sku_id, 0), (l9.sku_id, 107), (l9.sku_id, 3)]);

    h.sandbox.set_quantity(l8.num_iid, Some(l8.sku_id), 42);
    let item = h
        .call(
            "taobao.item.seller.get",
            &[("num_iid", &num_iid), ("fields", "num_iid,num,sku"), ("simplify", "true")],
        )
        .await;
    let skus = item["item"]["skus"].as_array().unwrap();
    assert!(skus.iter().any(|s| s["sku_id"].as_i64() == Some(l8.sku_id) && s["quantity"] == 42), "{item}");
    assert_eq!(h.sandbox.stock_writes().len(), 3, "changes behind flagsync's back are not its writes");
}

#[tokio::test]
async fn offline_send_ships_once_and_refuses_bad_waybills() {
    let h = harness(TopConfig::default()).await;
    let mut events = paid_orders(2);
    events.push(place(3, 9, &[(12, 1)]));
    h.load(events);
    h.clock.set(at(10));
    let tid = h.sandbox.tid_of(0).unwrap().to_string();
    let other = h.sandbox.tid_of(1).unwrap().to_string();
    let unpaid = h.sandbox.tid_of(9).unwrap().to_string();
    let send = |tid: &str, waybill: &str| {
        let tid = tid.to_string();
        let waybill = waybill.to_string();
        let h = &h;
        async move { h.call(SEND, &[("tid", &tid), ("out_sid", &waybill), ("company_code", "ZTO")]).await }
    };

    assert_eq!(sub_code(&send(&tid, "AB12").await), "isv.logistics-offline-service-error:B60");
    assert_eq!(sub_code(&send(&unpaid, "75312345678901").await), "isv.logistics-offline-service-error:B02");
    assert_eq!(
        sub_code(&send("2600000000000099999", "75312345678901").await),
        "isv.logistics-offline-service-error:B01"
    );
    let no_company = h.call(SEND, &[("tid", &tid), ("out_sid", "75312345678901")]).await;
    assert_eq!(sub_code(&no_company), "isv.logistics-offline-service-error:B56");

    h.faults.script(Some(SEND), Fault::TransientBusiness);
    let busy = send(&tid, "75312345678901").await;
    assert_eq!((code(&busy), sub_code(&busy)), (Some(15), "isv.logistics-offline-service-error:B150"));
    assert!(h.sandbox.shipments().is_empty(), "B150 applies nothing");

    let shipped = send(&tid, "75312345678901").await;
    assert_eq!(shipped["logistics_offline_send_response"]["shipping"]["is_success"], true, "{shipped}");
    let view = h.sandbox.trades().into_iter().find(|t| t.tid.to_string() == tid).unwrap();
    assert_eq!(view.status, "WAIT_BUYER_CONFIRM_GOODS");
    assert_eq!(view.modified, at(10));

    let repeat = send(&tid, "75312345678901").await;
    assert_eq!((code(&repeat), sub_code(&repeat)), (Some(15), "isv.logistics-offline-service-error:B04"));
    assert_eq!(sub_code(&send(&other, "75312345678901").await), "isv.logistics-offline-service-error:B60");
    assert_eq!(h.sandbox.shipments().len(), 1);

    let full =
        h.call("taobao.trade.fullinfo.get", &[("tid", &tid), ("fields", "tid,consign_time,orders")]).await;
    let order = &full["trade_fullinfo_get_response"]["trade"]["orders"]["order"][0];
    assert_eq!(order["invoice_no"], "75312345678901");
    assert_eq!(order["logistics_company"], "中通快递");
}

#[tokio::test]
async fn split_shipment_leaves_the_trade_partly_shipped_and_records_imeis() {
    let h = harness(TopConfig::default()).await;
    h.load(vec![place(1, 4, &[(10, 2), (11, 1)]), event(2, 4, EventKind::Pay)]);
    h.clock.set(at(5));
    let tid = h.sandbox.tid_of(4).unwrap();
    let (first, second) = (tid + 1, tid + 2);
    let feature = format!("identCode={first}:860000000000011,860000000000029");
    let part = h
        .call(
            SEND,
            &[
                ("tid", &tid.to_string()),
                ("out_sid", "SF1234567890"),
                ("company_code", "SF"),
                ("is_split", "1"),
                ("sub_tid", &first.to_string()),
                ("feature", &feature),
            ],
        )
        .await;
    assert_eq!(part["logistics_offline_send_response"]["shipping"]["is_success"], true, "{part}");
    let view = h.sandbox.trades().into_iter().find(|t| t.tid == tid).unwrap();
    assert_eq!(view.status, "SELLER_CONSIGNED_PART");
    assert_eq!(view.orders[0].status, "WAIT_BUYER_CONFIRM_GOODS");
    assert_eq!(view.orders[1].status, "WAIT_SELLER_SEND_GOODS", "the unshipped sub-order still waits");
    let record = &h.sandbox.shipments()[0];
    assert_eq!(record.sub_tids, [first]);
    assert_eq!(record.ident_codes[&first], ["860000000000011", "860000000000029"]);

    h.clock.advance(TimeDelta::minutes(1));
    let rest = h
        .call(
            SEND,
            &[
                ("tid", &tid.to_string()),
                ("out_sid", "SF1234567891"),
                ("company_code", "SF"),
                ("is_split", "1"),
                ("sub_tid", &second.to_string()),
            ],
        )
        .await;
    assert!(rest.get("error_response").is_none(), "{rest}");
    let view = h.sandbox.trades().into_iter().find(|t| t.tid == tid).unwrap();
    assert_eq!(view.status, "WAIT_BUYER_CONFIRM_GOODS");
    assert_eq!(view.modified, at(6));
}

#[tokio::test]
async fn scenario_events_apply_as_the_clock_passes() {
    let h = harness(TopConfig::default()).await;
    h.load(vec![
        place(1, 0, &[(10, 1)]),
        event(2, 0, EventKind::Pay),
        place(1, 1, &[(11, 1)]),
        event(30, 1, EventKind::Cancel),
        place(1, 2, &[(12, 1)]),
        event(2, 2, EventKind::Pay),
        event(3, 2, EventKind::RequestRefund),
        event(4, 2, EventKind::Refund),
        event(5, 2, EventKind::Touch),
        event(6, 0, EventKind::Cancel),
    ]);
    assert!(h.sandbox.trades().is_empty(), "nothing is due before its time");
    h.clock.set(at(10));
    let by_order = |o: u64| h.sandbox.trades().into_iter().find(|t| t.scenario_order == o).unwrap();
    assert_eq!(
        by_order(0).status,
        "WAIT_SELLER_SEND_GOODS",
        "a cancel after payment does not fit and is ignored"
    );
    assert_eq!(by_order(0).modified, at(2));
    assert_eq!(by_order(1).status, "WAIT_BUYER_PAY");
    let refunded = by_order(2);
    assert_eq!(refunded.status, "TRADE_CLOSED");
    assert_eq!(refunded.orders[0].refund_status, "SUCCESS");
    assert_eq!(refunded.modified, at(5), "touch moves modified");

    let refunds = h
        .call("taobao.refunds.receive.get", &[("fields", "refund_id,tid,status"), ("simplify", "true")])
        .await;
    assert_eq!(refunds["refunds"][0]["tid"].as_i64(), Some(refunded.tid), "{refunds}");
    assert_eq!(refunds["refunds"][0]["status"], "SUCCESS");

    // An increment call applies what is due first.
    h.clock.set(at(31));
    let closed = increment(
        &h,
        &[("fields", "tid,status"), ("status", "TRADE_CLOSED_BY_TAOBAO"), ("simplify", "true")],
    )
    .await;
    assert_eq!(tids(&closed["trades"]), [h.sandbox.tid_of(1).unwrap()]);

    let config = ScenarioConfig { orders: 40, start: t0(), ..ScenarioConfig::default() };
    let h = harness(TopConfig::default()).await;
    h.load(generate(&config));
    h.clock.set(t0() + config.duration / 2);
    let halfway = h.sandbox.trades().len();
    assert!(halfway > 0 && halfway < 40);
    h.clock.set(t0() + TimeDelta::days(1));
    h.sandbox.apply_due();
    assert_eq!(h.sandbox.trades().len(), 40);
    assert!(h.sandbox.sold_out_orders().is_empty(), "100 units a SKU cover 40 small orders");
    assert!(h.sandbox.stock_writes().is_empty(), "buyers' purchases are not API writes");
    let changes = h.sandbox.buyer_stock_changes();
    let mut sold_total = 0;
    for n in 0..20 {
        let listing = h.sandbox.listing(n);
        let sold = h.sandbox.sold_units(listing.num_iid, listing.sku_id);
        assert_eq!(listing.quantity, 100 - sold, "listing {n}: paid, unrefunded units leave the shelf");
        let net: i64 = changes.iter().filter(|c| c.sku_id == listing.sku_id).map(|c| c.delta).sum();
        assert_eq!(net, -sold, "listing {n}: the change log adds up");
        sold_total += sold;
    }
    let paid_units: i64 = h
        .sandbox
        .trades()
        .iter()
        .filter(|t| {
            !matches!(t.status.as_str(), "WAIT_BUYER_PAY" | "TRADE_CLOSED_BY_TAOBAO" | "TRADE_CLOSED")
        })
        .flat_map(|t| &t.orders)
        .map(|o| o.num)
        .sum();
    assert!(paid_units > 0);
    assert_eq!(sold_total, paid_units);
}

fn status_of(h: &Harness, order: u64) -> (String, DateTime<Utc>) {
    let trade = h.sandbox.trades().into_iter().find(|t| t.scenario_order == order).unwrap();
    (trade.status, trade.modified)
}

#[tokio::test]
async fn a_sold_out_payment_closes_the_trade_and_is_listed() {
    let h = harness(TopConfig { initial_quantity: 3, ..TopConfig::default() }).await;
    h.load(vec![
        place(1, 0, &[(10, 2)]),
        event(2, 0, EventKind::Pay),
        // Needs 2 of listing 10 with 1 left: the whole payment fails, listing 11 included.
        place(1, 1, &[(11, 1), (10, 2)]),
        event(3, 1, EventKind::Pay),
        event(4, 1, EventKind::Hold),
        event(5, 1, EventKind::Refund),
        place(1, 2, &[(10, 1)]),
        event(6, 2, EventKind::Pay),
        // Two lines of one SKU are counted together: 2 + 2 of listing 12 exceed its 3.
        place(1, 3, &[(12, 2), (12, 2)]),
        event(7, 3, EventKind::Pay),
    ]);
    h.clock.set(at(10));
    let l10 = h.sandbox.listing(10);
    let l11 = h.sandbox.listing(11);
    let l12 = h.sandbox.listing(12);

    assert_eq!(h.sandbox.sold_out_orders(), [1, 3]);
    assert_eq!(status_of(&h, 0).0, "WAIT_SELLER_SEND_GOODS");
    assert_eq!(status_of(&h, 1), ("TRADE_CLOSED_BY_TAOBAO".to_string(), at(3)), "closed when payment failed");
    assert_eq!(status_of(&h, 2).0, "WAIT_SELLER_SEND_GOODS", "the last unit still sells");
    assert_eq!(status_of(&h, 3).0, "TRADE_CLOSED_BY_TAOBAO");
    let closed = h.sandbox.trades().into_iter().find(|t| t.scenario_order == 1).unwrap();
    assert!(
        closed.orders.iter().all(|o| o.status == "TRADE_CLOSED_BY_TAOBAO" && o.refund_status == "NO_REFUND")
    );

    assert_eq!((l10.quantity, l11.quantity, l12.quantity), (0, 3, 3), "a failed payment takes nothing");
    assert_eq!(h.sandbox.sold_units(l10.num_iid, l10.sku_id), 3);
    assert_eq!(h.sandbox.sold_units(l11.num_iid, l11.sku_id), 0);
    let deltas: Vec<(u64, i64, i64)> =
        h.sandbox.buyer_stock_changes().iter().map(|c| (c.scenario_order, c.delta, c.quantity)).collect();
    assert_eq!(deltas, [(0, -2, 1), (2, -1, 0)]);
    assert!(h.sandbox.stock_writes().is_empty());

    // A client sees the closed trade, never paid, and the emptied SKU.
    let tid = h.sandbox.tid_of(1).unwrap().to_string();
    let full = h
        .call("taobao.trade.fullinfo.get", &[("tid", &tid), ("fields", "tid,status,pay_time,end_time")])
        .await;
    let trade = &full["trade_fullinfo_get_response"]["trade"];
    assert_eq!(trade["status"], "TRADE_CLOSED_BY_TAOBAO", "{full}");
    assert!(trade.get("pay_time").is_none(), "{full}");
    assert_eq!(trade["end_time"], fmt_time(at(3)));
    let num_iid = l10.num_iid.to_string();
    let item = h
        .call(
            "taobao.item.seller.get",
            &[("num_iid", &num_iid), ("fields", "num_iid,sku"), ("simplify", "true")],
        )
        .await;
    let skus = item["item"]["skus"].as_array().unwrap();
    assert!(skus.iter().any(|s| s["sku_id"].as_i64() == Some(l10.sku_id) && s["quantity"] == 0), "{item}");
}

#[tokio::test]
async fn a_refund_before_shipment_gives_the_units_back() {
    let h = harness(TopConfig { initial_quantity: 5, ..TopConfig::default() }).await;
    h.load(vec![
        place(1, 0, &[(10, 3)]),
        event(1, 0, EventKind::Pay),
        event(2, 0, EventKind::RequestRefund),
        event(3, 0, EventKind::Refund),
        // Never paid, so never took any.
        place(1, 1, &[(10, 4)]),
        event(4, 1, EventKind::Cancel),
        // Only buyable because the refund put the units back.
        place(5, 2, &[(10, 5)]),
        event(6, 2, EventKind::Pay),
    ]);
    let l10 = h.sandbox.listing(10);
    h.clock.set(at(2));
    assert_eq!(h.sandbox.listing(10).quantity, 2);
    assert_eq!(h.sandbox.sold_units(l10.num_iid, l10.sku_id), 3);

    h.clock.set(at(4));
    assert_eq!(h.sandbox.listing(10).quantity, 5, "the refund restored the units; the cancel took none");
    assert_eq!(h.sandbox.sold_units(l10.num_iid, l10.sku_id), 0, "refunded units are not sold");

    h.clock.set(at(6));
    assert_eq!(status_of(&h, 2).0, "WAIT_SELLER_SEND_GOODS");
    assert!(h.sandbox.sold_out_orders().is_empty());
    assert_eq!(h.sandbox.listing(10).quantity, 0);
    let changes = h.sandbox.buyer_stock_changes();
    let deltas: Vec<(u64, i64, DateTime<Utc>)> =
        changes.iter().map(|c| (c.scenario_order, c.delta, c.at)).collect();
    assert_eq!(deltas, [(0, -3, at(1)), (0, 3, at(3)), (2, -5, at(6))]);
    assert!(changes.iter().all(|c| c.num_iid == l10.num_iid && c.sku_id == l10.sku_id));
    assert!(h.sandbox.stock_writes().is_empty());

    // Once shipped, a refund event no longer fits: the units stay sold.
    let tid = h.sandbox.tid_of(2).unwrap().to_string();
    let shipped =
        h.call(SEND, &[("tid", &tid), ("out_sid", "75312345678901"), ("company_code", "ZTO")]).await;
    assert!(shipped.get("error_response").is_none(), "{shipped}");
    h.load(vec![event(7, 2, EventKind::Refund)]);
    h.clock.set(at(8));
    assert_eq!(status_of(&h, 2).0, "WAIT_BUYER_CONFIRM_GOODS");
    assert_eq!(h.sandbox.sold_units(l10.num_iid, l10.sku_id), 5);
    assert_eq!(h.sandbox.listing(10).quantity, 0);
}

#[tokio::test]
async fn a_push_between_payments_sets_what_later_buyers_can_take() {
    let h = harness(TopConfig { initial_quantity: 10, ..TopConfig::default() }).await;
    h.load(vec![
        place(1, 0, &[(10, 4)]),
        event(1, 0, EventKind::Pay),
        place(3, 1, &[(10, 3)]),
        event(3, 1, EventKind::Pay),
        place(4, 2, &[(10, 2)]),
        event(4, 2, EventKind::Pay),
        place(6, 3, &[(10, 5)]),
        event(6, 3, EventKind::Pay),
    ]);
    let l10 = h.sandbox.listing(10);
    let (num_iid, sku_id) = (l10.num_iid.to_string(), l10.sku_id.to_string());
    let push = |quantity: &'static str, kind: &'static str| {
        let (num_iid, sku_id) = (num_iid.clone(), sku_id.clone());
        let h = &h;
        async move {
            h.call(
                "taobao.item.quantity.update",
                &[("num_iid", &num_iid), ("sku_id", &sku_id), ("quantity", quantity), ("type", kind)],
            )
            .await
        }
    };

    h.clock.set(at(2));
    assert_eq!(h.sandbox.listing(10).quantity, 6);
    // An absolute push sets the shelf as is: the 4 units already sold are not held back.
    assert!(push("2", "1").await.get("error_response").is_none());
    h.clock.set(at(5));
    assert_eq!(h.sandbox.sold_out_orders(), [1], "3 units wanted, 2 on offer");
    assert_eq!(status_of(&h, 2).0, "WAIT_SELLER_SEND_GOODS", "2 units fit exactly");
    assert_eq!(h.sandbox.listing(10).quantity, 0);

    assert!(push("5", "2").await.get("error_response").is_none());
    h.clock.set(at(7));
    assert_eq!(status_of(&h, 3).0, "WAIT_SELLER_SEND_GOODS");
    assert_eq!(h.sandbox.listing(10).quantity, 0);
    assert_eq!(h.sandbox.sold_units(l10.num_iid, l10.sku_id), 11, "4 + 2 + 5 sold against 10 then 2 then +5");

    let writes: Vec<(i64, DateTime<Utc>)> =
        h.sandbox.stock_writes().iter().map(|w| (w.quantity, w.at)).collect();
    assert_eq!(writes, [(2, at(2)), (5, at(5))], "only the seller's pushes are writes");
    let deltas: Vec<i64> = h.sandbox.buyer_stock_changes().iter().map(|c| c.delta).collect();
    assert_eq!(deltas, [-4, -2, -5]);
}

#[tokio::test]
async fn shuffle_during_paging_moves_window_trades_to_now() {
    let h = harness(TopConfig::default()).await;
    h.load(paid_orders(6));
    h.clock.set(at(20));
    h.faults.script(Some(INCREMENT), Fault::ShuffleDuringPaging { orders: 2 });
    let page = increment(&h, &[("fields", "tid,modified"), ("page_size", "2"), ("simplify", "true")]).await;
    let oldest = [h.sandbox.tid_of(0).unwrap(), h.sandbox.tid_of(1).unwrap()];
    let mut first_page = tids(&page["trades"]);
    first_page.sort();
    assert_eq!(first_page, oldest, "the moved trades jump to the front: {page}");
    assert_eq!(page["trades"][0]["modified"], fmt_time(at(20)));
    let moved: Vec<_> =
        h.sandbox.trades().into_iter().filter(|t| t.modified == at(20)).map(|t| t.tid).collect();
    assert_eq!(moved.len(), 2);
}

#[tokio::test]
async fn connection_faults_reach_the_client_as_errors() {
    let h = harness(TopConfig::default()).await;
    let l0 = h.sandbox.listing(12);
    let update = [
        ("num_iid", l0.num_iid.to_string()),
        ("sku_id", l0.sku_id.to_string()),
        ("quantity", "5".to_string()),
    ];
    let update: Vec<(&str, &str)> = update.iter().map(|(k, v)| (*k, v.as_str())).collect();

    h.faults.script(None, Fault::DropConnection);
    assert!(h.raw("taobao.item.quantity.update", &update).await.is_err());
    assert_eq!(h.sandbox.listing(12).quantity, 100, "a dropped call is not applied");

    h.faults.script(None, Fault::ApplyThenDrop);
    assert!(h.raw("taobao.item.quantity.update", &update).await.is_err());
    assert_eq!(h.sandbox.listing(12).quantity, 5, "applied, then dropped");

    h.faults.script(None, Fault::Truncated);
    let cut = h.raw("taobao.user.seller.get", &[("fields", "nick")]).await.unwrap();
    assert!(
        serde_json::from_str::<Value>(&cut).is_err() && cut.starts_with("{\"user_seller_get_response\""),
        "{cut}"
    );

    h.faults.script(None, Fault::Malformed);
    let html = h.raw("taobao.user.seller.get", &[("fields", "nick")]).await.unwrap();
    assert!(serde_json::from_str::<Value>(&html).is_err());

    h.faults.script(None, Fault::RemoteTimeout);
    let timeout = h.call("taobao.user.seller.get", &[("fields", "nick")]).await;
    assert_eq!((code(&timeout), sub_code(&timeout)), (Some(15), "isp.remote-service-timeout"));
    h.faults.script(None, Fault::ServiceRejection);
    assert_eq!(
        sub_code(&h.call("taobao.user.seller.get", &[("fields", "nick")]).await),
        "isv.trade-service-rejection"
    );

    h.faults.script(None, Fault::Slow(Duration::from_millis(50)));
    assert!(
        h.call("taobao.user.seller.get", &[("fields", "nick")])
            .await
            .get("user_seller_get_response")
            .is_some()
    );
}

#[tokio::test]
async fn corrupt_record_breaks_one_trade_and_leaves_the_others() {
    let h = harness(TopConfig::default()).await;
    h.load(paid_orders(3));
    h.clock.set(at(10));
    h.faults.script(Some(INCREMENT), Fault::CorruptRecord);
    let reply = increment(&h, &[("fields", "tid,modified"), ("simplify", "true")]).await;
    let trades = reply["trades"].as_array().unwrap();
    let bad: Vec<_> = trades.iter().filter(|t| !t["modified"].is_string()).collect();
    assert_eq!(bad.len(), 1, "{reply}");
    assert_eq!(bad[0]["modified"], 12);
    assert_eq!(trades.len(), 3);
}

#[tokio::test]
async fn a_late_index_leaves_recent_modifications_out_of_one_reply() {
    let h = harness(TopConfig::default()).await;
    h.load(paid_orders(6));
    h.clock.set(at(20));
    // Trades were modified at minutes 1..=6; an index 15.5 minutes behind shows 1..=4.
    let lag = Duration::from_secs(15 * 60 + 30);
    h.faults.script(Some(INCREMENT), Fault::LateModified { lag });
    let late = increment(&h, &[("fields", "tid,modified"), ("simplify", "true")]).await;
    let mut listed = tids(&late["trades"]);
    listed.sort();
    let expected: Vec<i64> = (0..4).map(|n| h.sandbox.tid_of(n).unwrap()).collect();
    assert_eq!(listed, expected, "{late}");
    assert_eq!(late["total_results"], 4);
    let caught_up = increment(&h, &[("fields", "tid,modified"), ("simplify", "true")]).await;
    assert_eq!(tids(&caught_up["trades"]).len(), 6, "the next reply has caught up: {caught_up}");
}

#[tokio::test]
async fn a_round_trip_holds_every_request_and_changes_no_reply() {
    let near = harness(TopConfig::default()).await;
    let far = harness(TopConfig { round_trip: Duration::from_millis(300), ..TopConfig::default() }).await;
    let began = std::time::Instant::now();
    let reply = far.call("taobao.user.seller.get", &[("fields", "nick")]).await;
    // A lower bound only: the wait is there however fast or slow the machine is.
    assert!(began.elapsed() >= Duration::from_millis(300), "{:?}", began.elapsed());
    assert_eq!(reply, near.call("taobao.user.seller.get", &[("fields", "nick")]).await);
}
