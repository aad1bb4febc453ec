//! The connector contract against the in-process sandbox, the same test for both
//! marketplaces: shipments reach the marketplace once, stock pushes land, a corrupt record
//! is quarantined while the rest of its page is stored, and one run syncs both stores.

use std::sync::Arc;

use chrono::TimeDelta;
use flagsync::app::{App, AppOptions};
use flagsync::sync::orders::{OrderPull, sync_orders};
use flagsync_market::{Clock, ListingRef, Marketplace, OrderStatus, Shipment, ShipmentOutcome, StockUpdate};
use flagsync_sandbox::clock::SimClock;
use flagsync_sandbox::faults::Fault;
use flagsync_sandbox::scenario::{ScenarioConfig, generate};

use crate::exactly_once::{SandboxClock, fast_retry, incremental, start_sandbox, store_config, test_config};
use crate::support::{Backend, test_store};

const STORES: [(&str, &str); 2] = [("tmall", "taobao"), ("jd", "jd")];

/// A sandbox with a small scenario played to its end, and an app on a fresh SQLite store.
async fn setup(seed: u64) -> (App, flagsync::sandbox::EmbeddedSandbox, SimClock, crate::support::TestStore) {
    let store = test_store(Backend::Sqlite).await.unwrap();
    let start = ScenarioConfig::default().start;
    let clock = SimClock::manual(start);
    let sandbox = start_sandbox(&clock, seed).await;
    let scenario = ScenarioConfig {
        seed,
        orders: 120,
        duration: TimeDelta::hours(1),
        refund_share: 0.0,
        unpaid_share: 0.0,
        ..ScenarioConfig::default()
    };
    sandbox.top.load_scenario(generate(&scenario));
    sandbox.jos.load_scenario(generate(&ScenarioConfig { seed: seed + 1, ..scenario }));
    clock.advance(TimeDelta::minutes(90));
    let config = test_config(STORES.iter().map(|(id, kind)| store_config(id, kind)).collect());
    let options = AppOptions { retry: fast_retry(), ..AppOptions::default() };
    let client_clock: Arc<dyn Clock> = Arc::new(SandboxClock(clock.clone()));
    let app = App::build_with(config, &options, client_clock, Some(sandbox.clone()), store.store.clone())
        .await
        .unwrap();
    (app, sandbox, clock, store)
}

async fn pull(app: &App, store_id: &str) -> flagsync::sync::orders::OrderSyncReport {
    incremental(app, store_id).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_syncs_a_tmall_and_a_jd_store() {
    let (app, sandbox, _clock, _store) = setup(21).await;
    for (store_id, _) in STORES {
        let report = pull(&app, store_id).await;
        assert!(report.inserted > 50, "{store_id}: {report:?}");
    }
    assert_eq!(app.store.count_orders("tmall").await.unwrap() as usize, sandbox.top.trades().len());
    let jd_visible = sandbox.jos.orders().into_iter().filter(|o| o.visible).count();
    assert_eq!(app.store.count_orders("jd").await.unwrap() as usize, jd_visible);
    // A second run finds nothing new.
    for (store_id, _) in STORES {
        let again = pull(&app, store_id).await;
        assert_eq!((again.inserted, again.updated), (0, 0), "{store_id}: {again:?}");
    }
}

/// A paid, unshipped order of a store, with its first line.
async fn paid_order(app: &App, store_id: &str) -> flagsync_market::Order {
    pull(app, store_id).await;
    for summary in app.store.order_summaries(store_id).await.unwrap() {
        let stored = app.store.order(store_id, &summary.order_id).await.unwrap().unwrap();
        if stored.order.status == OrderStatus::Paid {
            return stored.order;
        }
    }
    panic!("{store_id}: no paid order in the scenario");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shipment_pushed_twice_reaches_the_marketplace_once() {
    let (app, sandbox, _clock, _store) = setup(22).await;
    for (store_id, kind) in STORES {
        let order = paid_order(&app, store_id).await;
        let line = &order.lines[0];
        let carrier = if kind == "taobao" { "SF" } else { "467" };
        let shipment = Shipment {
            order_id: order.order_id.clone(),
            line_ids: vec![],
            carrier: carrier.into(),
            waybill: "SF1234567890".into(),
            serials: vec![flagsync_market::LineSerials {
                line_id: line.line_id.clone(),
                serials: vec!["860000000000017".into()],
            }],
        };
        let market = app.market(store_id).unwrap();
        assert_eq!(market.push_shipment(&shipment).await.unwrap(), ShipmentOutcome::Shipped, "{store_id}");
        assert_eq!(
            market.push_shipment(&shipment).await.unwrap(),
            ShipmentOutcome::AlreadyShipped,
            "{store_id}"
        );
        match kind {
            "taobao" => {
                let applied: Vec<_> = sandbox
                    .top
                    .shipments()
                    .into_iter()
                    .filter(|s| s.tid.to_string() == order.order_id)
                    .collect();
                assert_eq!(applied.len(), 1);
                let oid: i64 = line.line_id.parse().unwrap();
                assert_eq!(
                    applied[0].ident_codes.get(&oid),
                    Some(&vec!["860000000000017".to_string()]),
                    "IMEIs reported"
                );
            }
            _ => {
                let applied =
                    sandbox.jos.shipments().into_iter().filter(|s| s.order_id == order.order_id).count();
                assert_eq!(applied, 1);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ambiguous_shipment_is_re_read_not_sent_twice() {
    let (app, sandbox, _clock, _store) = setup(23).await;
    for (store_id, kind) in STORES {
        let order = paid_order(&app, store_id).await;
        let (faults, api) = match kind {
            "taobao" => (&sandbox.top_faults, "taobao.logistics.offline.send"),
            _ => (&sandbox.jos_faults, "jingdong.pop.order.shipment"),
        };
        faults.script(Some(api), Fault::ApplyThenDrop);
        let shipment = Shipment {
            order_id: order.order_id.clone(),
            line_ids: vec![],
            carrier: if kind == "taobao" { "YTO".into() } else { "463".into() },
            waybill: "YT9876543210".into(),
            serials: vec![],
        };
        let outcome = app.market(store_id).unwrap().push_shipment(&shipment).await.unwrap();
        assert_eq!(outcome, ShipmentOutcome::AlreadyShipped, "{store_id}: the applied call is recognised");
        let applied = match kind {
            "taobao" => {
                sandbox.top.shipments().iter().filter(|s| s.tid.to_string() == order.order_id).count()
            }
            _ => sandbox.jos.shipments().iter().filter(|s| s.order_id == order.order_id).count(),
        };
        assert_eq!(applied, 1, "{store_id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_pushes_land_with_one_result_per_listing() {
    let (app, sandbox, _clock, _store) = setup(24).await;
    // Tmall: 20 SKUs of 5 items, grouped per item into skus.quantity.update calls.
    let tmall = app.market("tmall").unwrap();
    let updates: Vec<StockUpdate> = (0..20)
        .map(|n| {
            let listing = sandbox.top.listing(n);
            StockUpdate {
                listing: ListingRef {
                    item_id: listing.num_iid.to_string(),
                    sku_id: Some(listing.sku_id.to_string()),
                },
                quantity: 7 + n as i64,
            }
        })
        .collect();
    let results = tmall.push_stock(&updates).await.unwrap();
    assert_eq!(results.len(), updates.len());
    for (n, result) in results.iter().enumerate() {
        assert_eq!(result.outcome.as_ref().ok(), Some(&(7 + n as i64)), "{:?}", result.listing);
        let listing = sandbox.top.listing(n);
        assert_eq!(sandbox.top.quantity(listing.num_iid, Some(listing.sku_id)), Some(7 + n as i64));
    }
    let live = tmall.read_stock(&[updates[3].listing.clone()]).await.unwrap();
    assert_eq!(live.iter().find(|l| l.listing == updates[3].listing).map(|l| l.quantity), Some(10));

    // JD: one unknown SKU fails alone.
    let jd = app.market("jd").unwrap();
    let good = sandbox.jos.listing(2);
    let updates = vec![
        StockUpdate {
            listing: ListingRef { item_id: good.ware_id.to_string(), sku_id: Some(good.sku_id.to_string()) },
            quantity: 42,
        },
        StockUpdate { listing: ListingRef { item_id: "1".into(), sku_id: Some("999".into()) }, quantity: 1 },
    ];
    let results = jd.push_stock(&updates).await.unwrap();
    assert_eq!(results[0].outcome.as_ref().ok(), Some(&42));
    assert!(results[1].outcome.is_err());
    assert_eq!(sandbox.jos.quantity(good.sku_id), Some(42));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_record_is_quarantined_and_the_rest_stored() {
    let (app, sandbox, _clock, _store) = setup(25).await;
    for (store_id, kind) in STORES {
        let api = if kind == "taobao" { "taobao.trade.fullinfo.get" } else { "jingdong.pop.order.search" };
        let faults = if kind == "taobao" { &sandbox.top_faults } else { &sandbox.jos_faults };
        // TOP fetches each trade in full: the first fullinfo reply carries a corrupt trade.
        // JD's search pages carry whole orders: every page has one until the fault is lifted.
        if kind == "taobao" {
            faults.script(Some(api), Fault::CorruptRecord);
        } else {
            faults.random(Some(api), Fault::CorruptRecord, 1.0);
        }
        let report = pull(&app, store_id).await;
        faults.clear();
        assert!(report.quarantined >= 1, "{store_id}: {report:?}");
        let rows = app.store.quarantine(Some(store_id)).await.unwrap();
        assert_eq!(rows.len() as u64, report.quarantined);
        assert!(
            rows.iter().all(|r| r.reason.contains("modified") && r.payload.contains("\"modified\":12")),
            "{rows:?}"
        );
        let stored = app.store.count_orders(store_id).await.unwrap() as u64;
        assert!(stored > 50, "{store_id}: the rest of each page is stored ({stored})");
        let truth = if kind == "taobao" {
            sandbox.top.trades().len()
        } else {
            sandbox.jos.orders().iter().filter(|o| o.visible).count()
        };
        assert!(
            stored as usize + rows.len() >= truth,
            "{store_id}: nothing is lost ({stored} + {} < {truth})",
            rows.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_range_and_one_order_can_be_re_pulled_by_hand() {
    let (app, _sandbox, clock, _store) = setup(26).await;
    for (store_id, _) in STORES {
        let market: &Arc<dyn Marketplace> = app.market(store_id).unwrap();
        let now = clock.now();
        let range = OrderPull::Range { since: now - TimeDelta::hours(4), until: now };
        let report = sync_orders(
            &app.store,
            store_id,
            market.as_ref(),
            app.clock.as_ref(),
            &app.order_sync_options(),
            &range,
        )
        .await
        .unwrap();
        assert!(report.inserted > 50);
        assert_eq!(report.cursor, None, "a manual range does not move the cursor");
        let some = app.store.order_summaries(store_id).await.unwrap().remove(0);
        let one = OrderPull::Order(some.order_id.clone());
        let report = sync_orders(
            &app.store,
            store_id,
            market.as_ref(),
            app.clock.as_ref(),
            &app.order_sync_options(),
            &one,
        )
        .await
        .unwrap();
        assert_eq!((report.received, report.unchanged), (1, 1), "{store_id}");
    }
}
