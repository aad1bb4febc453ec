//! Stock APIs: `jingdong.stock.write.updateSkuStock` (absolute), `jingdong.ware.stock.sku.set`
//! (absolute or incremental per SKU, per-SKU results, so partial failure) and
//! `jingdong.ware.stock.sku.query` (stock with booked quantities). Every change is recorded.
//!
//! Error codes chosen here (the notes give none): 10500001 unknown SKU, 10500002 negative
//! absolute quantity, 10500003 bad parameter, 999999 transient.

use serde_json::{Map, Value, json};

use super::gateway::Call;
use super::state::State;
use super::wire::{Failure, as_int, int_param, success};

const UNKNOWN_SKU: &str = "10500001";
const NEGATIVE: &str = "10500002";
const BAD_PARAM: &str = "10500003";

fn unknown_sku(sku: i64) -> Failure {
    Failure::new(UNKNOWN_SKU, format!("SKU {sku} 不存在"), format!("sku {sku} not found"))
}

fn negative(sku: i64, num: i64) -> Failure {
    Failure::new(NEGATIVE, "库存数不能为负数", format!("stockNum {num} for sku {sku} is negative"))
}

fn required_int(params: &Value, name: &str) -> Result<i64, Failure> {
    match int_param(params, name) {
        Ok(Some(value)) => Ok(value),
        Ok(None) => Err(Failure::new(BAD_PARAM, format!("{name}不能为空"), format!("{name} is required"))),
        Err(error) => Err(Failure::new(BAD_PARAM, format!("{name}参数错误"), error)),
    }
}

/// `{"success":true}` or the failure fields, under `..._responce`.
pub(crate) fn update_sku_stock(state: &mut State, call: &Call<'_>) -> Value {
    let outcome = (|| {
        if call.transient {
            return Err(Failure::transient());
        }
        let sku = required_int(call.params, "skuId")?;
        let num = required_int(call.params, "stockNum")?;
        int_param(call.params, "storeId").map_err(|e| Failure::new(BAD_PARAM, "storeId参数错误", e))?;
        if state.listing_of_sku(sku).is_none() {
            return Err(unknown_sku(sku));
        }
        if num < 0 {
            return Err(negative(sku, num));
        }
        state.write_stock(sku, num, call.method, call.now);
        Ok(())
    })();
    let map = match outcome {
        Ok(()) => {
            let mut map = Map::new();
            map.insert("success".into(), json!(true));
            map
        }
        Err(failure) => failure.fields(),
    };
    success(call.method, map)
}

fn return_type(result: Result<Value, Failure>) -> Value {
    match result {
        Ok(obj) => json!({"success": true, "code": "0", "message": "", "obj": obj}),
        Err(failure) => {
            let mut map = failure.fields();
            map.insert("code".into(), json!(failure.code));
            map.insert("message".into(), json!(failure.en));
            Value::Object(map)
        }
    }
}

fn respond(method: &str, result: Result<Value, Failure>) -> Value {
    let mut map = Map::new();
    map.insert("returnType".into(), return_type(result));
    success(method, map)
}

/// One `skuStocks` entry: absolute `stockNum` or incremental `incrStockNum` (clamped at 0).
fn set_one(state: &mut State, call: &Call<'_>, entry: &Value) -> Value {
    let sku = entry.get("skuId").and_then(as_int);
    let outcome = (|| {
        let sku = sku.ok_or_else(|| Failure::new(BAD_PARAM, "skuId参数错误", "skuId must be an integer"))?;
        let absolute =
            int_param(entry, "stockNum").map_err(|e| Failure::new(BAD_PARAM, "stockNum参数错误", e))?;
        let increment = int_param(entry, "incrStockNum")
            .map_err(|e| Failure::new(BAD_PARAM, "incrStockNum参数错误", e))?;
        if state.listing_of_sku(sku).is_none() {
            return Err(unknown_sku(sku));
        }
        let current = state.stock.get(&sku).copied().unwrap_or(0);
        let after = match (absolute, increment) {
            (Some(num), None) if num < 0 => return Err(negative(sku, num)),
            (Some(num), None) => num,
            (None, Some(delta)) => current.saturating_add(delta).max(0),
            _ => {
                return Err(Failure::new(
                    BAD_PARAM,
                    "stockNum与incrStockNum须且只能填一个",
                    format!("sku {sku} needs exactly one of stockNum and incrStockNum"),
                ));
            }
        };
        state.write_stock(sku, after, call.method, call.now);
        Ok(after)
    })();
    let store_id = entry.get("storeId").and_then(as_int).unwrap_or(0);
    match outcome {
        Ok(after) => json!({"skuId": sku, "success": true, "data": after.to_string(), "storeId": store_id}),
        Err(failure) => json!({
            "skuId": sku,
            "success": false,
            "error": failure.en,
            "errorCode": failure.code,
            "storeId": store_id,
        }),
    }
}

/// `req.skuStocks[]` -> `returnType.obj.updateStockResult[]`, one result per entry; an
/// entry's failure leaves the others applied.
pub(crate) fn sku_set(state: &mut State, call: &Call<'_>) -> Value {
    if call.transient {
        return respond(call.method, Err(Failure::transient()));
    }
    let entries = call.params.get("req").and_then(|req| req.get("skuStocks")).and_then(Value::as_array);
    let Some(entries) = entries.filter(|e| !e.is_empty()) else {
        return respond(
            call.method,
            Err(Failure::new(BAD_PARAM, "req.skuStocks不能为空", "req.skuStocks must be a non-empty list")),
        );
    };
    let results: Vec<Value> = entries.iter().map(|entry| set_one(state, call, entry)).collect();
    respond(call.method, Ok(json!({"updateStockResult": results})))
}

fn sku_ids(value: Option<&Value>) -> Result<Vec<i64>, Failure> {
    let bad =
        || Failure::new(BAD_PARAM, "skuId参数错误", "skuId must be an id, a comma list or a list of ids");
    let ids = match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            items.iter().map(|v| as_int(v).ok_or_else(bad)).collect::<Result<_, _>>()?
        }
        Some(Value::Number(n)) => vec![n.as_i64().ok_or_else(bad)?],
        Some(Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().map_err(|_| bad()))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad()),
    };
    if ids.is_empty() {
        return Err(Failure::new(BAD_PARAM, "skuId不能为空", "skuId is required"));
    }
    Ok(ids)
}

/// Stock and booked quantities per known SKU; unknown SKUs are left out of `obj`.
pub(crate) fn sku_query(state: &mut State, call: &Call<'_>) -> Value {
    if call.transient {
        return respond(call.method, Err(Failure::transient()));
    }
    let ids = match sku_ids(call.params.get("skuId")) {
        Ok(ids) => ids,
        Err(failure) => return respond(call.method, Err(failure)),
    };
    let mut rows: Vec<Value> = ids
        .into_iter()
        .filter(|sku| state.listing_of_sku(*sku).is_some())
        .map(|sku| {
            json!({
                "skuId": sku,
                "stockNum": state.stock.get(&sku).copied().unwrap_or(0),
                "orderBookingNum": state.booked(sku),
                "appBookingNum": 0,
                "orderTransferNum": 0,
                "storeId": 0,
            })
        })
        .collect();
    if call.corrupt
        && let Some(first) = rows.first_mut()
    {
        first["stockNum"] = json!("n/a");
    }
    respond(call.method, Ok(Value::Array(rows)))
}
