//! Request building, transport failures, stock and shipments against scripted replies.

use std::sync::Arc;

use flagsync_market::transport::{HttpMethod, TransportError};
use flagsync_market::{ErrorKind, ListingRef, Marketplace, Shipment, ShipmentOutcome, StockUpdate};
use serde_json::{Value, json};

use super::{Scripted, business, config, connector, connector_with, ok, param};
use crate::sign::sign;

fn shipment(carrier: &str) -> Shipment {
    Shipment {
        order_id: "301234567890".into(),
        line_ids: vec![],
        carrier: carrier.into(),
        waybill: "SF1400012345678".into(),
        serials: vec![],
    }
}

fn order_state_reply(state: &str) -> Value {
    json!({"jingdong_pop_order_get_responce": {"code": "0", "orderDetailInfo": {
        "apiResult": {"success": true}, "orderInfo": {"orderId": "301234567890", "orderState": state}}}})
}

fn shipment_failure(code: &str, message: &str) -> Value {
    json!({"jingdong_pop_order_shipment_responce": {"code": "0", "sopjosshipment_result": {
        "success": false, "chineseErrCode": message, "errorCode": code}}})
}

fn shipped_ok() -> Value {
    json!({"jingdong_pop_order_shipment_responce": {"code": "0", "sopjosshipment_result": {"success": true}}})
}

/// Every shipment send after the first must follow an order re-read.
fn assert_reread_between_sends(apis: &[String]) {
    for pair in apis.windows(2) {
        assert!(
            !(pair[0] == "jingdong.pop.order.shipment" && pair[1] == "jingdong.pop.order.shipment"),
            "shipment sent twice without a re-read: {apis:?}"
        );
    }
}

#[tokio::test]
async fn requests_are_signed_posts_with_beijing_timestamps() {
    let transport = Scripted::new(|_| ok(json!({"jingdong_delivery_logistics_get_responce": {"code": "0"}})));
    let connector = connector(transport.clone());
    connector.check_credentials().await.unwrap();
    let request = &transport.requests()[0];
    assert_eq!(request.method, HttpMethod::Post);
    assert_eq!(request.url, "https://jos.test/routerjson");
    assert_eq!(param(request, "method"), Some("jingdong.delivery.logistics.get"));
    assert_eq!(param(request, "timestamp"), Some("2026-11-11 00:10:00"));
    assert_eq!(param(request, "v"), Some("2.0"));
    assert_eq!(param(request, "app_key"), Some("test-app"));
    assert_eq!(param(request, "access_token"), Some("test-token"));
    assert_eq!(param(request, "360buy_param_json"), Some("{}"));
    let unsigned: Vec<(String, String)> =
        request.params.iter().filter(|(n, _)| n != "sign").cloned().collect();
    assert_eq!(param(request, "sign"), Some(sign("test-secret", &unsigned).as_str()));
    assert!(request.params.iter().all(|(_, v)| !v.is_empty()), "empty values must not be sent");
}

#[tokio::test]
async fn transport_failures_are_classified_and_reads_retried() {
    let transport = Scripted::new(|_| Err(TransportError::Connect("refused".into())));
    let error = connector(transport.clone()).check_credentials().await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Transient);
    assert_eq!(transport.requests().len(), 3, "retried up to max_attempts");

    let transport = Scripted::new(|_| Err(TransportError::Ambiguous("reset".into())));
    let error = connector(transport).fetch_order("1").await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Ambiguous);

    let transport = Scripted::new(|_| {
        ok(json!({"error_response": {"code": "19", "zh_desc": "token已过期或者不存在，请重新授权访问"}}))
    });
    let error = connector(transport.clone()).check_credentials().await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Auth);
    assert_eq!(transport.requests().len(), 1, "auth failures are not retried");
    assert!(!error.to_string().contains("test-token") && !error.to_string().contains("test-secret"));
}

#[tokio::test]
async fn stock_is_set_absolutely_in_batches_with_one_result_per_update_in_order() {
    let transport = Scripted::new(|request| {
        let sent = business(request);
        let results: Vec<Value> = sent["req"]["skuStocks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let sku = s["skuId"].as_u64().unwrap();
                if sku == 5 {
                    json!({"data": sku.to_string(), "success": false, "message": "sku off sale"})
                } else {
                    // `data` as the new quantity, `skuId` naming the SKU (the sandbox's reading)
                    json!({"skuId": sku, "data": (sku * 100).to_string(), "success": true, "storeId": 0})
                }
            })
            .rev() // per-SKU results are matched by id, not position
            .collect();
        ok(json!({"jingdong_ware_stock_sku_set_responce": {"code": "0", "returnType": {
            "success": true, "obj": {"updateStockResult": results}}}}))
    });
    let connector = connector(transport.clone());
    let listing = |sku: &str| ListingRef { item_id: "77".into(), sku_id: Some(sku.into()) };
    let mut updates: Vec<StockUpdate> =
        (1..=25).map(|i| StockUpdate { listing: listing(&i.to_string()), quantity: i }).collect();
    updates.insert(3, StockUpdate { listing: listing("900"), quantity: -1 });
    updates
        .insert(4, StockUpdate { listing: ListingRef { item_id: "77".into(), sku_id: None }, quantity: 1 });

    let results = connector.push_stock(&updates).await.unwrap();
    assert_eq!(results.len(), updates.len());
    for (update, result) in updates.iter().zip(&results) {
        assert_eq!(update.listing, result.listing);
        match update.listing.sku_id.as_deref() {
            Some("900") | None => assert_eq!(result.outcome.as_ref().unwrap_err().kind, ErrorKind::Rejected),
            Some("5") => assert!(result.outcome.as_ref().unwrap_err().message.contains("sku off sale")),
            Some(_) => assert_eq!(result.outcome.as_ref().ok(), Some(&update.quantity)),
        }
    }
    let requests = transport.requests();
    assert_eq!(requests.len(), 2, "25 valid updates in batches of 20");
    let first = business(&requests[0]);
    assert_eq!(first["req"]["skuStocks"][0], json!({"skuId": 1, "stockNum": 1}));
    assert!(requests.iter().all(|r| !param(r, "360buy_param_json").unwrap().contains("900")));
}

#[tokio::test]
async fn stock_is_read_per_sku() {
    let transport = Scripted::new(|request| {
        let sku = business(request)["skuId"].as_u64().unwrap();
        ok(json!({"jingdong_ware_stock_sku_query_responce": {"code": "0", "returnType": {
            "success": true, "obj": {"skuId": sku, "stockNum": sku * 2, "orderBookingNum": 1}}}}))
    });
    let listings = vec![ListingRef { item_id: "1".into(), sku_id: Some("21".into()) }];
    let read = connector(transport).read_stock(&listings).await.unwrap();
    assert_eq!(read[0].quantity, 42);
}

#[tokio::test]
async fn a_lost_shipment_reply_is_settled_by_a_re_read() {
    let transport = Scripted::new(|request| match request.api.as_str() {
        "jingdong.pop.order.shipment" => Err(TransportError::Ambiguous("timed out".into())),
        _ => ok(order_state_reply("WAIT_GOODS_RECEIVE_CONFIRM")),
    });
    let outcome = connector(transport.clone()).push_shipment(&shipment("467")).await.unwrap();
    assert_eq!(outcome, ShipmentOutcome::AlreadyShipped);
    assert_eq!(transport.apis(), ["jingdong.pop.order.shipment", "jingdong.pop.order.get"]);
    let sent = business(&transport.requests()[0]);
    assert_eq!(sent, json!({"orderId": 301234567890u64, "logiCoprId": "467", "logiNo": "SF1400012345678"}));
}

#[tokio::test]
async fn a_transient_refusal_is_resent_only_after_a_re_read() {
    let mut sends = 0;
    let transport = Scripted::new(move |request| match request.api.as_str() {
        "jingdong.pop.order.shipment" => {
            sends += 1;
            if sends == 1 { ok(shipment_failure("999999", "系统异常")) } else { ok(shipped_ok()) }
        }
        _ => ok(order_state_reply("WAIT_SELLER_STOCK_OUT")),
    });
    let outcome = connector(transport.clone()).push_shipment(&shipment("467")).await.unwrap();
    assert_eq!(outcome, ShipmentOutcome::Shipped);
    let apis = transport.apis();
    assert_eq!(
        apis,
        ["jingdong.pop.order.shipment", "jingdong.pop.order.get", "jingdong.pop.order.shipment"]
    );
    assert_reread_between_sends(&apis);
}

#[tokio::test]
async fn a_refusal_on_a_locked_order_is_rejected_with_jds_message() {
    let transport = Scripted::new(|request| match request.api.as_str() {
        "jingdong.pop.order.shipment" => ok(shipment_failure("10400001", "订单已锁定")),
        _ => ok(order_state_reply("LOCKED")),
    });
    let error = connector(transport.clone()).push_shipment(&shipment("467")).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Rejected);
    assert!(error.message.contains("LOCKED") && error.message.contains("订单已锁定"), "{}", error.message);
    assert_eq!(transport.apis().len(), 2);
}

#[tokio::test]
async fn a_persistent_refusal_on_an_open_order_stops_after_a_bounded_number_of_sends() {
    let transport = Scripted::new(|request| match request.api.as_str() {
        "jingdong.pop.order.shipment" => ok(shipment_failure("10100016", "运单号不合法")),
        _ => ok(order_state_reply("WAIT_SELLER_STOCK_OUT")),
    });
    let config = crate::JdConfig {
        retry: flagsync_market::retry::RetryPolicy { max_attempts: 6, ..config().retry },
        ..config()
    };
    let error = connector_with(config, transport.clone()).push_shipment(&shipment("467")).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Rejected);
    let apis = transport.apis();
    assert_eq!(apis.iter().filter(|a| *a == "jingdong.pop.order.shipment").count(), 2);
    assert_reread_between_sends(&apis);
}

#[tokio::test]
async fn a_carrier_that_is_not_a_numeric_logistics_id_is_refused_locally() {
    let transport = Scripted::new(|_| panic!("nothing may be sent"));
    let error = connector(transport.clone()).push_shipment(&shipment("SF")).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Rejected);
    assert!(error.message.contains("logiCoprId"), "{}", error.message);
    assert!(transport.requests().is_empty());
}

#[test]
fn connectors_with_one_app_key_share_one_rate_limiter() {
    let a = connector(Scripted::new(|_| panic!()));
    let b = connector(Scripted::new(|_| panic!()));
    let other = connector_with(
        crate::JdConfig { app_key: "other-app".into(), ..config() },
        Scripted::new(|_| panic!()),
    );
    assert!(Arc::ptr_eq(&a.limiter, &b.limiter));
    assert!(!Arc::ptr_eq(&a.limiter, &other.limiter));
}

#[test]
fn debug_output_hides_secrets() {
    let shown = format!("{:?}", connector(Scripted::new(|_| panic!())));
    assert!(!shown.contains("test-secret") && !shown.contains("test-token"), "{shown}");
}
