//! The store, on both backends: idempotent upserts that never move backwards, quarantine,
//! cursors that move only with their data, job runs, withdrawals that never wait on a send
//! that is over.

use flagsync_market::{Fetched, OrderStatus, Unparsed};

use flagsync::store::{Finish, OutboxKind, OutboxState, fulfil_key, withdraw_key};

use crate::support::{TestStore, at, backend_suite, order};

backend_suite!(
    upsert_is_idempotent_and_never_moves_backwards,
    unparsable_payloads_are_quarantined_and_the_rest_stored,
    cursor_moves_with_its_batch_and_never_backwards,
    runs_are_recorded,
    a_withdrawal_never_waits_on_a_send_that_is_over,
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

/// An order cancelled while its fulfilment was claimed queues a withdrawal due when the
/// claim ends, so it lands after a send that may be in flight. When the drain holding that
/// claim was killed, the next drain takes the withdrawal at once, not ten minutes later;
/// and a send that was only waiting out a backoff (dropped with the cancel) is not waited
/// for at all.
async fn a_withdrawal_never_waits_on_a_send_that_is_over(store: TestStore) {
    store.register_store("tmall", "taobao").await.unwrap();
    let kinds = [OutboxKind::Fulfil, OutboxKind::Withdraw];
    let paid = [order("5001", at(1, 0, 0), OrderStatus::Paid), order("5002", at(1, 0, 0), OrderStatus::Paid)];
    let batch: Vec<Fetched> = paid.iter().cloned().map(|o| Fetched::Order(Box::new(o))).collect();
    store.ingest("tmall", &batch, None, None).await.unwrap();

    // A drain claims both sends; 5002's call fails and waits an hour; the drain is killed
    // in the middle of 5001's call.
    let claim_until = at(1, 10, 5);
    let claimed =
        store.claim_outbox("tmall", &kinds, at(1, 0, 5), claim_until, 10, "drain-killed").await.unwrap();
    assert_eq!(claimed.len(), 2, "{claimed:?}");
    let failed = claimed.iter().find(|r| r.order_id == "5002").unwrap();
    let retry = Finish::RetryAt { at: at(2, 0, 5), error: "operator 503".into() };
    store.finish_outbox(&[(failed, retry)], at(1, 0, 6)).await.unwrap();

    // Both orders are cancelled at the marketplace.
    let cancelled: Vec<Fetched> = ["5001", "5002"]
        .into_iter()
        .map(|id| Fetched::Order(Box::new(order(id, at(1, 1, 0), OrderStatus::Cancelled))))
        .collect();
    store.ingest("tmall", &cancelled, None, None).await.unwrap();
    for id in ["5001", "5002"] {
        let fulfil = store.outbox_by_key(&fulfil_key("tmall", id)).await.unwrap().unwrap();
        assert_eq!(fulfil.state, OutboxState::Dropped, "{id}: the send is not made again");
    }
    let withdraw = |id: &'static str| {
        let store = &store;
        async move { store.outbox_by_key(&withdraw_key("tmall", id)).await.unwrap().unwrap() }
    };
    assert_eq!(withdraw("5001").await.next_attempt_at, claim_until, "waits for the send in flight");
    assert_eq!(withdraw("5002").await.next_attempt_at, at(1, 1, 0), "no send in flight: due at once");

    // The next drain, one minute later, takes over and sends both withdrawals now.
    let now = at(1, 2, 0);
    let released = store.release_abandoned_claims("tmall", &kinds, "drain-next", now).await.unwrap();
    assert_eq!(released, 1, "the withdrawal behind the killed drain's send");
    let next = store.claim_outbox("tmall", &kinds, now, at(1, 12, 0), 10, "drain-next").await.unwrap();
    let mut taken: Vec<(OutboxKind, &str)> = next.iter().map(|r| (r.kind, r.order_id.as_str())).collect();
    taken.sort();
    assert_eq!(taken, vec![(OutboxKind::Withdraw, "5001"), (OutboxKind::Withdraw, "5002")]);
}
