//! Catalogue and stock: `taobao.item.seller.get`, `taobao.items.onsale.get`,
//! `taobao.item.quantity.update` and `taobao.skus.quantity.update` over the live quantities.

use serde_json::{Map, Value, json};

use super::gateway::Ctx;
use super::store::{Item, State};
use super::trades::Paging;
use super::wire::{Fields, Params, Shape, TopError, fmt_time, yuan};

/// Most SKUs one `taobao.skus.quantity.update` may change.
const MAX_BATCH: usize = 20;

fn item_not_found(num_iid: i64) -> TopError {
    TopError::business("isv.item-not-exist", format!("item {num_iid} does not exist or is not this seller's"))
}

fn sku_not_found(what: &str, num_iid: i64) -> TopError {
    TopError::business("isv.sku-not-exist", format!("{what} is not a sku of item {num_iid}"))
}

fn item_map(state: &State, item: &Item, with_skus: bool, shape: Shape) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("num_iid".into(), json!(item.num_iid));
    m.insert("title".into(), json!(item.title));
    m.insert("num".into(), json!(state.item_quantity(item.num_iid).unwrap_or(0)));
    m.insert("price".into(), json!(yuan(item.price_fen)));
    m.insert("outer_id".into(), json!(format!("ITEM-{}", item.num_iid)));
    m.insert("approve_status".into(), json!("onsale"));
    m.insert("cid".into(), json!(1512));
    m.insert("list_time".into(), json!(fmt_time(item.created)));
    m.insert("modified".into(), json!(fmt_time(item.modified)));
    if with_skus {
        let skus = item
            .skus
            .iter()
            .filter_map(|id| state.skus.get(id))
            .map(|s| {
                json!({
                    "sku_id": s.sku_id,
                    "num_iid": s.num_iid,
                    "quantity": s.quantity,
                    "outer_id": s.outer_sku_id,
                    "price": yuan(s.price_fen),
                    "properties_name": s.properties,
                    "modified": fmt_time(s.modified),
                })
            })
            .collect();
        m.insert("skus".into(), shape.list("sku", skus));
    }
    m
}

pub fn item_seller_get(cx: &Ctx, state: &mut State, params: &Params) -> Result<Map<String, Value>, TopError> {
    let fields = Fields::parse(params.required("fields")?);
    let num_iid = params.required_int("num_iid")?;
    let item = state.items.get(&num_iid).ok_or_else(|| item_not_found(num_iid))?;
    let with_skus = fields.wants("sku") || fields.wants("skus");
    let mut selected = fields.select(item_map(state, item, false, cx.shape));
    if with_skus && let Some(skus) = item_map(state, item, true, cx.shape).remove("skus") {
        selected.insert("skus".into(), skus);
    }
    let mut out = Map::new();
    out.insert("item".into(), Value::Object(selected));
    Ok(out)
}

/// The on-sale list carries item-level fields only (no SKUs), like the real API.
pub fn items_onsale_get(
    cx: &Ctx,
    state: &mut State,
    params: &Params,
) -> Result<Map<String, Value>, TopError> {
    let fields = Fields::parse(params.required("fields")?);
    let paging = Paging::parse(params, 40, 200)?;
    let records = state
        .items
        .values()
        .map(|item| Value::Object(fields.select(item_map(state, item, false, cx.shape))))
        .collect();
    Ok(paging.render(cx.shape, records, "items", "item"))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Full,
    Incremental,
}

fn mode(params: &Params) -> Result<Mode, TopError> {
    match params.int("type")? {
        None | Some(1) => Ok(Mode::Full),
        Some(2) => Ok(Mode::Incremental),
        Some(other) => {
            Err(TopError::invalid("type", format!("type must be 1 (full) or 2 (incremental), got {other}")))
        }
    }
}

/// Applies `(sku_id, quantity)` pairs already validated; incremental results clamp at zero.
fn apply(cx: &Ctx, state: &mut State, mode: Mode, changes: &[(i64, i64)]) {
    for &(sku_id, quantity) in changes {
        let current = state.skus.get(&sku_id).map_or(0, |s| s.quantity);
        let next = match mode {
            Mode::Full => quantity,
            Mode::Incremental => current.saturating_add(quantity).max(0),
        };
        state.write_sku(sku_id, next, cx.now);
    }
}

fn updated_item(cx: &Ctx, state: &State, num_iid: i64) -> Map<String, Value> {
    let mut item = Map::new();
    if let Some(found) = state.items.get(&num_iid) {
        let full = item_map(state, found, true, cx.shape);
        for key in ["num_iid", "num", "modified", "skus"] {
            if let Some(value) = full.get(key) {
                item.insert(key.into(), value.clone());
            }
        }
    }
    let mut out = Map::new();
    out.insert("item".into(), Value::Object(item));
    out
}

pub fn item_quantity_update(
    cx: &Ctx,
    state: &mut State,
    params: &Params,
) -> Result<Map<String, Value>, TopError> {
    let num_iid = params.required_int("num_iid")?;
    let quantity = params.required_int("quantity")?;
    let mode = mode(params)?;
    let item = state.items.get(&num_iid).ok_or_else(|| item_not_found(num_iid))?;
    let targets: Vec<i64> = if let Some(sku_id) = params.int("sku_id")? {
        if !item.skus.contains(&sku_id) {
            return Err(sku_not_found(&format!("sku_id {sku_id}"), num_iid));
        }
        vec![sku_id]
    } else if let Some(outer_id) = params.get("outer_id") {
        let matching: Vec<i64> = item
            .skus
            .iter()
            .copied()
            .filter(|id| state.skus.get(id).is_some_and(|s| s.outer_sku_id == outer_id))
            .collect();
        if matching.is_empty() {
            return Err(sku_not_found(&format!("outer_id {outer_id}"), num_iid));
        }
        matching
    } else {
        return Err(TopError::invalid(
            "sku_id",
            format!("item {num_iid} has skus: give sku_id or outer_id to change a sku's stock"),
        ));
    };
    if mode == Mode::Full && quantity < 0 {
        return Err(TopError::invalid(
            "quantity",
            format!("a full update (type=1) needs quantity >= 0, got {quantity}"),
        ));
    }
    let changes: Vec<(i64, i64)> = targets.into_iter().map(|id| (id, quantity)).collect();
    apply(cx, state, mode, &changes);
    Ok(updated_item(cx, state, num_iid))
}

pub fn skus_quantity_update(
    cx: &Ctx,
    state: &mut State,
    params: &Params,
) -> Result<Map<String, Value>, TopError> {
    let num_iid = params.required_int("num_iid")?;
    let mode = mode(params)?;
    let (name, list, by_outer) = match (params.get("skuid_quantities"), params.get("outerid_quantities")) {
        (Some(list), _) => ("skuid_quantities", list, false),
        (None, Some(list)) => ("outerid_quantities", list, true),
        (None, None) => return Err(TopError::missing("skuid_quantities")),
    };
    let entries: Vec<(&str, i64)> =
        list.split(';')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let (key, qty) = entry
                    .rsplit_once(':')
                    .ok_or_else(|| TopError::invalid(name, format!("entry {entry:?} is not id:quantity")))?;
                let qty = qty.trim().parse::<i64>().map_err(|_| {
                    TopError::invalid(name, format!("entry {entry:?} has no integer quantity"))
                })?;
                Ok((key.trim(), qty))
            })
            .collect::<Result<_, TopError>>()?;
    if entries.is_empty() {
        return Err(TopError::missing(name));
    }
    if entries.len() > MAX_BATCH {
        return Err(TopError::invalid(
            name,
            format!("at most {MAX_BATCH} skus per call, got {}", entries.len()),
        ));
    }
    let item = state.items.get(&num_iid).ok_or_else(|| item_not_found(num_iid))?;
    let mut changes = Vec::new();
    for (key, qty) in entries {
        if mode == Mode::Full && qty < 0 {
            return Err(TopError::invalid(
                name,
                format!("{key}: a full update (type=1) needs quantity >= 0"),
            ));
        }
        if by_outer {
            let matching: Vec<i64> = item
                .skus
                .iter()
                .copied()
                .filter(|id| state.skus.get(id).is_some_and(|s| s.outer_sku_id == key))
                .collect();
            if matching.is_empty() {
                return Err(sku_not_found(&format!("outer_id {key}"), num_iid));
            }
            changes.extend(matching.into_iter().map(|id| (id, qty)));
        } else {
            let sku_id = key
                .parse::<i64>()
                .map_err(|_| TopError::invalid(name, format!("sku id {key:?} is not a number")))?;
            if !item.skus.contains(&sku_id) {
                return Err(sku_not_found(&format!("sku_id {sku_id}"), num_iid));
            }
            changes.push((sku_id, qty));
        }
    }
    apply(cx, state, mode, &changes);
    Ok(updated_item(cx, state, num_iid))
}
