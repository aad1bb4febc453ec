//! Order parsing: state mapping, JD's placeholders, amounts, receivers, and orders kept raw.

use flagsync_market::{ErrorKind, Fetched, OrderStatus, RefundState};
use serde_json::{Value, json};

use crate::parse::{map_state, order, search_page};

fn info(state: &str, paid: &str) -> Value {
    json!({
        "orderId": 3012345678901u64, "orderState": state,
        "orderStartTime": "2026-11-11 00:01:02", "modified": "2026-11-11 00:05:00.000+0800",
        "paymentConfirmTime": paid, "orderEndTime": "0001-01-01 00:00:00",
        "orderTotalPrice": "4999.00", "orderPayment": "4899.5", "freightPrice": "10",
        "pin": "jd_buyer_pin",
        "consigneeInfo": {"fullname": "张三", "mobile": "13812345678", "telephone": "", "province": "浙江",
            "city": "杭州市", "county": "西湖区", "fullAddress": "浙江杭州市西湖区文三路 1 号"},
        "itemInfoList": [
            {"skuId": "100012345678", "wareId": "100000123", "outerSkuId": "HW-P70", "skuName": "华为 P70",
             "jdPrice": "4999.00", "itemTotal": "1"},
            {"skuId": "100012345678", "wareId": "100000123", "outerSkuId": "", "skuName": "赠品",
             "jdPrice": "0.00", "itemTotal": 2}
        ]
    })
}

fn parsed(value: &Value) -> flagsync_market::Order {
    match order("jingdong.pop.order.search", value) {
        Fetched::Order(order) => *order,
        Fetched::Unparsed(unparsed) => panic!("unparsed: {}", unparsed.reason),
    }
}

fn reason(value: &Value) -> String {
    match order("jingdong.pop.order.search", value) {
        Fetched::Unparsed(unparsed) => {
            assert_eq!(unparsed.raw, value.to_string());
            unparsed.reason
        }
        Fetched::Order(_) => panic!("expected unparsed"),
    }
}

#[test]
fn every_documented_state_maps() {
    let table = [
        ("WAIT_SELLER_STOCK_OUT", true, OrderStatus::Paid),
        ("WAIT_SELLER_DELIVERY", true, OrderStatus::Paid),
        ("POP_ORDER_PAUSE", true, OrderStatus::Held),
        ("PAUSE", true, OrderStatus::Held),
        ("LOCKED", true, OrderStatus::Held),
        ("WAIT_GOODS_RECEIVE_CONFIRM", true, OrderStatus::Shipped),
        ("FINISHED_L", true, OrderStatus::Completed),
        ("RECEIPT_CONFIRM", true, OrderStatus::Completed),
        ("TRADE_CANCELED", true, OrderStatus::Refunded),
        ("TRADE_CANCELED", false, OrderStatus::Cancelled),
        ("TRADE_CLOSED", false, OrderStatus::Cancelled),
        ("TRADE_REFUNDED", true, OrderStatus::Refunded),
    ];
    for (state, paid, status) in table {
        assert_eq!(map_state(state, paid), Some(status), "{state} paid={paid}");
    }
    assert_eq!(map_state("WAIT_SEND_CODE", true), None);
}

#[test]
fn a_paused_order_parses_with_placeholders_as_unset() {
    let order = parsed(&info("POP_ORDER_PAUSE", "2026-11-11 00:01:30"));
    assert_eq!(order.order_id, "3012345678901");
    assert_eq!((order.status, order.platform_status.as_str()), (OrderStatus::Held, "POP_ORDER_PAUSE"));
    assert_eq!(flagsync_market::time::format_beijing(order.modified_at), "2026-11-11 00:05:00");
    assert!(order.paid_at.is_some());
    assert_eq!((order.total_fen, order.payment_fen, order.post_fee_fen), (499_900, 489_950, 1000));
    assert_eq!(order.lines.len(), 2);
    assert_eq!(order.lines[0].line_id, "100012345678");
    assert_eq!(order.lines[1].line_id, "100012345678#2", "line ids stay unique");
    assert_eq!(order.lines[1].quantity, 2);
    assert_eq!(order.lines[1].outer_sku_id, None);
    assert_eq!(order.lines[0].item_id, "100000123");
    let receiver = order.receiver.as_ref().unwrap();
    assert_eq!(receiver.mobile.expose(), "13812345678");
    assert_eq!(receiver.district, "西湖区");
    let shown = format!("{order:?}");
    assert!(!shown.contains("13812345678") && !shown.contains("文三路") && !shown.contains("jd_buyer_pin"));

    let cancelled = parsed(&info("TRADE_CANCELED", "0001-01-01 00:00:00"));
    assert_eq!((cancelled.status, cancelled.paid_at), (OrderStatus::Cancelled, None));
    let refunded = parsed(&info("TRADE_CANCELED", "2026-11-11 00:01:30"));
    assert_eq!(refunded.status, OrderStatus::Refunded);
    assert!(refunded.lines.iter().all(|l| l.refund == RefundState::Refunded));
}

#[test]
fn a_locked_order_marks_its_lines_refund_requested() {
    let order = parsed(&info("LOCKED", "2026-11-11 00:01:30"));
    assert_eq!(order.status, OrderStatus::Held);
    assert!(order.lines.iter().all(|l| l.refund == RefundState::Requested));
}

#[test]
fn orders_that_do_not_parse_are_kept_raw_with_the_field_named() {
    assert!(reason(&info("WAIT_SEND_CODE", "")).contains("orderState"));
    let mut bad = info("WAIT_SELLER_STOCK_OUT", "");
    bad["orderPayment"] = json!("九十九");
    assert!(reason(&bad).contains("orderPayment"));
    let mut bad = info("WAIT_SELLER_STOCK_OUT", "");
    bad["modified"] = json!("0001-01-01 00:00:00");
    assert!(reason(&bad).contains("modified"));
    let mut bad = info("WAIT_SELLER_STOCK_OUT", "");
    bad["itemInfoList"][1]["itemTotal"] = json!("x");
    assert!(reason(&bad).contains("itemInfoList[1].itemTotal"));
    let mut bad = info("WAIT_SELLER_STOCK_OUT", "");
    bad["paymentConfirmTime"] = json!("yesterday");
    assert!(reason(&bad).contains("paymentConfirmTime"));
}

#[test]
fn a_page_hands_over_good_orders_beside_a_broken_one() {
    let mut broken = info("WAIT_SELLER_STOCK_OUT", "");
    broken["orderTotalPrice"] = json!(null);
    let body = json!({"jingdong_pop_order_search_responce": {"code": "0", "searchorderinfo_result": {
        "apiResult": {"success": true, "numberCode": 0}, "orderTotal": "2",
        "orderInfoList": [info("WAIT_SELLER_STOCK_OUT", "2026-11-11 00:01:30"), broken]}}});
    let page = search_page(200, &body.to_string()).unwrap();
    assert_eq!(page.total, 2);
    assert!(matches!(page.orders[0], Fetched::Order(_)));
    let Fetched::Unparsed(unparsed) = &page.orders[1] else { panic!("second should be unparsed") };
    assert_eq!(unparsed.order_id.as_deref(), Some("3012345678901"));
    assert!(unparsed.reason.contains("orderTotalPrice"));
    assert!(!unparsed.reason.contains("13812345678"));

    let refused = json!({"jingdong_pop_order_search_responce": {"code": "0", "searchorderinfo_result": {
        "apiResult": {"success": false, "chineseErrCode": "查询时间跨度不能超过一个月", "numberCode": 10100030}}}});
    let error = search_page(200, &refused.to_string()).unwrap_err();
    assert_eq!((error.kind, error.code.as_deref()), (ErrorKind::Rejected, Some("10100030")));
}
