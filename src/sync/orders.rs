//! The order pull: walks modification-time windows from a store's cursor to "now minus the
//! settle delay", hands each window to the connector, and stores what comes back.
//!
//! Invariants:
//! - the cursor only moves in the transaction that stores the last batch of its window,
//!   so it never points past orders that are not committed (a crash re-reads the window);
//! - a run starts `overlap` before the cursor, and orders are upserted by (store, id,
//!   modified), so re-reads and duplicates across windows are harmless;
//! - when the overlap is longer than the time since the cursor, a run may instead list two
//!   ranges: the strip that has aged `overlap` since it was first listed, then the new
//!   minutes; the aged strip goes first and never moves the cursor (see [`plan_ranges`]);
//! - manual re-pulls (a time range, one order id) store orders but never move the cursor.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use flagsync_market::{Clock, Fetched, Marketplace, OrderSink, SinkError, TimeWindow};
use serde::Serialize;

use super::SyncError;
use crate::store::{IngestStats, Store, StoreError};

/// The cursor name of the incremental order pull.
pub const ORDERS_JOB: &str = "orders";
/// How far every moment has had its aged look (see [`plan_ranges`]): it only advances, and
/// only after a whole incremental run is stored.
pub const AGED_CURSOR: &str = "orders-aged";

#[derive(Debug, Clone)]
pub struct OrderSyncOptions {
    pub window: Duration,
    pub settle_delay: Duration,
    pub overlap: Duration,
    pub initial_lookback: Duration,
    /// How the store's lines map to the catalogue; reservations follow order state when set.
    pub reservations: Option<Arc<crate::inventory::ReservationRules>>,
    /// The job lease this pull runs under; every write checks it.
    pub fence: Option<crate::jobs::Fence>,
}

/// What to pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderPull {
    /// From the cursor onwards; moves the cursor.
    Incremental,
    /// A manual re-pull of a modification-time range; the cursor stays.
    Range { since: DateTime<Utc>, until: DateTime<Utc> },
    /// One order by id; the cursor stays.
    Order(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct OrderSyncReport {
    pub windows: u64,
    pub received: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub quarantined: u64,
    pub calls: u64,
    pub pages: u64,
    /// Where the cursor stands after the run.
    pub cursor: Option<DateTime<Utc>>,
    /// The run listed the aged strip behind its cursor on its own: apart from the new
    /// minutes (the orders already held there made one range the dearer), or again after
    /// one range that took more than a page (see `plan_ranges`).
    #[serde(default)]
    pub split: bool,
}

impl OrderSyncReport {
    fn add(&mut self, stats: IngestStats) {
        self.inserted += stats.inserted;
        self.updated += stats.updated;
        self.unchanged += stats.unchanged;
        self.quarantined += stats.quarantined;
    }
}

/// Most order versions one group commit gathers (memory stays bounded: about 3 KB an
/// order, so 30 MB).
pub const GROUP_COMMIT_MAX: usize = 10_000;

/// Order versions a group gathers before it is stored, when a window has that many: a
/// commit rewrites every index page it touched, so larger commits cost less CPU an order
/// (two thousand about half of what pages of a hundred did, five thousand about 10 % less
/// again: BENCHMARKS.md, sessions 5 and 6).
pub const GROUP_COMMIT_MIN: usize = 5_000;

/// The longest a gathered group waits for more pages before it is stored anyway.
const GROUP_HOLD: Duration = Duration::from_millis(500);

/// Stores batches as they come, in groups, holding back the latest ones so that the
/// window's last batch and its cursor commit together. Pages are gathered until a group
/// holds [`GROUP_COMMIT_MIN`] orders (or has waited [`GROUP_HOLD`]), then the group is
/// stored in the background while the connector fetches the next pages (HTTP and the
/// database overlap); while that store runs, arriving pages keep gathering, up to
/// [`GROUP_COMMIT_MAX`]. Ingests still commit one at a time and in order, since each waits
/// for the one before. A window that ends while the writer is idle commits at once, with
/// its cursor, while the next window is pulled; one that ends while a commit runs leaves
/// its cursor with what it gathered, and the next window's pages join that group: the
/// cursor then commits with the first group that holds the whole window, and the pull
/// never waits for a commit at a window's end.
struct StoreSink {
    store: Store,
    store_id: String,
    rules: Option<Arc<crate::inventory::ReservationRules>>,
    fence: Option<crate::jobs::Fence>,
    pending: Vec<Fetched>,
    /// The newest version of each order in `pending`, kept as pages arrive: `select_changed`
    /// asks about every page, and rebuilding this from a group of thousands each time cost
    /// about 8 % of the daemon's CPU in the ingest benchmark.
    pending_versions: HashMap<String, DateTime<Utc>>,
    /// The end of the last window pulled whole, when its orders are in `pending` and not
    /// handed over yet: it commits with them (or with a later group, which holds them too).
    pending_cursor: Option<DateTime<Utc>>,
    /// When the first batch of `pending` arrived.
    pending_since: Option<std::time::Instant>,
    /// The batch being stored in the background, and its orders' versions (not committed
    /// yet, so `select_changed` must count them as known).
    inflight: Option<tokio::task::JoinHandle<Result<IngestStats, StoreError>>>,
    inflight_versions: HashMap<String, DateTime<Utc>>,
    stats: IngestStats,
    received: u64,
}

impl Drop for StoreSink {
    fn drop(&mut self) {
        // A pull given up (or cancelled) does not leave a write running behind it; an
        // uncommitted ingest rolls back, and the window is read again next run.
        if let Some(task) = self.inflight.take() {
            task.abort();
        }
    }
}

impl StoreSink {
    fn new(
        store: &Store,
        store_id: &str,
        rules: Option<Arc<crate::inventory::ReservationRules>>,
        fence: Option<crate::jobs::Fence>,
    ) -> Self {
        Self {
            store: store.clone(),
            store_id: store_id.to_string(),
            rules,
            fence,
            pending: Vec::new(),
            pending_versions: HashMap::new(),
            pending_cursor: None,
            pending_since: None,
            inflight: None,
            inflight_versions: HashMap::new(),
            stats: IngestStats::default(),
            received: 0,
        }
    }

    /// Whether the background ingest is still running.
    fn committing(&self) -> bool {
        self.inflight.as_ref().is_some_and(|task| !task.is_finished())
    }

    /// Waits for the background ingest, if any.
    async fn settle(&mut self) -> Result<(), SyncError> {
        if let Some(task) = self.inflight.take() {
            let stats =
                task.await.map_err(|e| SyncError::Invalid(format!("order ingest task failed: {e}")))??;
            self.stats.add(stats);
            self.inflight_versions.clear();
        }
        Ok(())
    }

    /// Ends a window: what it still holds is stored with the window's cursor, in one
    /// transaction, in the background like any group, so the next window's pull starts
    /// while it commits. If a commit is still running, the pull does not wait for it: the
    /// cursor stays with the gathered orders, and the next window's pages join them until
    /// the group is handed over. Commits stay in order (each waits for the one before), a
    /// cursor only ever commits with the orders of its window, and the run settles the last
    /// commit before it reports, so a cursor never passes an order that is not stored.
    async fn finish(&mut self, cursor: Option<DateTime<Utc>>) -> Result<(), SyncError> {
        if cursor.is_some() {
            self.pending_cursor = cursor;
        }
        if self.committing() && self.pending.len() < GROUP_COMMIT_MAX {
            // The window's orders wait in `pending` with its cursor; the next window's
            // pages join them while the running commit ends.
            return Ok(());
        }
        self.hand_over().await
    }

    /// Stores what is gathered, with the cursor it completes, once the previous ingest
    /// has settled (in the background, like any group).
    async fn hand_over(&mut self) -> Result<(), SyncError> {
        self.settle().await?;
        self.pending_since = None;
        let batch = std::mem::take(&mut self.pending);
        let versions = std::mem::take(&mut self.pending_versions);
        let cursor = self.pending_cursor.take();
        if batch.is_empty() && cursor.is_none() {
            return Ok(());
        }
        self.store_in_background(batch, versions, cursor);
        Ok(())
    }

    /// Stores everything gathered and waits for every commit: the end of a run, and of a
    /// failed pull (what earlier windows, and the failed one so far, delivered is kept;
    /// the cursor moves only to the last window pulled whole).
    async fn flush(&mut self) -> Result<(), SyncError> {
        self.hand_over().await?;
        self.settle().await
    }

    /// Starts storing `batch` (and moving the cursor) once the previous ingest has settled;
    /// `versions` are its orders' newest versions.
    fn store_in_background(
        &mut self,
        batch: Vec<Fetched>,
        versions: HashMap<String, DateTime<Utc>>,
        cursor: Option<DateTime<Utc>>,
    ) {
        self.inflight_versions = versions;
        let (store, store_id, rules, fence) =
            (self.store.clone(), self.store_id.clone(), self.rules.clone(), self.fence.clone());
        self.inflight = Some(tokio::spawn(async move {
            store
                .ingest_fenced(
                    &store_id,
                    &batch,
                    cursor.map(|c| (ORDERS_JOB, c)),
                    rules.as_deref(),
                    fence.as_ref(),
                )
                .await
        }));
    }
}

/// Adds `batch`'s orders to `versions`, keeping each order's newest version.
fn note_versions(versions: &mut HashMap<String, DateTime<Utc>>, batch: &[Fetched]) {
    for fetched in batch {
        if let Fetched::Order(order) = fetched {
            versions
                .entry(order.order_id.clone())
                .and_modify(|at| *at = (*at).max(order.modified_at))
                .or_insert(order.modified_at);
        }
    }
}

#[async_trait]
impl OrderSink for StoreSink {
    async fn select_changed(
        &mut self,
        candidates: &[(String, DateTime<Utc>)],
    ) -> Result<Vec<bool>, SinkError> {
        let ids: Vec<String> = candidates.iter().map(|(id, _)| id.clone()).collect();
        let stored =
            self.store.stored_versions(&self.store_id, &ids).await.map_err(|e| SinkError(Box::new(e)))?;
        Ok(candidates
            .iter()
            .map(|(id, modified)| {
                let known = [
                    stored.get(id),
                    self.inflight_versions.get(id.as_str()),
                    self.pending_versions.get(id.as_str()),
                ]
                .into_iter()
                .flatten()
                .max();
                known.is_none_or(|known| known < modified)
            })
            .collect())
    }

    async fn accept(&mut self, batch: Vec<Fetched>) -> Result<(), SinkError> {
        self.received += batch.len() as u64;
        // Group commit: batches wait together and go in as one transaction, so commits
        // (each rewriting the index pages it touched, and the checkpoints that follow) get
        // fewer and larger; while the previous ingest still runs, they keep gathering.
        let busy = self.committing();
        let gathered = self.pending.len() + batch.len();
        let young = self.pending_since.is_none_or(|since| since.elapsed() < GROUP_HOLD);
        if gathered > GROUP_COMMIT_MAX || (!busy && (gathered >= GROUP_COMMIT_MIN || !young)) {
            // What is gathered goes, with a window's cursor waiting here (it belongs to
            // those orders); this batch starts the next group.
            self.hand_over().await.map_err(|e| match e {
                // Kept as a store error, so the pull's caller sees e.g. a lost fence as such.
                SyncError::Store(store) => SinkError(Box::new(store)),
                other => SinkError(Box::new(other)),
            })?;
        }
        self.pending_since.get_or_insert_with(std::time::Instant::now);
        note_versions(&mut self.pending_versions, &batch);
        self.pending.extend(batch);
        Ok(())
    }
}

/// A modification-time range one run lists, cut into windows; finishing a window moves
/// the cursor to its end when `moves_cursor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    moves_cursor: bool,
    /// The aged strip `[start, this]` inside the range must also be listed on its own when
    /// a window of the range took more than one page (see [`plan_ranges`]).
    aged_alone_if_paged: Option<DateTime<Utc>>,
}

impl Range {
    fn new(start: DateTime<Utc>, end: DateTime<Utc>, moves_cursor: bool) -> Self {
        Self { start, end, moves_cursor, aged_alone_if_paged: None }
    }
}

/// The ranges an incremental run lists, in order.
///
/// Every moment must be listed once soon (for lag) and once after it has aged `overlap`
/// past the settle delay (an order the platform's index showed late is found then). One
/// range, `[cursor - overlap, end]`, does both. When the overlap is longer than the time
/// since the cursor (a pull every minute with a five-minute overlap), that one range lists
/// each minute again on every run, six times in all, and in a flash sale the list calls
/// grow with it. Two ranges, the strip that has just aged (`[cursor - overlap, end -
/// overlap]`) and the new minutes (`[cursor, end]`), list each minute twice, but cost at
/// least two calls. The run takes one range only when the orders already held behind the
/// cursor, with the new minutes taken to come at the rate the overlap saw, fit one page.
///
/// Why one page: the aged strip's listing is its last, and it must see every order there.
/// Two ranges list the aged strip on its own, long after the index has caught up with it,
/// so its pages hold still. In one range it is paged together with the newest minutes,
/// which an index that lags (or replicas that lag by different amounts) can show and hide
/// from one call to the next, shifting every page after them; a single reply is one
/// snapshot, which no shift can cut. When the estimate was wrong and the one range took
/// more pages, the aged strip is listed again on its own after it. (That re-listing comes
/// after the cursor has moved, so a run that fails just then leaves the strip with only
/// its paged listing, as every run did before ranges were split.)
///
/// The aged strip goes first and never moves the cursor, so a run that fails part way
/// leaves nothing unaged behind the cursor. It starts where the aged looks stand
/// (`aged`, the [`AGED_CURSOR`]) when that is earlier than `cursor - overlap`: after the
/// overlap is cut (300 s to 30 s), the moments the longer overlap still owed a look get it.
///
/// When the time since the cursor is at least the overlap (a pull interval longer than the
/// overlap, or a late run), the two looks meet in one range whatever its size, as they
/// always did: its aged tail is paged together with the newest minutes and has only that
/// look.
#[allow(clippy::too_many_arguments)]
async fn plan_ranges(
    store: &Store,
    store_id: &str,
    cursor: DateTime<Utc>,
    aged: Option<DateTime<Utc>>,
    end: DateTime<Utc>,
    overlap: TimeDelta,
    per_page: usize,
    oldest: DateTime<Utc>,
) -> Result<Vec<Range>, SyncError> {
    let behind_overlap = cursor - overlap;
    let start = aged.map_or(behind_overlap, |aged| aged.min(behind_overlap)).max(oldest);
    let aged_end = end - overlap;
    if aged_end >= cursor || end <= cursor || overlap <= TimeDelta::zero() {
        return Ok(vec![Range::new(start, end, true)]);
    }
    let behind = store.count_orders_modified(store_id, start, cursor).await? as f64;
    let held_span = (cursor - start).num_milliseconds().max(1) as f64;
    let new = behind * (end - cursor).num_milliseconds() as f64 / held_span;
    if behind + new <= per_page.max(1) as f64 {
        Ok(vec![Range { aged_alone_if_paged: Some(aged_end), ..Range::new(start, end, true) }])
    } else {
        Ok(vec![Range::new(start, aged_end.max(start), false), Range::new(cursor, end, true)])
    }
}

fn delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

/// Runs one order pull for a store.
pub async fn sync_orders(
    store: &Store,
    store_id: &str,
    market: &dyn Marketplace,
    clock: &dyn Clock,
    options: &OrderSyncOptions,
    pull: &OrderPull,
) -> Result<OrderSyncReport, SyncError> {
    let mut report = OrderSyncReport::default();
    let now = clock.now();
    let limits = market.limits();
    let window = delta(options.window.min(limits.max_window)).max(TimeDelta::seconds(1));
    let oldest = now - delta(limits.max_lookback);

    // Where the aged looks will stand once this run is stored (incremental runs only).
    let mut aged_frontier = None;
    let ranges = match pull {
        OrderPull::Order(order_id) => {
            let fetched = market.fetch_order(order_id).await?;
            let stats = store
                .ingest_fenced(
                    store_id,
                    &[fetched],
                    None,
                    options.reservations.as_deref(),
                    options.fence.as_ref(),
                )
                .await?;
            report.received = 1;
            report.calls = 1;
            report.add(stats);
            report.cursor = store.cursor(store_id, ORDERS_JOB).await?;
            return Ok(report);
        }
        OrderPull::Range { since, until } => {
            if since >= until {
                return Err(SyncError::Invalid(format!("--since {since} is not before --until {until}")));
            }
            if *since < oldest {
                return Err(SyncError::Invalid(format!(
                    "--since {since} is older than the platform keeps orders ({} days)",
                    limits.max_lookback.as_secs() / 86_400
                )));
            }
            vec![Range::new(*since, (*until).min(now), false)]
        }
        OrderPull::Incremental => {
            let end = now - delta(options.settle_delay);
            let overlap = delta(options.overlap);
            aged_frontier = Some(end - overlap);
            match store.cursor(store_id, ORDERS_JOB).await? {
                Some(cursor) => {
                    let aged = store.cursor(store_id, AGED_CURSOR).await?;
                    plan_ranges(store, store_id, cursor, aged, end, overlap, limits.list_page, oldest).await?
                }
                None => {
                    let start = (now - delta(options.initial_lookback)).max(oldest);
                    vec![Range::new(start, end, true)]
                }
            }
        }
    };
    report.split = ranges.len() > 1;
    if report.split {
        tracing::debug!(store = store_id, ?ranges, "listing the aged strip apart from the new minutes");
    }

    let mut sink = StoreSink::new(store, store_id, options.reservations.clone(), options.fence.clone());
    let mut ranges = std::collections::VecDeque::from(ranges);
    while let Some(range) = ranges.pop_front() {
        let mut paged = false;
        let mut window_start = range.start;
        while window_start < range.end {
            let window_end = (window_start + window).min(range.end);
            let stats = match market
                .pull_orders(TimeWindow { start: window_start, end: window_end }, &mut sink)
                .await
            {
                Ok(stats) => stats,
                Err(error) => {
                    // The windows before this one keep what they delivered: their last group
                    // (with its cursor) may still be gathered or committing, so store it first.
                    if let Err(settling) = sink.flush().await {
                        tracing::warn!(store = store_id, error = %settling, "the previous window's commit failed too");
                    }
                    return Err(error.into());
                }
            };
            report.calls += stats.calls;
            report.pages += stats.pages;
            report.windows += 1;
            paged |= stats.pages > 1;
            sink.finish(range.moves_cursor.then_some(window_end)).await?;
            tracing::debug!(store = store_id, start = %window_start, end = %window_end, orders = stats.orders, "window pulled");
            window_start = window_end;
        }
        if let Some(aged_end) = range.aged_alone_if_paged.filter(|_| paged) {
            tracing::debug!(
                store = store_id,
                "one range took more than a page: listing the aged strip on its own"
            );
            report.split = true;
            ranges.push_back(Range::new(range.start, aged_end, false));
        }
    }
    sink.flush().await?;
    if let Some(frontier) = aged_frontier {
        store
            .ingest_fenced(store_id, &[], Some((AGED_CURSOR, frontier)), None, options.fence.as_ref())
            .await?;
    }
    report.received = sink.received;
    report.add(sink.stats);
    report.cursor = store.cursor(store_id, ORDERS_JOB).await?;
    Ok(report)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;
    use flagsync_market::pii::Pii;
    use flagsync_market::{Order, OrderStatus};
    use sqlx::Connection;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-11T00:00:00+08:00").unwrap().with_timezone(&Utc)
            + TimeDelta::minutes(minute)
    }

    fn batch(ids: std::ops::Range<u32>, minute: i64) -> Vec<Fetched> {
        ids.map(|n| {
            Fetched::Order(Box::new(Order {
                order_id: format!("{}", 4_000_000 + n),
                status: OrderStatus::AwaitingPayment,
                platform_status: "WAIT_BUYER_PAY".into(),
                created_at: at(minute),
                modified_at: at(minute),
                paid_at: None,
                total_fen: 100,
                payment_fen: 100,
                post_fee_fen: 0,
                buyer: Pii::new("nick"),
                receiver: None,
                lines: Vec::new(),
                contract: None,
                raw: "{}".into(),
            }))
        })
        .collect()
    }

    /// A window that ends while the previous commit is still running does not wait for it:
    /// its cursor stays with its orders and commits with the group that holds them, never
    /// before them, and the next window's pages join that group.
    #[tokio::test]
    async fn a_window_ending_during_a_commit_leaves_its_cursor_with_its_orders() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = Store::open(&StoreOptions::new(url.clone())).await.unwrap();
        store.register_store("shop-a", "market").await.unwrap();
        let mut sink = StoreSink::new(&store, "shop-a", None, None);
        // Another connection holds SQLite's write lock: the sink's commits wait behind it.
        let mut blocker = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE").execute(&mut blocker).await.unwrap();

        // Window 1 ends with the writer idle: handed over at once, with its cursor.
        sink.accept(batch(0..10, 5)).await.unwrap();
        sink.finish(Some(at(30))).await.unwrap();
        assert!(sink.inflight.is_some(), "window 1 is being stored");
        // Window 2 ends while window 1's commit waits: the pull goes on.
        sink.accept(batch(10..20, 40)).await.unwrap();
        tokio::time::timeout(Duration::from_secs(3), sink.finish(Some(at(60))))
            .await
            .expect("the end of window 2 does not wait for window 1's commit")
            .unwrap();
        // Window 3 is under way when the lock goes; the pull fails in it.
        sink.accept(batch(20..25, 70)).await.unwrap();
        // Window 2's orders were asked for again: known, though not committed yet.
        let again = [(String::from("4000015"), at(40)), (String::from("4000022"), at(71))];
        assert_eq!(sink.select_changed(&again).await.unwrap(), vec![false, true]);
        assert_eq!(store.cursor("shop-a", ORDERS_JOB).await.unwrap(), None, "nothing committed yet");
        sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();

        // What was delivered is stored; the cursor is window 2's end, not past it.
        sink.flush().await.unwrap();
        assert_eq!(store.count_orders("shop-a").await.unwrap(), 25);
        assert_eq!(store.cursor("shop-a", ORDERS_JOB).await.unwrap(), Some(at(60)));
        assert_eq!(sink.stats.inserted, 25);
    }
}
