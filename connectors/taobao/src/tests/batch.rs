//! `taobao.trade.fullinfo.get` through the batch API (`/router/batch`), against a scripted
//! gateway that checks the request as the platform would: the body signed after the query,
//! the `#PUBLIC#` part, one part per call, one reply part per call in order.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use flagsync_market::retry::RetryPolicy;
use flagsync_market::time::format_beijing;
use flagsync_market::transport::{HttpReply, HttpRequest, TOP_BATCH_SEPARATOR, Transport, TransportError};
use flagsync_market::{ErrorKind, Fetched, Marketplace, PullError, TimeWindow};

use super::*;
use crate::TaobaoConnector;
use crate::sign::{SignMethod, sign_with_body};

const BASE: u64 = 2_600_000_000_000_000_000;

/// How the scripted gateway answers batch requests.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal,
    /// The whole batch refused with one error_response, as for a bad signature.
    RefuseWhole,
    /// One part fewer than calls.
    ShortReply,
}

struct BatchGateway {
    window: TimeWindow,
    n: u64,
    mode: Mode,
    /// Tids whose next call in a batch is throttled (code 7).
    throttle_once: Mutex<HashSet<u64>>,
    seen: Mutex<Vec<HttpRequest>>,
}

impl BatchGateway {
    fn modified(&self, tid: u64) -> DateTime<Utc> {
        self.window.end - TimeDelta::minutes((tid - BASE) as i64)
    }

    fn trade(&self, tid: u64) -> String {
        format!(
            r#"{{"trade":{{"tid":{tid},"status":"WAIT_SELLER_SEND_GOODS","created":"2026-11-10 20:00:00","modified":"{}","payment":"1.00","total_fee":"1.00","orders":[{{"oid":{},"num_iid":1,"num":1,"price":"1.00","payment":"1.00"}}]}},"request_id":"r"}}"#,
            format_beijing(self.modified(tid)),
            tid + 1
        )
    }

    fn batch(&self, request: &HttpRequest, body: &str) -> String {
        // What the platform checks before anything else: the signature over query + body.
        assert!(request.url.ends_with("/router/batch"), "{}", request.url);
        let query: Vec<(String, String)> =
            request.params.iter().filter(|(n, _)| n != "sign").cloned().collect();
        let expected = sign_with_body(SignMethod::HmacSha256, SECRET, &query, body);
        assert_eq!(param(request, "sign"), Some(expected.as_str()));
        assert_eq!(param(request, "method"), None, "the method travels in the #PUBLIC# part");
        if self.mode == Mode::RefuseWhole {
            return r#"{"error_response":{"code":25,"msg":"Invalid signature","sub_code":"isv.invalid-signature","request_id":"r"}}"#.into();
        }
        let mut parts = body.split(TOP_BATCH_SEPARATOR);
        let public = parts.next().unwrap().strip_prefix("#PUBLIC#").expect("a #PUBLIC# part first");
        let public: Vec<(String, String)> =
            url::form_urlencoded::parse(public.as_bytes()).into_owned().collect();
        assert!(public.contains(&("method".into(), crate::FULLINFO_API.into())), "{public:?}");
        assert!(public.iter().any(|(n, v)| n == "fields" && v.contains("receiver_mobile")), "{public:?}");
        let mut replies: Vec<String> = parts
            .map(|part| {
                let tid: u64 = url::form_urlencoded::parse(part.as_bytes())
                    .find(|(n, _)| n == "tid")
                    .map(|(_, v)| v.parse().unwrap())
                    .expect("a tid in every call");
                if self.throttle_once.lock().unwrap().remove(&tid) {
                    r#"{"error_response":{"code":7,"msg":"App Call Limited","sub_code":"accesscontrol.limited-by-app-access-count","sub_msg":"This ban will last for 1 more seconds","request_id":"r"}}"#.to_string()
                } else {
                    self.trade(tid)
                }
            })
            .collect();
        if self.mode == Mode::ShortReply {
            replies.pop();
        }
        replies.join(TOP_BATCH_SEPARATOR)
    }
}

#[async_trait]
impl Transport for BatchGateway {
    async fn send(&self, request: &HttpRequest) -> Result<HttpReply, TransportError> {
        self.seen.lock().unwrap().push(request.clone());
        let body = match (&request.body, request.api.as_str()) {
            (Some(body), _) => self.batch(request, body),
            (None, crate::LIST_API) => {
                let rows: Vec<String> = (1..=self.n)
                    .map(|i| {
                        format!(
                            r#"{{"tid":{},"modified":"{}"}}"#,
                            BASE + i,
                            format_beijing(self.modified(BASE + i))
                        )
                    })
                    .collect();
                format!(r#"{{"trades":[{}],"total_results":{},"request_id":"r"}}"#, rows.join(","), self.n)
            }
            (None, crate::FULLINFO_API) => self.trade(param(request, "tid").unwrap().parse().unwrap()),
            (None, other) => return Err(TransportError::NotRecorded(other.to_string())),
        };
        Ok(HttpReply { status: 200, body })
    }
}

fn gateway(n: u64, mode: Mode, throttled: &[u64]) -> Arc<BatchGateway> {
    Arc::new(BatchGateway {
        window: TimeWindow { start: utc(2026, 11, 10, 15, 0, 0), end: utc(2026, 11, 10, 16, 0, 0) },
        n,
        mode,
        throttle_once: Mutex::new(throttled.iter().map(|i| BASE + i).collect()),
        seen: Mutex::new(Vec::new()),
    })
}

fn batch_connector(app_key: &str, gateway: Arc<BatchGateway>) -> TaobaoConnector {
    let config = TaobaoConfig {
        page_size: 40,
        fullinfo_batch: 3,
        sign_method: SignMethod::HmacSha256,
        retry: RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            max_hint: Duration::from_millis(5),
        },
        ..config(app_key)
    };
    TaobaoConnector::new(config, gateway, clock())
}

#[tokio::test]
async fn details_come_in_batches_and_a_throttled_call_is_retried_alone() {
    let gateway = gateway(7, Mode::Normal, &[5]);
    let connector = batch_connector("batch-pull", gateway.clone());
    let mut sink = CollectSink::default();
    let stats = connector.pull_orders(gateway.window, &mut sink).await.unwrap();

    let got: Vec<String> = sink
        .all()
        .into_iter()
        .map(|f| match f {
            Fetched::Order(o) => o.order_id.clone(),
            Fetched::Unparsed(u) => panic!("{}", u.reason),
        })
        .collect();
    let want: Vec<String> = (1..=7).map(|i| (BASE + i).to_string()).collect();
    assert_eq!(got, want, "every trade once, in list order");

    let seen = gateway.seen.lock().unwrap().clone();
    let batches: Vec<u32> = seen.iter().filter(|r| r.body.is_some()).map(|r| r.calls).collect();
    assert_eq!(batches, vec![3, 3, 1], "seven details in batches of three");
    let singles: Vec<&str> = seen
        .iter()
        .filter(|r| r.body.is_none() && r.api == crate::FULLINFO_API)
        .map(|r| param(r, "tid").unwrap())
        .collect();
    assert_eq!(singles, vec![(BASE + 5).to_string()], "only the throttled call is sent again");
    // Calls, as the platform counts them: one list page, seven in batches, one retry.
    assert_eq!(stats.calls, 9);
}

#[tokio::test]
async fn a_refused_batch_fails_the_pull_with_the_platform_code() {
    let gateway = gateway(4, Mode::RefuseWhole, &[]);
    let connector = batch_connector("batch-refused", gateway.clone());
    let mut sink = CollectSink::default();
    let error = match connector.pull_orders(gateway.window, &mut sink).await {
        Err(PullError::Connector(error)) => error,
        other => panic!("expected a connector error, got {other:?}"),
    };
    assert_eq!(error.code.as_deref(), Some("25"), "{error}");
    assert!(sink.all().is_empty(), "nothing is handed over from a refused batch");
}

#[tokio::test]
async fn a_reply_with_a_part_missing_is_malformed_and_nothing_is_guessed() {
    let gateway = gateway(4, Mode::ShortReply, &[]);
    let connector = batch_connector("batch-short", gateway.clone());
    let mut sink = CollectSink::default();
    let error = match connector.pull_orders(gateway.window, &mut sink).await {
        Err(PullError::Connector(error)) => error,
        other => panic!("expected a connector error, got {other:?}"),
    };
    assert_eq!(error.kind, ErrorKind::Malformed, "{error}");
    assert!(error.to_string().contains("3 calls was answered with 2 parts"), "{error}");
    let batches = gateway.seen.lock().unwrap().iter().filter(|r| r.body.is_some()).count();
    assert_eq!(batches, 2, "a malformed batch is retried under the policy (2 attempts), then fails");
}

/// A trade whose details change within one second: TOP's `modified` keeps its stamp.
struct SameSecond {
    modified: DateTime<Utc>,
    status: Mutex<&'static str>,
}

#[async_trait]
impl Transport for SameSecond {
    async fn send(&self, request: &HttpRequest) -> Result<HttpReply, TransportError> {
        let modified = format_beijing(self.modified);
        let body = match request.api.as_str() {
            crate::LIST_API => {
                format!(r#"{{"trades":[{{"tid":{BASE},"modified":"{modified}"}}],"total_results":1}}"#)
            }
            crate::FULLINFO_API => format!(
                r#"{{"trade":{{"tid":{BASE},"status":"{}","created":"2026-11-10 20:00:00","modified":"{modified}","payment":"1.00","total_fee":"1.00","orders":[{{"oid":{},"num_iid":1,"num":1,"price":"1.00","payment":"1.00"}}]}}}}"#,
                self.status.lock().unwrap(),
                BASE + 1
            ),
            other => return Err(TransportError::NotRecorded(other.to_string())),
        };
        Ok(HttpReply { status: 200, body })
    }
}

/// Seed 476789 of the chaos rig: a refund landed in the same second as the payment whose
/// details had just been read, so every later list showed the version already held and
/// the refund was never read. A trade read before its second was over is read again by
/// the next pull.
#[tokio::test]
async fn a_change_in_the_second_details_were_read_is_picked_up_by_the_next_pull() {
    let window = TimeWindow { start: utc(2026, 11, 10, 16, 0, 0), end: utc(2026, 11, 10, 16, 30, 0) };
    let modified = utc(2026, 11, 10, 16, 29, 59);
    let gateway = Arc::new(SameSecond { modified, status: Mutex::new("WAIT_SELLER_SEND_GOODS") });
    let clock = clock();
    clock.set(modified);
    let connector = TaobaoConnector::new(config("same-second"), gateway.clone(), clock.clone());
    let status_of = |sink: &CollectSink| -> Vec<String> {
        sink.all()
            .into_iter()
            .map(|f| match f {
                Fetched::Order(o) => o.platform_status.clone(),
                Fetched::Unparsed(u) => panic!("{}", u.reason),
            })
            .collect()
    };

    let mut sink = CollectSink::default();
    connector.pull_orders(window, &mut sink).await.unwrap();
    assert_eq!(status_of(&sink), vec!["WAIT_SELLER_SEND_GOODS"]);

    // Refunded in the same second; the list still shows the stamp the store holds.
    *gateway.status.lock().unwrap() = "TRADE_CLOSED";
    clock.set(modified + TimeDelta::seconds(3));
    let mut sink = CollectSink { known: vec![BASE.to_string()], ..CollectSink::default() };
    connector.pull_orders(window, &mut sink).await.unwrap();
    assert_eq!(status_of(&sink), vec!["TRADE_CLOSED"], "read again once its second was over");

    // Once read after its second, it is not read again.
    let mut sink = CollectSink { known: vec![BASE.to_string()], ..CollectSink::default() };
    connector.pull_orders(window, &mut sink).await.unwrap();
    assert!(status_of(&sink).is_empty());
}
