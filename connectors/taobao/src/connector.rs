//! [`TaobaoConnector`]: the [`Marketplace`] contract over the TOP gateway — windowed order
//! pulls with backward paging, detail and contract reads, stock pushes, idempotent
//! shipment pushes and the credentials check.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use flagsync_market::time::format_beijing;
use flagsync_market::transport::Transport;
use flagsync_market::{
    Clock, ConnectorError, ContractInfo, ErrorKind, Fetched, Limits, ListingQty, ListingRef, Marketplace,
    OrderSink, PullError, PullStats, Shipment, ShipmentOutcome, SinkError, StockResult, StockUpdate,
    TimeWindow, Unparsed,
};
use futures::StreamExt;

use crate::client::Client;
use crate::config::TaobaoConfig;
use crate::error::{PLATFORM, logistics_code, malformed, rejected_locally};
use crate::parse::{self, ListPage, ParsedTrade, TradeState};

pub const LIST_API: &str = "taobao.trades.sold.increment.get";
pub const FULLINFO_API: &str = "taobao.trade.fullinfo.get";
pub const WTVERTICAL_API: &str = "taobao.trade.wtvertical.get";
pub const SKUS_QUANTITY_API: &str = "taobao.skus.quantity.update";
pub const ITEM_QUANTITY_API: &str = "taobao.item.quantity.update";
pub const ITEM_GET_API: &str = "taobao.item.seller.get";
pub const SHIP_API: &str = "taobao.logistics.offline.send";
pub const SELLER_API: &str = "taobao.user.seller.get";

/// Only what paging and deduplication need; details come from fullinfo.
const LIST_FIELDS: &str = "tid,modified,status";

/// Every Trade and Order field the domain maps.
const FULLINFO_FIELDS: &str = "tid,tid_str,status,type,created,modified,pay_time,consign_time,end_time,\
payment,total_fee,post_fee,buyer_nick,buyer_open_uid,receiver_name,receiver_state,receiver_city,\
receiver_district,receiver_town,receiver_address,receiver_zip,receiver_mobile,receiver_phone,is_wt,\
is_sh_ship,orders.oid,orders.oid_str,orders.num_iid,orders.sku_id,orders.outer_iid,orders.outer_sku_id,\
orders.title,orders.num,orders.price,orders.payment,orders.total_fee,orders.status,orders.refund_status,\
orders.consign_time,orders.invoice_no,orders.logistics_company";

/// What a shipment re-read needs.
const STATE_FIELDS: &str = "tid,tid_str,status,orders.oid,orders.oid_str,orders.status,orders.consign_time";

const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);
const MAX_LOOKBACK: Duration = Duration::from_secs(90 * 24 * 3600);
const STOCK_BATCH: usize = 20;
const WTVERTICAL_BATCH: usize = 15;
/// Forward re-reads after the backward pass, while a pass still finds unseen trades.
const MAX_REREAD_PASSES: usize = 3;

/// A Taobao/Tmall store over the TOP gateway.
pub struct TaobaoConnector {
    client: Client,
    clock: Arc<dyn Clock>,
    /// Trades whose details were read before the second of their `modified` was over, by
    /// tid, with that `modified`. TOP stamps `modified` to the second, so a later change in
    /// the same second (a refund right after a payment) keeps the same stamp: a list would
    /// show the version we hold and no pull would read it again. The next pull reads these
    /// once more, after their second is over.
    fresh: std::sync::Mutex<HashMap<String, DateTime<Utc>>>,
}

/// How long after a trade's `modified` its second is surely over, clock skew included.
const FRESH_FOR: TimeDelta = TimeDelta::seconds(2);

impl std::fmt::Debug for TaobaoConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaobaoConnector").field("config", &self.client.config).finish_non_exhaustive()
    }
}

/// Bookkeeping of one window pull.
struct Pull {
    /// Newest `modified` seen per tid.
    seen: HashMap<String, DateTime<Utc>>,
    /// List rows already quarantined, so re-reads do not report them twice.
    bad_rows: HashSet<String>,
    /// A list page repeated a trade version already seen in this pull.
    repeated: bool,
    stats: PullStats,
}

/// One list page sifted and offered to the sink: the trades to read in full, the rows kept
/// as unparsed, and how many trades this pull had not seen before.
#[derive(Default)]
struct Chosen {
    tids: Vec<String>,
    unparsed: Vec<Fetched>,
    unseen: usize,
}

/// One `fullinfo` call: a trade, a trade kept as unparsed, or the call's error.
type FullinfoResult = Result<Result<ParsedTrade, Unparsed>, ConnectorError>;

enum Slot {
    Trade(Box<ParsedTrade>),
    Bad(Unparsed),
}

fn is_tid(text: &str) -> bool {
    !text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit())
}

impl TaobaoConnector {
    pub fn new(config: TaobaoConfig, transport: Arc<dyn Transport>, clock: Arc<dyn Clock>) -> Self {
        Self {
            client: Client::new(config, transport, Arc::clone(&clock)),
            clock,
            fresh: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn config(&self) -> &TaobaoConfig {
        &self.client.config
    }

    fn check_window(&self, window: &TimeWindow) -> Result<(), ConnectorError> {
        if window.end < window.start {
            return Err(rejected_locally(LIST_API, "window ends before it starts"));
        }
        let span = (window.end - window.start).to_std().unwrap_or(Duration::MAX);
        if span > MAX_WINDOW {
            return Err(rejected_locally(
                LIST_API,
                format!("window of {} s exceeds the 1 day (86400 s) limit of {LIST_API}", span.as_secs()),
            ));
        }
        let oldest = self.clock.now() - TimeDelta::from_std(MAX_LOOKBACK).unwrap_or(TimeDelta::MAX);
        if window.start < oldest {
            return Err(rejected_locally(
                LIST_API,
                format!(
                    "window starts before the 90 day lookback of {LIST_API} ({})",
                    format_beijing(oldest)
                ),
            ));
        }
        Ok(())
    }

    fn pages(&self, total: u64) -> u64 {
        total.div_ceil(u64::from(self.config().page_size()))
    }

    async fn list_page(
        &self,
        window: &TimeWindow,
        page: u64,
        calls: &AtomicU64,
    ) -> Result<ListPage, ConnectorError> {
        let params = [
            ("fields", LIST_FIELDS.to_string()),
            ("start_modified", format_beijing(window.start)),
            ("end_modified", format_beijing(window.end)),
            ("type", self.config().trade_types.join(",")),
            ("page_no", page.to_string()),
            ("page_size", self.config().page_size().to_string()),
            // Backward paging needs total_results, which use_has_next=true drops.
            ("use_has_next", "false".to_string()),
        ];
        self.client.call_retrying(LIST_API, &params, calls, parse::increment_page).await
    }

    fn total(page: &ListPage) -> Result<u64, ConnectorError> {
        page.total_results.ok_or_else(|| malformed(LIST_API, "no total_results in a list page"))
    }

    /// Takes in one list page: new or newer trades are offered to the sink, fetched in
    /// full and handed over as one batch. Returns how many trades were unseen.
    async fn absorb(
        &self,
        page: ListPage,
        sink: &mut dyn OrderSink,
        pull: &mut Pull,
        calls: &AtomicU64,
    ) -> Result<usize, PullError> {
        let chosen = self.choose(page, sink, pull).await?;
        let unseen = chosen.unseen;
        let fetched = self.fetch_chosen(&chosen, calls).await?;
        Self::deliver(chosen, fetched, sink, &mut pull.stats).await?;
        Ok(unseen)
    }

    /// Sifts one list page against what this pull has seen and asks the sink which of the
    /// new or newer trades it wants.
    async fn choose(
        &self,
        page: ListPage,
        sink: &mut dyn OrderSink,
        pull: &mut Pull,
    ) -> Result<Chosen, PullError> {
        pull.stats.pages += 1;
        let mut chosen = Chosen::default();
        let mut candidates = Vec::new();
        for row in page.rows {
            match row {
                Ok(row) => {
                    let known = pull.seen.get(&row.tid).copied();
                    if known.is_some_and(|known| known >= row.modified) {
                        pull.repeated = true;
                        continue;
                    }
                    if known.is_none() {
                        chosen.unseen += 1;
                    }
                    pull.seen.insert(row.tid.clone(), row.modified);
                    candidates.push((row.tid, row.modified));
                }
                Err(bad) => {
                    if pull.bad_rows.insert(bad.raw.clone()) {
                        chosen.unseen += 1;
                        chosen.unparsed.push(Fetched::Unparsed(bad));
                    } else {
                        pull.repeated = true;
                    }
                }
            }
        }
        if !candidates.is_empty() {
            let wanted = sink.select_changed(&candidates).await?;
            if wanted.len() != candidates.len() {
                return Err(PullError::Sink(SinkError(
                    format!("select_changed answered {} of {} candidates", wanted.len(), candidates.len())
                        .into(),
                )));
            }
            chosen.tids = candidates
                .into_iter()
                .zip(wanted)
                .filter(|(_, want)| *want)
                .map(|((tid, _), _)| tid)
                .collect();
        }
        Ok(chosen)
    }

    /// The chosen trades in full.
    async fn fetch_chosen(&self, chosen: &Chosen, calls: &AtomicU64) -> Result<Vec<Fetched>, ConnectorError> {
        if chosen.tids.is_empty() {
            return Ok(Vec::new());
        }
        self.fetch_many(&chosen.tids, calls, true).await
    }

    /// Hands a page's unparsed rows and fetched trades to the sink as one batch.
    async fn deliver(
        chosen: Chosen,
        fetched: Vec<Fetched>,
        sink: &mut dyn OrderSink,
        stats: &mut PullStats,
    ) -> Result<(), PullError> {
        let mut batch = chosen.unparsed;
        batch.extend(fetched);
        if !batch.is_empty() {
            stats.orders += batch.len() as u64;
            stats.unparsed += batch.iter().filter(|f| matches!(f, Fetched::Unparsed(_))).count() as u64;
            sink.accept(batch).await?;
        }
        Ok(())
    }

    async fn fullinfo(&self, tid: &str, calls: &AtomicU64) -> FullinfoResult {
        let params = [("fields", FULLINFO_FIELDS.to_string()), ("tid", tid.to_string())];
        self.client.call_retrying(FULLINFO_API, &params, calls, parse::fullinfo).await
    }

    /// Reads again, and hands over, the trades read before their second was over (see
    /// `fresh`) whose second is over now. They go to the sink without `select_changed`: a
    /// version with the same `modified` may still differ, and the store keeps the one whose
    /// content changed.
    async fn reread_fresh(
        &self,
        now: DateTime<Utc>,
        sink: &mut dyn OrderSink,
        pull: &mut Pull,
        calls: &AtomicU64,
    ) -> Result<(), PullError> {
        let due: Vec<String> = {
            let mut fresh = self.fresh.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let due: Vec<String> = fresh
                .iter()
                .filter(|(_, modified)| now >= **modified + FRESH_FOR)
                .map(|(tid, _)| tid.clone())
                .collect();
            for tid in &due {
                fresh.remove(tid);
            }
            due
        };
        if due.is_empty() {
            return Ok(());
        }
        tracing::debug!(trades = due.len(), "reading again trades read before their second was over");
        let handed = async {
            let batch = self.fetch_many(&due, calls, true).await?;
            pull.stats.orders += batch.len() as u64;
            pull.stats.unparsed += batch.iter().filter(|f| matches!(f, Fetched::Unparsed(_))).count() as u64;
            sink.accept(batch).await?;
            Ok::<(), PullError>(())
        }
        .await;
        if handed.is_err() {
            // Kept for the next pull, which tries again.
            let mut fresh = self.fresh.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for tid in due {
                fresh.entry(tid).or_insert(now - FRESH_FOR);
            }
        }
        handed
    }

    /// Several `fullinfo` calls in one batch request, answered in the order asked. A call
    /// that failed in a way worth retrying (throttled, a transient service error) is retried
    /// on its own, so one busy trade does not cost the others another round.
    async fn fullinfo_batch(
        &self,
        tids: &[String],
        calls: &AtomicU64,
    ) -> Result<Vec<FullinfoResult>, ConnectorError> {
        let shared = [("fields", FULLINFO_FIELDS.to_string())];
        let each: Vec<Vec<(&str, String)>> = tids.iter().map(|tid| vec![("tid", tid.clone())]).collect();
        let mut results =
            self.client.call_batch_retrying(FULLINFO_API, &shared, &each, calls, parse::fullinfo).await?;
        for (tid, result) in tids.iter().zip(results.iter_mut()) {
            if result.as_ref().is_err_and(ConnectorError::is_retryable) {
                *result = self.fullinfo(tid, calls).await;
            }
        }
        Ok(results)
    }

    /// Full trades with contract data, in the order asked. With `quarantine`, a business
    /// refusal for one trade (an `isv.*` sub_code) is kept as unparsed instead of failing
    /// the lot.
    async fn fetch_many(
        &self,
        tids: &[String],
        calls: &AtomicU64,
        quarantine: bool,
    ) -> Result<Vec<Fetched>, ConnectorError> {
        let concurrency = self.config().detail_concurrency.max(1);
        let per_batch = self.config().fullinfo_batch();
        let results = if per_batch > 1 && tids.len() > 1 {
            // Built eagerly: a lazy `map` closure held across the await trips the Send check
            // of the async trait.
            let pending: Vec<_> =
                tids.chunks(per_batch).map(|chunk| self.fullinfo_batch(chunk, calls)).collect();
            let mut batches = futures::stream::iter(pending).buffered(concurrency);
            let mut results = Vec::with_capacity(tids.len());
            while let Some(batch) = batches.next().await {
                results.extend(batch?);
            }
            results
        } else {
            let pending: Vec<_> = tids.iter().map(|tid| self.fullinfo(tid, calls)).collect();
            futures::stream::iter(pending).buffered(concurrency).collect::<Vec<_>>().await
        };
        let now = self.clock.now();
        {
            let mut fresh = self.fresh.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for result in &results {
                if let Ok(Ok(trade)) = result
                    && now < trade.order.modified_at + FRESH_FOR
                {
                    fresh.insert(trade.order.order_id.clone(), trade.order.modified_at);
                }
            }
        }
        let mut slots = Vec::with_capacity(results.len());
        for (tid, result) in tids.iter().zip(results) {
            slots.push(match result {
                Ok(Ok(trade)) if trade.order.order_id != *tid => {
                    return Err(malformed(
                        FULLINFO_API,
                        format!("asked for trade {tid}, got {}", trade.order.order_id),
                    ));
                }
                Ok(Ok(trade)) => Slot::Trade(Box::new(trade)),
                Ok(Err(bad)) => Slot::Bad(bad),
                Err(error)
                    if quarantine
                        && error.kind == ErrorKind::Rejected
                        && error.sub_code.as_deref().is_some_and(|s| s.starts_with("isv.")) =>
                {
                    Slot::Bad(Unparsed {
                        api: FULLINFO_API.to_string(),
                        order_id: Some(tid.clone()),
                        raw: String::new(),
                        reason: format!("trade {tid}: the gateway refused its details: {error}"),
                    })
                }
                Err(error) => return Err(error),
            });
        }
        let wt: Vec<String> = slots
            .iter()
            .filter_map(|slot| match slot {
                Slot::Trade(trade) if trade.is_wt => Some(trade.order.order_id.clone()),
                _ => None,
            })
            .collect();
        let mut contracts = self.contracts(&wt, calls).await?;
        Ok(slots
            .into_iter()
            .map(|slot| match slot {
                Slot::Trade(mut trade) => {
                    if trade.is_wt {
                        trade.order.contract = contracts.remove(&trade.order.order_id);
                        if trade.order.contract.is_none() {
                            tracing::warn!(tid = %trade.order.order_id, "contract trade without wtvertical data yet");
                        }
                    }
                    Fetched::Order(Box::new(trade.order))
                }
                Slot::Bad(bad) => Fetched::Unparsed(bad),
            })
            .collect())
    }

    async fn contracts(
        &self,
        tids: &[String],
        calls: &AtomicU64,
    ) -> Result<HashMap<String, ContractInfo>, ConnectorError> {
        let mut out = HashMap::new();
        for chunk in tids.chunks(WTVERTICAL_BATCH) {
            let params = [("tids", chunk.join(","))];
            for entry in self.client.call_retrying(WTVERTICAL_API, &params, calls, parse::wtvertical).await? {
                match entry {
                    Ok((tid, info)) => {
                        out.insert(tid, info);
                    }
                    Err(reason) => {
                        tracing::warn!(api = WTVERTICAL_API, error = %reason, "unreadable contract entry")
                    }
                }
            }
        }
        Ok(out)
    }

    async fn trade_state(&self, tid: &str, calls: &AtomicU64) -> Result<TradeState, ConnectorError> {
        let params = [("fields", STATE_FIELDS.to_string()), ("tid", tid.to_string())];
        self.client.call_retrying(FULLINFO_API, &params, calls, parse::trade_state).await
    }

    /// The wait before another shipment attempt, or none when the platform's ban is longer
    /// than the policy will sleep.
    fn retry_wait(&self, error: &ConnectorError, attempt: u32) -> Option<Duration> {
        let policy = &self.config().retry;
        match error.retry_after {
            Some(hint) if hint > policy.max_hint => None,
            Some(hint) => Some(hint + Duration::from_secs(1)),
            None => Some(policy.delay_for(attempt)),
        }
    }

    /// Full (type 1) or incremental (type 2) quantity updates, grouped per item.
    async fn push_quantities(
        &self,
        updates: &[StockUpdate],
        incremental: bool,
    ) -> Result<Vec<StockResult>, ConnectorError> {
        let mut outcomes: Vec<Option<Result<i64, ConnectorError>>> = vec![None; updates.len()];
        // Group by item, keeping first-appearance order; a listing named twice is sent once
        // with its last quantity.
        let mut groups: Vec<(String, Vec<StockEntry>)> = Vec::new();
        for (index, update) in updates.iter().enumerate() {
            let listing = &update.listing;
            let api = if listing.sku_id.is_some() { SKUS_QUANTITY_API } else { ITEM_QUANTITY_API };
            let problem = if !is_tid(&listing.item_id) {
                Some(format!("item id {:?} is not a taobao num_iid", listing.item_id))
            } else if listing.sku_id.as_deref().is_some_and(|sku| !is_tid(sku)) {
                Some(format!(
                    "sku id {:?} of item {} is not a taobao sku_id",
                    listing.sku_id, listing.item_id
                ))
            } else if update.quantity < 0 && !incremental {
                Some(format!("quantity {} for item {} is negative", update.quantity, listing.item_id))
            } else {
                None
            };
            if let Some(problem) = problem {
                outcomes[index] = Some(Err(rejected_locally(api, problem)));
                continue;
            }
            let position = match groups.iter().position(|(item, _)| item == &listing.item_id) {
                Some(position) => position,
                None => {
                    groups.push((listing.item_id.clone(), Vec::new()));
                    groups.len() - 1
                }
            };
            let group = &mut groups[position].1;
            match group.iter_mut().find(|e| e.sku == listing.sku_id) {
                Some(entry) => {
                    entry.quantity = update.quantity;
                    entry.indices.push(index);
                }
                None => group.push(StockEntry {
                    sku: listing.sku_id.clone(),
                    quantity: update.quantity,
                    indices: vec![index],
                }),
            }
        }
        let calls = AtomicU64::new(0);
        let mut auth_failure: Option<ConnectorError> = None;
        for (item_id, entries) in &groups {
            let results = match &auth_failure {
                // Expired credentials fail every call alike: stop calling.
                Some(error) => {
                    entries.iter().flat_map(|e| e.indices.iter().map(|&i| (i, Err(error.clone())))).collect()
                }
                None => self.push_item_group(item_id, entries, &calls, incremental).await,
            };
            for (index, outcome) in results {
                if let Err(error) = &outcome
                    && error.kind == ErrorKind::Auth
                {
                    auth_failure.get_or_insert_with(|| error.clone());
                }
                outcomes[index] = Some(outcome);
            }
        }
        Ok(updates
            .iter()
            .zip(outcomes)
            .map(|(update, outcome)| StockResult {
                listing: update.listing.clone(),
                outcome: outcome
                    .unwrap_or_else(|| Err(malformed(SKUS_QUANTITY_API, "no outcome for this listing"))),
            })
            .collect())
    }

    async fn push_item_group(
        &self,
        item_id: &str,
        entries: &[StockEntry],
        calls: &AtomicU64,
        incremental: bool,
    ) -> Vec<(usize, Result<i64, ConnectorError>)> {
        let kind = if incremental { "2" } else { "1" };
        let mut out = Vec::new();
        let (skus, item_level): (Vec<&StockEntry>, Vec<&StockEntry>) =
            entries.iter().partition(|e| e.sku.is_some());
        for chunk in skus.chunks(STOCK_BATCH) {
            let list: Vec<String> = chunk
                .iter()
                .map(|e| format!("{}:{}", e.sku.as_deref().unwrap_or_default(), e.quantity))
                .collect();
            let params = [
                ("num_iid", item_id.to_string()),
                ("skuid_quantities", list.join(";")),
                ("type", kind.to_string()),
            ];
            let result = if incremental {
                self.client.call_not_twice(SKUS_QUANTITY_API, &params, calls, parse::item).await
            } else {
                self.client.call_retrying(SKUS_QUANTITY_API, &params, calls, parse::item).await
            };
            for entry in chunk {
                let outcome = match &result {
                    Ok(item) => Ok(item
                        .skus
                        .iter()
                        .find(|s| Some(s.sku_id.as_str()) == entry.sku.as_deref())
                        .map_or(entry.quantity, |s| s.quantity)),
                    Err(error) => Err(error.clone()),
                };
                out.extend(entry.indices.iter().map(|&i| (i, outcome.clone())));
            }
        }
        if let Some(entry) = item_level.last() {
            let params = [
                ("num_iid", item_id.to_string()),
                ("quantity", entry.quantity.to_string()),
                ("type", kind.to_string()),
            ];
            let result = if incremental {
                self.client.call_not_twice(ITEM_QUANTITY_API, &params, calls, parse::item).await
            } else {
                self.client.call_retrying(ITEM_QUANTITY_API, &params, calls, parse::item).await
            };
            let outcome = result.map(|item| item.num.unwrap_or(entry.quantity));
            for entry in &item_level {
                out.extend(entry.indices.iter().map(|&i| (i, outcome.clone())));
            }
        }
        out
    }
}

/// One distinct listing to set, and the input positions that asked for it.
struct StockEntry {
    sku: Option<String>,
    quantity: i64,
    indices: Vec<usize>,
}

fn lines_shipped(state: &TradeState, line_ids: &[String]) -> bool {
    if line_ids.is_empty() {
        return parse::is_shipped_status(&state.status)
            || (!state.lines.is_empty() && state.lines.iter().all(parse::LineState::is_shipped));
    }
    line_ids.iter().all(|id| state.lines.iter().any(|line| &line.oid == id && line.is_shipped()))
}

fn lines_closed(state: &TradeState, line_ids: &[String]) -> bool {
    if parse::is_closed_status(&state.status) {
        return true;
    }
    !line_ids.is_empty()
        && line_ids.iter().all(|id| {
            state
                .lines
                .iter()
                .any(|line| &line.oid == id && line.status.as_deref().is_some_and(parse::is_closed_status))
        })
}

/// `identCode=<oid>:<imei>,<imei>|<oid2>:<imei>`: the handset serials per sub-order.
fn serial_feature(shipment: &Shipment) -> Result<String, ConnectorError> {
    let mut parts = Vec::new();
    for line in &shipment.serials {
        if !is_tid(&line.line_id) {
            return Err(rejected_locally(
                SHIP_API,
                format!("serials: line id {:?} is not a taobao oid", line.line_id),
            ));
        }
        let serials: Vec<&str> = line.serials.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect();
        if let Some(bad) = serials.iter().find(|s| s.contains([',', '|', ':', ';', '='])) {
            return Err(rejected_locally(
                SHIP_API,
                format!("serials: serial {bad:?} of line {} holds a separator character", line.line_id),
            ));
        }
        if !serials.is_empty() {
            parts.push(format!("{}:{}", line.line_id, serials.join(",")));
        }
    }
    Ok(if parts.is_empty() { String::new() } else { format!("identCode={}", parts.join("|")) })
}

#[async_trait]
impl Marketplace for TaobaoConnector {
    fn platform(&self) -> &'static str {
        PLATFORM
    }

    fn limits(&self) -> Limits {
        Limits {
            max_window: MAX_WINDOW,
            max_lookback: MAX_LOOKBACK,
            stock_batch: STOCK_BATCH,
            list_page: self.config().page_size() as usize,
        }
    }

    async fn check_credentials(&self) -> Result<(), ConnectorError> {
        let calls = AtomicU64::new(0);
        self.client.call_retrying(SELLER_API, &[("fields", "nick".to_string())], &calls, parse::seller).await
    }

    /// Pages the increment list backwards from the last page (the order TOP prescribes:
    /// the list is sorted by `modified` descending, so trades that leave the window while
    /// we read shift the rest toward page 1, which is still ahead of us), then, unless the
    /// window was one page or closed and steady (see below), re-reads forward until a pass
    /// finds no unseen trade (at most 3 passes) to catch trades that new modifications
    /// pushed past a page already read.
    async fn pull_orders(
        &self,
        window: TimeWindow,
        sink: &mut dyn OrderSink,
    ) -> Result<PullStats, PullError> {
        self.check_window(&window)?;
        let mut pull = Pull {
            seen: HashMap::new(),
            bad_rows: HashSet::new(),
            repeated: false,
            stats: PullStats::default(),
        };
        let calls = AtomicU64::new(0);
        let began = self.clock.now();
        self.reread_fresh(began, sink, &mut pull, &calls).await?;
        let first = self.list_page(&window, 1, &calls).await?;
        let first_total = Self::total(&first)?;
        let last = self.pages(first_total);
        let mut steady = true;
        // Each page's trades are read in full while the page after it in the backward order
        // is listed and offered to the sink, so the detail calls overlap the next list call
        // and the sink's lookup. The list calls still go out one at a time, backwards.
        let mut current = self.choose(first, sink, &mut pull).await?;
        for page in (2..=last).rev() {
            let next = async {
                let listed = self.list_page(&window, page, &calls).await?;
                steady &= listed.total_results == Some(first_total);
                self.choose(listed, sink, &mut pull).await
            };
            let (fetched, next) = tokio::join!(self.fetch_chosen(&current, &calls), next);
            Self::deliver(std::mem::take(&mut current), fetched?, sink, &mut pull.stats).await?;
            current = next?;
        }
        let fetched = self.fetch_chosen(&current, &calls).await?;
        Self::deliver(current, fetched, sink, &mut pull.stats).await?;
        // The forward re-read is skipped when it cannot find anything:
        // - one page: a single read is one consistent snapshot of the window;
        // - a window that closed before the pull began (`modified` is stamped to the
        //   second, so a trade changed while we read moves past its end) can only lose
        //   trades, which the backward order already survives; and every page reported the
        //   same total as the first, so none left or arrived while we read; unless a page
        //   repeated a trade (ties in `modified` ordered differently between calls can
        //   skip one at a page boundary).
        // Otherwise trades that moved between pages mid-pull may have been skipped.
        let closed = window.end + TimeDelta::seconds(1) <= began;
        let rereads = if last <= 1 || (closed && steady && !pull.repeated) { 0 } else { MAX_REREAD_PASSES };
        for pass in 1..=rereads {
            let first = self.list_page(&window, 1, &calls).await?;
            let last = self.pages(Self::total(&first)?);
            let mut unseen = self.absorb(first, sink, &mut pull, &calls).await?;
            for page in 2..=last {
                let listed = self.list_page(&window, page, &calls).await?;
                unseen += self.absorb(listed, sink, &mut pull, &calls).await?;
            }
            if unseen == 0 {
                break;
            }
            tracing::debug!(pass, unseen, "re-read found trades the backward pass missed");
        }
        pull.stats.calls = calls.load(Ordering::Relaxed);
        Ok(pull.stats)
    }

    async fn fetch_order(&self, order_id: &str) -> Result<Fetched, ConnectorError> {
        if !is_tid(order_id) {
            return Err(rejected_locally(FULLINFO_API, format!("order id {order_id:?} is not a taobao tid")));
        }
        let calls = AtomicU64::new(0);
        let mut fetched = self.fetch_many(&[order_id.to_string()], &calls, false).await?;
        fetched.pop().ok_or_else(|| malformed(FULLINFO_API, "no trade came back"))
    }

    async fn push_stock(&self, updates: &[StockUpdate]) -> Result<Vec<StockResult>, ConnectorError> {
        self.push_quantities(updates, false).await
    }

    async fn push_stock_deltas(&self, updates: &[StockUpdate]) -> Result<Vec<StockResult>, ConnectorError> {
        self.push_quantities(updates, true).await
    }
    async fn read_stock(&self, listings: &[ListingRef]) -> Result<Vec<ListingQty>, ConnectorError> {
        let calls = AtomicU64::new(0);
        let mut items: Vec<&str> = Vec::new();
        for listing in listings {
            if !is_tid(&listing.item_id) {
                return Err(rejected_locally(
                    ITEM_GET_API,
                    format!("item id {:?} is not a taobao num_iid", listing.item_id),
                ));
            }
            if !items.contains(&listing.item_id.as_str()) {
                items.push(&listing.item_id);
            }
        }
        let mut live = HashMap::new();
        for item_id in items {
            let params =
                [("num_iid", item_id.to_string()), ("fields", "num_iid,num,outer_id,sku".to_string())];
            match self.client.call_retrying(ITEM_GET_API, &params, &calls, parse::item).await {
                Ok(item) => {
                    live.insert(item_id.to_string(), item);
                }
                // A listing taken down refuses alone; the others still count.
                Err(error) if error.kind == ErrorKind::Rejected && error.sub_code.is_some() => {
                    tracing::warn!(api = ITEM_GET_API, item_id, error = %error, "item not readable; left out");
                }
                Err(error) => return Err(error),
            }
        }
        let mut out = Vec::new();
        for listing in listings {
            let Some(item) = live.get(&listing.item_id) else { continue };
            let found = match &listing.sku_id {
                None => item.num.map(|quantity| (quantity, item.outer_id.clone())),
                Some(sku) => {
                    item.skus.iter().find(|s| &s.sku_id == sku).map(|s| (s.quantity, s.outer_id.clone()))
                }
            };
            match found {
                Some((quantity, outer_id)) => {
                    out.push(ListingQty { listing: listing.clone(), quantity, outer_id })
                }
                None => {
                    tracing::warn!(item_id = %listing.item_id, sku_id = ?listing.sku_id, "listing not on the item; left out")
                }
            }
        }
        Ok(out)
    }

    /// Sends once; on B04 ("already shipped or closed") or any failure that may have
    /// landed, re-reads the trade before deciding, and never sends twice without a re-read
    /// in between.
    async fn push_shipment(&self, shipment: &Shipment) -> Result<ShipmentOutcome, ConnectorError> {
        let tid = shipment.order_id.as_str();
        if !is_tid(tid) {
            return Err(rejected_locally(SHIP_API, format!("order id {tid:?} is not a taobao tid")));
        }
        if shipment.waybill.trim().is_empty() {
            return Err(rejected_locally(SHIP_API, format!("trade {tid}: waybill is empty")));
        }
        if shipment.carrier.trim().is_empty() {
            return Err(rejected_locally(SHIP_API, format!("trade {tid}: carrier code is empty")));
        }
        if let Some(bad) = shipment.line_ids.iter().find(|id| !is_tid(id)) {
            return Err(rejected_locally(
                SHIP_API,
                format!("trade {tid}: line id {bad:?} is not a taobao oid"),
            ));
        }
        let feature = serial_feature(shipment)?;
        let calls = AtomicU64::new(0);

        // A split shipment is only a split when it leaves lines out, which only the trade
        // can tell; the same read settles an earlier attempt that already landed.
        let mut sub_tids = String::new();
        if !shipment.line_ids.is_empty() {
            let state = self.trade_state(tid, &calls).await?;
            if lines_shipped(&state, &shipment.line_ids) {
                return Ok(ShipmentOutcome::AlreadyShipped);
            }
            if lines_closed(&state, &shipment.line_ids) {
                return Err(rejected_locally(SHIP_API, format!("trade {tid} is closed ({})", state.status)));
            }
            if let Some(unknown) =
                shipment.line_ids.iter().find(|id| !state.lines.iter().any(|l| &l.oid == *id))
            {
                return Err(rejected_locally(SHIP_API, format!("trade {tid} has no line {unknown}")));
            }
            if !state.lines.iter().all(|line| shipment.line_ids.contains(&line.oid)) {
                sub_tids = shipment.line_ids.join(",");
            }
        }
        let mut params = vec![
            ("tid", tid.to_string()),
            ("out_sid", shipment.waybill.trim().to_string()),
            ("company_code", shipment.carrier.trim().to_string()),
            ("feature", feature),
        ];
        if !sub_tids.is_empty() {
            params.push(("is_split", "1".to_string()));
            params.push(("sub_tid", sub_tids));
        }

        let max_attempts = self.config().retry.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            let error = match self.client.call(SHIP_API, &params, &calls, parse::shipping).await {
                Ok(true) => return Ok(ShipmentOutcome::Shipped),
                Ok(false) => {
                    return Err(ConnectorError::new(
                        PLATFORM,
                        SHIP_API,
                        ErrorKind::Rejected,
                        "shipping.is_success is false",
                    ));
                }
                Err(error) => error,
            };
            let already = logistics_code(error.sub_code.as_deref()) == Some("B04");
            if !already {
                if !error.is_retryable() {
                    return Err(error);
                }
                // Let a request that may still be in flight land before looking.
                let Some(wait) = self.retry_wait(&error, attempt) else { return Err(error) };
                tokio::time::sleep(wait).await;
            }
            let state = self.trade_state(tid, &calls).await?;
            if lines_shipped(&state, &shipment.line_ids) {
                return Ok(ShipmentOutcome::AlreadyShipped);
            }
            if lines_closed(&state, &shipment.line_ids) {
                let message = format!("trade {tid} is closed ({}): {}", state.status, error.message);
                let mut closed = ConnectorError::new(PLATFORM, SHIP_API, ErrorKind::Rejected, message);
                if let Some(code) = error.code.clone() {
                    closed = closed.with_code(code, error.sub_code.clone());
                }
                return Err(closed);
            }
            if already || attempt >= max_attempts {
                return Err(error);
            }
            attempt += 1;
        }
    }
}
