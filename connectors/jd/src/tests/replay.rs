//! The recorded fixtures in `tests/fixtures/jd`, replayed with no server through every
//! connector operation.

use std::path::Path;
use std::sync::Arc;

use chrono::{TimeDelta, TimeZone, Utc};
use flagsync_market::transport::Replay;
use flagsync_market::{
    Clock, ErrorKind, Fetched, ListingRef, ManualClock, Marketplace, OrderStatus, Shipment, ShipmentOutcome,
    StockUpdate, TimeWindow,
};

use super::{Collect, config};
use crate::{JdConfig, JdConnector};

#[tokio::test]
async fn recorded_exchanges_map_to_domain_results() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/jd");
    let replay = Arc::new(Replay::from_dir(&dir).unwrap());
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 10, 16, 10, 0).unwrap());
    let connector =
        JdConnector::new(JdConfig { page_size: 2, ..config() }, replay.clone(), Arc::new(clock.clone()));

    let mut sink = Collect::default();
    let window = TimeWindow { start: clock.now() - TimeDelta::minutes(10), end: clock.now() };
    let stats = connector.pull_orders(window, &mut sink).await.unwrap();
    assert_eq!((stats.orders, stats.unparsed, stats.pages), (4, 1, 3));
    let orders = sink.orders();
    let paused = orders.iter().find(|o| o.order_id == "301234567891").unwrap();
    assert_eq!(paused.status, OrderStatus::Held);
    assert_eq!(paused.lines.len(), 2);
    assert_eq!(paused.post_fee_fen, 1000);
    let cancelled = orders.iter().find(|o| o.order_id == "301234567892").unwrap();
    assert_eq!((cancelled.status, cancelled.paid_at), (OrderStatus::Cancelled, None));
    let unparsed = sink.got.iter().find_map(|f| match f {
        Fetched::Unparsed(u) => Some(u),
        Fetched::Order(_) => None,
    });
    assert!(unparsed.unwrap().reason.contains("orderPayment"));

    let Fetched::Order(order) = connector.fetch_order("301234567890").await.unwrap() else {
        panic!("order should parse")
    };
    assert_eq!((order.status, order.payment_fen), (OrderStatus::Paid, 489_900));
    assert_eq!(order.lines[0].outer_sku_id.as_deref(), Some("HW-P70-512-BLK"));

    let listing = |sku: &str| ListingRef { item_id: "100000123".into(), sku_id: Some(sku.into()) };
    let results = connector
        .push_stock(&[
            StockUpdate { listing: listing("100012345678"), quantity: 5 },
            StockUpdate { listing: listing("100023456789"), quantity: 3 },
            StockUpdate { listing: listing("100034567890"), quantity: -2 },
        ])
        .await
        .unwrap();
    assert_eq!(results[0].outcome.as_ref().ok(), Some(&5));
    assert!(results[1].outcome.as_ref().unwrap_err().message.contains("not on sale"));
    assert_eq!(results[2].outcome.as_ref().unwrap_err().kind, ErrorKind::Rejected);

    let shipment = Shipment {
        order_id: "301234567890".into(),
        line_ids: vec![],
        carrier: "467".into(),
        waybill: "SF1400012345678".into(),
        serials: vec![],
    };
    assert_eq!(connector.push_shipment(&shipment).await.unwrap(), ShipmentOutcome::Shipped);
    assert_eq!(connector.push_shipment(&shipment).await.unwrap(), ShipmentOutcome::AlreadyShipped);

    let expired = connector.check_credentials().await.unwrap_err();
    assert_eq!((expired.kind, expired.code.as_deref()), (ErrorKind::Auth, Some("19")));
    let bad_sign = connector.check_credentials().await.unwrap_err();
    assert_eq!((bad_sign.kind, bad_sign.code.as_deref()), (ErrorKind::Rejected, Some("12")));
    assert_eq!(replay.remaining(), 0, "every recorded exchange was used");
}
