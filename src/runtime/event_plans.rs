//! Sales events and the production run recommended for the next one: the
//! brand's daily demand (counted from the event log) is attributed to its
//! past events (`forecast::events`), each SKU's demand at the upcoming event
//! is forecast (per visitor when footfall is known), and the run that meets
//! it at the service level is recommended net of the stock on the shelves.

use crate::domain::sales_event::{EventPlanView, SalesEventRequest, SalesEventView, SkuPlanView};
use crate::forecast::events::{
    EventWindow, PastEvent, attribute, event_outlook, per_visitor, select_discount,
};
use crate::forecast::production::{RunRecommendation, RunRequest, recommend_run};
use crate::store::{SalesEventRecord, Store, StoreError};
use chrono::{Days, NaiveDate};
use std::collections::BTreeMap;

/// Why a plan cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("no sales event {0:?} for this brand")]
    NotFound(String),
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The plan of one SKU for an upcoming event.
#[derive(Debug, Clone, PartialEq)]
pub struct SkuPlan {
    pub sku: String,
    /// Units of each past event used (in `EventPlan::history`'s order).
    pub history: Vec<f64>,
    /// Units asked back within those events' windows.
    pub returned: f64,
    /// Units already sold for this event.
    pub pre_orders: u64,
    /// Forecast per visitor (footfall known everywhere) or per event.
    pub per_visitor: bool,
    /// The point forecast of the event's demand.
    pub expected_demand: f64,
    pub stock_on_hand: u64,
    pub recommendation: RunRecommendation,
}

/// The recommended runs for one upcoming event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPlan {
    pub event: SalesEventRecord,
    pub service_level: f64,
    /// Past events the plan rests on (closed windows), oldest first.
    pub history: Vec<SalesEventRecord>,
    /// The discount chosen on the brand's rolling origin (0: the mean of
    /// past events; 1: the last event alone).
    pub discount: f64,
    /// Spread relative to Poisson (see `forecast::events`).
    pub dispersion: f64,
    /// Units ordered on days no event's window covers (not used).
    pub unattributed: f64,
    pub skus: Vec<SkuPlan>,
}

/// The window of a stored event (invalid dates give no window).
fn window(event: &SalesEventRecord) -> Option<EventWindow> {
    Some(EventWindow {
        starts_on: event.starts_on.parse::<NaiveDate>().ok()?,
        days: u32::try_from(event.days).ok()?.max(1),
        footfall: event.footfall.map(|f| f as f64),
    })
}

/// The first day after an event's attribution window.
fn window_end(event: &EventWindow, attribution_days: u32) -> Option<NaiveDate> {
    event.starts_on.checked_add_days(Days::new(
        u64::from(event.days) + u64::from(attribution_days),
    ))
}

/// Stores a brand's sales event (validated); true if it is new.
pub async fn put_sales_event(
    store: &Store,
    brand: &str,
    id: &str,
    request: &SalesEventRequest,
    actor: &str,
    now_ms: i64,
) -> Result<(SalesEventRecord, bool), StoreError> {
    let record = SalesEventRecord {
        brand: brand.to_string(),
        id: id.to_string(),
        name: request.name.clone(),
        starts_on: request.starts_on.to_string(),
        days: i64::from(request.days),
        footfall: request.footfall.map(|f| f as i64),
        pre_orders: request.pre_orders.clone(),
        updated_ms: now_ms,
    };
    let created = store.put_sales_event(&record, actor).await?;
    Ok((record, created))
}

/// The plan for `brand`'s event `id`, as of `today`: see the module docs.
/// `use_stock` nets the stock on the shelves (every factory) out of each run.
pub async fn event_plan(
    store: &Store,
    brand: &str,
    id: &str,
    today: NaiveDate,
    attribution_days: u32,
    service_level: f64,
    use_stock: bool,
) -> Result<EventPlan, PlanError> {
    let events = store.sales_events(Some(brand)).await?;
    let Some(event) = events.iter().find(|e| e.id == id).cloned() else {
        return Err(PlanError::NotFound(id.to_string()));
    };
    let Some(target) = window(&event) else {
        return Err(PlanError::Invalid {
            field: "starts_on",
            reason: format!("the stored date {:?} is not a date", event.starts_on),
        });
    };
    if target.starts_on < today {
        return Err(PlanError::Invalid {
            field: "event",
            reason: format!(
                "event {id:?} started on {}, before today ({today}): plans are for events to come",
                target.starts_on
            ),
        });
    }
    // Every event's window takes its days (so a day is never counted for
    // the wrong event); only events whose window has closed are history.
    let windows: Vec<(SalesEventRecord, EventWindow)> = events
        .iter()
        .filter_map(|e| Some((e.clone(), window(e)?)))
        .collect();
    let closed: Vec<usize> = windows
        .iter()
        .enumerate()
        .filter(|(_, (record, w))| {
            record.id != id
                && w.starts_on < target.starts_on
                && window_end(w, attribution_days).is_some_and(|end| end <= today)
        })
        .map(|(index, _)| index)
        .collect();
    let all: Vec<EventWindow> = windows.iter().map(|(_, w)| *w).collect();

    let mut ordered: BTreeMap<String, Vec<(NaiveDate, f64)>> = BTreeMap::new();
    let mut returned: BTreeMap<String, Vec<(NaiveDate, f64)>> = BTreeMap::new();
    for row in store.demand(Some(brand), None, None).await? {
        let Ok(day) = row.day.parse::<NaiveDate>() else {
            continue;
        };
        if day >= today {
            continue;
        }
        ordered
            .entry(row.sku.clone())
            .or_default()
            .push((day, row.units as f64));
        returned
            .entry(row.sku)
            .or_default()
            .push((day, row.returned as f64));
    }
    let mut unattributed = 0.0;
    let mut histories: Vec<(String, Vec<PastEvent>, f64)> = Vec::new();
    for (sku, days) in &ordered {
        let (totals, rest) = attribute(days, &all, attribution_days);
        unattributed += rest;
        let history: Vec<PastEvent> = closed
            .iter()
            .map(|&index| PastEvent {
                units: totals[index],
                footfall: all[index].footfall,
            })
            .collect();
        if history.iter().all(|e| e.units <= 0.0) {
            continue;
        }
        let (back, _) = attribute(
            returned.get(sku).map(Vec::as_slice).unwrap_or_default(),
            &all,
            attribution_days,
        );
        let back = closed.iter().map(|&index| back[index]).sum();
        histories.push((sku.clone(), history, back));
    }
    let model = select_discount(
        &histories
            .iter()
            .map(|(_, history, _)| history.clone())
            .collect::<Vec<_>>(),
        target.footfall,
    );
    let stock: BTreeMap<String, u64> = if use_stock {
        let mut stock = BTreeMap::new();
        for record in store.list_stock(None).await? {
            *stock.entry(record.sku).or_default() += record.units.max(0) as u64;
        }
        stock
    } else {
        BTreeMap::new()
    };
    // A SKU pre-ordered for the event but never sold before (kept out of
    // the model's choice above): its outlook is its pre-orders alone.
    for sku in event.pre_orders.keys() {
        if !histories.iter().any(|(known, _, _)| known == sku) {
            let none = closed
                .iter()
                .map(|&index| PastEvent {
                    units: 0.0,
                    footfall: all[index].footfall,
                })
                .collect();
            histories.push((sku.clone(), none, 0.0));
        }
    }
    let mut skus = Vec::with_capacity(histories.len());
    for (sku, history, back) in histories {
        let pre_orders = event.pre_orders.get(&sku).copied().unwrap_or(0);
        // The event's demand is at least what was sold for it already.
        let outlook = event_outlook(&history, &model, target.footfall).at_least(pre_orders as f64);
        let stock_on_hand = stock.get(&sku).copied().unwrap_or(0);
        let recommendation = recommend_run(
            &outlook,
            &RunRequest {
                service_level,
                stock_on_hand,
                restockable_returns: 0,
            },
        )
        .map_err(|err| PlanError::Invalid {
            field: "service_level",
            reason: err.to_string(),
        })?;
        skus.push(SkuPlan {
            per_visitor: per_visitor(&history, target.footfall),
            history: history.iter().map(|e| e.units).collect(),
            pre_orders,
            returned: back,
            expected_demand: outlook.point(),
            stock_on_hand,
            recommendation,
            sku,
        });
    }
    Ok(EventPlan {
        event,
        service_level,
        history: closed.iter().map(|&i| windows[i].0.clone()).collect(),
        discount: model.discount,
        dispersion: model.dispersion,
        unattributed,
        skus,
    })
}

/// A plan as the API shows it and MQTT publishes it.
pub fn plan_view(plan: &EventPlan) -> EventPlanView {
    EventPlanView {
        event: event_view(&plan.event),
        service_level: plan.service_level,
        history: plan.history.iter().map(|e| e.id.clone()).collect(),
        discount: plan.discount,
        dispersion: plan.dispersion,
        unattributed_units: plan.unattributed,
        skus: plan
            .skus
            .iter()
            .map(|s| SkuPlanView {
                sku: s.sku.clone(),
                history: s.history.clone(),
                returned: s.returned,
                basis: if s.per_visitor {
                    "per_visitor"
                } else {
                    "per_event"
                }
                .into(),
                pre_orders: s.pre_orders,
                expected_demand: s.expected_demand,
                stock_on_hand: s.stock_on_hand,
                quantity: s.recommendation.quantity,
                target: s.recommendation.target,
                expected_leftover: s.recommendation.expected_leftover,
                expected_shortfall: s.recommendation.expected_shortfall,
                availability: s.recommendation.availability,
                error_count: s.recommendation.error_count,
            })
            .collect(),
    }
}

/// A stored sales event as the API shows it.
pub fn event_view(event: &SalesEventRecord) -> SalesEventView {
    SalesEventView {
        id: event.id.clone(),
        brand: event.brand.clone(),
        name: event.name.clone(),
        starts_on: event.starts_on.parse().unwrap_or_default(),
        days: u32::try_from(event.days).unwrap_or(1),
        footfall: event.footfall.and_then(|f| u64::try_from(f).ok()),
        pre_orders: event.pre_orders.clone(),
    }
}

impl super::Runtime {
    /// Creates or replaces `brand`'s sales event `id`; true if it is new.
    pub async fn put_sales_event(
        &self,
        brand: &str,
        id: &str,
        request: &SalesEventRequest,
        actor: &str,
    ) -> Result<(SalesEventView, bool), StoreError> {
        let (record, created) =
            put_sales_event(&self.store, brand, id, request, actor, self.clock.now_ms()).await?;
        Ok((event_view(&record), created))
    }

    /// Sales events of `brand` (every brand's with `None`), by first day.
    pub async fn sales_events(
        &self,
        brand: Option<&str>,
    ) -> Result<Vec<SalesEventView>, StoreError> {
        Ok(self
            .store
            .sales_events(brand)
            .await?
            .iter()
            .map(event_view)
            .collect())
    }

    /// Deletes `brand`'s sales event `id`; false if there was none.
    pub async fn delete_sales_event(
        &self,
        brand: &str,
        id: &str,
        actor: &str,
    ) -> Result<bool, StoreError> {
        self.store
            .delete_sales_event(brand, id, actor, self.clock.now_ms())
            .await
    }

    /// The recommended runs for `brand`'s upcoming event `id`.
    pub async fn event_plan(
        &self,
        brand: &str,
        id: &str,
        service_level: f64,
        use_stock: bool,
    ) -> Result<EventPlanView, PlanError> {
        let today = chrono::DateTime::from_timestamp_millis(self.clock.now_ms())
            .map(|t| t.date_naive())
            .unwrap_or_default();
        let plan = event_plan(
            &self.store,
            brand,
            id,
            today,
            self.attribution_days,
            service_level,
            use_stock,
        )
        .await?;
        Ok(plan_view(&plan))
    }
}
