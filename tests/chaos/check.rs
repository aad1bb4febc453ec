//! The checker: reads the database (read-only) and the sandboxes' records of every effect
//! they received, and counts each invariant's violations. Samples taken while daemons run
//! (right after each kill) check what can be checked mid-flight: the cursor and the order
//! versions; the final check, after convergence and a clean SIGTERM, checks everything.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use flagsync::inventory::{Catalog, ComponentKind, SkuDef};
use flagsync::jobs::Fence;
use flagsync::sandbox::EmbeddedSandbox;
use flagsync::store::{JobRun, Store};
use sqlx::{PgPool, SqlitePool};

use super::rig::{Effect, JD, LeaseSnapshot, SKUS, TMALL};

/// Read-only SQL the store has no query for (reservation rows, listing intents, outbox rows,
/// status ranks). Same statements on both backends.
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

macro_rules! fetch {
    ($db:expr, $ty:ty, $sql:expr) => {
        match $db {
            Db::Sqlite(pool) => sqlx::query_as::<_, $ty>($sql).fetch_all(pool).await.unwrap(),
            Db::Postgres(pool) => sqlx::query_as::<_, $ty>($sql).fetch_all(pool).await.unwrap(),
        }
    };
}

type Reservation = (String, String, String, String, i64, String);
type Listing = (String, String, String, Option<i64>, Option<String>, Option<i64>, Option<i64>);
type OutboxLine = (String, String, String, String, String);

impl Db {
    async fn reservations(&self) -> Vec<Reservation> {
        fetch!(
            self,
            Reservation,
            "SELECT store_id, order_id, line_id, component, quantity, state FROM reservations"
        )
    }

    async fn listings(&self) -> Vec<Listing> {
        fetch!(
            self,
            Listing,
            "SELECT store_id, item_id, sku_id, last_pushed, pending, allowance, grant_units FROM listings"
        )
    }

    async fn outbox(&self) -> Vec<OutboxLine> {
        fetch!(self, OutboxLine, "SELECT kind, store_id, order_id, dedupe_key, state FROM outbox")
    }

    /// Pending rows: (kind, order, attempts, due, last error).
    async fn pending_outbox(&self) -> Vec<(String, String, i64, DateTime<Utc>, Option<String>)> {
        fetch!(
            self,
            (String, String, i64, DateTime<Utc>, Option<String>),
            "SELECT kind, order_id, attempts, next_attempt_at, last_error FROM outbox WHERE state = 'pending'"
        )
    }

    async fn order_ranks(&self) -> Vec<(String, String, DateTime<Utc>, i64)> {
        fetch!(
            self,
            (String, String, DateTime<Utc>, i64),
            "SELECT store_id, order_id, modified_at, status_rank FROM orders"
        )
    }

    async fn operator_stock(&self) -> Vec<(String, i64)> {
        fetch!(self, (String, i64), "SELECT sku, on_hand FROM operator_stock")
    }
}

/// Every invariant of issue #8 that a process run can check, each a count that must be 0.
#[derive(Debug, Default, Clone)]
pub struct Violations {
    pub counts: BTreeMap<&'static str, u64>,
    /// One line per violation found (capped), for the failure message.
    pub details: Vec<String>,
}

pub const INVARIANTS: [&str; 12] = [
    "orders_lost",
    "orders_duplicated",
    "orders_backwards",
    "oversold_units",
    "reservation_closed_twice_or_wrongly",
    "reservation_ledger_units_off",
    "shipment_applied_twice",
    "shipment_never_applied",
    "stale_stock_push",
    "cursor_past_uncommitted",
    "write_without_lease",
    "negative_stock",
];

impl Violations {
    pub fn new() -> Self {
        Self { counts: INVARIANTS.iter().map(|k| (*k, 0)).collect(), details: Vec::new() }
    }

    fn add(&mut self, invariant: &'static str, n: u64, detail: impl FnOnce() -> String) {
        if n == 0 {
            return;
        }
        *self.counts.entry(invariant).or_default() += n;
        let shown = self.details.iter().filter(|d| d.starts_with(invariant)).count();
        if shown < 6 {
            self.details.push(format!("{invariant}: {}", detail()));
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    pub fn merge(&mut self, other: &Violations) {
        for (k, v) in &other.counts {
            *self.counts.entry(k).or_default() += v;
        }
        for d in &other.details {
            if self.details.len() < 80 {
                self.details.push(d.clone());
            }
        }
    }
}

/// The catalogue the rig's config declares, for the ledger's numbers.
pub fn catalog() -> Catalog {
    let skus = SKUS
        .iter()
        .map(|s| {
            (
                s.to_string(),
                SkuDef {
                    code: s.to_string(),
                    kind_name: "handset".into(),
                    kind: ComponentKind::Stock,
                    safety_stock: 0,
                },
            )
        })
        .collect();
    Catalog { skus, bundles: BTreeMap::new() }
}

fn second(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// What a marketplace shows of one order.
#[derive(Debug, Clone)]
pub struct Truth {
    pub modified: DateTime<Utc>,
    pub status: String,
    /// Paid and not closed (cancelled or refunded): its units are sold.
    pub sold: bool,
    /// (SKU code, units) per line.
    pub lines: Vec<(String, i64)>,
    /// A refund is asked for and not settled: the marketplace refuses shipping until it is.
    pub held: bool,
}

/// Each store's orders as its sandbox shows them now (platforms show `modified` to the
/// second).
pub fn truth(sandbox: &EmbeddedSandbox) -> BTreeMap<&'static str, BTreeMap<String, Truth>> {
    let top_sku: HashMap<i64, String> =
        (0..SKUS.len()).map(|n| (sandbox.top.listing(n).sku_id, SKUS[n].to_string())).collect();
    let jos_sku: HashMap<i64, String> =
        (0..SKUS.len()).map(|n| (sandbox.jos.listing(n).sku_id, SKUS[n].to_string())).collect();
    let tmall = sandbox
        .top
        .trades()
        .into_iter()
        .map(|t| {
            let closed = t.status.starts_with("TRADE_CLOSED") || t.status == "WAIT_BUYER_PAY";
            let lines = t
                .orders
                .iter()
                .map(|o| (top_sku.get(&o.sku_id).cloned().unwrap_or_default(), o.num))
                .collect();
            let held = t.orders.iter().any(|o| o.refund_status == "WAIT_SELLER_AGREE");
            (
                t.tid.to_string(),
                Truth { modified: second(t.modified), status: t.status, sold: !closed, lines, held },
            )
        })
        .collect();
    let jd = sandbox
        .jos
        .orders()
        .into_iter()
        .filter(|o| o.visible)
        .map(|o| {
            let closed = matches!(o.order_state.as_str(), "TRADE_CANCELED" | "WAIT_PAY");
            let lines = o
                .lines
                .iter()
                .map(|(sku, qty)| (jos_sku.get(sku).cloned().unwrap_or_default(), *qty))
                .collect();
            let held = o.order_state == "LOCKED";
            (
                o.order_id,
                Truth { modified: second(o.modified), status: o.order_state, sold: !closed, lines, held },
            )
        })
        .collect();
    [(TMALL, tmall), (JD, jd)].into_iter().collect()
}

/// Stored order versions seen at earlier samples: (modified, status rank) per order.
#[derive(Default)]
pub struct History {
    seen: HashMap<(String, String), (DateTime<Utc>, i64)>,
    pub samples: usize,
}

/// A mid-run sample: the cursor never stands past an order the database lacks, and no
/// stored order moved back since the last sample. Reads the cursor first, then the
/// sandbox, then the orders, so a pull racing the sample cannot make a false alarm (an order
/// the sandbox shows modified before the cursor was already at that version when the
/// window holding it was pulled).
pub async fn sample(store: &Store, db: &Db, sandbox: &EmbeddedSandbox, history: &mut History) -> Violations {
    let mut v = Violations::new();
    let mut cursors = BTreeMap::new();
    for store_id in [TMALL, JD] {
        cursors.insert(store_id, store.cursor(store_id, "orders").await.unwrap());
    }
    let truth = truth(sandbox);
    let ranks = db.order_ranks().await;
    let stored: HashMap<(String, String), (DateTime<Utc>, i64)> =
        ranks.into_iter().map(|(s, o, m, r)| ((s, o), (second(m), r))).collect();
    for (store_id, orders) in &truth {
        let Some(cursor) = cursors[store_id] else { continue };
        // Platforms show `modified` to the second, so an order in the cursor's own second
        // may sit on either side of it: only earlier seconds are due.
        let due_before = second(cursor);
        for (id, t) in orders {
            if t.modified >= due_before {
                continue;
            }
            let version = stored.get(&(store_id.to_string(), id.clone()));
            if version.is_none_or(|(m, _)| *m < t.modified) {
                v.add("cursor_past_uncommitted", 1, || {
                    format!(
                        "{store_id} cursor {cursor} but order {id} (modified {}) stored as {version:?}",
                        t.modified
                    )
                });
            }
        }
    }
    check_backwards(&stored, history, &mut v);
    history.samples += 1;
    v
}

fn check_backwards(
    stored: &HashMap<(String, String), (DateTime<Utc>, i64)>,
    history: &mut History,
    v: &mut Violations,
) {
    for (key, now) in stored {
        if let Some(before) = history.seen.get(key)
            && (now.0 < before.0 || (now.0 == before.0 && now.1 < before.1))
        {
            v.add("orders_backwards", 1, || format!("{key:?} went from {before:?} to {now:?}"));
        }
        history.seen.insert(key.clone(), *now);
    }
}

/// What the final check saw, besides the violations.
#[derive(Debug, Default)]
pub struct Figures {
    pub orders: BTreeMap<&'static str, usize>,
    pub sold_units: i64,
    pub fulfilments: usize,
    pub notices: usize,
    pub shipments: usize,
    pub dead_letters: usize,
    pub stock_writes: usize,
    pub effects_checked: usize,
    pub effects_ambiguous: usize,
    pub runs: usize,
    pub runs_left_open: usize,
    /// Listings whose allowance (grant less what the marketplace sold since the push) went
    /// below 0: the planner's deficit, reported, not counted as stock.
    pub negative_allowances: usize,
}

/// Whether everything the run set in motion has settled: every order stored at its
/// latest version, no outbox row pending, every operator shipment on its marketplace (or
/// dead), the ledger on the operator's latest watermark, no stock push in flight.
pub async fn settled(store: &Store, db: &Db, sandbox: &EmbeddedSandbox) -> Result<(), String> {
    let truth = truth(sandbox);
    let ranks = db.order_ranks().await;
    let stored: HashMap<(String, String), DateTime<Utc>> =
        ranks.into_iter().map(|(s, o, m, _)| ((s, o), second(m))).collect();
    for (store_id, orders) in &truth {
        let behind = orders
            .iter()
            .filter(|(id, t)| {
                stored.get(&(store_id.to_string(), (*id).clone())).is_none_or(|m| *m < t.modified)
            })
            .count();
        if behind > 0 {
            return Err(format!("{store_id}: {behind} orders not stored at their latest version"));
        }
    }
    // A shipment waiting on a buyer's open refund request is settled as far as flagsync
    // can take it (it rechecks; ops see it in status).
    let pending: Vec<_> = db
        .pending_outbox()
        .await
        .into_iter()
        .filter(|(kind, order, ..)| {
            let stuck = [TMALL, JD]
                .iter()
                .any(|s| truth.get(s).and_then(|o| o.get(order)).is_some_and(|t| t.held || !t.sold));
            !(kind == "ship" && stuck)
        })
        .collect();
    if !pending.is_empty() {
        return Err(format!("{} outbox rows pending: {pending:?}", pending.len()));
    }
    let unshipped = unshipped_notices(sandbox, &db.outbox().await);
    if !unshipped.is_empty() {
        return Err(format!("{} operator shipments not on their marketplace", unshipped.len()));
    }
    let watermark = store.watermark("stock").await.unwrap().unwrap_or(0);
    if watermark < sandbox.operator.watermark() {
        return Err(format!("ledger at watermark {watermark}, operator at {}", sandbox.operator.watermark()));
    }
    let in_flight = db.listings().await.into_iter().filter(|l| l.4.is_some()).count();
    if in_flight > 0 {
        return Err(format!("{in_flight} stock pushes pending"));
    }
    Ok(())
}

/// Operator notices whose order (or lines) no marketplace shipment covers, and whose ship
/// row is not in the dead-letter list (or dropped).
fn unshipped_notices(sandbox: &EmbeddedSandbox, outbox: &[OutboxLine]) -> Vec<String> {
    let held_orders: BTreeSet<(String, String)> = truth(sandbox)
        .into_iter()
        .flat_map(|(s, orders)| {
            orders.into_iter().filter(|(_, t)| t.held || !t.sold).map(move |(o, _)| (s.to_string(), o))
        })
        .collect();
    let given_up: BTreeSet<&str> = outbox
        .iter()
        .filter(|r| r.0 == "ship" && (r.4 == "dead" || r.4 == "dropped"))
        .map(|r| r.3.as_str())
        .collect();
    let top: BTreeSet<String> = sandbox.top.shipments().iter().map(|s| s.tid.to_string()).collect();
    let jos: BTreeSet<String> = sandbox.jos.shipments().into_iter().map(|s| s.order_id).collect();
    let mut out = Vec::new();
    for notice in sandbox.operator.notices() {
        if notice.corrects.is_some() {
            continue;
        }
        let shipped = match notice.store_id.as_str() {
            TMALL => top.contains(&notice.order_id),
            _ => jos.contains(&notice.order_id),
        };
        let key = flagsync::store::ship_key(&notice.store_id, &notice.notice_id);
        let held = held_orders.contains(&(notice.store_id.clone(), notice.order_id.clone()));
        if !shipped && !held && !given_up.contains(key.as_str()) {
            out.push(format!("{} {} ({})", notice.store_id, notice.order_id, notice.notice_id));
        }
    }
    out
}

/// The final check, after the last daemon stopped cleanly.
#[allow(clippy::too_many_arguments)]
pub async fn final_check(
    store: &Store,
    db: &Db,
    sandbox: &EmbeddedSandbox,
    units: i64,
    history: &mut History,
    effects: &[Effect],
    leases: &[LeaseSnapshot],
    slot_of: &dyn Fn(&str) -> Option<usize>,
    reconcile_differing: usize,
) -> (Violations, Figures) {
    let mut v = sample(store, db, sandbox, history).await;
    let mut f = Figures::default();
    let truth = truth(sandbox);
    let outbox = db.outbox().await;

    // Orders: every one the marketplace shows is stored once, at its latest version; none
    // stored that the marketplace does not have.
    for (store_id, orders) in &truth {
        let summaries = store.order_summaries(store_id).await.unwrap();
        f.orders.insert(store_id, summaries.len());
        let mut ids = BTreeMap::new();
        for s in &summaries {
            *ids.entry(s.order_id.clone()).or_insert(0u64) += 1;
        }
        for (id, n) in &ids {
            v.add("orders_duplicated", n - 1, || format!("{store_id} {id} stored {n} times"));
            if !orders.contains_key(id) {
                v.add("orders_duplicated", 1, || {
                    format!("{store_id} {id} stored but unknown to the marketplace")
                });
            }
        }
        let latest: HashMap<&str, DateTime<Utc>> =
            summaries.iter().map(|s| (s.order_id.as_str(), second(s.modified_at))).collect();
        for (id, t) in orders {
            match latest.get(id.as_str()) {
                None => v.add("orders_lost", 1, || format!("{store_id} {id} ({}) never stored", t.status)),
                Some(m) if *m < t.modified => v.add("orders_lost", 1, || {
                    format!("{store_id} {id}: stored version {m} older than the marketplace's {}", t.modified)
                }),
                Some(_) => {}
            }
        }
    }
    let mut fulfil_count: HashMap<(String, String), u64> = HashMap::new();
    for fulfilment in sandbox.operator.fulfilments() {
        *fulfil_count.entry((fulfilment.store_id, fulfilment.order_id)).or_default() += 1;
        f.fulfilments += 1;
    }
    for (key, n) in fulfil_count {
        v.add("orders_duplicated", n - 1, || format!("{key:?}: {n} fulfilment requests at the operator"));
    }

    // Oversell: units buyers hold (paid, not refunded) per SKU against the operator's stock.
    let mut sold: BTreeMap<String, i64> = BTreeMap::new();
    for orders in truth.values() {
        for t in orders.values().filter(|t| t.sold) {
            for (sku, n) in &t.lines {
                *sold.entry(sku.clone()).or_default() += n;
            }
        }
    }
    for sku in SKUS {
        let n = sold.get(sku).copied().unwrap_or(0);
        f.sold_units += n;
        let over = u64::try_from(n - units).unwrap_or(0);
        v.add("oversold_units", over, || format!("{sku}: {n} units sold of {units}"));
    }

    // Reservations against what the operator shipped and what the marketplaces show.
    let notices = sandbox.operator.notices();
    f.notices = notices.iter().filter(|n| n.corrects.is_none()).count();
    let mut shipped_lines: HashSet2 = HashSet2::default();
    for n in notices.iter().filter(|n| n.corrects.is_none()) {
        if n.line_ids.is_empty() {
            shipped_lines.whole.insert((n.store_id.clone(), n.order_id.clone()));
        }
        for line in &n.line_ids {
            shipped_lines.lines.insert((n.store_id.clone(), n.order_id.clone(), line.clone()));
        }
    }
    let mut open_units: BTreeMap<String, i64> = BTreeMap::new();
    let mut consumed_units: BTreeMap<String, i64> = BTreeMap::new();
    let mut released_shipped: BTreeMap<String, i64> = BTreeMap::new();
    for (store_id, order_id, line_id, component, quantity, state) in db.reservations().await {
        let shipped = shipped_lines.contains(&store_id, &order_id, &line_id);
        let t = truth.get(store_id.as_str()).and_then(|o| o.get(&order_id));
        let closed = t.is_some_and(|t| !t.sold);
        // Released after the operator shipped is right when the buyer's refund closed the
        // order before the shipment reached flagsync: the operator's snapshot takes those
        // units off, so the ledger counts them once (and the shipment push is refused).
        let wrong = match state.as_str() {
            "consumed" => !shipped,
            "released" => !closed,
            _ => shipped || closed,
        };
        if wrong {
            v.add("reservation_closed_twice_or_wrongly", 1, || {
                format!(
                    "{store_id} {order_id} line {line_id} {component}: {state}, operator shipped: {shipped}, marketplace: {:?}",
                    t.map(|t| &t.status)
                )
            });
        }
        let sku = component.trim_start_matches("sku:").to_string();
        match state.as_str() {
            "open" => *open_units.entry(sku).or_default() += quantity,
            "consumed" => *consumed_units.entry(sku).or_default() += quantity,
            _ if shipped => *released_shipped.entry(sku).or_default() += quantity,
            _ => {}
        }
    }
    let levels = store.component_levels(&catalog()).await.unwrap();
    for sku in SKUS {
        // The operator's truth: what it shipped, and what is sold but not shipped.
        let shipped = units - sandbox.operator.on_hand(sku);
        let consumed =
            consumed_units.get(sku).copied().unwrap_or(0) + released_shipped.get(sku).copied().unwrap_or(0);
        v.add("reservation_ledger_units_off", shipped.abs_diff(consumed), || {
            format!("{sku}: operator shipped {shipped} units, ledger consumed (or released after a refund) {consumed}")
        });
        let level = levels.iter().find(|(c, _)| c.code == sku).map(|(_, l)| *l).unwrap_or_default();
        let open = open_units.get(sku).copied().unwrap_or(0);
        v.add("reservation_ledger_units_off", level.reserved.abs_diff(open), || {
            format!("{sku}: ledger reserves {} units, open reservations {open}", level.reserved)
        });
        let on_hand_now = level.on_hand - level.consumed_pending;
        v.add("reservation_ledger_units_off", on_hand_now.abs_diff(sandbox.operator.on_hand(sku)), || {
            format!(
                "{sku}: ledger on hand {} - {} shipped since the snapshot, operator {}",
                level.on_hand,
                level.consumed_pending,
                sandbox.operator.on_hand(sku)
            )
        });
    }

    // Shipments: each (order, line) applied at most once on its marketplace; every operator
    // shipment applied (or in the dead-letter list).
    let mut applied: HashMap<(String, String), u64> = HashMap::new();
    for s in sandbox.top.shipments() {
        f.shipments += 1;
        if s.oids.is_empty() {
            *applied.entry((s.tid.to_string(), String::new())).or_default() += 1;
        }
        for oid in &s.oids {
            *applied.entry((s.tid.to_string(), oid.to_string())).or_default() += 1;
        }
    }
    for s in sandbox.jos.shipments() {
        f.shipments += 1;
        *applied.entry((s.order_id, String::new())).or_default() += 1;
    }
    for (key, n) in applied {
        v.add("shipment_applied_twice", n - 1, || format!("{key:?} shipped {n} times"));
    }
    for missing in unshipped_notices(sandbox, &outbox) {
        v.add("shipment_never_applied", 1, || missing);
    }
    f.dead_letters = outbox.iter().filter(|r| r.4 == "dead").count();

    // Stock: after everything settled, every listing must show what flagsync's ledger says
    // it should (its last push, less the sales since, plus what refunds gave back):
    // `reconcile` reads each listing back and compares. A push that overwrote a newer value
    // with an older one shows here. (`last_pushed` is not compared with the last write: a
    // listing that sold out by itself records 0 without a write, and refunds give units
    // back without one.)
    v.add("stale_stock_push", reconcile_differing as u64, || {
        format!("reconcile reports {reconcile_differing} listings differing from what flagsync expects")
    });
    let listings = db.listings().await;
    let top_writes = sandbox.top.stock_writes();
    let jos_writes = sandbox.jos.stock_writes();
    f.stock_writes = top_writes.len() + jos_writes.len();
    for (store_id, item_id, sku_id, last_pushed, _pending, allowance, grant) in &listings {
        if allowance.is_some_and(|n| n < 0) {
            f.negative_allowances += 1;
        }
        for (what, value) in [("last_pushed", last_pushed), ("grant", grant)] {
            if value.is_some_and(|n| n < 0) {
                v.add("negative_stock", 1, || format!("{store_id} {item_id}:{sku_id} {what} {value:?}"));
            }
        }
    }
    for w in &top_writes {
        if w.quantity < 0 {
            v.add("negative_stock", 1, || format!("tmall write {w:?}"));
        }
    }
    for w in &jos_writes {
        if w.after < 0 || w.before < 0 {
            v.add("negative_stock", 1, || format!("jd write {w:?}"));
        }
    }
    for n in 0..SKUS.len() {
        let (top, jos) = (sandbox.top.listing(n).quantity, sandbox.jos.listing(n).quantity);
        if top < 0 || jos < 0 {
            v.add("negative_stock", 1, || format!("listing {n}: tmall {top}, jd {jos}"));
        }
    }
    for sku in SKUS {
        if sandbox.operator.on_hand(sku) < 0 {
            v.add("negative_stock", 1, || format!("operator {sku} {}", sandbox.operator.on_hand(sku)));
        }
    }
    for (sku, on_hand) in db.operator_stock().await {
        if on_hand < 0 {
            v.add("negative_stock", 1, || format!("ledger {sku} {on_hand}"));
        }
    }

    // Leases: runs of one job never overlap nor go back in epoch; effects come only from
    // the daemon holding the job's lease.
    let runs = store.runs_of(None, None, 1_000_000).await.unwrap();
    f.runs = runs.len();
    f.runs_left_open = runs.iter().filter(|r| r.outcome == "running").count();
    check_runs(&runs, &mut v);
    let (checked, ambiguous) = check_effects(effects, leases, slot_of, &mut v);
    f.effects_checked = checked;
    f.effects_ambiguous = ambiguous;
    (v, f)
}

#[derive(Default)]
struct HashSet2 {
    whole: BTreeSet<(String, String)>,
    lines: BTreeSet<(String, String, String)>,
}

impl HashSet2 {
    fn contains(&self, store: &str, order: &str, line: &str) -> bool {
        self.whole.contains(&(store.to_string(), order.to_string()))
            || self.lines.contains(&(store.to_string(), order.to_string(), line.to_string()))
    }
}

fn fence_of(run: &JobRun) -> Option<Fence> {
    serde_json::from_value(run.params.get("fence")?.clone()).ok()
}

/// Per `store/job`: runs sorted by start never overlap a run of another epoch, and a run
/// never starts under an older epoch than one that started before it (a daemon that lost
/// its lease starting or finishing work after the next holder began).
fn check_runs(runs: &[JobRun], v: &mut Violations) {
    let mut by_key: BTreeMap<String, Vec<(&JobRun, i64)>> = BTreeMap::new();
    for run in runs {
        if let Some(fence) = fence_of(run) {
            by_key.entry(fence.key).or_default().push((run, fence.epoch));
        }
    }
    for (key, mut runs) in by_key {
        runs.sort_by_key(|(r, _)| (r.started_at, r.id));
        for pair in runs.windows(2) {
            let ((a, ea), (b, eb)) = (pair[0], pair[1]);
            if eb < ea {
                v.add("write_without_lease", 1, || {
                    format!("{key}: run {} (epoch {eb}) started after run {} (epoch {ea})", b.id, a.id)
                });
            }
            if ea != eb && a.finished_at.is_some_and(|end| end > b.started_at) {
                v.add("write_without_lease", 1, || {
                    format!("{key}: run {} (epoch {ea}) ran on after run {} (epoch {eb}) started", a.id, b.id)
                });
            }
        }
    }
}

/// The lease key an effect needs, if it writes: stock pushes need `store/stock`, shipment
/// pushes `store/shipments`, fulfilment requests and withdrawals `store/fulfilment`.
fn needed_lease(effect: &Effect) -> Option<String> {
    let api = effect.api.as_str();
    let job = match api {
        "taobao.item.quantity.update" | "taobao.skus.quantity.update" => format!("{TMALL}/stock"),
        "taobao.logistics.offline.send" => format!("{TMALL}/shipments"),
        "jingdong.pop.order.shipment" => format!("{JD}/shipments"),
        "v1/fulfilments" | "v1/withdraw" => format!("{}/fulfilment", effect.operator_store.as_deref()?),
        a if a.starts_with("jingdong.") && a.contains("stock") && !a.ends_with("query") => {
            format!("{JD}/stock")
        }
        _ => return None,
    };
    Some(job)
}

/// Each write the sandboxes received, against the lease history: a write at `t` by slot
/// D is a violation when the last poll before `t` and the first poll after `t` both show
/// the job's lease at the same epoch held by another slot (so nothing changed hands in
/// between, and D did not hold it). Writes with a hand-over between the two polls are
/// counted as ambiguous, not as violations. Returns (writes checked, ambiguous).
fn check_effects(
    effects: &[Effect],
    leases: &[LeaseSnapshot],
    slot_of: &dyn Fn(&str) -> Option<usize>,
    v: &mut Violations,
) -> (usize, usize) {
    let (mut checked, mut ambiguous) = (0, 0);
    for effect in effects {
        let Some(key) = needed_lease(effect) else { continue };
        checked += 1;
        let before = leases.iter().rev().find(|s| s.received <= effect.at);
        let after = leases.iter().find(|s| s.sent >= effect.at);
        let (Some(before), Some(after)) = (before, after) else {
            ambiguous += 1;
            continue;
        };
        let (Some(b), Some(a)) = (before.rows.get(&key), after.rows.get(&key)) else {
            ambiguous += 1;
            continue;
        };
        if b.epoch != a.epoch || b.holder != a.holder {
            ambiguous += 1;
            continue;
        }
        if slot_of(&b.holder) != Some(effect.slot) {
            v.add("write_without_lease", 1, || {
                format!(
                    "{} by slot {} at {} while {key} was held by {:?} at epoch {}",
                    effect.api, effect.slot, effect.at, b.holder, b.epoch
                )
            });
        }
    }
    (checked, ambiguous)
}
