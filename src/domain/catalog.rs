//! The SKU catalog: what can be ordered and the process route that makes it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One production step: the capability a machine needs, the recipe number it
/// is given, the material it must have loaded, and how long one unit takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessStep {
    pub process: String,
    pub recipe: u32,
    pub material: String,
    pub seconds_per_unit: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sku {
    pub code: String,
    pub name: String,
    pub route: Vec<ProcessStep>,
    /// Litres one packed unit takes in a courier's bag or van (none: not
    /// counted); couriers with a `volume_l` carry at most that much.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_l: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    skus: BTreeMap<String, Sku>,
}

impl Catalog {
    pub fn new(skus: impl IntoIterator<Item = Sku>) -> Self {
        Self {
            skus: skus
                .into_iter()
                .map(|sku| (sku.code.clone(), sku))
                .collect(),
        }
    }

    pub fn get(&self, code: &str) -> Option<&Sku> {
        self.skus.get(code)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Sku> {
        self.skus.values()
    }

    pub fn len(&self) -> usize {
        self.skus.len()
    }

    pub fn is_empty(&self) -> bool {
        self.skus.is_empty()
    }
}

impl Sku {
    /// Seconds to make `quantity` units through every step.
    pub fn route_seconds(&self, quantity: u32) -> f64 {
        self.route
            .iter()
            .map(|step| step.seconds_per_unit * f64::from(quantity))
            .sum()
    }
}
