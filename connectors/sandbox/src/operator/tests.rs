//! End-to-end tests of the operator simulator: the router on a loopback port, called with
//! plain reqwest and a signer written here from `API.md`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{FulfilmentState, OperatorSim, OperatorSimConfig, ShipError, SimResource, endpoint};
use crate::clock::SimClock;
use crate::faults::{Fault, FaultPlan};
use crate::server::RunningServer;

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-01T10:00:00+08:00").unwrap().with_timezone(&Utc)
}

/// The test's own signer, apart from the simulator's so one cannot excuse the other.
fn test_sign(secret: &str, method: &str, target: &str, ts: &str, nonce: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{method}\n{target}\n{ts}\n{nonce}\n{body}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

struct Sim {
    sim: OperatorSim,
    clock: SimClock,
    faults: FaultPlan,
    server: RunningServer,
    http: reqwest::Client,
    nonce: std::cell::Cell<u64>,
}

/// What came back: status, Retry-After, body as JSON (Null when not JSON).
struct Got {
    status: u16,
    retry_after: Option<String>,
    text: String,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    fn code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or("").to_string()
    }
}

impl Sim {
    async fn new() -> Self {
        let clock = SimClock::manual(start());
        let faults = FaultPlan::new(3);
        let config = OperatorSimConfig { accessories: vec!["CASE-1".into()], ..OperatorSimConfig::default() };
        let sim = OperatorSim::new(config, clock.clone(), faults.clone());
        let server = sim.start().await.unwrap();
        Self { sim, clock, faults, server, http: reqwest::Client::new(), nonce: std::cell::Cell::new(0) }
    }

    fn next_nonce(&self) -> String {
        self.nonce.set(self.nonce.get() + 1);
        format!("{:032x}", self.nonce.get())
    }

    /// Sends with explicit signing inputs, so tests can spoil any of them.
    async fn raw(
        &self,
        method: &str,
        target: &str,
        body: &str,
        ts: i64,
        nonce: &str,
        secret: &str,
    ) -> Result<Got, reqwest::Error> {
        let (key, _) = self.sim.credentials();
        let ts = ts.to_string();
        let signature = test_sign(secret, method, target, &ts, nonce, body);
        let url = format!("{}{target}", self.server.base_url());
        let builder =
            if method == "POST" { self.http.post(url).body(body.to_string()) } else { self.http.get(url) };
        let response = builder
            .header("X-Flagsync-Key", key)
            .header("X-Flagsync-Timestamp", ts)
            .header("X-Flagsync-Nonce", nonce)
            .header("X-Flagsync-Signature", signature)
            .send()
            .await?;
        let status = response.status().as_u16();
        let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
        let text = response.text().await?;
        Ok(Got { status, retry_after, text })
    }

    async fn send(&self, method: &str, target: &str, body: &str) -> Got {
        let (_, secret) = self.sim.credentials();
        self.raw(method, target, body, self.clock.now().timestamp(), &self.next_nonce(), &secret)
            .await
            .unwrap()
    }

    async fn get(&self, target: &str) -> Got {
        self.send("GET", target, "").await
    }

    async fn post(&self, target: &str, body: &Value) -> Got {
        self.send("POST", target, &body.to_string()).await
    }
}

fn request(order_id: &str, lines: Value) -> Value {
    json!({"store_id": "tmall-1", "order_id": order_id, "platform": "taobao", "paid_at": "2026-11-01T01:59:00Z",
        "lines": lines, "receiver": {"name": "张三", "mobile": "13812345678"}, "contract": null})
}

fn handset(order_id: &str, quantity: i64) -> Value {
    request(order_id, json!([{"line_id": "L1", "operator_sku": "IPH16", "quantity": quantity}]))
}

#[tokio::test]
async fn accepts_a_good_signature_and_refuses_a_wrong_one_or_key() {
    let s = Sim::new().await;
    let ok = s.get("/v1/ping").await;
    assert_eq!((ok.status, ok.json()), (200, json!({"ok": true})));

    let now = s.clock.now().timestamp();
    let bad = s.raw("GET", "/v1/ping", "", now, &s.next_nonce(), "wrong-secret").await.unwrap();
    assert_eq!((bad.status, bad.code()), (401, "bad_signature".to_string()));
    assert!(!bad.text.contains("sandbox-operator-secret"));

    // A signature over another path does not carry over.
    let (_, secret) = s.sim.credentials();
    let nonce = s.next_nonce();
    let signature = test_sign(&secret, "GET", "/v1/stock", &now.to_string(), &nonce, "");
    let response = s
        .http
        .get(format!("{}/v1/stock?since=0", s.server.base_url()))
        .header("X-Flagsync-Key", "sandbox-operator")
        .header("X-Flagsync-Timestamp", now.to_string())
        .header("X-Flagsync-Nonce", nonce)
        .header("X-Flagsync-Signature", signature)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);

    let response = s.http.get(format!("{}/v1/ping", s.server.base_url())).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "missing_header");
}

#[tokio::test]
async fn refuses_a_replayed_nonce_and_a_skewed_timestamp() {
    let s = Sim::new().await;
    let (_, secret) = s.sim.credentials();
    let now = s.clock.now().timestamp();
    let first = s.raw("GET", "/v1/ping", "", now, "abcdef0123456789", &secret).await.unwrap();
    assert_eq!(first.status, 200);
    let again = s.raw("GET", "/v1/ping", "", now, "abcdef0123456789", &secret).await.unwrap();
    assert_eq!((again.status, again.code()), (401, "replayed_nonce".to_string()));

    let late = s.raw("GET", "/v1/ping", "", now - 301, &s.next_nonce(), &secret).await.unwrap();
    assert_eq!((late.status, late.code()), (401, "stale_timestamp".to_string()));
    let early = s.raw("GET", "/v1/ping", "", now + 301, &s.next_nonce(), &secret).await.unwrap();
    assert_eq!(early.code(), "stale_timestamp");
    let edge = s.raw("GET", "/v1/ping", "", now + 300, &s.next_nonce(), &secret).await.unwrap();
    assert_eq!(edge.status, 200);
    assert_eq!(s.sim.calls().get(endpoint::PING), Some(&5));
}

#[tokio::test]
async fn a_snapshot_then_deltas_since_its_watermark() {
    let s = Sim::new().await;
    s.sim.set_on_hand("IPH16", "WH-HZ", 10);
    s.sim.set_on_hand("IPH16", "WH-SH", 4);
    s.sim.set_resource(SimResource::PlanQuota, "P199", 3);
    let full = s.get("/v1/stock").await.json();
    assert_eq!(full["watermark"], 3);
    assert_eq!(full["full"], true);
    assert_eq!(full["levels"].as_array().unwrap().len(), 2);
    assert_eq!(full["resources"][0], json!({"kind": "plan_quota", "code": "P199", "available": 3}));

    s.sim.set_on_hand("IPH16", "WH-SH", 6);
    s.sim.set_on_hand("IPH16", "WH-SH", 6); // no change, no new watermark
    s.sim.set_resource(SimResource::NumberPool, "POOL-571", 80);
    let delta = s.get("/v1/stock?since=3").await.json();
    assert_eq!(delta["watermark"], 5);
    assert_eq!(delta["full"], false);
    assert_eq!(delta["levels"], json!([{"sku": "IPH16", "warehouse": "WH-SH", "on_hand": 6}]));
    assert_eq!(delta["resources"], json!([{"kind": "number_pool", "code": "POOL-571", "available": 80}]));
    let nothing = s.get("/v1/stock?since=5").await.json();
    assert_eq!((nothing["watermark"].clone(), nothing["levels"].clone()), (json!(5), json!([])));

    let ahead = s.get("/v1/stock?since=6").await;
    assert_eq!((ahead.status, ahead.code()), (409, "watermark_ahead".to_string()));
    let bad = s.get("/v1/stock?since=-1").await;
    assert_eq!((bad.status, bad.code()), (400, "bad_request".to_string()));
}

#[tokio::test]
async fn fulfilment_is_idempotent_and_a_changed_repeat_conflicts() {
    let s = Sim::new().await;
    let first = s.post("/v1/fulfilments", &handset("1001", 1)).await;
    assert_eq!(first.json(), json!({"result": "accepted"}));
    let again = s.post("/v1/fulfilments", &handset("1001", 1)).await;
    assert_eq!(again.json(), json!({"result": "already_accepted"}));
    let changed = s.post("/v1/fulfilments", &handset("1001", 2)).await;
    assert_eq!((changed.status, changed.code()), (409, "conflict".to_string()));
    let invalid = s.post("/v1/fulfilments", &handset("1002", 0)).await;
    assert_eq!((invalid.status, invalid.code()), (422, "invalid_request".to_string()));
    let garbage = s.send("POST", "/v1/fulfilments", "{\"store_id\": \"13812345678\"").await;
    assert_eq!((garbage.status, garbage.code()), (400, "bad_request".to_string()));
    assert!(!garbage.text.contains("13812345678"));

    let views = s.sim.fulfilments();
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].submissions, 2);
    assert!(views[0].has_receiver);
    assert_eq!(views[0].state, FulfilmentState::Pending);
    assert_eq!(views[0].accepted_at, start());
}

#[tokio::test]
async fn withdraw_answers_each_state() {
    let s = Sim::new().await;
    s.sim.set_on_hand("IPH16", "WH-HZ", 5);
    let reason = json!({"reason": "buyer cancelled"});
    let none = s.post("/v1/fulfilments/tmall-1/404/withdraw", &reason).await;
    assert_eq!(none.json(), json!({"result": "not_found"}));

    s.post("/v1/fulfilments", &handset("1001", 1)).await;
    let done = s.post("/v1/fulfilments/tmall-1/1001/withdraw", &reason).await;
    assert_eq!(done.json(), json!({"result": "withdrawn"}));
    let twice = s.post("/v1/fulfilments/tmall-1/1001/withdraw", &reason).await;
    assert_eq!(twice.json(), json!({"result": "not_found"}));
    assert_eq!(s.sim.fulfilments()[0].state, FulfilmentState::Withdrawn { reason: "buyer cancelled".into() });
    let resubmitted = s.post("/v1/fulfilments", &handset("1001", 1)).await;
    assert_eq!((resubmitted.status, resubmitted.code()), (409, "withdrawn".to_string()));
    assert_eq!(s.sim.ship("tmall-1", "1001", "SF", "SF1", Vec::new()), Err(ShipError::Withdrawn));

    s.post("/v1/fulfilments", &handset("1002", 1)).await;
    s.sim.ship("tmall-1", "1002", "SF", "SF2", Vec::new()).unwrap();
    let late = s.post("/v1/fulfilments/tmall-1/1002/withdraw", &reason).await;
    assert_eq!(late.json(), json!({"result": "already_shipped"}));

    // Percent-encoded ids are decoded before lookup, and signed as sent.
    let odd = request("a/b", json!([{"line_id": "L1", "operator_sku": "IPH16", "quantity": 1}]));
    s.post("/v1/fulfilments", &odd).await;
    let escaped = s.post("/v1/fulfilments/tmall-1/a%2Fb/withdraw", &reason).await;
    assert_eq!(escaped.json(), json!({"result": "withdrawn"}));
}

#[tokio::test]
async fn shipping_deducts_on_hand_at_a_new_watermark_and_emits_a_notice() {
    let s = Sim::new().await;
    s.sim.set_on_hand("IPH16", "WH-HZ", 1);
    s.sim.set_on_hand("IPH16", "WH-SH", 5);
    s.sim.set_resource(SimResource::PlanQuota, "P199", 2);
    s.sim.set_resource(SimResource::NumberPool, "POOL-571", 2);
    let mut contract = handset("1001", 3);
    contract["contract"] = json!({"plan_code": "P199", "phone_number": "13900001111"});
    contract["number_pool"] = json!("POOL-571");
    s.post("/v1/fulfilments", &contract).await;
    assert_eq!(s.sim.on_hand("IPH16"), 6, "accepting reserves nothing");
    let before = s.sim.watermark();

    let serials = vec![("L1".to_string(), vec!["860000000000011".to_string()])];
    let id = s.sim.ship("tmall-1", "1001", "SF", "SF1400000000001", serials).unwrap();
    assert_eq!(s.sim.watermark(), before + 1);
    assert_eq!((s.sim.on_hand_in("IPH16", "WH-HZ"), s.sim.on_hand_in("IPH16", "WH-SH")), (0, 3));
    assert_eq!(s.sim.resource(SimResource::PlanQuota, "P199"), 1);
    assert_eq!(s.sim.resource(SimResource::NumberPool, "POOL-571"), 1);
    assert_eq!(s.sim.fulfilments()[0].state, FulfilmentState::Shipped { notice_id: id.clone() });

    let page = s.get("/v1/shipments?since=0&limit=10").await.json();
    assert_eq!(page["watermark"], 1);
    let notice = &page["notices"][0];
    assert_eq!(notice["notice_id"], id.as_str());
    assert_eq!(notice["stock_watermark"], before + 1);
    assert_eq!(notice["waybill"], "SF1400000000001");
    assert_eq!(notice["serials"], json!([{"line_id": "L1", "serials": ["860000000000011"]}]));
    assert_eq!(notice["shipped_at"], "2026-11-01T02:00:00Z");
    assert_eq!(notice["corrects"], Value::Null);

    let delta = s.get(&format!("/v1/stock?since={before}")).await.json();
    assert_eq!(delta["levels"].as_array().unwrap().len(), 2);
    assert_eq!(delta["resources"].as_array().unwrap().len(), 2);

    s.post("/v1/fulfilments", &handset("1002", 4)).await;
    assert_eq!(
        s.sim.ship("tmall-1", "1002", "SF", "SF2", Vec::new()),
        Err(ShipError::ShortOfStock { sku: "IPH16".into(), wanted: 4, on_hand: 3 })
    );
    assert_eq!(s.sim.on_hand("IPH16"), 3, "a refused shipment changes nothing");
    assert_eq!(s.sim.ship("tmall-1", "1001", "SF", "SF3", Vec::new()), Err(ShipError::AlreadyShipped));
}

#[tokio::test]
async fn auto_ship_ships_due_requests_with_an_imei_per_handset_unit() {
    let s = Sim::new().await;
    s.sim.set_on_hand("IPH16", "WH-HZ", 10);
    s.sim.set_on_hand("CASE-1", "WH-HZ", 10);
    s.sim.auto_ship(Duration::from_secs(3600));
    let lines = json!([{"line_id": "L1", "operator_sku": "IPH16", "quantity": 2},
                       {"line_id": "L2", "operator_sku": "CASE-1", "quantity": 1}]);
    s.post("/v1/fulfilments", &request("1001", lines)).await;
    s.post("/v1/fulfilments", &handset("1002", 1)).await;
    s.post("/v1/fulfilments/tmall-1/1002/withdraw", &json!({"reason": "refund"})).await;

    s.clock.advance(TimeDelta::minutes(59));
    assert_eq!(s.get("/v1/shipments?since=0").await.json()["notices"], json!([]));
    s.clock.advance(TimeDelta::minutes(1));
    let page = s.get("/v1/shipments?since=0").await.json();
    let notices = page["notices"].as_array().unwrap();
    assert_eq!(notices.len(), 1, "the withdrawn request does not ship");
    assert_eq!(notices[0]["carrier"], "SF");
    assert_eq!(notices[0]["waybill"], "SF1400000000001");
    let serials = notices[0]["serials"].as_array().unwrap();
    assert_eq!(serials.len(), 1, "accessories carry no serials: {serials:?}");
    let imeis = serials[0]["serials"].as_array().unwrap();
    assert_eq!(imeis.len(), 2);
    assert!(imeis.iter().all(|i| i.as_str().unwrap().len() == 15));
    assert_eq!((s.sim.on_hand("IPH16"), s.sim.on_hand("CASE-1")), (8, 9));
}

#[tokio::test]
async fn a_corrected_waybill_comes_as_a_new_notice() {
    let s = Sim::new().await;
    s.sim.set_on_hand("IPH16", "WH-HZ", 3);
    s.post("/v1/fulfilments", &handset("1001", 1)).await;
    let original = s.sim.ship("tmall-1", "1001", "SF", "SF-WRONG", Vec::new()).unwrap();
    let watermark = s.sim.watermark();
    let fixed = s.sim.correct_waybill(&original, "SF-RIGHT").unwrap();
    assert_eq!(s.sim.watermark(), watermark, "a correction moves no stock");
    assert_eq!(s.sim.on_hand("IPH16"), 2);

    let page = s.get("/v1/shipments?since=1&limit=5").await.json();
    assert_eq!(page["watermark"], 2);
    let notice = &page["notices"][0];
    assert_eq!(
        (notice["notice_id"].as_str(), notice["waybill"].as_str()),
        (Some(fixed.as_str()), Some("SF-RIGHT"))
    );
    assert_eq!(notice["corrects"], original.as_str());
    assert_eq!(notice["stock_watermark"], watermark);
    assert_eq!(s.sim.correct_waybill("OPN-404", "X"), Err(ShipError::UnknownNotice));

    let empty = s.get("/v1/shipments?since=2").await.json();
    assert_eq!(empty, json!({"notices": [], "watermark": 2}));
    let limited = s.get("/v1/shipments?since=0&limit=1").await.json();
    assert_eq!((limited["notices"].as_array().unwrap().len(), limited["watermark"].clone()), (1, json!(1)));
    assert_eq!(s.get("/v1/shipments?limit=0").await.status, 400);
}

#[tokio::test]
async fn faults_render_as_documented() {
    let s = Sim::new().await;
    s.sim.set_on_hand("IPH16", "WH-HZ", 3);

    s.faults.script(Some(endpoint::STOCK), Fault::Throttle { ban_secs: 30 });
    let throttled = s.get("/v1/stock").await;
    assert_eq!((throttled.status, throttled.retry_after.as_deref()), (429, Some("30")));
    s.clock.advance(TimeDelta::seconds(10));
    let still = s.get("/v1/stock").await;
    assert_eq!((still.status, still.retry_after.as_deref()), (429, Some("20")));
    assert_eq!(s.get("/v1/ping").await.status, 200, "a ban holds one endpoint");
    s.clock.advance(TimeDelta::seconds(20));
    assert_eq!(s.get("/v1/stock").await.status, 200);

    s.faults.script(Some(endpoint::FULFILMENTS), Fault::TransientBusiness);
    assert_eq!(s.post("/v1/fulfilments", &handset("1001", 1)).await.status, 503);
    assert!(s.sim.fulfilments().is_empty(), "a 503 applies nothing");

    s.faults.script(Some(endpoint::FULFILMENTS), Fault::DropConnection);
    let (_, secret) = s.sim.credentials();
    let now = s.clock.now().timestamp();
    let body = handset("1001", 1).to_string();
    assert!(s.raw("POST", "/v1/fulfilments", &body, now, &s.next_nonce(), &secret).await.is_err());
    assert!(s.sim.fulfilments().is_empty());

    s.faults.script(Some(endpoint::FULFILMENTS), Fault::ApplyThenDrop);
    assert!(s.raw("POST", "/v1/fulfilments", &body, now, &s.next_nonce(), &secret).await.is_err());
    assert_eq!(s.sim.fulfilments().len(), 1, "applied before the drop");
    assert_eq!(
        s.post("/v1/fulfilments", &handset("1001", 1)).await.json(),
        json!({"result": "already_accepted"})
    );

    s.faults.script(Some(endpoint::STOCK), Fault::Truncated);
    let cut = s.get("/v1/stock").await;
    assert_eq!(cut.status, 200);
    assert!(serde_json::from_str::<Value>(&cut.text).is_err());

    s.faults.script(Some(endpoint::STOCK), Fault::Malformed);
    assert!(s.get("/v1/stock").await.text.starts_with("<html>"));

    s.faults.script(Some(endpoint::STOCK), Fault::CorruptRecord);
    assert_eq!(s.get("/v1/stock").await.json()["levels"][0]["on_hand"], "3");

    s.faults.script(Some(endpoint::PING), Fault::SessionExpired);
    assert_eq!(s.get("/v1/ping").await.code(), "key_revoked");
    s.faults.script(Some(endpoint::PING), Fault::RemoteTimeout);
    assert_eq!(s.get("/v1/ping").await.status, 504);
    assert_eq!(s.faults.injected().values().sum::<u64>(), 9);
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_are_refused() {
    let s = Sim::new().await;
    assert_eq!(s.get("/v1/nothing").await.code(), "not_found");
    assert_eq!(s.get("/v1/fulfilments").await.status, 405);
    assert_eq!(s.sim.calls().get("unknown"), Some(&2));
}
