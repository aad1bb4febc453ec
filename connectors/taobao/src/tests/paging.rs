//! Backward paging against a scripted gateway whose result set moves between page calls:
//! no trade in the window may be missed.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use flagsync_market::time::format_beijing;
use flagsync_market::transport::{HttpReply, HttpRequest, Transport, TransportError};
use flagsync_market::{Fetched, Marketplace, TimeWindow};

use super::*;
use crate::TaobaoConnector;

/// What happens to the store right after the n-th list call.
type Script = Box<dyn Fn(usize, &mut Vec<(u64, DateTime<Utc>)>) + Send + Sync>;

/// A gateway holding trades sorted by `modified` descending, as TOP sorts them, that
/// lets a script change them between list calls.
struct MovingGateway {
    window: TimeWindow,
    trades: Mutex<Vec<(u64, DateTime<Utc>)>>,
    list_calls: Mutex<usize>,
    script: Script,
    /// The list call (1-based) that orders trades with the same `modified` by descending
    /// tid (every other call: ascending); 0 for none.
    reversed_ties_on: usize,
}

impl MovingGateway {
    fn in_window(&self) -> Vec<(u64, DateTime<Utc>)> {
        self.in_window_ordered(false)
    }

    fn in_window_ordered(&self, reversed_ties: bool) -> Vec<(u64, DateTime<Utc>)> {
        let mut rows: Vec<_> = self
            .trades
            .lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|(_, m)| *m >= self.window.start && *m <= self.window.end)
            .collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(if reversed_ties { b.0.cmp(&a.0) } else { a.0.cmp(&b.0) }));
        rows
    }
}

#[async_trait]
impl Transport for MovingGateway {
    async fn send(&self, request: &HttpRequest) -> Result<HttpReply, TransportError> {
        let body = match request.api.as_str() {
            crate::LIST_API => {
                let page: usize = param(request, "page_no").unwrap().parse().unwrap();
                let size: usize = param(request, "page_size").unwrap().parse().unwrap();
                let call = *self.list_calls.lock().unwrap() + 1;
                let rows = self.in_window_ordered(call == self.reversed_ties_on);
                let trades: Vec<String> = rows
                    .iter()
                    .skip((page - 1) * size)
                    .take(size)
                    .map(|(tid, m)| format!(r#"{{"tid":{tid},"modified":"{}"}}"#, format_beijing(*m)))
                    .collect();
                let body = format!(r#"{{"trades":[{}],"total_results":{}}}"#, trades.join(","), rows.len());
                let mut calls = self.list_calls.lock().unwrap();
                *calls += 1;
                (self.script)(*calls, &mut self.trades.lock().unwrap());
                body
            }
            crate::FULLINFO_API => {
                let tid: u64 = param(request, "tid").unwrap().parse().unwrap();
                let modified = self.trades.lock().unwrap().iter().find(|(t, _)| *t == tid).unwrap().1;
                format!(
                    r#"{{"trade":{{"tid":{tid},"status":"WAIT_SELLER_SEND_GOODS","created":"2026-11-10 20:00:00","modified":"{}","payment":"1.00","total_fee":"1.00","orders":[{{"oid":{},"num_iid":1,"num":1,"price":"1.00","payment":"1.00"}}]}}}}"#,
                    format_beijing(modified),
                    tid + 1
                )
            }
            other => return Err(TransportError::NotRecorded(other.to_string())),
        };
        Ok(HttpReply { status: 200, body })
    }
}

const BASE: u64 = 2_600_000_000_000_000_000;

fn window() -> TimeWindow {
    TimeWindow { start: utc(2026, 11, 10, 15, 0, 0), end: utc(2026, 11, 10, 16, 0, 0) }
}

/// Trades t1..tn, t1 the newest; with seven, pages of two are [t1 t2] [t3 t4] [t5 t6] [t7].
fn trades(n: u64) -> Vec<(u64, DateTime<Utc>)> {
    (1..=n).map(|i| (BASE + i, window().end - TimeDelta::minutes(i as i64 * 4))).collect()
}

async fn pull(app_key: &str, n: u64, script: Script) -> (Vec<(String, DateTime<Utc>)>, Arc<MovingGateway>) {
    pull_at(app_key, n, script, false).await
}

/// `open`: the window reaches "now" (the clock stands at its end), so trades modified
/// during the pull can land inside it; otherwise it closed half an hour before.
async fn pull_at(
    app_key: &str,
    n: u64,
    script: Script,
    open: bool,
) -> (Vec<(String, DateTime<Utc>)>, Arc<MovingGateway>) {
    let gateway = Arc::new(MovingGateway {
        window: window(),
        trades: Mutex::new(trades(n)),
        list_calls: Mutex::new(0),
        script,
        reversed_ties_on: 0,
    });
    let clock = clock();
    if open {
        clock.set(window().end);
    }
    let connector = TaobaoConnector::new(config(app_key), gateway.clone(), clock);
    let mut sink = CollectSink::default();
    connector.pull_orders(window(), &mut sink).await.unwrap();
    let got = sink
        .all()
        .into_iter()
        .map(|f| match f {
            Fetched::Order(o) => (o.order_id.clone(), o.modified_at),
            Fetched::Unparsed(u) => panic!("{}", u.reason),
        })
        .collect();
    (got, gateway)
}

fn newest_per_tid(got: &[(String, DateTime<Utc>)]) -> std::collections::BTreeMap<String, DateTime<Utc>> {
    let mut out = std::collections::BTreeMap::new();
    for (tid, modified) in got {
        let entry = out.entry(tid.clone()).or_insert(*modified);
        *entry = (*entry).max(*modified);
    }
    out
}

#[tokio::test]
async fn trades_leaving_the_window_mid_pull_do_not_hide_others() {
    // After each of the first eleven list calls the newest trade in the window is
    // modified past its end, so every other trade moves one place toward page 1 again and
    // again. Read last-to-first, a trade can only move onto a page still ahead; a forward
    // reader (even with the same re-reads) never meets the oldest one.
    let (got, gateway) = pull(
        "paging-leave",
        12,
        Box::new(|call, trades| {
            if call <= 11 {
                let end = window().end;
                if let Some(newest) = trades.iter_mut().filter(|(_, m)| *m <= end).max_by_key(|(_, m)| *m) {
                    newest.1 = end + TimeDelta::minutes(1);
                }
            }
        }),
    )
    .await;
    let seen = newest_per_tid(&got);
    let still_inside = gateway.in_window();
    assert!(!still_inside.is_empty());
    for (tid, _) in &still_inside {
        assert!(seen.contains_key(&tid.to_string()), "trade {tid} was missed; saw {:?}", seen.keys());
    }
}

#[tokio::test]
async fn a_trade_modified_inside_the_window_mid_pull_is_caught_at_its_new_version() {
    // After the second call (the last page, [t7]), t6 is modified inside the window and
    // jumps to the top, pushing every newer trade one place down: the backward pass then
    // reads [t4 t5] and [t2 t3] and never meets t6; the forward re-read finds it. (Only a
    // window that reaches "now" can gain a trade mid-pull: TOP stamps `modified` with now.)
    let moved_to = window().end - TimeDelta::minutes(1);
    let (got, gateway) = pull_at(
        "paging-move",
        7,
        Box::new(move |call, trades| {
            if call == 2 {
                for (tid, modified) in trades.iter_mut() {
                    if *tid == BASE + 6 {
                        *modified = moved_to;
                    }
                }
            }
        }),
        true,
    )
    .await;
    let seen = newest_per_tid(&got);
    assert_eq!(seen.len(), 7, "{seen:?}");
    assert_eq!(seen.get(&(BASE + 6).to_string()), Some(&moved_to));
    // Backward pass of 4 pages, one forward pass that found t6, one that found nothing.
    assert_eq!(*gateway.list_calls.lock().unwrap(), 4 + 4 + 4);
}

#[tokio::test]
async fn a_quiet_closed_window_costs_one_pass_and_fetches_each_trade_once() {
    // Closed before the pull began, and every page reports the same total: nothing can have
    // moved, so the re-read is skipped.
    let (got, gateway) = pull("paging-quiet", 7, Box::new(|_, _| {})).await;
    assert_eq!(got.len(), 7);
    assert_eq!(*gateway.list_calls.lock().unwrap(), 4);
}

#[tokio::test]
async fn a_quiet_open_window_costs_two_passes_and_fetches_each_trade_once() {
    let (got, gateway) = pull_at("paging-quiet-open", 7, Box::new(|_, _| {}), true).await;
    assert_eq!(got.len(), 7);
    assert_eq!(*gateway.list_calls.lock().unwrap(), 8);
}

#[tokio::test]
async fn ties_ordered_differently_between_calls_cost_a_re_read_not_a_trade() {
    // A flash sale stamps six trades with one second. The last page ([t5 t6] in tid order)
    // is answered with the ties reversed, so it repeats [t2 t1] and t5, t6 never show in
    // the backward pass. The window is closed and every total is the same, but a page
    // repeated a trade, so the forward re-read runs and finds them.
    let second = window().end - TimeDelta::minutes(10);
    let gateway = Arc::new(MovingGateway {
        window: window(),
        trades: Mutex::new((1..=6).map(|i| (BASE + i, second)).collect()),
        list_calls: Mutex::new(0),
        script: Box::new(|_, _| {}),
        reversed_ties_on: 2,
    });
    let connector = TaobaoConnector::new(config("paging-ties"), gateway.clone(), clock());
    let mut sink = CollectSink::default();
    connector.pull_orders(window(), &mut sink).await.unwrap();
    let got: std::collections::BTreeSet<String> = sink
        .all()
        .into_iter()
        .map(|f| match f {
            Fetched::Order(o) => o.order_id.clone(),
            Fetched::Unparsed(u) => panic!("{}", u.reason),
        })
        .collect();
    assert_eq!(got.len(), 6, "{got:?}");
}

/// Refuses one list call (1-based) with a business error; passes everything else on.
struct RefusedList {
    inner: Arc<MovingGateway>,
    refuse: usize,
    lists: Mutex<usize>,
}

#[async_trait]
impl Transport for RefusedList {
    async fn send(&self, request: &HttpRequest) -> Result<HttpReply, TransportError> {
        if request.api == crate::LIST_API {
            let mut lists = self.lists.lock().unwrap();
            *lists += 1;
            if *lists == self.refuse {
                let body = r#"{"error_response":{"code":15,"msg":"Remote service error","sub_code":"isv.invalid-parameter","sub_msg":"page_no","request_id":"r"}}"#;
                return Ok(HttpReply { status: 200, body: body.into() });
            }
        }
        self.inner.send(request).await
    }
}

#[tokio::test]
async fn a_refused_list_call_fails_the_pull_after_the_page_read_beside_it_is_handed_over() {
    // Pages of two: [t1 t2] [t3 t4] [t5 t6] [t7], listed 1, 4, 3, 2. Page 3's details are
    // read while page 2 is listed; page 2's list call is refused.
    let gateway = Arc::new(MovingGateway {
        window: window(),
        trades: Mutex::new(trades(7)),
        list_calls: Mutex::new(0),
        script: Box::new(|_, _| {}),
        reversed_ties_on: 0,
    });
    let transport = Arc::new(RefusedList { inner: gateway, refuse: 4, lists: Mutex::new(0) });
    let connector = TaobaoConnector::new(config("paging-refused"), transport, clock());
    let mut sink = CollectSink::default();
    let error = connector.pull_orders(window(), &mut sink).await.unwrap_err();
    assert!(error.to_string().contains("isv.invalid-parameter"), "{error}");
    let mut got: Vec<u64> = sink
        .all()
        .into_iter()
        .map(|f| match f {
            Fetched::Order(o) => o.order_id.parse::<u64>().unwrap() - BASE,
            Fetched::Unparsed(u) => panic!("{}", u.reason),
        })
        .collect();
    got.sort();
    assert_eq!(got, [1, 2, 5, 6, 7]);
}
