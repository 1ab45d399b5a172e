//! Demand forecasts fed by the event log: a task counts the lines of every
//! `order.accepted` event into daily demand per brand, SKU and factory (one
//! event, one O(1) update per line), and the use cases fit the models of
//! `crate::forecast` on those series: forecasts per SKU (brands), expected
//! load per factory (operators), and the production run that reaches a
//! service level for an upcoming event.
//!
//! Days are UTC days of the domain clock; today is still open, so series end
//! yesterday and the first forecast step is today.

use crate::domain::Millis;
use crate::forecast::production::{DemandOutlook, RunRecommendation, RunRequest, recommend_run};
use crate::forecast::{
    Forecaster, Frequency, ModelChoice, SelectionRule, Series, intervals::prediction_intervals,
};
use crate::runtime::Clock;
use crate::runtime::broker::access::invalid_id;
use crate::store::{DemandRow, Store, StoreError};
use chrono::{DateTime, NaiveDate};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// The longest forecast horizon, in days.
pub const MAX_HORIZON_DAYS: usize = 366;

/// The UTC day of a domain-clock time.
pub fn day_of(ms: Millis) -> Option<NaiveDate> {
    DateTime::from_timestamp_millis(ms).map(|t| t.date_naive())
}

/// What one event adds: its brand's units ordered per SKU and factory on
/// its day (`order.accepted`), finished units made (`job.done` of a
/// line's last step, its good units), or units asked back
/// (`return.requested`). Other events add nothing.
pub fn demand_of(envelope: &serde_json::Value) -> Vec<DemandRow> {
    let (Some(brand), Some(at)) = (envelope["brand"].as_str(), envelope["at"].as_str()) else {
        return Vec::new();
    };
    let Ok(at) = DateTime::parse_from_rfc3339(at) else {
        return Vec::new();
    };
    let day = at.to_utc().date_naive().to_string();
    let row = |sku: &str, factory: &str, units: i64, produced: i64| DemandRow {
        brand: brand.to_string(),
        sku: sku.to_string(),
        factory: factory.to_string(),
        day: day.clone(),
        units,
        produced,
        returned: 0,
    };
    match envelope["kind"].as_str() {
        Some("order.accepted") => {
            let Some(factory) = envelope["data"]["factory"].as_str() else {
                return Vec::new();
            };
            envelope["data"]["lines"]
                .as_array()
                .map(|lines| {
                    lines
                        .iter()
                        .filter_map(|line| {
                            Some(row(
                                line["sku"].as_str()?,
                                factory,
                                line["quantity"].as_i64()?,
                                0,
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default()
        }
        Some("job.done") if envelope["job"]["final_step"] == true => {
            let job = &envelope["job"];
            match (
                job["sku"].as_str(),
                job["factory"].as_str(),
                envelope["data"]["good"].as_i64(),
            ) {
                (Some(sku), Some(factory), Some(good)) if good > 0 => {
                    vec![row(sku, factory, 0, good)]
                }
                _ => Vec::new(),
            }
        }
        Some("return.requested") => {
            let Some(factory) = envelope["data"]["factory"].as_str() else {
                return Vec::new();
            };
            envelope["data"]["lines"]
                .as_array()
                .map(|lines| {
                    lines
                        .iter()
                        .filter_map(|line| {
                            let mut returned = row(line["sku"].as_str()?, factory, 0, 0);
                            returned.returned = line["quantity"].as_i64()?;
                            Some(returned)
                        })
                        .collect()
                })
                .unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

/// Sums rows of the same brand, SKU, factory and day.
fn merge(rows: Vec<DemandRow>) -> Vec<DemandRow> {
    type Key = (String, String, String, String);
    let mut sums: BTreeMap<Key, (i64, i64, i64)> = BTreeMap::new();
    for row in rows {
        let sum = sums
            .entry((row.brand, row.sku, row.factory, row.day))
            .or_default();
        sum.0 += row.units;
        sum.1 += row.produced;
        sum.2 += row.returned;
    }
    sums.into_iter()
        .map(
            |((brand, sku, factory, day), (units, produced, returned))| DemandRow {
                brand,
                sku,
                factory,
                day,
                units,
                produced,
                returned,
            },
        )
        .collect()
}

/// Counts accepted orders into daily demand, following the event log.
pub struct DemandCounter {
    pub store: Store,
}

/// Events read per pass.
const COUNT_BATCH: i64 = 1_000;

/// The kinds of event [`demand_of`] counts; the others are passed over
/// unread (with many orders, `order.at_risk` alone is half the log).
const DEMAND_KINDS: &[&str] = &["order.accepted", "job.done", "return.requested"];

impl DemandCounter {
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            let more = match self.pass().await {
                Ok(more) => more,
                Err(StoreError::Conflict(reason)) => {
                    debug!(%reason, "demand counted elsewhere; reading on");
                    true
                }
                Err(err) => {
                    warn!(error = %err, "counting demand failed; retrying");
                    false
                }
            };
            if more {
                continue;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    /// Counts one batch; true if there may be more at once.
    async fn pass(&self) -> Result<bool, StoreError> {
        let cursor = self.store.demand_cursor().await?;
        let events = self
            .store
            .events_of_kinds_after(DEMAND_KINDS, cursor, COUNT_BATCH)
            .await?;
        let Some(&(last, _)) = events.last() else {
            return Ok(false);
        };
        let mut rows = Vec::new();
        for (seq, payload) in &events {
            let Some(payload) = payload else { continue };
            match serde_json::from_str::<serde_json::Value>(payload) {
                Ok(envelope) => rows.extend(demand_of(&envelope)),
                Err(err) => warn!(event.seq = seq, error = %err, "unreadable event skipped"),
            }
        }
        self.store.count_demand(cursor, last, &merge(rows)).await?;
        Ok(events.len() as i64 == COUNT_BATCH)
    }
}

/// How forecasts are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Grouping {
    /// One series per brand and SKU (all factories).
    BrandSku,
    /// One series per brand, SKU and factory.
    BrandSkuFactory,
    /// One series per factory and SKU (all brands): a factory's expected load.
    FactorySku,
}

/// What a forecast is of: the parts its grouping keeps.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    pub brand: Option<String>,
    pub sku: String,
    pub factory: Option<String>,
}

/// One series' forecast.
#[derive(Debug, Clone, PartialEq)]
pub struct DemandForecast {
    pub key: SeriesKey,
    /// The model (or `auto` pool) chosen on the series' own history.
    pub model: String,
    /// Days of history it was fitted on (first order's day to yesterday).
    pub history_days: usize,
    /// One entry per day from today: date, units, 80% interval.
    pub days: Vec<(NaiveDate, f64, f64, f64)>,
}

/// Fitted models kept between refits, one per series: a request rolls a kept
/// model forward over the days closed since (`ForecastState::update`, O(1)
/// per day) instead of fitting again; the refit on `forecasts.refit_cron`
/// empties it, so every series is fitted from scratch on that schedule. A
/// series whose closed days changed (a late count) is fitted again at once.
#[derive(Default)]
pub struct FitCache {
    fits: std::sync::Mutex<std::collections::HashMap<(Grouping, SeriesKey), CachedFit>>,
}

struct CachedFit {
    first: NaiveDate,
    /// The fit (its backtest gives the intervals), its state rolled forward.
    fit: crate::forecast::ModelFit,
    /// Days folded into the state, and their sum (to notice a change).
    days: usize,
    sum: f64,
}

impl FitCache {
    /// Forgets every fit (the next request fits from scratch).
    pub fn clear(&self) {
        if let Ok(mut fits) = self.fits.lock() {
            fits.clear();
        }
    }

    /// The point forecast and fit of a series from its kept model rolled
    /// forward, if it has one whose days are unchanged.
    fn rolled(
        &self,
        key: &(Grouping, SeriesKey),
        first: NaiveDate,
        values: &[f64],
        horizon: usize,
    ) -> Option<(Vec<f64>, crate::forecast::ModelFit)> {
        let mut fits = self.fits.lock().ok()?;
        let cached = fits.get_mut(key)?;
        let known = values.get(..cached.days)?;
        if cached.first != first || (known.iter().sum::<f64>() - cached.sum).abs() > 1e-9 {
            fits.remove(key);
            return None;
        }
        for value in &values[cached.days..] {
            cached.fit.state.update(*value).ok()?;
            cached.sum += value;
        }
        cached.days = values.len();
        Some((cached.fit.state.forecast(horizon), cached.fit.clone()))
    }

    fn keep(
        &self,
        key: (Grouping, SeriesKey),
        first: NaiveDate,
        values: &[f64],
        fit: crate::forecast::ModelFit,
    ) {
        if let Ok(mut fits) = self.fits.lock() {
            fits.insert(
                key,
                CachedFit {
                    first,
                    fit,
                    days: values.len(),
                    sum: values.iter().sum(),
                },
            );
        }
    }

    /// How many series have a kept model.
    pub fn len(&self) -> usize {
        self.fits.lock().map(|f| f.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Daily series from demand rows: zero-filled from each series' first day
/// to `last_day`. Rows after `last_day` (today's, still open) are left out.
pub fn daily_series(
    rows: &[DemandRow],
    grouping: Grouping,
    last_day: NaiveDate,
) -> BTreeMap<SeriesKey, (NaiveDate, Vec<f64>)> {
    let mut by_key: BTreeMap<SeriesKey, BTreeMap<NaiveDate, f64>> = BTreeMap::new();
    for row in rows {
        let Ok(day) = row.day.parse::<NaiveDate>() else {
            continue;
        };
        if day > last_day {
            continue;
        }
        let key = match grouping {
            Grouping::BrandSku => SeriesKey {
                brand: Some(row.brand.clone()),
                sku: row.sku.clone(),
                factory: None,
            },
            Grouping::BrandSkuFactory => SeriesKey {
                brand: Some(row.brand.clone()),
                sku: row.sku.clone(),
                factory: Some(row.factory.clone()),
            },
            Grouping::FactorySku => SeriesKey {
                brand: None,
                sku: row.sku.clone(),
                factory: Some(row.factory.clone()),
            },
        };
        *by_key.entry(key).or_default().entry(day).or_default() += row.units.max(0) as f64;
    }
    by_key
        .into_iter()
        .filter_map(|(key, days)| {
            let first = *days.keys().next()?;
            let length = (last_day - first).num_days().max(0) as usize + 1;
            let mut values = vec![0.0; length];
            for (day, units) in days {
                if let Some(slot) = values.get_mut((day - first).num_days() as usize) {
                    *slot += units;
                }
            }
            Some((key, (first, values)))
        })
        .collect()
}

/// Why a recommendation cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A recommended run with what it rests on.
#[derive(Debug, Clone, PartialEq)]
pub struct RunAdvice {
    pub recommendation: RunRecommendation,
    /// The point forecast of demand over the window.
    pub point_demand: f64,
    pub model: String,
    pub history_days: usize,
}

impl super::Runtime {
    /// Today, on the domain clock (UTC).
    fn today(clock: &Clock) -> NaiveDate {
        day_of(clock.now_ms()).unwrap_or_default()
    }

    /// Forecasts of daily demand for `horizon` days from today, for the
    /// series `grouping` makes of the rows `brand`, `sku` and `factories`
    /// select (`None`: all).
    pub async fn demand_forecasts(
        &self,
        grouping: Grouping,
        brand: Option<&str>,
        sku: Option<&str>,
        factories: Option<&[String]>,
        horizon: usize,
    ) -> Result<Vec<DemandForecast>, StoreError> {
        demand_forecasts(
            &self.store,
            &self.clock,
            &self.fits,
            grouping,
            brand,
            sku,
            factories,
            horizon,
        )
        .await
    }

    /// The run of `sku` (at `factory`, or all of the brand's factories) that
    /// meets the demand of the `window_days` from `window_start` with
    /// probability `request.service_level`, net of stock and returns; demand
    /// is never below `pre_orders` (units already sold for the event).
    #[allow(clippy::too_many_arguments)]
    pub async fn recommend_run(
        &self,
        brand: &str,
        sku: &str,
        factory: Option<&str>,
        window_start: NaiveDate,
        window_days: usize,
        pre_orders: u64,
        request: RunRequest,
    ) -> Result<RunAdvice, RunError> {
        let today = Self::today(&self.clock);
        if window_start < today {
            return Err(RunError::Invalid {
                field: "event_date",
                reason: format!("must be today ({today}) or later, got {window_start}"),
            });
        }
        let first_step = (window_start - today).num_days() as usize + 1;
        let last_step = first_step + window_days.max(1) - 1;
        if last_step > MAX_HORIZON_DAYS {
            return Err(RunError::Invalid {
                field: "event_date",
                reason: format!("the event must end within {MAX_HORIZON_DAYS} days of today"),
            });
        }
        let yesterday = today.pred_opt().unwrap_or(today);
        let rows = self.store.demand(Some(brand), Some(sku), factory).await?;
        let series = daily_series(&rows, Grouping::BrandSku, yesterday);
        let (first, values) = series.into_values().next().unwrap_or((today, Vec::new()));
        let history_days = values.len();
        let series =
            Series::new(sku.to_string(), first, Frequency::Daily, values).map_err(|err| {
                RunError::Invalid {
                    field: "sku",
                    reason: err.to_string(),
                }
            })?;
        let mut forecaster =
            Forecaster::new(last_step, ModelChoice::Auto, SelectionRule::default());
        let forecast = forecaster
            .forecast(&series)
            .map_err(|err| RunError::Invalid {
                field: "event_date",
                reason: err.to_string(),
            })?;
        let outlook = DemandOutlook::from_backtest(
            &forecast.point,
            &forecast.fit.backtest,
            first_step,
            last_step,
        )
        .at_least(pre_orders as f64);
        let recommendation =
            recommend_run(&outlook, &request).map_err(|err| RunError::Invalid {
                field: "service_level",
                reason: err.to_string(),
            })?;
        Ok(RunAdvice {
            recommendation,
            point_demand: outlook.point(),
            model: forecast.fit.state.kind().name().to_string(),
            history_days,
        })
    }
}

/// Forecasts of daily demand for `horizon` days from today, for the series
/// `grouping` makes of the rows `brand`, `sku` and `factories` select
/// (`None`: all).
#[allow(clippy::too_many_arguments)]
pub async fn demand_forecasts(
    store: &Store,
    clock: &Clock,
    cache: &FitCache,
    grouping: Grouping,
    brand: Option<&str>,
    sku: Option<&str>,
    factories: Option<&[String]>,
    horizon: usize,
) -> Result<Vec<DemandForecast>, StoreError> {
    let horizon = horizon.clamp(1, MAX_HORIZON_DAYS);
    let today = day_of(clock.now_ms()).unwrap_or_default();
    let yesterday = today.pred_opt().unwrap_or(today);
    let rows: Vec<DemandRow> = store
        .demand(brand, sku, None)
        .await?
        .into_iter()
        .filter(|row| factories.is_none_or(|f| f.contains(&row.factory)))
        .collect();
    let series = daily_series(&rows, grouping, yesterday);
    let mut forecaster = Forecaster::new(horizon, ModelChoice::Auto, SelectionRule::default());
    let mut out = Vec::with_capacity(series.len());
    for (key, (first, values)) in series {
        let history_days = values.len();
        let cache_key = (grouping, key.clone());
        let (point, fit) = match cache.rolled(&cache_key, first, &values, horizon) {
            Some(rolled) => rolled,
            None => {
                let Ok(series) =
                    Series::new(key.sku.clone(), first, Frequency::Daily, values.clone())
                else {
                    continue;
                };
                let Ok(forecast) = forecaster.forecast(&series) else {
                    continue;
                };
                cache.keep(cache_key, first, &values, forecast.fit.clone());
                (forecast.point, forecast.fit)
            }
        };
        let dates: Vec<NaiveDate> = (0..horizon)
            .filter_map(|step| today.checked_add_days(chrono::Days::new(step as u64)))
            .collect();
        let intervals = prediction_intervals(&point, &fit.backtest, 0.8).unwrap_or_default();
        let days = dates
            .iter()
            .zip(&point)
            .enumerate()
            .map(|(index, (date, point))| {
                let (lower, upper) = intervals
                    .get(index)
                    .map_or((*point, *point), |i| (i.lower, i.upper));
                (*date, *point, lower, upper)
            })
            .collect();
        out.push(DemandForecast {
            key,
            model: fit.state.kind().name().to_string(),
            history_days,
            days,
        });
    }
    Ok(out)
}

/// Refits every brand's SKU forecasts on a cron schedule (domain clock),
/// and at start, and publishes each one that changed, retained, on
/// `fabflow/v1/brands/<brand>/forecasts/<sku>` (which only that brand reads).
pub struct ForecastPublisher {
    pub store: Store,
    pub clock: Clock,
    pub schedule: crate::domain::calendar::ZonedSchedule,
    pub horizon_days: usize,
    /// Days after a sales event whose orders count toward it.
    pub attribution_days: u32,
    /// Emptied at every refit: the refit fits every series from scratch.
    pub fits: std::sync::Arc<FitCache>,
    pub mqtt: rumqttc::AsyncClient,
}

impl ForecastPublisher {
    pub async fn run(self, cancel: CancellationToken) {
        // What was last published per topic; a restart publishes all again.
        let mut published: std::collections::HashMap<String, String> = Default::default();
        loop {
            match self.refit(&mut published).await {
                Ok(sent) if sent > 0 => debug!(sent, "forecasts published"),
                Ok(_) => {}
                Err(err) => warn!(error = %err, "forecast refit failed; next at its time"),
            }
            let now = self.clock.now();
            let Some(next) = self.schedule.after(now).next() else {
                warn!("forecast cron has no future time; refits stop");
                return;
            };
            let wait = self.clock.real((next - now).num_milliseconds());
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Refits and publishes what changed; returns how many were sent.
    async fn refit(
        &self,
        published: &mut std::collections::HashMap<String, String>,
    ) -> Result<usize, StoreError> {
        self.fits.clear();
        let forecasts = demand_forecasts(
            &self.store,
            &self.clock,
            &self.fits,
            Grouping::BrandSku,
            None,
            None,
            None,
            self.horizon_days,
        )
        .await?;
        let mut sent = 0;
        for forecast in forecasts {
            let Some(brand) = forecast.key.brand.as_deref() else {
                continue;
            };
            if invalid_id(brand).is_some() || invalid_id(&forecast.key.sku).is_some() {
                continue;
            }
            let topic = format!("fabflow/v1/brands/{brand}/forecasts/{}", forecast.key.sku);
            let payload = forecast_json(&forecast).to_string();
            match self.publish_changed(published, topic, payload).await {
                Ok(true) => sent += 1,
                Ok(false) => {}
                Err(err) => {
                    warn!(error = %err, "forecast not published; retried at the next refit");
                    break;
                }
            }
        }
        sent += self.publish_plans(published).await?;
        Ok(sent)
    }

    /// Publishes the plan of every sales event still to come that changed,
    /// retained, on `fabflow/v1/brands/<brand>/plans/<event>`.
    async fn publish_plans(
        &self,
        published: &mut std::collections::HashMap<String, String>,
    ) -> Result<usize, StoreError> {
        let today = day_of(self.clock.now_ms()).unwrap_or_default();
        let mut sent = 0;
        for event in self.store.sales_events(None).await? {
            let upcoming = event
                .starts_on
                .parse::<NaiveDate>()
                .is_ok_and(|day| day >= today);
            if !upcoming || invalid_id(&event.brand).is_some() {
                continue;
            }
            let plan = match super::event_plans::event_plan(
                &self.store,
                &event.brand,
                &event.id,
                today,
                self.attribution_days,
                DEFAULT_SERVICE_LEVEL,
                true,
            )
            .await
            {
                Ok(plan) => plan,
                Err(super::event_plans::PlanError::Store(err)) => return Err(err),
                Err(err) => {
                    debug!(error = %err, event = %event.id, "no plan for this event");
                    continue;
                }
            };
            let topic = format!("fabflow/v1/brands/{}/plans/{}", event.brand, event.id);
            let payload = match serde_json::to_string(&super::event_plans::plan_view(&plan)) {
                Ok(payload) => payload,
                Err(err) => {
                    warn!(error = %err, "plan not serialised");
                    continue;
                }
            };
            match self.publish_changed(published, topic, payload).await {
                Ok(true) => sent += 1,
                Ok(false) => {}
                Err(err) => {
                    warn!(error = %err, "plan not published; retried at the next refit");
                    break;
                }
            }
        }
        Ok(sent)
    }

    /// Publishes `payload` on `topic`, retained, unless it is what was last
    /// published there; true if it was sent.
    async fn publish_changed(
        &self,
        published: &mut std::collections::HashMap<String, String>,
        topic: String,
        payload: String,
    ) -> Result<bool, rumqttc::ClientError> {
        if published.get(&topic) == Some(&payload) {
            return Ok(false);
        }
        self.mqtt
            .publish(
                topic.clone(),
                rumqttc::QoS::AtLeastOnce,
                true,
                payload.clone(),
            )
            .await?;
        published.insert(topic, payload);
        Ok(true)
    }
}

/// The service level of published plans (the API takes any).
pub const DEFAULT_SERVICE_LEVEL: f64 = 0.98;

/// A forecast as published (and as the API shows it).
pub fn forecast_json(forecast: &DemandForecast) -> serde_json::Value {
    serde_json::json!({
        "brand": forecast.key.brand,
        "sku": forecast.key.sku,
        "factory": forecast.key.factory,
        "model": forecast.model,
        "history_days": forecast.history_days,
        "days": forecast.days.iter().map(|(date, units, lower, upper)| serde_json::json!({
            "date": date.to_string(), "units": units, "lower": lower, "upper": upper,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(brand: &str, sku: &str, factory: &str, day: &str, units: i64) -> DemandRow {
        DemandRow {
            brand: brand.into(),
            sku: sku.into(),
            factory: factory.into(),
            day: day.into(),
            units,
            produced: 0,
            returned: 0,
        }
    }

    #[test]
    fn accepted_orders_add_their_lines_on_their_day() {
        let envelope = json!({
            "kind": "order.accepted", "brand": "acme", "at": "2026-12-03T23:59:59.900+00:00",
            "data": {"kind": "order_accepted", "factory": "north",
                     "lines": [{"sku": "tee", "quantity": 2}, {"sku": "mug", "quantity": 1}]}
        });
        assert_eq!(
            demand_of(&envelope),
            vec![
                row("acme", "tee", "north", "2026-12-03", 2),
                row("acme", "mug", "north", "2026-12-03", 1)
            ]
        );
        let done = |final_step: bool, good: i64| {
            json!({"kind": "job.done", "brand": "acme", "at": "2026-12-04T01:00:00Z",
                   "job": {"sku": "tee", "factory": "north", "final_step": final_step},
                   "data": {"kind": "job_done", "good": good, "scrap": 1}})
        };
        let mut made = row("acme", "tee", "north", "2026-12-04", 0);
        made.produced = 2;
        assert_eq!(demand_of(&done(true, 2)), vec![made]);
        for other in [
            done(false, 2),
            done(true, 0),
            json!({"kind": "job.done", "brand": "acme", "at": "2026-12-03T10:00:00Z", "data": {}}),
            json!({"kind": "order.accepted", "at": "2026-12-03T10:00:00Z", "data": {"factory": "n", "lines": []}}),
            json!({"kind": "order.accepted", "brand": "a", "at": "yesterday", "data": {"factory": "n", "lines": [{"sku": "t", "quantity": 1}]}}),
        ] {
            assert!(demand_of(&other).is_empty(), "{other}");
        }
    }

    /// The counter reads the payloads of `DEMAND_KINDS` only: any other
    /// kind counts nothing, even shaped like one that does.
    #[test]
    fn only_the_kinds_read_count() {
        let accepted = json!({
            "kind": "order.accepted", "brand": "acme", "at": "2026-12-03T10:00:00Z",
            "data": {"factory": "north", "lines": [{"sku": "tee", "quantity": 2}]}
        });
        let done = json!({"kind": "job.done", "brand": "acme", "at": "2026-12-04T01:00:00Z",
            "job": {"sku": "tee", "factory": "north", "final_step": true},
            "data": {"good": 2}});
        let returned = json!({"kind": "return.requested", "brand": "acme",
            "at": "2026-12-05T09:00:00Z",
            "data": {"factory": "north", "lines": [{"sku": "tee", "quantity": 1}]}});
        for envelope in [accepted, done, returned] {
            assert!(!demand_of(&envelope).is_empty(), "{envelope}");
            let kind = envelope["kind"].as_str().expect("kind");
            assert!(
                DEMAND_KINDS.contains(&kind),
                "{kind} counts but is not read"
            );
            for other in [
                "order.at_risk",
                "order.cancelled",
                "order.ready",
                "job.failed",
                "job.started",
                "return.received",
                "return.restocked",
            ] {
                let mut renamed = envelope.clone();
                renamed["kind"] = other.into();
                assert!(demand_of(&renamed).is_empty(), "{other} counted");
            }
        }
    }

    #[test]
    fn return_requests_count_units_asked_back() {
        let envelope = json!({
            "kind": "return.requested", "brand": "acme", "at": "2026-12-05T09:00:00Z",
            "data": {"kind": "return_requested", "factory": "north", "reason": "size",
                     "lines": [{"line": 0, "sku": "tee", "quantity": 2}, {"line": 1, "sku": "mug"}]}
        });
        let mut back = row("acme", "tee", "north", "2026-12-05", 0);
        back.returned = 2;
        assert_eq!(demand_of(&envelope), vec![back]);
        let no_factory = json!({"kind": "return.requested", "brand": "acme",
            "at": "2026-12-05T09:00:00Z", "data": {"lines": [{"sku": "tee", "quantity": 1}]}});
        assert!(demand_of(&no_factory).is_empty());
    }

    #[test]
    fn series_are_zero_filled_grouped_and_end_yesterday() {
        let rows = vec![
            row("acme", "tee", "north", "2026-12-01", 2),
            row("acme", "tee", "south", "2026-12-01", 1),
            row("acme", "tee", "north", "2026-12-03", 4),
            row("zest", "tee", "north", "2026-12-02", 5),
            row("acme", "tee", "north", "2026-12-05", 9),
        ];
        let last = NaiveDate::from_ymd_opt(2026, 12, 4).expect("date");
        let by_brand = daily_series(&rows, Grouping::BrandSku, last);
        let acme = &by_brand[&SeriesKey {
            brand: Some("acme".into()),
            sku: "tee".into(),
            factory: None,
        }];
        assert_eq!(acme.0.to_string(), "2026-12-01");
        assert_eq!(acme.1, vec![3.0, 0.0, 4.0, 0.0]);
        let load = daily_series(&rows, Grouping::FactorySku, last);
        let north = &load[&SeriesKey {
            brand: None,
            sku: "tee".into(),
            factory: Some("north".into()),
        }];
        assert_eq!(north.1, vec![2.0, 5.0, 4.0, 0.0]);
        assert_eq!(
            daily_series(&rows, Grouping::BrandSkuFactory, last).len(),
            3
        );
    }

    #[test]
    fn kept_fits_roll_forward_one_day_at_a_time_and_refit_when_history_changes() {
        let cache = FitCache::default();
        let key = (
            Grouping::BrandSku,
            SeriesKey {
                brand: Some("acme".into()),
                sku: "tee".into(),
                factory: None,
            },
        );
        let first = NaiveDate::from_ymd_opt(2026, 11, 1).expect("date");
        let history = vec![0.0, 3.0, 0.0, 0.0, 5.0, 0.0, 2.0, 0.0, 0.0, 4.0];
        let fit = crate::forecast::select::fit(&history, 7, ModelChoice::Auto, 7).expect("fit");
        assert!(
            cache.rolled(&key, first, &history, 7).is_none(),
            "nothing kept yet"
        );
        cache.keep(key.clone(), first, &history, fit.clone());
        // Two more closed days: the kept state takes them, as update would.
        let mut longer = history.clone();
        longer.extend([6.0, 0.0]);
        let (point, rolled) = cache.rolled(&key, first, &longer, 7).expect("rolled");
        let mut expected = fit.state.clone();
        expected.update(6.0).expect("valid");
        expected.update(0.0).expect("valid");
        assert_eq!(rolled.state, expected);
        assert_eq!(point, expected.forecast(7));
        assert_eq!(rolled.backtest, fit.backtest);
        // A closed day counted late changes the history: fitted again.
        let mut changed = longer.clone();
        changed[2] = 1.0;
        assert!(cache.rolled(&key, first, &changed, 7).is_none());
        assert!(cache.is_empty());
        cache.keep(key.clone(), first, &changed, fit);
        cache.clear();
        assert!(cache.is_empty());
    }

    #[test]
    fn merge_sums_equal_keys() {
        let merged = merge(vec![
            row("a", "t", "n", "2026-12-01", 1),
            row("a", "t", "n", "2026-12-01", 2),
            row("a", "t", "s", "2026-12-01", 5),
        ]);
        assert_eq!(
            merged,
            vec![
                row("a", "t", "n", "2026-12-01", 3),
                row("a", "t", "s", "2026-12-01", 5)
            ]
        );
    }
}
