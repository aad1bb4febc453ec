//! Recorded gateway replies (tests/fixtures/taobao) replayed through the connector with no
//! server: the domain results a sync job relies on.

use std::sync::Arc;
use std::time::Duration;

use flagsync_market::transport::{Exchange, HttpReply, Replay};
use flagsync_market::{
    ErrorKind, Fetched, LineSerials, ListingRef, Marketplace, Order, OrderStatus, PullError, RefundState,
    Shipment, ShipmentOutcome, StockUpdate, TimeWindow,
};

use super::*;
use crate::sign::{SignMethod, sign};
use crate::{TaobaoConnector, parse};

const TID_A: &str = "7091800003790954036";
const TID_B: &str = "2600000000000000100";
const TID_C: &str = "2600000000000000200";
const TID_D: &str = "2600000000000000300";

fn replay(sub: &str) -> Arc<Replay> {
    Arc::new(Replay::from_dir(&fixtures(sub)).unwrap())
}

fn connector(app_key: &str, transport: Arc<dyn flagsync_market::transport::Transport>) -> TaobaoConnector {
    TaobaoConnector::new(config(app_key), transport, clock())
}

fn window() -> TimeWindow {
    TimeWindow { start: utc(2026, 11, 10, 16, 0, 0), end: utc(2026, 11, 10, 16, 30, 0) }
}

fn order(fetched: &Fetched) -> &Order {
    match fetched {
        Fetched::Order(order) => order,
        Fetched::Unparsed(bad) => panic!("expected an order, got unparsed: {}", bad.reason),
    }
}

fn exchange(path: &str) -> Exchange {
    let text = std::fs::read_to_string(fixtures(path)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn reply_of(exchange: &Exchange) -> HttpReply {
    exchange.reply.clone().unwrap()
}

#[tokio::test]
async fn pull_orders_maps_recorded_trades_and_quarantines_the_corrupt_one() {
    let replay = replay("pull_orders");
    let spy = Spy::new(replay.clone());
    let connector = connector("replay-pull", spy.clone());
    let mut sink = CollectSink::default();
    let stats = connector.pull_orders(window(), &mut sink).await.unwrap();

    assert_eq!(replay.remaining(), 0, "every recorded exchange is used");
    assert_eq!((stats.orders, stats.unparsed, stats.pages, stats.calls), (4, 1, 4, 9));
    // One batch per list page that brought something new; the confirming re-read adds none.
    assert_eq!(sink.batches.len(), 2);
    let all = sink.all();

    // Trade A: a tid above 2^53 sent as a JSON number, exact; Beijing times in UTC; fen.
    let a = order(all[0]);
    assert_eq!(a.order_id, TID_A);
    assert_eq!(a.status, OrderStatus::Paid);
    assert_eq!(a.created_at, utc(2026, 11, 10, 16, 0, 5));
    assert_eq!(a.modified_at, utc(2026, 11, 10, 16, 20, 0));
    assert_eq!(a.paid_at, Some(utc(2026, 11, 10, 16, 1, 0)));
    assert_eq!((a.payment_fen, a.total_fen, a.post_fee_fen), (499_950, 519_900, 0));
    assert_eq!(a.lines.len(), 1);
    let line = &a.lines[0];
    assert_eq!(line.line_id, "7091800003790954037");
    assert_eq!((line.item_id.as_str(), line.sku_id.as_deref()), ("600000000123", Some("5000000000042")));
    assert_eq!(line.outer_sku_id.as_deref(), Some("IPH16-256-BLK"));
    assert_eq!((line.quantity, line.price_fen, line.payment_fen), (1, 519_900, 499_950));
    assert_eq!(line.refund, RefundState::None);
    let receiver = a.receiver.as_ref().unwrap();
    assert_eq!((receiver.province.as_str(), receiver.city.as_str()), ("浙江省", "杭州市"));
    assert_eq!(receiver.mobile.expose(), "138****5678");
    assert!(a.contract.is_none());
    let body_a = reply_of(&exchange("pull_orders/00002-fullinfo-a-simplified.json")).body;
    assert!(body_a.contains(&a.raw), "raw is the trade object exactly as received");

    // Trade B: wrapped reply, zero-down contract phone held, contract from wtvertical.
    let b = order(all[1]);
    assert_eq!(b.order_id, TID_B);
    assert_eq!((b.status, b.platform_status.as_str()), (OrderStatus::Held, "WAIT_PRE_AUTH_CONFIRM"));
    assert_eq!(b.paid_at, None);
    assert_eq!(b.lines[0].sku_id.as_deref(), Some("5000000000200"));
    assert_eq!(b.lines[0].refund, RefundState::Requested);
    let contract = b.contract.as_ref().expect("contract data");
    assert_eq!(contract.phone_number.expose(), "13800001111");
    assert_eq!(
        (contract.plan_code.as_str(), contract.package_code.as_str()),
        ("PLAN-5G-129", "PKG-24M-0YUAN")
    );
    assert_eq!(contract.deposit_fen, Some(20_000));
    assert_eq!((contract.user_type.as_deref(), contract.contract_type.as_deref()), (Some("1"), Some("0")));

    // Trade C is quarantined with the field named; D in the same batch still goes through.
    match all[2] {
        Fetched::Unparsed(bad) => {
            assert_eq!(bad.order_id.as_deref(), Some(TID_C));
            assert_eq!(bad.reason, format!("trade {TID_C}: modified: expected a time, got 12"));
            assert!(bad.raw.contains("\"modified\":12"));
        }
        Fetched::Order(_) => panic!("the corrupt trade must not parse"),
    }
    let d = order(all[3]);
    assert_eq!((d.order_id.as_str(), d.status), (TID_D, OrderStatus::Refunded));
    assert_eq!((d.post_fee_fen, d.lines[0].quantity, d.lines[0].price_fen), (1000, 2, 99_950));
    assert_eq!(d.lines[0].refund, RefundState::Refunded);

    // The list calls: backward paging then one confirming forward pass, every type asked
    // for, totals kept, signed in Beijing time with nothing empty sent.
    let requests = spy.requests();
    let lists: Vec<_> = requests.iter().filter(|r| r.api == crate::LIST_API).collect();
    let pages: Vec<_> = lists.iter().map(|r| param(r, "page_no").unwrap()).collect();
    assert_eq!(pages, ["1", "2", "1", "2"]);
    for request in &requests {
        assert!(request.params.iter().all(|(n, v)| !n.is_empty() && !v.is_empty()), "{}", request.api);
        assert_eq!(param(request, "timestamp"), Some("2026-11-11 00:30:00"));
        let signature = param(request, "sign").unwrap();
        assert_eq!(sign(SignMethod::HmacSha256, SECRET, &request.params), signature);
    }
    for list in &lists {
        assert!(param(list, "type").unwrap().split(',').any(|t| t == "pre_auth_type"));
        assert_eq!(param(list, "use_has_next"), Some("false"));
        assert_eq!(param(list, "start_modified"), Some("2026-11-11 00:00:00"));
    }
    let wt = requests.iter().find(|r| r.api == crate::WTVERTICAL_API).unwrap();
    assert_eq!(param(wt, "tids"), Some(TID_B));
}

#[tokio::test]
async fn the_sink_can_decline_trades_it_already_holds() {
    let replay = replay("pull_orders");
    let spy = Spy::new(replay.clone());
    let connector = connector("replay-decline", spy.clone());
    let mut sink = CollectSink { known: vec![TID_C.to_string()], ..CollectSink::default() };
    connector.pull_orders(window(), &mut sink).await.unwrap();
    let fullinfo_tids: Vec<_> = spy
        .requests()
        .iter()
        .filter(|r| r.api == crate::FULLINFO_API)
        .map(|r| param(r, "tid").unwrap().to_string())
        .collect();
    assert_eq!(fullinfo_tids, [TID_A, TID_B, TID_D]);
}

#[tokio::test]
async fn a_window_wider_than_a_day_is_refused_before_any_call() {
    let replay = replay("pull_orders");
    let connector = connector("replay-wide", replay.clone());
    let wide = TimeWindow { start: utc(2026, 11, 9, 16, 0, 0), end: utc(2026, 11, 10, 16, 0, 1) };
    let mut sink = CollectSink::default();
    match connector.pull_orders(wide, &mut sink).await {
        Err(PullError::Connector(e)) => {
            assert_eq!(e.kind, ErrorKind::Rejected);
            assert!(e.message.contains("1 day"), "{}", e.message);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(replay.remaining(), 9);
}

#[tokio::test]
async fn fetch_order_reads_wrapped_contract_data() {
    let replay = replay("fetch_order");
    let connector = connector("replay-fetch", replay.clone());
    let fetched = connector.fetch_order(TID_B).await.unwrap();
    let b = order(&fetched);
    assert_eq!(b.order_id, TID_B);
    let contract = b.contract.as_ref().unwrap();
    assert_eq!(contract.deposit_fen, Some(20_000));
    assert_eq!(contract.user_type.as_deref(), Some("1"));
    assert_eq!(contract.owner_name.expose(), "王*");
    assert_eq!(replay.remaining(), 0);
    assert_eq!(connector.fetch_order("12a").await.unwrap_err().kind, ErrorKind::Rejected);
}

#[tokio::test]
async fn push_stock_batches_per_item_and_reports_each_listing() {
    let replay = replay("push_stock");
    let spy = Spy::new(replay.clone());
    let connector = connector("replay-stock", spy.clone());
    let listing =
        |item: &str, sku: Option<&str>| ListingRef { item_id: item.into(), sku_id: sku.map(Into::into) };
    let updates = vec![
        StockUpdate { listing: listing("600000000123", Some("5000000000042")), quantity: 7 },
        StockUpdate { listing: listing("600000000999", None), quantity: 3 },
        StockUpdate { listing: listing("600000000123", Some("5000000000043")), quantity: 0 },
        StockUpdate { listing: listing("600000000123", Some("5000000000044")), quantity: -1 },
        StockUpdate { listing: listing("600000000777", Some("5000000000777")), quantity: 4 },
    ];
    let results = connector.push_stock(&updates).await.unwrap();
    assert_eq!(results.len(), 5);
    for (result, update) in results.iter().zip(&updates) {
        assert_eq!(result.listing, update.listing, "results come back in input order");
    }
    assert_eq!(results[0].outcome.as_ref().ok(), Some(&7));
    assert_eq!(results[1].outcome.as_ref().ok(), Some(&3));
    assert_eq!(results[2].outcome.as_ref().ok(), Some(&0));
    let negative = results[3].outcome.as_ref().unwrap_err();
    assert_eq!(negative.kind, ErrorKind::Rejected);
    assert!(negative.message.contains("negative"));
    let refused = results[4].outcome.as_ref().unwrap_err();
    assert_eq!(
        (refused.kind, refused.sub_code.as_deref()),
        (ErrorKind::Rejected, Some("isv.item-not-exist"))
    );
    assert_eq!(replay.remaining(), 0);

    let requests = spy.requests();
    assert_eq!(requests.len(), 3, "the negative quantity never leaves the process");
    assert_eq!(param(&requests[0], "skuid_quantities"), Some("5000000000042:7;5000000000043:0"));
    assert_eq!(param(&requests[0], "type"), Some("1"));
    assert_eq!(param(&requests[1], "quantity"), Some("3"));
}

fn shipment(tid: &str, lines: &[&str], waybill: &str, carrier: &str) -> Shipment {
    Shipment {
        order_id: tid.into(),
        line_ids: lines.iter().map(|l| l.to_string()).collect(),
        carrier: carrier.into(),
        waybill: waybill.into(),
        serials: Vec::new(),
    }
}

#[tokio::test]
async fn push_shipment_reports_imeis() {
    let replay = replay("push_shipment/success");
    let spy = Spy::new(replay.clone());
    let connector = connector("replay-ship", spy.clone());
    let mut s = shipment(TID_A, &[], "SF1234567890", "SF");
    s.serials = vec![LineSerials {
        line_id: "7091800003790954037".into(),
        serials: vec!["356938035643809".into(), "356938035643817".into()],
    }];
    assert_eq!(connector.push_shipment(&s).await.unwrap(), ShipmentOutcome::Shipped);
    let sent = &spy.requests()[0];
    assert_eq!(param(sent, "feature"), Some("identCode=7091800003790954037:356938035643809,356938035643817"));
    assert_eq!(param(sent, "is_split"), None);
    assert_eq!((param(sent, "out_sid"), param(sent, "company_code")), (Some("SF1234567890"), Some("SF")));
}

#[tokio::test]
async fn b04_with_a_shipped_re_read_is_already_shipped() {
    let replay = replay("push_shipment/b04");
    let spy = Spy::new(replay.clone());
    let connector = connector("replay-b04", spy.clone());
    let outcome = connector.push_shipment(&shipment(TID_A, &[], "SF1234567890", "SF")).await.unwrap();
    assert_eq!(outcome, ShipmentOutcome::AlreadyShipped);
    assert_eq!(spy.apis(), [crate::SHIP_API, crate::FULLINFO_API]);
}

#[tokio::test]
async fn b04_on_a_closed_trade_is_rejected_with_the_platform_code() {
    let replay = replay("push_shipment/closed");
    let connector = connector("replay-closed", replay.clone());
    let error = connector.push_shipment(&shipment(TID_D, &[], "SF1234567891", "SF")).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Rejected);
    assert_eq!(error.code.as_deref(), Some("15"));
    assert_eq!(error.sub_code.as_deref(), Some("isv.logistics-offline-service-error:B04"));
    assert!(error.message.contains("TRADE_CLOSED"));
}

#[tokio::test(start_paused = true)]
async fn a_lost_reply_is_re_read_before_sending_again() {
    let replay = replay("push_shipment/ambiguous");
    let spy = Spy::new(replay.clone());
    let connector = connector("replay-lost", spy.clone());
    let outcome = connector.push_shipment(&shipment(TID_A, &[], "SF1234567890", "SF")).await.unwrap();
    assert_eq!(outcome, ShipmentOutcome::Shipped);
    assert_eq!(spy.apis(), [crate::SHIP_API, crate::FULLINFO_API, crate::SHIP_API]);
}

#[tokio::test]
async fn a_partial_shipment_is_sent_as_a_split() {
    let replay = replay("push_shipment/split");
    let spy = Spy::new(replay.clone());
    let connector = connector("replay-split", spy.clone());
    let outcome = connector
        .push_shipment(&shipment(TID_C, &["2600000000000000201"], "YT9876543210", "YTO"))
        .await
        .unwrap();
    assert_eq!(outcome, ShipmentOutcome::Shipped);
    let requests = spy.requests();
    assert_eq!(spy.apis(), [crate::FULLINFO_API, crate::SHIP_API]);
    assert_eq!(param(&requests[1], "is_split"), Some("1"));
    assert_eq!(param(&requests[1], "sub_tid"), Some("2600000000000000201"));
}

#[test]
fn recorded_errors_are_classified() {
    let table: &[(&str, ErrorKind, Option<u64>)] = &[
        ("code7-app-call-limited.json", ErrorKind::Throttled, Some(31062)),
        ("code7-api-ban-41s.json", ErrorKind::Throttled, Some(41)),
        ("code27-invalid-session.json", ErrorKind::Auth, None),
        ("code40-missing-arguments.json", ErrorKind::Rejected, None),
        ("code15-b04-already-shipped.json", ErrorKind::Rejected, None),
        ("code520-isp-remote-service-timeout.json", ErrorKind::Transient, None),
        ("code15-trade-service-rejection.json", ErrorKind::Throttled, Some(180)),
        ("truncated-body.json", ErrorKind::Malformed, None),
        ("http502-html.json", ErrorKind::Transient, None),
    ];
    for (file, kind, wait) in table {
        let exchange = exchange(&format!("errors/{file}"));
        let error = parse::payload(&exchange.request.api, &reply_of(&exchange)).unwrap_err();
        assert_eq!(error.kind, *kind, "{file}");
        assert_eq!(error.retry_after, wait.map(Duration::from_secs), "{file}");
        assert_eq!(error.platform, "taobao");
    }
    let b04 = exchange("errors/code15-b04-already-shipped.json");
    let error = parse::payload(&b04.request.api, &reply_of(&b04)).unwrap_err();
    assert_eq!(error.sub_code.as_deref(), Some("isv.logistics-offline-service-error:B04"));
}

#[tokio::test(start_paused = true)]
async fn a_ban_is_waited_out_before_the_retry() {
    let ban = exchange("errors/code7-api-ban-41s.json");
    let mut banned = ban.clone();
    banned.request.api = crate::SELLER_API.into();
    let mut ok = banned.clone();
    ok.reply = Ok(HttpReply { status: 200, body: r#"{"user":{"nick":"operator旗舰店"}}"#.into() });
    let replay = Arc::new(Replay::from_exchanges(vec![banned, ok]));
    let connector = connector("replay-ban", replay.clone());
    let start = tokio::time::Instant::now();
    connector.check_credentials().await.unwrap();
    assert!(start.elapsed() >= Duration::from_secs(41));
    assert_eq!(replay.remaining(), 0);
}

#[test]
fn real_samples_parse() {
    // The trimmed Jushita sample has no tid or status: it is kept raw, exactly.
    let jushita = exchange("samples/jushita-fullinfo.json");
    let reply = reply_of(&jushita);
    let bad = parse::fullinfo(crate::FULLINFO_API, &reply).unwrap().unwrap_err();
    assert_eq!(bad.reason, "trade ?: tid: missing");
    assert!(bad.raw.contains("\"oid\":452790065331038"));
    assert!(reply.body.contains(&bad.raw));

    let send = exchange("samples/logistics-offline-send-success.json");
    assert!(parse::shipping(crate::SHIP_API, &reply_of(&send)).unwrap());
}
