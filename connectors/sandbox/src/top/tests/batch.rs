//! `/router/batch` over HTTP: a reqwest client builds and signs its own batch bodies (query
//! parameters sorted, then the raw body) and splits the reply on the separator, as the
//! official SDKs' batch clients do.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::super::sign::{SignMethod, sign_with_body};
use super::super::{MAX_BATCH_CALLS, TopConfig};
use super::{Harness, at, code, harness, paid_orders, sub_code, sub_msg};
use crate::faults::Fault;

const FULLINFO: &str = "taobao.trade.fullinfo.get";
const SEP: &str = "\r\n-S-\r\n";

/// One call's form-encoded part.
fn part(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

fn fullinfo(tid: i64) -> String {
    part(&[("method", FULLINFO), ("fields", "tid,status,payment,orders"), ("tid", &tid.to_string())])
}

/// Parses every part of a batch reply.
fn parts(reply: &str, separator: &str) -> Vec<Value> {
    reply.split(separator).map(|p| serde_json::from_str(p).unwrap_or_else(|e| panic!("{e}: {p:?}"))).collect()
}

/// The reply with its `request_id` removed, whichever root it has.
fn without_request_id(mut reply: Value) -> Value {
    if let Some(root) =
        reply.as_object_mut().and_then(|o| o.values_mut().next()).and_then(Value::as_object_mut)
    {
        assert!(root.remove("request_id").is_some(), "every reply has a request_id");
    }
    reply
}

impl Harness {
    fn batch_url(&self) -> String {
        format!("{}/router/batch", self.server.base_url())
    }

    /// The system parameters of a batch, without `method` and `sign`.
    fn batch_query(&self, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut query = self.unsigned("", extra);
        query.remove("method");
        query
    }

    fn sign_batch(&self, mut query: BTreeMap<String, String>, body: &[u8]) -> BTreeMap<String, String> {
        let method = SignMethod::parse(query.get("sign_method").map(String::as_str)).unwrap();
        query.insert("sign".into(), sign_with_body(method, &self.config.app_secret, &query, body));
        query
    }

    async fn post_batch(
        &self,
        query: &BTreeMap<String, String>,
        body: &[u8],
        separator: Option<&str>,
    ) -> Result<String, reqwest::Error> {
        let mut request = self
            .http
            .post(self.batch_url())
            .query(query)
            .header("content-type", "text/plain;charset=UTF-8")
            .body(body.to_vec());
        if let Some(separator) = separator {
            request = request.header("top-api-separator", separator);
        }
        let reply = request.send().await?;
        assert_eq!(reply.status(), 200);
        reply.text().await
    }

    /// Signs `body` with the default system parameters and posts it.
    async fn batch(&self, body: &str, separator: Option<&str>) -> String {
        let query = self.sign_batch(self.batch_query(&[]), body.as_bytes());
        self.post_batch(&query, body.as_bytes(), separator).await.unwrap()
    }
}

#[tokio::test]
async fn a_batch_answers_each_call_as_router_rest_does_in_order() {
    let h = harness(TopConfig::default()).await;
    h.load(paid_orders(3));
    h.clock.set(at(10));
    let tids: Vec<i64> = [2, 0, 1].iter().map(|&o| h.sandbox.tid_of(o).unwrap()).collect();
    let body = tids.iter().map(|&tid| fullinfo(tid)).collect::<Vec<_>>().join(SEP);

    let query = h.sign_batch(h.batch_query(&[]), body.as_bytes());
    let reply = h.http.post(h.batch_url()).query(&query).body(body.clone()).send().await.unwrap();
    assert_eq!(reply.headers()["content-type"], "application/json;charset=UTF-8");
    let reply = reply.text().await.unwrap();
    let replies = parts(&reply, SEP);
    assert_eq!(replies.len(), 3, "{reply}");
    let calls = h.sandbox.calls();
    assert_eq!(calls.get(FULLINFO), Some(&3), "{calls:?}");
    assert_eq!(calls.get("router/batch"), Some(&1), "{calls:?}");

    let mut request_ids = std::collections::BTreeSet::new();
    for (tid, batched) in tids.iter().zip(replies) {
        let trade = &batched["trade_fullinfo_get_response"]["trade"];
        assert_eq!(trade["tid"].as_i64(), Some(*tid), "{batched}");
        assert_eq!(trade["status"], "WAIT_SELLER_SEND_GOODS");
        request_ids.insert(batched["trade_fullinfo_get_response"]["request_id"].to_string());
        let single =
            h.call(FULLINFO, &[("fields", "tid,status,payment,orders"), ("tid", &tid.to_string())]).await;
        assert_eq!(without_request_id(batched), without_request_id(single));
    }
    assert_eq!(request_ids.len(), 3, "each call has its own request id");
    assert_eq!(h.sandbox.calls().get("router/batch"), Some(&1), "single calls are not batches");
}

#[tokio::test]
async fn public_parameters_no_parameter_parts_and_a_custom_separator() {
    let h = harness(TopConfig::default()).await;
    h.load(paid_orders(2));
    h.clock.set(at(10));
    let (t0, t1) = (h.sandbox.tid_of(0).unwrap(), h.sandbox.tid_of(1).unwrap());

    let body = [
        format!("#PUBLIC#{}", part(&[("method", FULLINFO), ("fields", "tid,status")])),
        part(&[("tid", &t1.to_string())]),
        part(&[("tid", &t0.to_string())]),
    ]
    .join(SEP);
    let replies = parts(&h.batch(&body, None).await, SEP);
    let got: Vec<_> =
        replies.iter().map(|r| r["trade_fullinfo_get_response"]["trade"]["tid"].as_i64()).collect();
    assert_eq!(got, [Some(t1), Some(t0)], "{replies:?}");

    // A call's own parameters win over the public ones; `N` is a call with none of its own.
    let custom = "~#batch#~";
    let body = [
        format!("#PUBLIC#{}", part(&[("method", "taobao.user.seller.get"), ("fields", "nick")])),
        "N".to_string(),
        part(&[("method", FULLINFO), ("fields", "tid"), ("tid", &t0.to_string())]),
        "N".to_string(),
    ]
    .join(custom);
    let reply = h.batch(&body, Some(custom)).await;
    assert!(!reply.contains(SEP), "the reply uses the request's separator: {reply}");
    let replies = parts(&reply, custom);
    assert_eq!(replies.len(), 3, "{reply}");
    assert_eq!(replies[0]["user_seller_get_response"]["user"]["nick"], "电信官方旗舰店", "{reply}");
    assert_eq!(replies[1]["trade_fullinfo_get_response"]["trade"]["tid"].as_i64(), Some(t0));
    assert!(replies[2].get("user_seller_get_response").is_some(), "{reply}");

    // simplify in the URL applies to every call.
    let query = h.sign_batch(h.batch_query(&[("simplify", "true")]), body.as_bytes());
    let reply = h.post_batch(&query, body.as_bytes(), Some(custom)).await.unwrap();
    let replies = parts(&reply, custom);
    assert_eq!(replies[1]["trade"]["tid"].as_i64(), Some(t0), "{reply}");
}

#[tokio::test]
async fn a_failing_call_is_only_its_own_slot() {
    let h = harness(TopConfig::default()).await;
    h.load(paid_orders(2));
    h.clock.set(at(10));
    let (t0, t1) = (h.sandbox.tid_of(0).unwrap(), h.sandbox.tid_of(1).unwrap());
    let body = [
        fullinfo(t0),
        fullinfo(987_654_321),
        part(&[("method", "taobao.no.such.api"), ("tid", "1")]),
        part(&[("fields", "tid"), ("tid", "1")]),
        fullinfo(t1),
    ]
    .join(SEP);
    let replies = parts(&h.batch(&body, None).await, SEP);
    assert_eq!(replies.len(), 5);
    assert_eq!(replies[0]["trade_fullinfo_get_response"]["trade"]["tid"].as_i64(), Some(t0));
    assert_eq!((code(&replies[1]), sub_code(&replies[1])), (Some(15), "isv.trade-not-exist"));
    assert_eq!((code(&replies[2]), sub_code(&replies[2])), (Some(22), "isv.invalid-method"));
    assert_eq!(code(&replies[3]), Some(21), "no method in the call nor the public part");
    assert_eq!(replies[4]["trade_fullinfo_get_response"]["trade"]["tid"].as_i64(), Some(t1));
    let calls = h.sandbox.calls();
    assert_eq!(calls.get(FULLINFO), Some(&3), "{calls:?}");
    assert_eq!((calls.get("error:22"), calls.get("error:15")), (Some(&1), Some(&1)));

    // Sessions are checked per call; a call's own session overrides the URL's.
    let body = [
        part(&[("method", "taobao.user.seller.get"), ("fields", "nick"), ("session", "stolen")]),
        part(&[("method", "taobao.user.seller.get"), ("fields", "nick")]),
        part(&[("method", "taobao.logistics.companies.get")]),
        part(&[("method", "taobao.user.seller.get"), ("fields", "nick"), ("session", &h.config.session)]),
    ]
    .join(SEP);
    let mut query = h.batch_query(&[]);
    query.remove("session");
    let query = h.sign_batch(query, body.as_bytes());
    let replies = parts(&h.post_batch(&query, body.as_bytes(), None).await.unwrap(), SEP);
    assert_eq!(code(&replies[0]), Some(27));
    assert_eq!(code(&replies[1]), Some(26));
    assert!(replies[2].get("logistics_companies_get_response").is_some(), "no session needed");
    assert!(replies[3].get("user_seller_get_response").is_some(), "{}", replies[3]);
}

#[tokio::test]
async fn whole_batch_failures_are_one_error_response() {
    let h = harness(TopConfig::default()).await;
    h.load(paid_orders(1));
    h.clock.set(at(10));
    let tid = h.sandbox.tid_of(0).unwrap();
    let single = |reply: &str| -> Value {
        assert!(!reply.contains(SEP), "{reply}");
        serde_json::from_str(reply).unwrap()
    };

    // The body altered after signing.
    let body = [fullinfo(tid), fullinfo(tid)].join(SEP);
    let query = h.sign_batch(h.batch_query(&[]), body.as_bytes());
    let altered = body.replace("status", "modified");
    let refused = single(&h.post_batch(&query, altered.as_bytes(), None).await.unwrap());
    assert_eq!((code(&refused), sub_code(&refused)), (Some(25), "isv.invalid-signature"), "{refused}");

    // URL-level checks in the platform's order.
    let wrong_key = h.sign_batch(h.batch_query(&[("app_key", "999")]), body.as_bytes());
    assert_eq!(code(&single(&h.post_batch(&wrong_key, body.as_bytes(), None).await.unwrap())), Some(29));
    let xml = h.sign_batch(h.batch_query(&[("format", "xml")]), body.as_bytes());
    assert_eq!(code(&single(&h.post_batch(&xml, body.as_bytes(), None).await.unwrap())), Some(23));
    let unsigned = h.batch_query(&[]);
    assert_eq!(code(&single(&h.post_batch(&unsigned, body.as_bytes(), None).await.unwrap())), Some(24));
    let hmac = h.sign_batch(h.batch_query(&[("sign_method", "hmac-sha256")]), body.as_bytes());
    assert_eq!(parts(&h.post_batch(&hmac, body.as_bytes(), None).await.unwrap(), SEP).len(), 2);

    // No call at all.
    for empty in ["", "#PUBLIC#method=taobao.trade.fullinfo.get"] {
        let reply = single(&h.batch(empty, None).await);
        assert_eq!((code(&reply), sub_code(&reply)), (Some(40), "isv.missing-parameter"), "{reply}");
        assert_eq!(reply["error_response"]["msg"], "Missing required arguments");
    }

    // More calls than the cap; exactly the cap is fine.
    let calls = |n: usize| vec![fullinfo(tid); n].join(SEP);
    let too_many = single(&h.batch(&calls(MAX_BATCH_CALLS + 1), None).await);
    assert_eq!((code(&too_many), sub_code(&too_many)), (Some(41), "isv.invalid-parameter"), "{too_many}");
    assert_eq!(MAX_BATCH_CALLS, 50);
    assert!(sub_msg(&too_many).contains("50") && sub_msg(&too_many).contains("51"), "{too_many}");
    assert_eq!(parts(&h.batch(&calls(MAX_BATCH_CALLS), None).await, SEP).len(), MAX_BATCH_CALLS);

    // Not UTF-8, though signed.
    let latin1 = b"method=taobao.user.seller.get&fields=nick&memo=\xe9t\xe9";
    let query = h.sign_batch(h.batch_query(&[]), latin1);
    let refused = single(&h.post_batch(&query, latin1, None).await.unwrap());
    assert_eq!((code(&refused), sub_code(&refused)), (Some(41), "isv.invalid-parameter"), "{refused}");
    assert!(sub_msg(&refused).contains("UTF-8"));

    let counted = h.sandbox.calls();
    assert_eq!(counted.get("router/batch"), Some(&10), "every batch request is counted: {counted:?}");
    assert_eq!((counted.get("error:25"), counted.get("error:40")), (Some(&1), Some(&2)));
}

#[tokio::test]
async fn calls_per_second_applies_to_each_call_in_a_batch() {
    let h = harness(TopConfig { calls_per_second: Some(2), ..TopConfig::default() }).await;
    let seller = part(&[("method", "taobao.user.seller.get"), ("fields", "nick")]);
    let body = vec![seller; 3].join(SEP);
    let replies = parts(&h.batch(&body, None).await, SEP);
    assert!(replies[0].get("user_seller_get_response").is_some());
    assert!(replies[1].get("user_seller_get_response").is_some());
    assert_eq!((code(&replies[2]), sub_msg(&replies[2])), (Some(7), "This ban will last for 1 more seconds"));
    assert_eq!(h.sandbox.calls().get("error:7"), Some(&1));
}

#[tokio::test]
async fn exchange_faults_hit_the_whole_reply_and_call_faults_one_slot() {
    let h = harness(TopConfig::default()).await;
    let update = |n: usize, quantity: &str| {
        let l = h.sandbox.listing(n);
        part(&[
            ("method", "taobao.item.quantity.update"),
            ("num_iid", &l.num_iid.to_string()),
            ("sku_id", &l.sku_id.to_string()),
            ("quantity", quantity),
        ])
    };
    let seller = part(&[("method", "taobao.user.seller.get"), ("fields", "nick")]);
    let body = [update(12, "5"), seller.clone(), update(13, "6")].join(SEP);
    let query = h.sign_batch(h.batch_query(&[]), body.as_bytes());

    h.faults.script(Some("taobao.user.seller.get"), Fault::DropConnection);
    assert!(h.post_batch(&query, body.as_bytes(), None).await.is_err(), "the whole reply is dropped");
    assert_eq!(h.sandbox.listing(12).quantity, 5, "the call before the drop ran");
    assert_eq!(h.sandbox.listing(13).quantity, 100, "the calls after it did not");

    h.faults.script(Some("taobao.user.seller.get"), Fault::Truncated);
    let cut = h.post_batch(&query, body.as_bytes(), None).await.unwrap();
    assert!(cut.starts_with("{\"item_quantity_update_response\"") && cut.split(SEP).count() < 3, "{cut}");
    assert_eq!(h.sandbox.listing(13).quantity, 6, "every call ran; only the body is cut");

    h.faults.script(Some("taobao.user.seller.get"), Fault::Malformed);
    let html = h.post_batch(&query, body.as_bytes(), None).await.unwrap();
    assert!(html.contains("502 Bad Gateway") && !html.contains(SEP), "{html}");

    h.faults.script(Some("taobao.user.seller.get"), Fault::Slow(Duration::from_millis(30)));
    h.faults.script(Some("taobao.item.quantity.update"), Fault::RemoteTimeout);
    let replies = parts(&h.post_batch(&query, body.as_bytes(), None).await.unwrap(), SEP);
    assert_eq!((code(&replies[0]), sub_code(&replies[0])), (Some(15), "isp.remote-service-timeout"));
    assert!(replies[1].get("user_seller_get_response").is_some(), "{replies:?}");
    assert!(replies[2].get("item_quantity_update_response").is_some(), "{replies:?}");
    assert_eq!(h.sandbox.calls().get("router/batch"), Some(&4));
}
