//! The operator's catalogue and the mapping of marketplace listings onto it.

use std::collections::BTreeMap;

use serde::Serialize;

/// What an operator SKU is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentKind {
    /// Physical units on hand in the operator's warehouses (handsets, accessories).
    Stock,
    /// Remaining subscriptions of a tariff plan.
    PlanQuota,
    /// Free numbers in a number pool.
    NumberPool,
}

impl ComponentKind {
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Stock => "sku",
            Self::PlanQuota => "plan",
            Self::NumberPool => "pool",
        }
    }
}

/// One operator SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkuDef {
    pub code: String,
    /// handset, accessory, plan or number_pool.
    pub kind_name: String,
    pub kind: ComponentKind,
    /// Units never offered on any marketplace.
    pub safety_stock: i64,
}

/// A ledger component: `sku:CODE`, `plan:CODE` or `pool:CODE`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Component {
    pub kind: ComponentKind,
    pub code: String,
}

impl Component {
    pub fn key(&self) -> String {
        format!("{}:{}", self.kind.prefix(), self.code)
    }

    pub fn parse(key: &str) -> Option<Self> {
        let (prefix, code) = key.split_once(':')?;
        let kind = match prefix {
            "sku" => ComponentKind::Stock,
            "plan" => ComponentKind::PlanQuota,
            "pool" => ComponentKind::NumberPool,
            _ => return None,
        };
        Some(Self { kind, code: code.to_string() })
    }
}

/// A listing's share of its target, per store.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Allocation {
    /// Fraction of the target's supply (allocated) or of what is available (shared pool).
    pub share: f64,
    /// Never show more than this.
    pub cap: Option<i64>,
    /// Below this, show 0.
    pub floor: i64,
}

/// The catalogue: operator SKUs and bundles.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Catalog {
    pub skus: BTreeMap<String, SkuDef>,
    /// Bundle code -> (component SKU code, units per bundle).
    pub bundles: BTreeMap<String, Vec<(String, i64)>>,
}

/// What a listing's target expands to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolved {
    /// The operator SKU or bundle code.
    pub target: String,
    pub components: Vec<(Component, i64)>,
}

impl Catalog {
    pub fn is_empty(&self) -> bool {
        self.skus.is_empty() && self.bundles.is_empty()
    }

    /// Expands an operator SKU or bundle code into ledger components, or `None` when the
    /// catalogue does not know it.
    pub fn resolve(&self, target: &str) -> Option<Resolved> {
        if let Some(sku) = self.skus.get(target) {
            return Some(Resolved {
                target: target.to_string(),
                components: vec![(Component { kind: sku.kind, code: sku.code.clone() }, 1)],
            });
        }
        let parts = self.bundles.get(target)?;
        let mut components = Vec::with_capacity(parts.len());
        for (code, per) in parts {
            let sku = self.skus.get(code)?;
            components.push((Component { kind: sku.kind, code: sku.code.clone() }, *per));
        }
        Some(Resolved { target: target.to_string(), components })
    }

    /// Safety stock of a component.
    pub fn safety(&self, component: &Component) -> i64 {
        self.skus.get(&component.code).map(|s| s.safety_stock).unwrap_or(0)
    }
}

/// `ITEM:SKU` or `ITEM` — how listings are named in config, CLI and reports.
pub fn listing_key(item_id: &str, sku_id: Option<&str>) -> String {
    match sku_id {
        Some(sku) if !sku.is_empty() => format!("{item_id}:{sku}"),
        _ => item_id.to_string(),
    }
}

/// How a store's order lines map to the catalogue, and when they hold stock.
#[derive(Debug, Clone, Default)]
pub struct ReservationRules {
    pub catalog: Catalog,
    /// Explicit `ITEM:SKU` / `ITEM` -> target mappings of the store.
    pub explicit: BTreeMap<String, String>,
    /// Hold stock from order placement, not payment.
    pub reserve_on_order: bool,
}

impl ReservationRules {
    /// The target of a listing: its explicit mapping, else its merchant code when the
    /// catalogue knows it. Unknown codes are never guessed.
    pub fn target_of(&self, item_id: &str, sku_id: Option<&str>, outer_id: Option<&str>) -> Option<Resolved> {
        let key = listing_key(item_id, sku_id);
        if let Some(target) = self.explicit.get(&key).or_else(|| self.explicit.get(item_id)) {
            return self.catalog.resolve(target);
        }
        outer_id.and_then(|code| self.catalog.resolve(code.trim()))
    }
}
