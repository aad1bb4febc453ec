//! The operator's pushes to the admin API's inbox (`POST /api/v1/operator/stock` and
//! `/shipments`), handled by the app: a stock snapshot lands in the ledger like a pulled
//! one (a stale one changes nothing), shipment notices queue one `ship` row each, consume
//! the order's reservations and reach the marketplace once however often they are pushed;
//! a bad body is refused naming the field, and nothing is written.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use flagsync::admin::OperatorInbox;
use flagsync::app::{App, AppOptions};
use flagsync::config::{CarrierCodes, Gateway, OperatorConfig};
use flagsync::inventory::{Catalog, Component, ComponentKind, SkuDef};
use flagsync::jobs::{JobKind, JobRequest, JobRunner, Trigger};
use flagsync::store::{OutboxFilter, OutboxState};
use flagsync_market::Clock;
use flagsync_sandbox::clock::SimClock;
use flagsync_sandbox::scenario::{BuyerEvent, EventKind, ScenarioConfig};
use secrecy::SecretString;
use serde_json::json;

use crate::exactly_once::{SandboxClock, fast_retry, start_sandbox, store_config, test_config};
use crate::support::{Backend, test_store};

fn handset(n: u32) -> Component {
    Component { kind: ComponentKind::Stock, code: format!("SKU-{n:05}") }
}

async fn operator_pushes_land_once_and_bad_bodies_change_nothing(backend: Backend) {
    let Some(store) = test_store(backend).await else { return };
    let clock = SimClock::manual(ScenarioConfig::default().start);
    let sandbox = start_sandbox(&clock, 5).await;
    let mut config = test_config(vec![store_config("tmall", "taobao")]);
    config.sync.settle_delay = Duration::from_secs(5);
    config.catalog = Catalog {
        skus: (4..8)
            .map(|n| {
                let code = format!("SKU-{n:05}");
                (
                    code.clone(),
                    SkuDef { code, kind_name: "x".into(), kind: ComponentKind::Stock, safety_stock: 0 },
                )
            })
            .collect::<BTreeMap<_, _>>(),
        bundles: BTreeMap::new(),
    };
    config.operator = Some(OperatorConfig {
        gateway: Gateway::Sandbox,
        key_id: flagsync::sandbox::OPERATOR_KEY_ID.into(),
        secret: SecretString::from(flagsync::sandbox::OPERATOR_SECRET.to_string()),
    });
    config.carriers =
        [("SF".to_string(), CarrierCodes { taobao: Some("SF".into()), jd: Some("467".into()) })].into();
    let catalog = config.catalog.clone();
    let options = AppOptions { retry: fast_retry(), ..AppOptions::default() };
    let client_clock: Arc<dyn Clock> = Arc::new(SandboxClock(clock.clone()));
    let app = App::build_with(config, &options, client_clock, Some(sandbox.clone()), store.store.clone())
        .await
        .unwrap();
    let level = |n| {
        let app = &app;
        let catalog = &catalog;
        async move { app.store.component_levels(catalog).await.unwrap()[&handset(n)] }
    };

    // Stock: bad bodies name the field and write nothing.
    let bad = app.stock(json!({"watermark": 5, "full": true, "levels": [{"sku": "SKU-00004", "warehouse": "WH-HZ", "on_hand": "ten"}], "resources": []})).await;
    let error = bad.unwrap_err();
    assert!(error.starts_with("body.levels[0].on_hand:"), "{error}");
    let bad = app.stock(json!({"watermark": 5, "full": true, "levels": [{"sku": "SKU-00004", "warehouse": "WH-HZ", "on_hand": -3}], "resources": []})).await;
    let error = bad.unwrap_err();
    assert!(error.contains("levels[0].on_hand: -3 is negative"), "{error}");
    let error = app.stock(json!({"full": true, "levels": [], "resources": []})).await.unwrap_err();
    assert!(error.contains("watermark"), "{error}");
    assert_eq!(level(4).await.on_hand, 0, "nothing was written");

    // A good snapshot lands; an older one afterwards is stale and changes nothing.
    let reply = app
        .stock(json!({"watermark": 10, "full": true, "resources": [], "levels": [
            {"sku": "SKU-00004", "warehouse": "WH-HZ", "on_hand": 40},
            {"sku": "SKU-00004", "warehouse": "WH-SH", "on_hand": 2},
            {"sku": "SKU-00005", "warehouse": "WH-HZ", "on_hand": 7}]}))
        .await
        .unwrap();
    assert_eq!((reply["levels"].as_u64(), reply["stale"].as_bool()), (Some(3), Some(false)), "{reply}");
    assert_eq!((level(4).await.on_hand, level(5).await.on_hand), (42, 7));
    let reply = app
        .stock(json!({"watermark": 9, "full": false, "resources": [], "levels": [
            {"sku": "SKU-00004", "warehouse": "WH-HZ", "on_hand": 1}]}))
        .await
        .unwrap();
    assert_eq!(reply["stale"].as_bool(), Some(true), "{reply}");
    assert_eq!(level(4).await.on_hand, 42);

    // A buyer pays for listing 4 (SKU-00004 in the sandbox's catalogue): reserved once pulled.
    let now = clock.now();
    let buy = |secs, kind| BuyerEvent { at: now + TimeDelta::seconds(secs), order: 0, kind };
    sandbox.top.load_scenario(vec![buy(1, EventKind::Place { lines: vec![(4, 1)] }), buy(2, EventKind::Pay)]);
    clock.advance(TimeDelta::seconds(60));
    let run = |job| {
        let app = &app;
        async move {
            let request = JobRequest {
                store_id: "tmall".into(),
                job,
                trigger: Trigger::Cli,
                params: json!({}),
                fence: None,
            };
            app.run(&request).await.unwrap()
        }
    };
    run(JobKind::Orders).await;
    let tid = sandbox.top.tid_of(0).unwrap().to_string();
    let merchant = sandbox.top.listing(4);
    assert_eq!(app.store.reservation_counts("tmall", &tid).await.unwrap(), (1, 0, 0), "{merchant:?}");

    // Shipment notices: a bad one is refused whole.
    let notice = |id: &str, store: &str| {
        json!({"notice_id": id, "sequence": 1, "store_id": store, "order_id": tid, "line_ids": [],
               "carrier": "SF", "waybill": "SF1234567890", "serials": [],
               "shipped_at": "2026-11-11T02:00:00Z", "stock_watermark": 11, "corrects": null})
    };
    let mut broken = notice("N-1", "tmall");
    broken["waybill"] = json!("");
    let error = app.shipments(json!({"notices": [notice("N-0", "tmall"), broken]})).await.unwrap_err();
    assert!(error.contains("notices[1].waybill: empty"), "{error}");
    let error = app.shipments(json!({"notices": [{"notice_id": "N-1"}]})).await.unwrap_err();
    assert!(error.starts_with("body.notices[0]"), "{error}");
    assert!(
        app.store
            .outbox_rows(&OutboxFilter::default())
            .await
            .unwrap()
            .iter()
            .all(|r| r.order_id != tid || r.kind != flagsync::store::OutboxKind::Ship)
    );

    // Pushed twice (a retry after a lost reply): one row, the reservation consumed once.
    let reply = app.shipments(json!({"notices": [notice("N-1", "tmall")]})).await.unwrap();
    assert_eq!(reply["queued"], 1, "{reply}");
    let reply =
        app.shipments(json!({"notices": [notice("N-1", "tmall"), notice("N-9", "nowhere")]})).await.unwrap();
    assert_eq!((reply["queued"].as_u64(), reply["already_known"].as_u64()), (Some(1), Some(1)), "{reply}");
    assert_eq!(reply["dead_lettered_unknown_store"], 1);
    assert_eq!(app.store.reservation_counts("tmall", &tid).await.unwrap(), (0, 0, 1), "consumed once");
    let dead = app
        .store
        .outbox_rows(&OutboxFilter { state: Some(OutboxState::Dead), ..OutboxFilter::default() })
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].dead_reason.as_deref().unwrap_or("").contains("\"nowhere\" is not in the config"));

    // The shipments job delivers it to Tmall exactly once.
    run(JobKind::Shipments).await;
    run(JobKind::Shipments).await;
    let shipped: Vec<_> = sandbox.top.shipments().into_iter().filter(|s| s.tid.to_string() == tid).collect();
    assert_eq!(shipped.len(), 1, "{shipped:?}");
    assert_eq!((shipped[0].company_code.as_str(), shipped[0].out_sid.as_str()), ("SF", "SF1234567890"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_pushes_land_once_and_bad_bodies_change_nothing_sqlite() {
    operator_pushes_land_once_and_bad_bodies_change_nothing(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_pushes_land_once_and_bad_bodies_change_nothing_postgres() {
    operator_pushes_land_once_and_bad_bodies_change_nothing(Backend::Postgres).await;
}
