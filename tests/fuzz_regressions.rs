//! Fuzz findings and seeds replayed in the normal test run, through the very functions the
//! AFL harnesses call (`fuzz/src/targets.rs`, included below). A finding is a test named
//! after what it broke, with the minimised input inline; see docs/fuzzing.md.

use std::path::PathBuf;

#[path = "../fuzz/src/targets.rs"]
mod targets;

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds").join(target);
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&dir).unwrap().map(|entry| entry.unwrap().path()).filter(|p| p.is_file()).collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files.into_iter().map(|path| (path.clone(), std::fs::read(&path).unwrap())).collect()
}

/// Every seed of a target passes its invariants (seeds are the recorded fixtures).
fn replay_seeds(target: &str, run: fn(&[u8])) {
    for (path, data) in seeds(target) {
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "seed {} broke an invariant", path.display());
    }
}

#[test]
fn top_seeds_hold() {
    replay_seeds("top", targets::top);
}

#[test]
fn jos_seeds_hold() {
    replay_seeds("jos", targets::jos);
}

#[test]
fn operator_seeds_hold() {
    replay_seeds("operator", targets::operator);
}

#[test]
fn csv_seeds_hold() {
    replay_seeds("csv", targets::csv);
}

#[test]
fn config_seeds_hold() {
    replay_seeds("config", targets::config);
}

#[test]
fn admin_seeds_hold() {
    replay_seeds("admin", targets::admin);
}

/// Inputs valid by construction parse: the shipped example configs and the recorded trade.
#[test]
fn valid_inputs_parse() {
    for name in ["flagsync.example.toml", "sandbox.toml"] {
        let text =
            std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config").join(name))
                .unwrap();
        let lookup = |_: &str| Some(targets::SECRET_MARKER.to_string());
        let parsed = flagsync::config::parse(&text, name, &[], targets::config_base(), &lookup);
        assert!(parsed.is_ok(), "{name}: {:?}", parsed.err());
    }
    let (_, fullinfo) = seeds("top")
        .into_iter()
        .find(|(path, _)| path.ends_with("taobao_pull_orders_00002-fullinfo-a-simplified-pii"))
        .unwrap();
    let reply = flagsync_market::transport::HttpReply {
        status: 200,
        body: String::from_utf8(fullinfo[1..].to_vec()).unwrap(),
    };
    let trade = flagsync_taobao::parse::fullinfo(flagsync_taobao::FULLINFO_API, &reply).unwrap().unwrap();
    assert_eq!(trade.order.order_id, "7091800003790954036");
    assert!(!format!("{trade:?}").contains(targets::PII_MARKER), "the debug form masks personal data");
}

// ---- findings ----

/// F1 (fuzz target `top`): a gateway `error_response` with no `msg` and no `sub_msg`
/// became an error with an empty message ("taobao ... failed (Auth, code 27): ").
#[test]
fn f1_top_gateway_error_without_msg_still_says_what_failed() {
    let reply = flagsync_market::transport::HttpReply {
        status: 200,
        body: r#"{"error_response":{"code":27,"sub_code":"invalid-sessionkey"}}"#.into(),
    };
    let error = flagsync_taobao::parse::payload(flagsync_taobao::LIST_API, &reply).unwrap_err();
    assert_eq!(error.kind, flagsync_market::ErrorKind::Auth);
    assert!(!error.message.trim().is_empty(), "empty message: {error}");

    let bare = flagsync_taobao::error::TopError { code: "15".into(), ..Default::default() };
    let error = flagsync_taobao::error::classify(flagsync_taobao::LIST_API, &bare);
    assert!(!error.message.trim().is_empty(), "empty message: {error}");
}

/// F2 (fuzz targets `top` and `jos`): an amount past rust_decimal's range times 100
/// panicked ("Multiplication overflowed") inside `yuan_to_fen`, taking the order pull down
/// instead of quarantining the one order.
#[test]
fn f2_huge_amounts_are_refused_not_a_panic() {
    let huge = "39999999999999999999999999999.00";
    let amount = std::panic::catch_unwind(|| flagsync_market::money::yuan_to_fen(huge));
    assert!(matches!(amount, Ok(Err(_))), "yuan_to_fen({huge:?}) must be an error, got {amount:?}");

    let trade = format!(
        r#"{{"tid":5,"status":"WAIT_BUYER_PAY","created":"2026-11-11 00:00:00","modified":"2026-11-11 00:00:00","payment":"0.00","total_fee":"{huge}","orders":[{{"oid":6,"num_iid":7,"num":1,"price":"1.00","payment":"1.00"}}]}}"#
    );
    let parsed =
        std::panic::catch_unwind(|| flagsync_taobao::parse::trade(flagsync_taobao::FULLINFO_API, &trade));
    match parsed {
        Ok(Err(unparsed)) => assert!(unparsed.reason.contains("total_fee"), "{}", unparsed.reason),
        other => panic!("the trade must be quarantined naming total_fee, got {other:?}"),
    }

    let info = serde_json::json!({
        "orderId": "301", "orderState": "WAIT_SELLER_STOCK_OUT",
        "orderStartTime": "2026-11-11 00:00:00", "modified": "2026-11-11 00:00:00",
        "paymentConfirmTime": "2026-11-11 00:00:01",
        "orderTotalPrice": huge, "orderPayment": "1.00",
        "itemInfoList": [{"skuId": "1", "wareId": "2", "itemTotal": "1", "jdPrice": "1.00"}]
    });
    let fetched =
        std::panic::catch_unwind(|| flagsync_jd::parse::order(flagsync_jd::parse::ORDER_SEARCH, &info));
    match fetched {
        Ok(flagsync_market::Fetched::Unparsed(unparsed)) => {
            assert!(unparsed.reason.contains("orderTotalPrice"), "{}", unparsed.reason)
        }
        other => panic!("the order must be quarantined naming orderTotalPrice, got {other:?}"),
    }
}

/// F3 (fuzz target `csv`): chrono's `%Y` takes a sign, so a shipped_at of
/// `-2026-11-11 02:00:00` (a stray minus in a hand-edited file) was accepted as a time in
/// 2027 BC. The same lax parse sits in `parse_beijing` (TOP/JOS times) and in the admin
/// API's `since`/`until` params.
#[test]
fn f3_signed_years_are_refused() {
    let csv = "store,order_id,carrier,waybill,shipped_at\ntmall,401,SF,SF1,-2026-11-11 02:00:00\n";
    let (rows, errors) = flagsync_operator::parse_shipments_csv(csv);
    assert!(rows.is_empty(), "accepted {rows:?}");
    assert!(errors.iter().any(|e| e.column == "shipped_at"), "{errors:?}");

    assert_eq!(flagsync_market::time::parse_beijing("-2026-11-11 00:00:00"), None);

    let params = serde_json::json!({"since": "-2026-11-11 00:00:00", "until": "2026-11-11 08:00:00"});
    assert!(flagsync::runner::order_pull(&params).is_err(), "a signed year passed as params.since");
}
