//! The fuzz targets themselves: one function per parser family, taking raw fuzzer bytes and
//! panicking only when an invariant breaks. Shared by the AFL harnesses in `fuzz/src/bin/`
//! and, through `#[path]`, by `tests/fuzz_regressions.rs`, so a finding replays through the
//! very same checks in the normal test run. Uses only crates the root package depends on.
//!
//! Invariants checked everywhere: no panic; every `Err` carries a non-empty message; no
//! buyer personal data (a `PII-` marker under a personal-data key) and no secret appears in
//! an error or a `Debug` rendering; answers accepted as valid keep their contract and parse
//! again when written back out (round trip). Hangs are caught by the engine's timeout.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use flagsync_market::pii::Pii;
use flagsync_market::transport::HttpReply;
use flagsync_market::{ConnectorError, ContractInfo, Fetched, ManualClock, Receiver, Unparsed};
use flagsync_operator::transport::TransportError;
use flagsync_operator::{
    FulfilmentLine, FulfilmentRequest, HttpOperator, OperatorApi, OperatorConfig, OperatorReply,
    OperatorRequest, OperatorTransport, ShipmentBatch, StockSnapshot,
};
use serde_json::Value;

/// Statuses a reply can come with; the first input byte picks one.
const STATUSES: [u16; 12] = [200, 200, 200, 200, 201, 400, 401, 404, 429, 500, 502, 503];

/// Marks a personal value in a seed or a generated request: such a string under a
/// personal-data key must never show up in an error message or a `Debug` rendering.
pub const PII_MARKER: &str = "PII-";

/// What the secret lookup of the config target answers; it must never be printed.
pub const SECRET_MARKER: &str = "fuzz-secret-4f1c9a";

/// Findings reported and not fixed yet, by a piece of their panic message. The harness lets
/// them pass so fuzzing goes on past them; each has a test in `tests/fuzz_regressions.rs`
/// that fails until it is fixed. Remove an entry when its fix lands.
const KNOWN_OPEN: &[&str] = &[
    // Empty: F1 and F2 are fixed; F3 is not a panic and is handled in `csv` itself.
];

/// Runs one target, letting only the known open findings through.
fn guarded(run: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if !KNOWN_OPEN.iter().any(|known| message.contains(known)) {
            std::panic::resume_unwind(panic);
        }
    }
}

fn status_of(selector: u8) -> u16 {
    STATUSES[usize::from(selector) % STATUSES.len()]
}

fn split_first(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((first, rest)) => (*first, rest),
        None => (0, &[]),
    }
}

/// JSON keys whose values the connectors wrap in `Pii` (TOP and JOS spellings).
const PII_KEYS: &[&str] = &[
    "buyer_nick",
    "buyer_open_uid",
    "receiver_name",
    "receiver_mobile",
    "receiver_phone",
    "receiver_address",
    "phone_num",
    "cert_card_num",
    "phone_owner_name",
    "pin",
    "fullname",
    "mobile",
    "telephone",
    "fullAddress",
];

/// Personal values in a body: marked strings under personal-data keys that do not also
/// appear elsewhere in the body (a string echoed from a non-personal field is fair to show).
fn personal_values(body: &str) -> Vec<String> {
    let Ok(value) = serde_json::from_str::<Value>(body) else { return Vec::new() };
    let mut personal = Vec::new();
    let mut other = Vec::new();
    walk(&value, None, &mut personal, &mut other);
    personal.retain(|p| p.contains(PII_MARKER) && !other.iter().any(|o| o.contains(p.as_str())));
    personal
}

fn walk(value: &Value, key: Option<&str>, personal: &mut Vec<String>, other: &mut Vec<String>) {
    match value {
        Value::String(text) if key.is_some_and(|k| PII_KEYS.contains(&k)) => personal.push(text.clone()),
        Value::String(text) => other.push(text.clone()),
        Value::Array(items) => items.iter().for_each(|item| walk(item, key, personal, other)),
        Value::Object(map) => {
            for (k, v) in map {
                other.push(k.clone());
                walk(v, Some(k), personal, other);
            }
        }
        _ => {}
    }
}

fn assert_no_personal(text: &str, personal: &[String], what: &str) {
    for value in personal {
        assert!(!text.contains(value.as_str()), "{what} shows personal value {value:?}: {text}");
    }
}

fn check_error(error: &ConnectorError, personal: &[String]) {
    assert!(!error.message.trim().is_empty(), "empty error message: {error:?}");
    assert!(!error.api.is_empty(), "error without an api: {error:?}");
    assert_no_personal(&error.to_string(), personal, "error");
    assert_no_personal(&format!("{error:?}"), personal, "error debug");
}

fn check_unparsed(unparsed: &Unparsed, personal: &[String]) {
    assert!(!unparsed.reason.trim().is_empty(), "unparsed order without a reason: {unparsed:?}");
    assert_no_personal(&unparsed.reason, personal, "unparsed reason");
}

fn check_result<T: std::fmt::Debug>(result: &Result<T, ConnectorError>, personal: &[String]) {
    match result {
        Ok(value) => assert_no_personal(&format!("{value:?}"), personal, "debug"),
        Err(error) => check_error(error, personal),
    }
}

// ---- TOP ----

/// Taobao/Tmall replies: `[status selector, body...]` through every TOP parser.
pub fn top(data: &[u8]) {
    guarded(|| top_checks(data));
}

fn top_checks(data: &[u8]) {
    use flagsync_taobao::parse;
    use flagsync_taobao::{FULLINFO_API, ITEM_GET_API, LIST_API, SELLER_API, SHIP_API, WTVERTICAL_API};

    let (selector, body) = split_first(data);
    let body = String::from_utf8_lossy(body).into_owned();
    let personal = personal_values(&body);
    let reply = HttpReply { status: status_of(selector), body: body.clone() };

    for api in [LIST_API, FULLINFO_API, WTVERTICAL_API, ITEM_GET_API, SHIP_API, SELLER_API] {
        check_result(&parse::payload(api, &reply).map(|raw| raw.get().len()), &personal);
    }
    match parse::increment_page(LIST_API, &reply) {
        Ok(page) => {
            for row in &page.rows {
                match row {
                    Ok(row) => assert!(!row.tid.is_empty(), "list row without a tid"),
                    Err(unparsed) => check_unparsed(unparsed, &personal),
                }
            }
        }
        Err(error) => check_error(&error, &personal),
    }
    match parse::fullinfo(FULLINFO_API, &reply) {
        Ok(Ok(trade)) => check_top_trade(&trade, &personal),
        Ok(Err(unparsed)) => check_unparsed(&unparsed, &personal),
        Err(error) => check_error(&error, &personal),
    }
    // The body itself as one trade object, the way the list and fullinfo paths hand it on.
    match parse::trade(FULLINFO_API, &body) {
        Ok(trade) => check_top_trade(&trade, &personal),
        Err(unparsed) => check_unparsed(&unparsed, &personal),
    }
    match parse::wtvertical(WTVERTICAL_API, &reply) {
        Ok(entries) => {
            for entry in entries {
                match entry {
                    Ok((tid, contract)) => {
                        assert!(!tid.is_empty(), "contract without a tid");
                        assert_no_personal(&format!("{contract:?}"), &personal, "contract debug");
                    }
                    Err(reason) => {
                        assert!(!reason.trim().is_empty(), "contract error without a reason");
                        assert_no_personal(&reason, &personal, "contract error");
                    }
                }
            }
        }
        Err(error) => check_error(&error, &personal),
    }
    check_result(&parse::item(ITEM_GET_API, &reply), &personal);
    check_result(&parse::shipping(SHIP_API, &reply), &personal);
    check_result(&parse::trade_state(FULLINFO_API, &reply), &personal);
    check_result(&parse::seller(SELLER_API, &reply), &personal);

    // The classifier on its own, over fields cut from the body.
    let mut parts = body.splitn(4, '\n');
    let error = flagsync_taobao::error::TopError {
        code: parts.next().unwrap_or_default().to_string(),
        msg: parts.next().unwrap_or_default().to_string(),
        sub_code: parts.next().map(str::to_string),
        sub_msg: parts.next().map(str::to_string),
    };
    let classified = flagsync_taobao::error::classify(LIST_API, &error);
    assert_eq!(classified.code.as_deref(), Some(error.code.as_str()), "classify dropped the code");
}

fn check_top_trade(trade: &flagsync_taobao::parse::ParsedTrade, personal: &[String]) {
    let order = &trade.order;
    assert!(!order.order_id.is_empty(), "trade without an id");
    assert!(!order.lines.is_empty(), "trade without lines");
    assert_no_personal(&format!("{trade:?}"), personal, "trade debug");
}

// ---- JOS ----

/// JD replies: `[status selector, body...]` through every JOS parser and both envelope checks.
pub fn jos(data: &[u8]) {
    guarded(|| jos_checks(data));
}

fn jos_checks(data: &[u8]) {
    use flagsync_jd::{envelope, parse};

    let (selector, body) = split_first(data);
    let body = String::from_utf8_lossy(body).into_owned();
    let personal = personal_values(&body);
    let status = status_of(selector);

    match parse::search_page(status, &body) {
        Ok(page) => page.orders.iter().for_each(|order| check_fetched(order, &personal)),
        Err(error) => check_error(&error, &personal),
    }
    match parse::order_get(status, &body) {
        Ok(Some(order)) => check_fetched(&order, &personal),
        Ok(None) => {}
        Err(error) => check_error(&error, &personal),
    }
    check_result(&parse::order_state(status, &body), &personal);
    match parse::stock_set(status, &body) {
        Ok(outcomes) => {
            for outcome in outcomes {
                if let Err(error) = &outcome.outcome {
                    check_error(error, &personal);
                }
            }
        }
        Err(error) => check_error(&error, &personal),
    }
    check_result(&parse::stock_query(status, &body), &personal);
    check_result(&parse::shipment(status, &body), &personal);
    check_result(&parse::logistics(status, &body), &personal);
    for api in [parse::ORDER_SEARCH, parse::ORDER_GET, parse::STOCK_SET, parse::SHIPMENT] {
        match envelope::open(api, status, &body) {
            Ok(root) => {
                for value in root.values() {
                    if let Err(error) = envelope::check_business(api, value, "result") {
                        check_error(&error, &personal);
                    }
                }
            }
            Err(error) => check_error(&error, &personal),
        }
    }
    // The body as one OrderInfo object.
    if let Ok(value) = serde_json::from_str::<Value>(&body) {
        check_fetched(&parse::order(parse::ORDER_SEARCH, &value), &personal);
        if let Err(error) = envelope::check_business(parse::SHIPMENT, &value, "result") {
            check_error(&error, &personal);
        }
    }
}

fn check_fetched(fetched: &Fetched, personal: &[String]) {
    match fetched {
        Fetched::Order(order) => {
            assert!(!order.order_id.trim().is_empty(), "order without an id");
            assert!(!order.lines.is_empty(), "order without lines");
            assert!(order.lines.iter().all(|line| line.quantity > 0), "a line with no units: {order:?}");
            let ids: HashSet<&str> = order.lines.iter().map(|l| l.line_id.as_str()).collect();
            assert_eq!(ids.len(), order.lines.len(), "line ids repeat: {order:?}");
            assert_no_personal(&format!("{order:?}"), personal, "order debug");
        }
        Fetched::Unparsed(unparsed) => check_unparsed(unparsed, personal),
    }
}

// ---- operator API ----

/// Answers every request with one scripted reply.
struct OneReply(Mutex<Option<OperatorReply>>);

#[async_trait]
impl OperatorTransport for OneReply {
    async fn send(&self, request: &OperatorRequest) -> Result<OperatorReply, TransportError> {
        let reply = self.0.lock().map(|mut slot| slot.take()).unwrap_or_default();
        reply.ok_or_else(|| TransportError::NotRecorded(request.endpoint.to_string()))
    }
}

const RETRY_AFTERS: [Option<&str>; 5] =
    [None, Some("5"), Some(" 30 "), Some("soon"), Some("99999999999999999999")];

/// Personal values of the fulfilment request the operator target submits.
const REQUEST_PII: [&str; 7] = [
    "PII-name-Zhang-San",
    "PII-13812345678",
    "PII-0571-8888",
    "PII-address-West-Lake-1",
    "PII-17700001111",
    "PII-330102199001011234",
    "PII-owner-Li-Si",
];

fn fulfilment_request() -> FulfilmentRequest {
    let [name, mobile, phone, address, number, cert, owner] = REQUEST_PII.map(Pii::new);
    FulfilmentRequest {
        store_id: "tmall-flagship".into(),
        order_id: "4012345678901234567".into(),
        platform: "taobao".into(),
        paid_at: None,
        lines: vec![FulfilmentLine { line_id: "L1".into(), operator_sku: "IPH16".into(), quantity: 1 }],
        receiver: Some(Receiver {
            name,
            mobile,
            phone,
            province: "Zhejiang".into(),
            city: "Hangzhou".into(),
            district: "Xihu".into(),
            address,
            zip: "310000".into(),
        }),
        contract: Some(ContractInfo {
            phone_number: number,
            cert_number: cert,
            owner_name: owner,
            ..ContractInfo::default()
        }),
        number_pool: None,
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| match tokio::runtime::Builder::new_current_thread().enable_time().build() {
        Ok(runtime) => runtime,
        Err(e) => panic!("cannot build a tokio runtime for the operator target: {e}"),
    })
}

fn operator_client(reply: OperatorReply) -> HttpOperator {
    let config = OperatorConfig {
        base_url: "http://operator.fuzz/api".into(),
        key_id: "fuzz".into(),
        secret: SECRET_MARKER.into(),
        retry: flagsync_market::retry::RetryPolicy { max_attempts: 1, ..Default::default() },
    };
    let start = DateTime::<Utc>::from_timestamp(1_793_000_000, 0).unwrap_or_default();
    HttpOperator::new(config, Arc::new(OneReply(Mutex::new(Some(reply)))), Arc::new(ManualClock::new(start)))
}

/// The operator API client: `[call, status, parameter, retry-after, body...]`. The call
/// byte picks stock (full or since), shipments, ping, submit or withdraw.
pub fn operator(data: &[u8]) {
    guarded(|| operator_checks(data));
}

fn operator_checks(data: &[u8]) {
    let (call, rest) = split_first(data);
    let (status, rest) = split_first(rest);
    let (param, rest) = split_first(rest);
    let (retry, body) = split_first(rest);
    let reply = OperatorReply {
        status: status_of(status),
        retry_after: RETRY_AFTERS[usize::from(retry) % RETRY_AFTERS.len()].map(str::to_string),
        body: String::from_utf8_lossy(body).into_owned(),
    };
    let client = operator_client(reply);
    let secret = [SECRET_MARKER.to_string()];
    let personal: Vec<String> = REQUEST_PII.iter().map(|p| p.to_string()).collect();
    let since = i64::from(param);
    runtime().block_on(async {
        match call % 6 {
            0 | 1 => {
                let since = (call % 6 == 1).then_some(since);
                let result = client.stock(since).await;
                check_result(&result, &secret);
                if let Ok(snapshot) = result {
                    check_snapshot(&snapshot, since);
                    let again = operator_client(echo(&snapshot)).stock(since).await;
                    assert!(
                        matches!(&again, Ok(s) if *s == snapshot),
                        "snapshot does not round-trip: {again:?}"
                    );
                }
            }
            2 => {
                let limit = u32::from(param % 16) + 1;
                let since = since - 3;
                let result = client.shipments(since, limit).await;
                check_result(&result, &secret);
                if let Ok(batch) = result {
                    check_batch(&batch, since, limit);
                    let again = operator_client(echo(&batch)).shipments(since, limit).await;
                    assert!(matches!(&again, Ok(b) if *b == batch), "batch does not round-trip: {again:?}");
                }
            }
            3 => check_result(&client.check().await, &secret),
            4 => check_result(&client.submit_fulfilment(&fulfilment_request()).await, &personal),
            _ => check_result(
                &client.withdraw_fulfilment("tmall-flagship", "40/1 2", "buyer cancelled").await,
                &[],
            ),
        }
    });
}

fn echo<T: serde::Serialize>(value: &T) -> OperatorReply {
    let body = serde_json::to_string(value).unwrap_or_default();
    OperatorReply { status: 200, retry_after: None, body }
}

/// What `API.md` promises of an accepted snapshot.
fn check_snapshot(snapshot: &StockSnapshot, since: Option<i64>) {
    assert!(snapshot.watermark >= since.unwrap_or(0), "watermark went back: {snapshot:?}");
    assert!(since.is_some() || snapshot.full, "a full request got a partial answer");
    let mut seen = HashSet::new();
    for level in &snapshot.levels {
        assert!(level.on_hand >= 0 && !level.sku.trim().is_empty(), "bad level accepted: {level:?}");
        assert!(seen.insert((&level.sku, &level.warehouse)), "duplicate level accepted: {level:?}");
    }
    let mut seen = HashSet::new();
    for resource in &snapshot.resources {
        assert!(resource.available >= 0, "negative resource accepted: {resource:?}");
        assert!(seen.insert((resource.kind, &resource.code)), "duplicate resource accepted: {resource:?}");
    }
}

fn check_batch(batch: &ShipmentBatch, since: i64, limit: u32) {
    assert!(batch.notices.len() <= limit as usize, "more notices than the limit");
    let mut previous = since;
    for notice in &batch.notices {
        assert!(notice.sequence > previous, "sequence does not grow: {batch:?}");
        previous = notice.sequence;
        assert!(!notice.waybill.trim().is_empty() && !notice.order_id.trim().is_empty());
    }
    assert_eq!(batch.watermark, previous, "watermark is not the last sequence");
}

// ---- CSV imports ----

fn csv_field(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// Both CSV importers over the same text; accepted rows are written back out and must
/// read back the same.
pub fn csv(data: &[u8]) {
    guarded(|| csv_checks(data));
}

fn csv_checks(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match flagsync_operator::parse_stock_csv(&text) {
        Ok(levels) => {
            assert!(!levels.is_empty(), "a stock file with no rows was accepted");
            let mut out = String::from("sku,warehouse,on_hand\n");
            for level in &levels {
                assert!(level.on_hand >= 0, "negative stock accepted: {level:?}");
                let line = [csv_field(&level.sku), csv_field(&level.warehouse), level.on_hand.to_string()];
                out.push_str(&line.join(","));
                out.push('\n');
            }
            let again = flagsync_operator::parse_stock_csv(&out);
            assert!(matches!(&again, Ok(l) if *l == levels), "stock rows do not round-trip: {again:?}");
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "a refused stock file with no error");
            errors.0.iter().for_each(check_csv_error);
        }
    }

    let (rows, errors) = flagsync_operator::parse_shipments_csv(&text);
    errors.iter().for_each(check_csv_error);
    // F3 (fixed): a signed year ("-2026-11-11 02:00:00") is refused now, so every accepted
    // row must survive the round trip.
    if rows.is_empty() {
        return;
    }
    let mut out = String::from("store,order_id,carrier,waybill,lines,imeis,shipped_at\n");
    for row in &rows {
        let imeis: Vec<String> = row
            .serials
            .iter()
            .flat_map(|s| s.serials.iter().map(move |imei| format!("{}:{imei}", s.line_id)))
            .collect();
        let fields = [
            csv_field(&row.store_id),
            csv_field(&row.order_id),
            csv_field(&row.carrier),
            csv_field(&row.waybill),
            csv_field(&row.line_ids.join(";")),
            csv_field(&imeis.join(";")),
            csv_field(&row.shipped_at.to_rfc3339()),
        ];
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    let (again, errors) = flagsync_operator::parse_shipments_csv(&out);
    assert!(errors.is_empty(), "written-back shipment rows are refused: {errors:?}");
    let strip = |rows: &[flagsync_operator::ShipmentRow]| {
        rows.iter().map(|r| flagsync_operator::ShipmentRow { line: 0, ..r.clone() }).collect::<Vec<_>>()
    };
    assert_eq!(strip(&again), strip(&rows), "shipment rows do not round-trip");
}

fn check_csv_error(error: &flagsync_operator::CsvError) {
    assert!(!error.message.trim().is_empty(), "csv error without a message: {error:?}");
    assert!(error.line >= 1, "csv error without a line number: {error:?}");
}

// ---- config ----

/// A folder holding the secret files the seeds name (`secrets/*.session`).
pub fn config_base() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        // Same content for every process, so one shared folder will do.
        let base = std::env::temp_dir().join("flagsync-fuzz-config");
        let secrets = base.join("secrets");
        if std::fs::create_dir_all(&secrets).is_ok() {
            for name in ["tmall-flagship.session", "sandbox.session", "empty.session"] {
                let text = if name.starts_with("empty") { "\n" } else { SECRET_MARKER };
                let _ = std::fs::write(secrets.join(name), text);
            }
        }
        base
    })
}

/// The config loader: TOML text, then after a NUL byte one `NAME=value` override per line.
/// Secret lookups answer [`SECRET_MARKER`] (names starting `UNSET` are unset).
pub fn config(data: &[u8]) {
    guarded(|| config_checks(data));
}

fn config_checks(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    // A secret `file` may name any path; keep the fuzzer off devices and the proc tree (an
    // endless /dev/zero is a known, reported issue, not something to rediscover).
    if ["dev", "proc", "sys"].iter().any(|dir| text.contains(&format!("{dir}/"))) {
        return;
    }
    let (toml, overrides) = text.split_once('\0').unwrap_or((&text, ""));
    let env: Vec<(String, String)> = overrides
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    let lookup = |name: &str| (!name.starts_with("UNSET")).then(|| SECRET_MARKER.to_string());
    let leaks_allowed = text.contains(SECRET_MARKER);
    match flagsync::config::parse(toml, "fuzz.toml", &env, config_base(), &lookup) {
        Ok(config) => {
            if !leaks_allowed {
                let shown = format!("{config:?}");
                assert!(!shown.contains(SECRET_MARKER), "a secret shows in the config's debug: {shown}");
                let described = format!("{:?}", flagsync::config::describe(&config));
                assert!(!described.contains(SECRET_MARKER), "a secret shows in describe: {described}");
            }
        }
        Err(error) => {
            assert!(!error.problems.is_empty(), "a refused config with no problem");
            for problem in &error.problems {
                assert!(!problem.message.trim().is_empty(), "a problem without a message: {problem:?}");
            }
            if !leaks_allowed {
                let shown = error.to_string();
                assert!(!shown.contains(SECRET_MARKER), "a secret shows in a config error: {shown}");
            }
        }
    }
}

// ---- admin API request bodies ----

/// The trigger endpoint's body check (`POST /api/v1/stores/{store}/jobs/orders/runs`): the
/// JSON object of job params as `flagsync::runner::order_pull` reads it.
pub fn admin_params(data: &[u8]) {
    let Ok(params) = serde_json::from_slice::<Value>(data) else { return };
    if let Err(error) = flagsync::runner::order_pull(&params) {
        assert!(!error.to_string().trim().is_empty(), "an empty job params error");
    }
}

const ADMIN_TOKEN: &str = "fuzz-admin-token-0123456789";

/// Runs nothing: the target is the request handling, not the jobs.
struct NoRun;

#[async_trait]
impl flagsync::jobs::JobRunner for NoRun {
    async fn run(&self, _request: &flagsync::jobs::JobRequest) -> Result<Value, flagsync::jobs::JobError> {
        Ok(Value::Object(serde_json::Map::new()))
    }
}

/// A daemon on a scratch SQLite file with its admin API on a loopback port.
struct AdminApi {
    runtime: tokio::runtime::Runtime,
    base: String,
    client: reqwest::Client,
}

fn admin_api() -> &'static AdminApi {
    static API: OnceLock<AdminApi> = OnceLock::new();
    API.get_or_init(|| match start_admin_api() {
        Ok(api) => api,
        Err(e) => panic!("cannot start the daemon for the admin target: {e}"),
    })
}

fn start_admin_api() -> Result<AdminApi, String> {
    let dir = std::env::temp_dir().join(format!("flagsync-fuzz-admin-{}", std::process::id()));
    // Each AFL fork starts its own daemon; a dead fork's folder is of no further use.
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("flagsync-fuzz-admin-")
                && !Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let text = format!(
        "[database]\nurl = \"sqlite://{}/admin.db\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         token = {{ env = \"ADMIN_TOKEN\" }}\n\n[stores.tmall]\ntype = \"taobao\"\ngateway = \"sandbox\"\n",
        dir.display()
    );
    let lookup = |_: &str| Some(ADMIN_TOKEN.to_string());
    let config =
        flagsync::config::parse(&text, "admin-fuzz.toml", &[], &dir, &lookup).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (daemon, addr) = runtime.block_on(async {
        let store = flagsync::app::open_store(&config).await.map_err(|e| e.to_string())?;
        let generation = flagsync::daemon::Generation {
            config: Arc::new(config),
            runner: Arc::new(NoRun),
            inbox: Arc::new(flagsync::admin::NotAvailableInbox),
        };
        let options = flagsync::daemon::DaemonOptions { serve_admin: true, ..Default::default() };
        let daemon =
            flagsync::daemon::Daemon::start(generation, store, options).await.map_err(|e| e.to_string())?;
        let addr = daemon.admin_addr().ok_or("the admin api did not start")?;
        Ok::<_, String>((daemon, addr))
    })?;
    // The daemon lives as long as the process; dropping it would stop its tasks.
    std::mem::forget(daemon);
    Ok(AdminApi { runtime, base: format!("http://{addr}"), client: reqwest::Client::new() })
}

/// The admin API end to end: the fuzzed bytes as the body of a manual orders trigger, a
/// stock trigger and both operator push endpoints of a running daemon. Every answer is an
/// acceptance (202), a 400 whose JSON `error` names the body or params, or the push
/// endpoints' 501; a body that `order_pull` accepts is accepted, one it refuses is a 400.
pub fn admin(data: &[u8]) {
    guarded(|| admin_checks(data));
}

fn admin_checks(data: &[u8]) {
    admin_params(data);
    let api = admin_api();
    let blank = data.iter().all(u8::is_ascii_whitespace);
    let parsed = serde_json::from_slice::<Value>(data).ok();
    let object = blank || parsed.as_ref().is_some_and(Value::is_object);
    let pull_ok =
        blank || parsed.as_ref().is_some_and(|p| p.is_object() && flagsync::runner::order_pull(p).is_ok());
    let cases = [
        ("/api/v1/stores/tmall/jobs/orders/runs", if pull_ok { 202 } else { 400 }),
        ("/api/v1/stores/tmall/jobs/stock/runs", if object { 202 } else { 400 }),
        ("/api/v1/operator/stock", if blank || parsed.is_some() { 501 } else { 400 }),
        ("/api/v1/operator/shipments", if blank || parsed.is_some() { 501 } else { 400 }),
    ];
    api.runtime.block_on(async {
        for (path, expected) in cases {
            let sent = api
                .client
                .post(format!("{}{path}", api.base))
                .bearer_auth(ADMIN_TOKEN)
                .header("content-type", "application/json")
                .body(data.to_vec())
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(e) => panic!("{path}: no answer: {e}"),
            };
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            assert_eq!(status, expected, "{path}: status {status}, expected {expected}: {text}");
            if status == 400 {
                let error = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
                    .unwrap_or_default();
                assert!(
                    error.starts_with("body") || error.starts_with("params"),
                    "{path}: a 400 that names neither the body nor the params: {text}"
                );
            }
        }
    });
}
