//! Shipping and seller reads: `taobao.logistics.offline.send` (with split shipping and
//! `identCode` IMEI reporting), `taobao.logistics.companies.get`, `taobao.user.seller.get`.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::ShipmentRecord;
use super::gateway::Ctx;
use super::store::{self, State};
use super::trades::SELLER_NICK;
use super::wire::{Fields, Params, TopError};
use crate::faults::Fault;

/// (id, code, name, waybill pattern) as `taobao.logistics.companies.get` lists them.
const COMPANIES: &[(i64, &str, &str, &str)] = &[
    (505, "SF", "顺丰速运", "^[A-Za-z0-9]{12,15}$"),
    (2, "EMS", "EMS", "^[A-Z]{2}[0-9]{9}[A-Z]{2}$|^[0-9]{13}$"),
    (3, "EYB", "EMS经济快递", "^[0-9]{13}$"),
    (101, "YTO", "圆通速递", "^[A-Za-z0-9]{10,18}$"),
    (500, "ZTO", "中通快递", "^[0-9]{12,14}$"),
    (100, "STO", "申通快递", "^[0-9]{12,13}$"),
    (102, "YUNDA", "韵达快递", "^[0-9]{13,15}$"),
    (502, "HTKY", "百世快递", "^[A-Za-z0-9]{12,15}$"),
    (103, "ZJS", "宅急送", "^[a-zA-Z0-9]{10}$"),
    (2100, "POSTB", "邮政快递包裹", "^[0-9A-Za-z]{13}$"),
    (5_000_000_110_730, "JD", "京东快递", "^JD[0-9A-Za-z]{11,15}$"),
    (1216, "DD", "当当宅配", ""),
    (-1, "OTHER", "其他", ""),
];

pub fn companies_get(cx: &Ctx, params: &Params) -> Result<Map<String, Value>, TopError> {
    let fields = params.get("fields").map(Fields::parse);
    let list = COMPANIES
        .iter()
        .map(|&(id, code, name, reg)| {
            let full = json!({ "id": id, "code": code, "name": name, "reg_mail_no": reg });
            match (full, &fields) {
                (Value::Object(map), Some(fields)) => Value::Object(fields.select(map)),
                (full, _) => full,
            }
        })
        .collect();
    let mut out = Map::new();
    out.insert("logistics_companies".into(), cx.shape.list("logistics_company", list));
    Ok(out)
}

pub fn user_seller_get(_cx: &Ctx, params: &Params) -> Result<Map<String, Value>, TopError> {
    let fields = Fields::parse(params.required("fields")?);
    let user = json!({
        "nick": SELLER_NICK,
        "user_id": 2_200_000_000_001_i64,
        "type": "B",
        "has_shop": true,
        "seller_credit": { "level": 20, "score": 1_000_000, "total_num": 1_200_000, "good_num": 1_190_000 },
    });
    let mut out = Map::new();
    if let Value::Object(map) = user {
        out.insert("user".into(), Value::Object(fields.select(map)));
    }
    Ok(out)
}

fn valid_waybill(out_sid: &str) -> bool {
    (8..=20).contains(&out_sid.len()) && out_sid.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `identCode=<oid>:<code>,<code>|<oid>:<code>;machineCode=...` -> oid -> codes. Other keys
/// are accepted and not recorded.
fn parse_ident_codes(feature: &str) -> Result<BTreeMap<i64, Vec<String>>, TopError> {
    let mut codes = BTreeMap::new();
    for part in feature.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once('=').ok_or_else(|| {
            TopError::invalid("feature", format!("feature entry {part:?} is not key=value"))
        })?;
        if key.trim() != "identCode" {
            continue;
        }
        for unit in value.split('|').map(str::trim).filter(|u| !u.is_empty()) {
            let (oid, list) = unit.split_once(':').ok_or_else(|| {
                TopError::invalid("feature", format!("identCode item {unit:?} is not oid:code,code"))
            })?;
            let oid = oid.trim().parse::<i64>().map_err(|_| {
                TopError::invalid("feature", format!("identCode oid {oid:?} is not a number"))
            })?;
            let list: Vec<String> =
                list.split(',').map(str::trim).filter(|c| !c.is_empty()).map(str::to_string).collect();
            if list.is_empty() {
                return Err(TopError::invalid("feature", format!("identCode for oid {oid} has no codes")));
            }
            codes.entry(oid).or_insert_with(Vec::new).extend(list);
        }
    }
    Ok(codes)
}

pub fn offline_send(cx: &Ctx, state: &mut State, params: &Params) -> Result<Map<String, Value>, TopError> {
    let tid = params.required_int("tid")?;
    let is_split = params.get("is_split") == Some("1");
    let sub_tids: Vec<i64> = if is_split {
        params
            .required("sub_tid")?
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<i64>()
                    .map_err(|_| TopError::invalid("sub_tid", format!("sub_tid {s:?} is not a number")))
            })
            .collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    let trade = state
        .trades
        .get(&tid)
        .ok_or_else(|| TopError::shipping("B01", format!("订单不存在 (trade {tid} not found)")))?;
    match trade.status {
        store::WAIT_SELLER_SEND_GOODS | store::SELLER_CONSIGNED_PART => {}
        store::WAIT_BUYER_PAY => {
            return Err(TopError::shipping("B02", "订单状态不对，买家尚未付款 (the buyer has not paid)"));
        }
        store::PAID_FORBID_CONSIGN | store::WAIT_PRE_AUTH_CONFIRM => {
            return Err(TopError::shipping(
                "B55",
                format!("订单状态不对，当前状态不允许发货 (status {} forbids shipping)", trade.status),
            ));
        }
        _ => {
            return Err(TopError::shipping("B04", "订单状态不对该物流订单已经发货或者已关闭，不能重复发货"));
        }
    }
    let targets: Vec<i64> = if is_split {
        if sub_tids.is_empty() {
            return Err(TopError::missing("sub_tid"));
        }
        for oid in &sub_tids {
            match trade.orders.iter().find(|o| o.oid == *oid) {
                None => {
                    return Err(TopError::shipping(
                        "P38",
                        format!("拆单校验失败 (sub order {oid} is not in trade {tid})"),
                    ));
                }
                Some(order) if order.consign_time.is_some() => {
                    return Err(TopError::shipping(
                        "B04",
                        "订单状态不对该物流订单已经发货或者已关闭，不能重复发货",
                    ));
                }
                Some(_) => {}
            }
        }
        sub_tids.clone()
    } else {
        trade.orders.iter().filter(|o| o.consign_time.is_none()).map(|o| o.oid).collect()
    };
    let company_code = params
        .get("company_code")
        .ok_or_else(|| TopError::shipping("B56", "物流公司不能为空 (company_code is empty)"))?;
    let company = COMPANIES.iter().find(|c| c.1 == company_code).ok_or_else(|| {
        TopError::shipping("B56", format!("物流公司不存在 (unknown company_code {company_code})"))
    })?;
    let out_sid = params
        .get("out_sid")
        .ok_or_else(|| TopError::shipping("B59", "运单号不能为空 (out_sid is empty)"))?;
    if !valid_waybill(out_sid) {
        return Err(TopError::shipping(
            "B60",
            "运单号不符合规则 (out_sid must be 8 to 20 letters or digits)",
        ));
    }
    if state.waybills.get(out_sid).is_some_and(|used_by| *used_by != tid) {
        return Err(TopError::shipping("B60", "运单号已被使用 (out_sid was used by another trade)"));
    }
    let ident_codes = match params.get("feature") {
        Some(feature) => parse_ident_codes(feature)?,
        None => BTreeMap::new(),
    };
    if let Some(oid) = ident_codes.keys().find(|oid| !trade.orders.iter().any(|o| o.oid == **oid)) {
        return Err(TopError::invalid(
            "feature",
            format!("identCode names {oid}, which is not a sub order of trade {tid}"),
        ));
    }
    if cx.fault == Some(Fault::TransientBusiness) {
        return Err(TopError::shipping("B150", "发货异常，请稍等后重试"));
    }

    let now = cx.now;
    let company_name = company.2.to_string();
    let Some(trade) = state.trades.get_mut(&tid) else {
        return Err(TopError::shipping("B01", format!("订单不存在 (trade {tid} not found)")));
    };
    for order in trade.orders.iter_mut().filter(|o| targets.contains(&o.oid)) {
        order.status = store::WAIT_BUYER_CONFIRM_GOODS;
        order.consign_time = Some(now);
        order.invoice_no = Some(out_sid.to_string());
        order.logistics_company = Some(company_name.clone());
    }
    let all_shipped = trade.orders.iter().all(|o| o.consign_time.is_some());
    trade.status = if all_shipped { store::WAIT_BUYER_CONFIRM_GOODS } else { store::SELLER_CONSIGNED_PART };
    if all_shipped {
        trade.consign_time = Some(now);
    }
    state.set_modified(tid, now);
    state.waybills.insert(out_sid.to_string(), tid);
    state.shipments.push(ShipmentRecord {
        tid,
        sub_tids,
        oids: targets,
        company_code: company_code.to_string(),
        out_sid: out_sid.to_string(),
        ident_codes,
        at: now,
    });
    let mut out = Map::new();
    out.insert("shipping".into(), json!({ "is_success": true }));
    Ok(out)
}
