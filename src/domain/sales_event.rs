//! A brand's sales events (pop-ups, weekend markets) as the API takes and
//! shows them, and the recommended production runs for an upcoming one.

use super::intake::FieldError;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The longest event, in days.
pub const MAX_EVENT_DAYS: u32 = 31;
/// The largest footfall taken.
pub const MAX_FOOTFALL: u64 = 10_000_000;
/// The most pre-ordered units of one SKU, and the most SKUs pre-ordered.
pub const MAX_PRE_ORDER_UNITS: u64 = 1_000_000;
pub const MAX_PRE_ORDER_SKUS: usize = 500;

/// A sales event to create or replace (`PUT /v1/sales-events/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SalesEventRequest {
    /// 1..=200 characters, e.g. "Winter market, Kreuzberg".
    pub name: String,
    /// The first selling day.
    #[schema(value_type = String, format = Date)]
    pub starts_on: NaiveDate,
    /// Selling days, 1..=31 (default 1; a weekend is 2).
    #[serde(default = "one")]
    #[schema(minimum = 1, maximum = 31)]
    pub days: u32,
    /// Visitors, expected (an event to come) or counted (an event held);
    /// 0..=10,000,000. With footfall on every event, demand is forecast per
    /// visitor.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 10000000)]
    pub footfall: Option<u64>,
    /// Units already sold for the event per SKU (`{"tee-black-m": 12}`),
    /// 0..=1,000,000 each, at most 500 SKUs of the catalog: the plan never
    /// recommends less than them (the event's demand is at least its
    /// pre-orders). Default none.
    #[serde(default)]
    pub pre_orders: BTreeMap<String, u64>,
}

fn one() -> u32 {
    1
}

/// Why an event id from a path cannot be used: ids are 1..=64 characters of
/// letters, digits, `.`, `_` and `-` (they name MQTT topics and URLs).
pub fn invalid_event_id(id: &str) -> Option<&'static str> {
    if id.is_empty() || id.len() > 64 {
        Some("must be 1..=64 characters")
    } else if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("may hold only letters, digits, '.', '_' and '-'")
    } else {
        None
    }
}

impl SalesEventRequest {
    /// Every problem with the request, each with its JSON pointer.
    pub fn problems(&self) -> Vec<FieldError> {
        let mut problems = Vec::new();
        let name = self.name.trim();
        if name.is_empty() || self.name.chars().count() > 200 {
            problems.push(FieldError::new("/name", "must be 1..=200 characters"));
        } else if self
            .name
            .chars()
            .any(|c| c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c))
        {
            problems.push(FieldError::new(
                "/name",
                "must not contain control or bidirectional formatting characters",
            ));
        }
        if !(1..=MAX_EVENT_DAYS).contains(&self.days) {
            problems.push(FieldError::new(
                "/days",
                format!("must be 1..={MAX_EVENT_DAYS}, got {}", self.days),
            ));
        }
        if let Some(footfall) = self.footfall
            && footfall > MAX_FOOTFALL
        {
            problems.push(FieldError::new(
                "/footfall",
                format!("must be 0..={MAX_FOOTFALL}, got {footfall}"),
            ));
        }
        if self.pre_orders.len() > MAX_PRE_ORDER_SKUS {
            problems.push(FieldError::new(
                "/pre_orders",
                format!(
                    "at most {MAX_PRE_ORDER_SKUS} SKUs, got {}",
                    self.pre_orders.len()
                ),
            ));
        }
        for (sku, units) in &self.pre_orders {
            if *units > MAX_PRE_ORDER_UNITS {
                problems.push(FieldError::new(
                    format!("/pre_orders/{}", pointer_token(sku)),
                    format!("must be 0..={MAX_PRE_ORDER_UNITS}, got {units}"),
                ));
            }
        }
        problems
    }

    /// Every pre-ordered SKU that `known` does not know, as a problem.
    pub fn unknown_skus(&self, known: &dyn Fn(&str) -> bool) -> Vec<FieldError> {
        self.pre_orders
            .keys()
            .filter(|sku| !known(sku))
            .map(|sku| {
                FieldError::new(
                    format!("/pre_orders/{}", pointer_token(sku)),
                    format!("unknown SKU {sku:?}"),
                )
            })
            .collect()
    }
}

/// A JSON pointer reference token for `key` (RFC 6901: `~` as `~0`, `/` as
/// `~1`).
fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// A stored sales event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SalesEventView {
    pub id: String,
    pub brand: String,
    pub name: String,
    #[schema(value_type = String, format = Date)]
    pub starts_on: NaiveDate,
    pub days: u32,
    pub footfall: Option<u64>,
    /// Units already sold for the event, per SKU.
    pub pre_orders: BTreeMap<String, u64>,
}

/// The recommended run of one SKU for an upcoming event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SkuPlanView {
    pub sku: String,
    /// Units ordered at each past event of `EventPlanView::history`.
    pub history: Vec<f64>,
    /// Units asked back within those events' windows.
    pub returned: f64,
    /// `per_visitor` (footfall known for every event) or `per_event`.
    pub basis: String,
    /// Units already sold for the event (its pre-orders): the demand
    /// outlook is never below them.
    pub pre_orders: u64,
    /// The point forecast of the event's demand.
    pub expected_demand: f64,
    /// Finished units on the shelves (every factory), netted out.
    pub stock_on_hand: u64,
    /// Units to make.
    pub quantity: u64,
    /// Units that reach the service level (stock plus the run).
    pub target: u64,
    pub expected_leftover: f64,
    pub expected_shortfall: f64,
    /// Share of the demand outlook the target covers.
    pub availability: f64,
    /// Rolling-origin errors behind the spread (0: Poisson spread only).
    pub error_count: usize,
}

/// The recommended runs for an upcoming sales event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventPlanView {
    pub event: SalesEventView,
    pub service_level: f64,
    /// Ids of the past events the plan rests on (windows closed), oldest first.
    pub history: Vec<String>,
    /// The weight of recent events: 0 is the mean of past events, 1 the last
    /// event alone; chosen on the brand's own history.
    pub discount: f64,
    /// How much more demand varies around the forecast than Poisson noise
    /// alone (1: not more), from the brand's rolling-origin residuals.
    pub dispersion: f64,
    /// Units ordered on days no event's window covers (not used).
    pub unattributed_units: f64,
    pub skus: Vec<SkuPlanView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(name: &str, days: u32, footfall: Option<u64>) -> SalesEventRequest {
        SalesEventRequest {
            name: name.into(),
            starts_on: NaiveDate::from_ymd_opt(2026, 12, 12).expect("date"),
            days,
            footfall,
            pre_orders: BTreeMap::new(),
        }
    }

    #[test]
    fn each_problem_names_its_field() {
        assert!(request("Market", 2, Some(800)).problems().is_empty());
        let pointers = |r: SalesEventRequest| {
            r.problems()
                .into_iter()
                .map(|p| p.pointer)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            pointers(request(" ", 0, Some(MAX_FOOTFALL + 1))),
            ["/name", "/days", "/footfall"]
        );
        assert_eq!(
            pointers(request("a\u{202e}b", 32, None)),
            ["/name", "/days"]
        );
        let mut pre = request("Market", 2, None);
        pre.pre_orders = BTreeMap::from([
            ("tee".to_string(), 12),
            ("a/b~".to_string(), MAX_PRE_ORDER_UNITS + 1),
        ]);
        assert_eq!(pointers(pre.clone()), ["/pre_orders/a~1b~0"]);
        let unknown: Vec<String> = pre
            .unknown_skus(&|sku| sku == "tee")
            .into_iter()
            .map(|p| p.pointer)
            .collect();
        assert_eq!(unknown, ["/pre_orders/a~1b~0"]);
        pre.pre_orders = (0..=MAX_PRE_ORDER_SKUS)
            .map(|i| (format!("sku-{i}"), 1))
            .collect();
        assert_eq!(pointers(pre), ["/pre_orders"]);
    }

    #[test]
    fn ids_are_topic_and_url_safe() {
        assert_eq!(invalid_event_id("xmas-2026.kreuzberg_1"), None);
        for bad in ["", "a/b", "a+b", "a#", "ü", &"x".repeat(65)] {
            assert!(invalid_event_id(bad).is_some(), "{bad}");
        }
    }
}
