//! The store, on both backends: idempotent upserts that never move backwards, quarantine,
//! cursors that move only with their data, job runs.

use flagsync_market::{Fetched, OrderStatus, Unparsed};

use crate::support::{TestStore, at, backend_suite, order};

backend_suite!(
    upsert_is_idempotent_and_never_moves_backwards,
    unparsable_payloads_are_quarantined_and_the_rest_stored,
    cursor_moves_with_its_batch_and_never_backwards,
    runs_are_recorded,
);

async fn upsert_is_idempotent_and_never_moves_backwards(store: TestStore) {
    store.register_store("tmall", "taobao").await.unwrap();
    let big_id = "2600000000000000123"; // above 2^53
    let paid = order(big_id, at(1, 0, 0), OrderStatus::Paid);
    let mut shipped = order(big_id, at(2, 0, 0), OrderStatus::Shipped);
    shipped.lines[0].quantity = 2;

    let first = store.ingest("tmall", &[Fetched::Order(Box::new(paid.clone()))], None, None).await.unwrap();
    assert_eq!((first.inserted, first.updated, first.unchanged), (1, 0, 0));
    let again = store.ingest("tmall", &[Fetched::Order(Box::new(paid.clone()))], None, None).await.unwrap();
    assert_eq!((again.inserted, again.updated, again.unchanged), (0, 0, 1));
    let newer =
        store.ingest("tmall", &[Fetched::Order(Box::new(shipped.clone()))], None, None).await.unwrap();
    assert_eq!(newer.updated, 1);
    let stale = store.ingest("tmall", &[Fetched::Order(Box::new(paid))], None, None).await.unwrap();
    assert_eq!(stale.unchanged, 1, "a stale modified is ignored");

    let stored = store.order("tmall", big_id).await.unwrap().unwrap();
    assert_eq!(stored.order.status, OrderStatus::Shipped);
    assert_eq!(stored.order.modified_at, at(2, 0, 0));
    assert_eq!(stored.order.lines.len(), 1);
    assert_eq!(stored.order.lines[0].quantity, 2);
    assert_eq!(stored.order.order_id, big_id);
    assert_eq!(stored.revisions, 2);
    assert_eq!(store.count_orders("tmall").await.unwrap(), 1);
}

async fn unparsable_payloads_are_quarantined_and_the_rest_stored(store: TestStore) {
    store.register_store("tmall", "taobao").await.unwrap();
    let batch = vec![
        Fetched::Order(Box::new(order("1001", at(1, 0, 0), OrderStatus::Paid))),
        Fetched::Unparsed(Unparsed {
            api: "taobao.trade.fullinfo.get".into(),
            order_id: Some("1002".into()),
            raw: "{\"tid\":1002,\"modified\":12}".into(),
            reason: "trade 1002: modified: expected a time, got 12".into(),
        }),
        Fetched::Order(Box::new(order("1003", at(1, 0, 0), OrderStatus::Paid))),
    ];
    let stats = store.ingest("tmall", &batch, None, None).await.unwrap();
    assert_eq!((stats.inserted, stats.quarantined), (2, 1));
    let quarantined = store.quarantine(Some("tmall")).await.unwrap();
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0].order_id.as_deref(), Some("1002"));
    assert!(quarantined[0].reason.contains("modified"));
    assert_eq!(quarantined[0].payload, "{\"tid\":1002,\"modified\":12}");
    assert_eq!(store.quarantine(None).await.unwrap().len(), 1);
    assert!(store.quarantine(Some("jd")).await.unwrap().is_empty());
}

async fn cursor_moves_with_its_batch_and_never_backwards(store: TestStore) {
    store.register_store("jd", "jd").await.unwrap();
    assert_eq!(store.cursor("jd", "orders").await.unwrap(), None);
    let batch = [Fetched::Order(Box::new(order("77", at(1, 0, 0), OrderStatus::Paid)))];
    store.ingest("jd", &batch, Some(("orders", at(3, 0, 0))), None).await.unwrap();
    assert_eq!(store.cursor("jd", "orders").await.unwrap(), Some(at(3, 0, 0)));
    store.ingest("jd", &[], Some(("orders", at(2, 0, 0))), None).await.unwrap();
    assert_eq!(store.cursor("jd", "orders").await.unwrap(), Some(at(3, 0, 0)), "cursor never moves back");

    // A batch that fails to commit leaves the cursor where it was.
    store.close().await;
    assert!(store.ingest("jd", &batch, Some(("orders", at(4, 0, 0))), None).await.is_err());
}

async fn runs_are_recorded(store: TestStore) {
    let id = store.start_run("tmall", "orders", "manual", &serde_json::json!({"order": "1"})).await.unwrap();
    store
        .finish_run(id, flagsync::store::RunOutcome::Succeeded, &serde_json::json!({"inserted": 3}), None)
        .await
        .unwrap();
    let runs = store.runs(Some("tmall"), 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].outcome, "succeeded");
    assert_eq!(runs[0].counts["inserted"], 3);
    assert!(runs[0].finished_at.is_some());
}
