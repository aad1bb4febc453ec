//! Pulling a modified-time window of orders so that none is missed: splitting windows the
//! page cap would cut, paging backwards, re-reading page 1, deduplicating by order id.
//!
//! Why this order of reads: the search sorts by `modified`, newest first (`sortType=1`). An
//! order modified while we page either leaves the window (its new `modified` is past the
//! end) and everything after it moves one place toward page 1, or, when the window reaches
//! "now", jumps to the top of page 1 and pushes everything before its old place one step
//! back. Paging from the last page to the first loses nothing to the first kind of move;
//! re-reading page 1 afterwards finds the second kind, and when it shows anything new, one
//! forward pass (which the second kind of move cannot defeat) collects what was pushed
//! across a page boundary. The re-reads are bounded, and skipped when the window had closed
//! before the pull began and every page reported the same total (nothing can have moved);
//! the sync job's overlapping windows are the last line of defence.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use flagsync_market::time::format_beijing;
use flagsync_market::{ConnectorError, ErrorKind, Fetched, OrderSink, PullError, PullStats, TimeWindow};

use crate::JdConnector;
use crate::envelope::PLATFORM;
use crate::parse::{self, OPTIONAL_FIELDS, ORDER_SEARCH, SearchPage};

/// Rounds of "re-read page 1, and if it changed, read forward" after the backward pass.
const VERIFY_ROUNDS: u32 = 3;

/// What has been handed to the sink in this pull, to hand over each order version once.
#[derive(Default)]
struct Seen {
    orders: HashMap<String, DateTime<Utc>>,
    unparsed: HashSet<u64>,
}

impl Seen {
    /// Keeps the orders not handed over yet at this `modified` or newer; within the batch
    /// the newest version of an order wins. Also says whether the batch repeated an order
    /// version (handed over before, or twice in the batch).
    fn take_new(&mut self, batch: Vec<Fetched>) -> (Vec<Fetched>, bool) {
        let mut repeated = false;
        let mut out: Vec<Fetched> = Vec::new();
        let mut at: HashMap<String, usize> = HashMap::new();
        for fetched in batch {
            match &fetched {
                Fetched::Order(order) => {
                    let modified = order.modified_at;
                    if self.orders.get(&order.order_id).is_some_and(|seen| *seen >= modified) {
                        repeated = true;
                        continue;
                    }
                    self.orders.insert(order.order_id.clone(), modified);
                    match at.get(&order.order_id) {
                        Some(&index) => out[index] = fetched,
                        None => {
                            at.insert(order.order_id.clone(), out.len());
                            out.push(fetched);
                        }
                    }
                }
                Fetched::Unparsed(unparsed) => {
                    let mut hasher = DefaultHasher::new();
                    unparsed.raw.hash(&mut hasher);
                    if self.unparsed.insert(hasher.finish()) {
                        out.push(fetched);
                    } else {
                        repeated = true;
                    }
                }
            }
        }
        (out, repeated)
    }
}

fn pages_for(total: u64, page_size: u32) -> u64 {
    total.div_ceil(u64::from(page_size.max(1)))
}

fn second_floor(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::seconds(1)).unwrap_or(at)
}

fn refused(message: String) -> ConnectorError {
    ConnectorError::new(PLATFORM, ORDER_SEARCH, ErrorKind::Rejected, message)
}

impl JdConnector {
    pub(crate) async fn pull(
        &self,
        window: TimeWindow,
        sink: &mut dyn OrderSink,
    ) -> Result<PullStats, PullError> {
        if window.end < window.start {
            return Err(refused("window ends before it starts".into()).into());
        }
        let span = (window.end - window.start).to_std().unwrap_or_default();
        if span > crate::MAX_WINDOW {
            return Err(refused(format!(
                "window of {} hours exceeds jd's 30-day limit; split it",
                span.as_secs() / 3600
            ))
            .into());
        }
        if window.start < self.clock.now() - crate::MAX_LOOKBACK {
            return Err(refused(
                "window starts more than 90 days ago, beyond jd's modified-time search".into(),
            )
            .into());
        }
        let began = self.clock.now();
        let mut stats = PullStats::default();
        let mut seen = Seen::default();
        // JD compares at whole seconds; splitting on whole seconds keeps halves disjoint.
        let mut pending = vec![(second_floor(window.start), second_floor(window.end))];
        while let Some((from, to)) = pending.pop() {
            let first = self.search(from, to, 1, &mut stats).await?;
            let pages = pages_for(first.total, self.config.page_size);
            if pages > u64::from(self.config.page_cap) {
                if to - from < TimeDelta::seconds(1) {
                    return Err(refused(format!(
                        "{} orders modified within one second exceed the page cap ({} pages of {})",
                        first.total, self.config.page_cap, self.config.page_size
                    ))
                    .into());
                }
                let mid = from + TimeDelta::seconds((to - from).num_seconds() / 2);
                tracing::debug!(
                    platform = PLATFORM,
                    total = first.total,
                    "splitting a window the page cap would cut"
                );
                pending.push((mid + TimeDelta::seconds(1), to));
                pending.push((from, mid));
                continue;
            }
            let first_total = first.total;
            let first_repeated = self.hand_over(first, &mut seen, sink, &mut stats).await?.1;
            if pages <= 1 {
                continue;
            }
            let mut steady = true;
            // A page that repeats an order shows the list shifted under offset paging (ties
            // in `modified` sorted differently, or an order moving): a record may have been
            // pushed past a page boundary anywhere, so the first verify round reads every page.
            let mut shifted = first_repeated;
            // Each page is read while the one before it is handed over, so the sink's
            // writes and the next call overlap; the calls still go out one at a time, in
            // the same backward order.
            let mut ahead = PullStats::default();
            let mut next = Some(self.search(from, to, pages, &mut stats).await?);
            for page in (2..=pages).rev() {
                let Some(found) = next.take() else { break };
                steady &= found.total == first_total;
                let read_next = async {
                    if page > 2 {
                        self.search(from, to, page - 1, &mut ahead).await.map(Some)
                    } else {
                        Ok(None)
                    }
                };
                let (handed, read) =
                    tokio::join!(self.hand_over(found, &mut seen, sink, &mut stats), read_next);
                shifted |= handed?.1;
                next = read?;
            }
            stats.calls += ahead.calls;
            stats.pages += ahead.pages;
            // A window that had closed before the pull began (JD stamps `modified` to the
            // second) never gains an order while we read: a modified order leaves it, which
            // the backward pass survives. With every page reporting the same total as page
            // 1, nothing left either, so a verify round cannot find anything, unless a page
            // repeated an order (ties in `modified` ordered differently between calls).
            let closed = to + TimeDelta::seconds(1) <= began;
            let rounds = if closed && steady && !shifted { 0 } else { VERIFY_ROUNDS };
            for round in 0..rounds {
                let top = self.search(from, to, 1, &mut stats).await?;
                let pages_now =
                    pages_for(top.total, self.config.page_size).min(u64::from(self.config.page_cap));
                if self.hand_over(top, &mut seen, sink, &mut stats).await?.0 == 0 && !(shifted && round == 0)
                {
                    break;
                }
                for page in 2..=pages_now {
                    let found = self.search(from, to, page, &mut stats).await?;
                    self.hand_over(found, &mut seen, sink, &mut stats).await?;
                }
            }
        }
        Ok(stats)
    }

    async fn search(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        page: u64,
        stats: &mut PullStats,
    ) -> Result<SearchPage, ConnectorError> {
        let business = serde_json::json!({
            "start_date": format_beijing(from),
            "end_date": format_beijing(to),
            "dateType": 0,
            "sortType": 1,
            "order_state": self.order_states(),
            "optional_fields": OPTIONAL_FIELDS,
            "page": page.to_string(),
            "page_size": self.config.page_size.to_string(),
        });
        stats.pages += 1;
        self.with_retry(ORDER_SEARCH, &business, parse::search_page, &mut stats.calls).await
    }

    /// Hands a page's unseen order versions to the sink; returns how many, and whether
    /// the page repeated an order version.
    async fn hand_over(
        &self,
        page: SearchPage,
        seen: &mut Seen,
        sink: &mut dyn OrderSink,
        stats: &mut PullStats,
    ) -> Result<(usize, bool), PullError> {
        let (fresh, repeated) = seen.take_new(page.orders);
        if fresh.is_empty() {
            return Ok((0, repeated));
        }
        let count = fresh.len();
        let unparsed = fresh.iter().filter(|f| matches!(f, Fetched::Unparsed(_))).count();
        stats.orders += count as u64;
        stats.unparsed += unparsed as u64;
        sink.accept(fresh).await?;
        Ok((count, repeated))
    }
}
