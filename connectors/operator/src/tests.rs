//! Client behaviour against a scripted transport: signing, error classes, retries, contract
//! checks on answers, and personal data kept out of errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use flagsync_market::pii::Pii;
use flagsync_market::retry::RetryPolicy;
use flagsync_market::{ContractInfo, ErrorKind, ManualClock, Receiver};
use serde_json::{Value, json};

use crate::sign::sign;
use crate::transport::{OperatorReply, OperatorRequest, OperatorTransport, TransportError};
use crate::{
    FulfilmentAck, FulfilmentLine, FulfilmentRequest, HttpOperator, OperatorApi, OperatorConfig,
    ResourceKind, WithdrawAck,
};

const SECRET: &str = "sandbox-operator-secret-0123456789";

#[derive(Default)]
struct Scripted {
    replies: Mutex<VecDeque<Result<OperatorReply, TransportError>>>,
    seen: Mutex<Vec<OperatorRequest>>,
}

impl Scripted {
    fn push(&self, status: u16, body: Value) {
        self.push_text(status, &body.to_string());
    }

    fn push_text(&self, status: u16, body: &str) {
        self.replies.lock().unwrap().push_back(Ok(OperatorReply {
            status,
            retry_after: None,
            body: body.into(),
        }));
    }

    fn push_reply(&self, reply: Result<OperatorReply, TransportError>) {
        self.replies.lock().unwrap().push_back(reply);
    }

    fn seen(&self) -> Vec<OperatorRequest> {
        self.seen.lock().unwrap().clone()
    }
}

#[async_trait]
impl OperatorTransport for Scripted {
    async fn send(&self, request: &OperatorRequest) -> Result<OperatorReply, TransportError> {
        self.seen.lock().unwrap().push(request.clone());
        self.replies
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| Err(TransportError::NotRecorded(request.endpoint.into())))
    }
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-01T10:00:00+08:00").unwrap().with_timezone(&Utc)
}

fn client_with(base_url: &str, attempts: u32) -> (HttpOperator, Arc<Scripted>) {
    let transport = Arc::new(Scripted::default());
    let config = OperatorConfig {
        base_url: base_url.into(),
        key_id: "sandbox-operator".into(),
        secret: SECRET.into(),
        retry: RetryPolicy { max_attempts: attempts, ..RetryPolicy::default() },
    };
    let client = HttpOperator::new(config, transport.clone(), Arc::new(ManualClock::new(now())));
    (client, transport)
}

fn fresh() -> (HttpOperator, Arc<Scripted>) {
    client_with("http://operator.test/", 1)
}

fn header<'a>(request: &'a OperatorRequest, name: &str) -> &'a str {
    request.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str()).unwrap()
}

fn snapshot(watermark: i64, full: bool, levels: Value) -> Value {
    json!({"watermark": watermark, "full": full, "levels": levels, "resources": []})
}

#[tokio::test]
async fn signs_each_request_over_method_path_prefix_timestamp_nonce_and_body() {
    let (client, transport) = client_with("https://erp.example/api/", 1);
    transport.push(200, snapshot(9, false, json!([])));
    client.stock(Some(7)).await.unwrap();
    let request = &transport.seen()[0];
    assert_eq!(request.url, "https://erp.example/api/v1/stock?since=7");
    assert_eq!(header(request, "X-Flagsync-Key"), "sandbox-operator");
    assert_eq!(header(request, "X-Flagsync-Timestamp"), now().timestamp().to_string());
    let nonce = header(request, "X-Flagsync-Nonce");
    let expected = sign(SECRET, "GET", "/api/v1/stock?since=7", now().timestamp(), nonce, "");
    assert_eq!(header(request, "X-Flagsync-Signature"), expected);
    assert!(!format!("{client:?}").contains(SECRET));
}

#[tokio::test]
async fn reads_a_full_snapshot_with_resources() {
    let (client, transport) = fresh();
    transport.push(
        200,
        json!({"watermark": 42, "full": true,
            "levels": [{"sku": "IPH16", "warehouse": "WH-HZ", "on_hand": 5}],
            "resources": [{"kind": "plan_quota", "code": "P199", "available": 3},
                          {"kind": "number_pool", "code": "POOL-571", "available": 80}]}),
    );
    let snapshot = client.stock(None).await.unwrap();
    assert_eq!(snapshot.watermark, 42);
    assert!(snapshot.full);
    assert_eq!(snapshot.levels[0].on_hand, 5);
    assert_eq!(snapshot.resources[1].kind, ResourceKind::NumberPool);
    assert_eq!(transport.seen()[0].url, "http://operator.test/v1/stock");
}

#[tokio::test]
async fn answers_that_break_the_contract_are_malformed_naming_field_and_value() {
    let cases = [
        (
            None,
            snapshot(3, true, json!([{"sku": "A", "warehouse": "W", "on_hand": -2}])),
            "levels[0].on_hand: -2",
        ),
        (Some(10), snapshot(8, false, json!([])), "watermark: 8 went backwards from since=10"),
        (
            None,
            snapshot(
                3,
                true,
                json!([{"sku": "A", "warehouse": "W", "on_hand": 1}, {"sku": "A", "warehouse": "W", "on_hand": 2}]),
            ),
            "levels[1]: sku A warehouse W appears twice",
        ),
        (None, snapshot(3, false, json!([])), "full: false"),
        (None, json!({"watermark": "x"}), "not the documented json"),
    ];
    for (since, body, expected) in cases {
        let (client, transport) = fresh();
        transport.push(200, body);
        let error = client.stock(since).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::Malformed, "{error}");
        assert!(error.to_string().contains(expected), "{error} lacks {expected}");
    }
}

fn notice(sequence: i64, waybill: &str) -> Value {
    json!({"notice_id": format!("N{sequence}"), "sequence": sequence, "store_id": "tmall-1", "order_id": "1001",
        "line_ids": [], "carrier": "SF", "waybill": waybill, "serials": [],
        "shipped_at": "2026-11-01T02:00:00Z", "stock_watermark": 12, "corrects": null})
}

#[tokio::test]
async fn shipments_are_checked_and_the_limit_is_clamped() {
    let (client, transport) = fresh();
    transport.push(200, json!({"notices": [notice(6, "SF1"), notice(8, "SF2")], "watermark": 8}));
    let batch = client.shipments(5, 10_000).await.unwrap();
    assert_eq!(batch.watermark, 8);
    assert_eq!(batch.notices[1].waybill, "SF2");
    assert_eq!(transport.seen()[0].url, "http://operator.test/v1/shipments?since=5&limit=500");

    let cases = [
        (json!({"notices": [notice(6, "")], "watermark": 6}), "notices[0].waybill: empty"),
        (
            json!({"notices": [notice(5, "SF1")], "watermark": 5}),
            "notices[0].sequence: 5 is not after since=5",
        ),
        (
            json!({"notices": [notice(7, "A"), notice(6, "B")], "watermark": 6}),
            "notices[1].sequence: 6 does not follow 7",
        ),
        (json!({"notices": [], "watermark": 4}), "watermark: 4 but expected 5"),
    ];
    for (body, expected) in cases {
        let (client, transport) = fresh();
        transport.push(200, body);
        let error = client.shipments(5, 10).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::Malformed);
        assert!(error.to_string().contains(expected), "{error} lacks {expected}");
    }
}

#[tokio::test]
async fn http_failures_map_to_what_the_caller_should_do() {
    let (client, transport) = fresh();
    transport.push_reply(Ok(OperatorReply {
        status: 429,
        retry_after: Some("17".into()),
        body: json!({"error": {"code": "throttled", "message": "slow down"}}).to_string(),
    }));
    let error = client.check().await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Throttled);
    assert_eq!(error.retry_after, Some(Duration::from_secs(17)));
    assert_eq!(error.code.as_deref(), Some("throttled"));

    let cases = [
        (503, ErrorKind::Transient),
        (500, ErrorKind::Transient),
        (401, ErrorKind::Auth),
        (409, ErrorKind::Rejected),
        (404, ErrorKind::Rejected),
        (302, ErrorKind::Malformed),
    ];
    for (status, kind) in cases {
        let (client, transport) = fresh();
        transport.push(status, json!({"error": {"code": "c", "message": "m"}}));
        assert_eq!(client.check().await.unwrap_err().kind, kind, "status {status}");
    }
    let (client, transport) = fresh();
    transport.push_reply(Err(TransportError::Ambiguous("timed out".into())));
    assert_eq!(client.check().await.unwrap_err().kind, ErrorKind::Ambiguous);
    let (client, transport) = fresh();
    transport.push_text(200, "<html>502</html>");
    assert_eq!(client.check().await.unwrap_err().kind, ErrorKind::Malformed);
}

#[tokio::test(start_paused = true)]
async fn retries_transient_failures_with_a_fresh_nonce_and_stops_on_auth() {
    let (client, transport) = client_with("http://operator.test", 4);
    transport.push(503, json!({"error": {"code": "unavailable", "message": "busy"}}));
    transport.push_reply(Err(TransportError::Ambiguous("reset".into())));
    transport.push(200, json!({"result": "already_accepted"}));
    assert_eq!(client.submit_fulfilment(&request()).await.unwrap(), FulfilmentAck::AlreadyAccepted);
    let seen = transport.seen();
    assert_eq!(seen.len(), 3);
    assert_ne!(header(&seen[0], "X-Flagsync-Nonce"), header(&seen[1], "X-Flagsync-Nonce"));
    assert_eq!(seen[0].body, seen[2].body);

    let (client, transport) = client_with("http://operator.test", 4);
    transport.push(401, json!({"error": {"code": "bad_signature", "message": "signature mismatch"}}));
    let error = client.check().await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Auth);
    assert_eq!(transport.seen().len(), 1);
}

fn request() -> FulfilmentRequest {
    FulfilmentRequest {
        store_id: "tmall-1".into(),
        order_id: "4012345678901234567".into(),
        platform: "taobao".into(),
        paid_at: Some(now()),
        lines: vec![FulfilmentLine { line_id: "L1".into(), operator_sku: "IPH16".into(), quantity: 1 }],
        receiver: Some(Receiver {
            name: Pii::new("张三丰"),
            mobile: Pii::new("13812345678"),
            address: Pii::new("浙江省杭州市西湖区文三路 1 号"),
            ..Receiver::default()
        }),
        contract: Some(ContractInfo {
            phone_number: Pii::new("13900001111"),
            plan_code: "P199".into(),
            cert_number: Pii::new("330106199001011234"),
            owner_name: Pii::new("李四"),
            ..ContractInfo::default()
        }),
        number_pool: Some("POOL-571".into()),
    }
}

#[tokio::test]
async fn the_fulfilment_body_carries_personal_data_but_errors_and_debug_do_not() {
    let (client, transport) = fresh();
    transport.push(
        422,
        json!({"error": {"code": "invalid_request",
            "message": "receiver 张三丰 13812345678 at 浙江省杭州市西湖区文三路 1 号, holder 李四 330106199001011234 / 13900001111"}}),
    );
    let error = client.submit_fulfilment(&request()).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Rejected);
    let text = format!("{error} {error:?}");
    for secret in ["张三丰", "13812345678", "文三路", "李四", "330106199001011234", "13900001111"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let sent = &transport.seen()[0];
    let body: Value = serde_json::from_str(sent.body.as_deref().unwrap()).unwrap();
    assert_eq!(body["receiver"]["mobile"], "13812345678");
    assert_eq!(body["contract"]["plan_code"], "P199");
    assert_eq!(body["number_pool"], "POOL-571");
    assert!(!format!("{sent:?}").contains("13812345678"));
}

#[tokio::test]
async fn withdraw_escapes_path_segments_and_reads_each_outcome() {
    for (result, ack) in [
        ("withdrawn", WithdrawAck::Withdrawn),
        ("not_found", WithdrawAck::NotFound),
        ("already_shipped", WithdrawAck::AlreadyShipped),
    ] {
        let (client, transport) = fresh();
        transport.push(200, json!({"result": result}));
        assert_eq!(client.withdraw_fulfilment("jd store/1", "77", "refund").await.unwrap(), ack);
        let sent = &transport.seen()[0];
        assert_eq!(sent.url, "http://operator.test/v1/fulfilments/jd%20store%2F1/77/withdraw");
        assert_eq!(sent.body.as_deref(), Some(r#"{"reason":"refund"}"#));
    }
    let (client, transport) = fresh();
    transport.push(200, json!({"result": "maybe"}));
    assert_eq!(client.withdraw_fulfilment("s", "o", "r").await.unwrap_err().kind, ErrorKind::Malformed);
}

#[test]
fn config_problems_name_their_fields() {
    let config = OperatorConfig {
        base_url: "ftp://x".into(),
        key_id: " ".into(),
        secret: String::new(),
        retry: RetryPolicy::default(),
    };
    let problems = config.problems();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].starts_with("base_url"));
}
