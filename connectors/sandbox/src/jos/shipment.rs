//! `jingdong.pop.order.shipment` (出库: WAIT_SELLER_STOCK_OUT -> WAIT_GOODS_RECEIVE_CONFIRM)
//! and `jingdong.delivery.logistics.get` (the carrier ids shipments must use).
//!
//! `errorCode` values chosen here (the notes give none but 999999): 10400001 already
//! shipped, 10400002 the order's state forbids shipping (paused, locked, cancelled),
//! 10400003 unknown carrier, 10400004 order not found, 10400005 bad parameter,
//! 999999 transient.

use serde_json::{Map, Value, json};

use super::ShipmentRecord;
use super::gateway::Call;
use super::state::{OrderState, State};
use super::wire::{Failure, as_int, gateway_error, str_param, success};

const ALREADY_SHIPPED: &str = "10400001";
const WRONG_STATE: &str = "10400002";
const UNKNOWN_CARRIER: &str = "10400003";
const NOT_FOUND: &str = "10400004";
const BAD_PARAM: &str = "10400005";

/// 厂家自送: the manufacturer delivers; JD accepts an empty waybill for it.
const SELF_DELIVERY: i64 = 1274;

/// Carrier ids from ERP data and the JD logistics list (notes §2.6).
pub(crate) const CARRIERS: &[(i64, &str)] = &[
    (463, "圆通快递"),
    (465, "邮政EMS"),
    (467, "顺丰快递"),
    (470, "申通快递"),
    (1274, "厂家自送"),
    (1327, "韵达快递"),
    (1409, "宅急送"),
    (1499, "中通速递"),
    (1549, "宅急便"),
    (1747, "优速快递"),
    (1748, "百世快递"),
    (2087, "京东快递"),
    (3046, "德邦物流"),
];

fn respond(method: &str, result: Result<(), Failure>) -> Value {
    let inner = match result {
        Ok(()) => json!({"success": true}),
        Err(failure) => Value::Object(failure.fields()),
    };
    let mut map = Map::new();
    map.insert("sopjosshipment_result".into(), inner);
    success(method, map)
}

pub(crate) fn ship(state: &mut State, call: &Call<'_>) -> Value {
    respond(call.method, try_ship(state, call))
}

fn try_ship(state: &mut State, call: &Call<'_>) -> Result<(), Failure> {
    if call.transient {
        return Err(Failure::transient());
    }
    let params = call.params;
    let order_id = str_param(params, "orderId")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Failure::new(BAD_PARAM, "orderId不能为空", "orderId is required"))?;
    let carrier = match params.get("logiCoprId") {
        None | Some(Value::Null) => {
            return Err(Failure::new(BAD_PARAM, "logiCoprId不能为空", "logiCoprId is required"));
        }
        Some(value) => as_int(value).ok_or_else(|| {
            Failure::new(BAD_PARAM, "logiCoprId必须是数字", "logiCoprId must be a numeric carrier id")
        })?,
    };
    if !CARRIERS.iter().any(|(id, _)| *id == carrier) {
        return Err(Failure::new(
            UNKNOWN_CARRIER,
            "物流公司不存在",
            format!("carrier {carrier} is not in the logistics list"),
        ));
    }
    let waybill = str_param(params, "logiNo").map(|s| s.trim().to_string()).unwrap_or_default();
    if waybill.is_empty() && carrier != SELF_DELIVERY {
        return Err(Failure::new(BAD_PARAM, "运单号不能为空", "logiNo is required for this carrier"));
    }
    let not_found = || Failure::new(NOT_FOUND, "订单不存在", format!("order {order_id} not found"));
    let order = state.order_by_id_mut(&order_id).filter(|o| o.visible()).ok_or_else(not_found)?;
    match order.state {
        OrderState::WaitSellerStockOut => {}
        OrderState::WaitGoodsReceiveConfirm => {
            return Err(Failure::new(
                ALREADY_SHIPPED,
                "订单已出库，不能重复出库",
                format!("order {order_id} is already shipped"),
            ));
        }
        OrderState::PopOrderPause => {
            return Err(Failure::new(
                WRONG_STATE,
                "订单暂停中，不能出库",
                format!("order {order_id} is paused (POP_ORDER_PAUSE) and cannot ship"),
            ));
        }
        OrderState::Locked => {
            return Err(Failure::new(
                WRONG_STATE,
                "订单已锁定，不能出库",
                format!("order {order_id} is locked by a refund request and cannot ship"),
            ));
        }
        OrderState::TradeCanceled | OrderState::WaitPay => {
            return Err(Failure::new(
                WRONG_STATE,
                "订单已取消，不能出库",
                format!("order {order_id} is cancelled and cannot ship"),
            ));
        }
    }
    order.state = OrderState::WaitGoodsReceiveConfirm;
    order.waybill = Some(waybill.clone());
    order.logistics_id = Some(carrier);
    let scenario = order.scenario;
    state.touch(scenario, call.now);
    state.shipments.push(ShipmentRecord { order_id, logi_copr_id: carrier, logi_no: waybill, at: call.now });
    Ok(())
}

/// `logistics_companies.logistics_list[]`, as the `360buy.delivery.logistics.get` replies
/// integrators read.
pub(crate) fn logistics(call: &Call<'_>) -> Value {
    if call.transient {
        return gateway_error("67", "平台连接后端服务不可用", "isp.remote-service-unavailable");
    }
    let list: Vec<Value> = CARRIERS
        .iter()
        .enumerate()
        .map(|(i, (id, name))| {
            json!({
                "logistics_id": id,
                "logistics_name": name,
                "logistics_remark": "",
                "agree_flag": "协议物流",
                "is_cod": false,
                "sequence": (i + 1).to_string(),
            })
        })
        .collect();
    let mut map = Map::new();
    map.insert("logistics_companies".into(), json!({"vender_id": 10086001, "logistics_list": list}));
    success(call.method, map)
}
