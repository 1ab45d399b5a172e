//! Demand forecasts and recommended production runs. A brand reads its own
//! SKUs; an operator the expected load of their factories (all brands); an
//! admin everything.

use super::ApiState;
use super::auth::{Caller, Role};
use super::problem::ApiError;
use crate::domain::intake::FieldError;
use crate::forecast::production::RunRequest;
use crate::runtime::forecasts::{DemandForecast, Grouping, MAX_HORIZON_DAYS, RunError};
use axum::Json;
use axum::extract::{Query, State};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

impl From<RunError> for ApiError {
    fn from(err: RunError) -> Self {
        match err {
            // A well-formed query the rules refuse (an event already past,
            // or beyond the horizon, as of today): 422 with its pointer.
            RunError::Invalid { field, reason } => {
                ApiError::invalid(vec![FieldError::new(field, reason)])
            }
            RunError::Store(err) => err.into(),
        }
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> ApiError {
    let reason = reason.into();
    ApiError::bad_request(format!("{field}: {reason}"))
        .with_errors(vec![FieldError::new(field, reason)])
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListForecasts {
    /// Only this SKU.
    #[serde(default, deserialize_with = "super::empty_as_none")]
    pub sku: Option<String>,
    /// Days ahead from today, 1..=366 (default 14).
    #[param(minimum = 1, maximum = 366)]
    pub horizon_days: Option<i64>,
    /// One series per factory too (brands and admins; operators always get
    /// one per factory).
    pub per_factory: Option<bool>,
}

/// One day of a forecast.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ForecastDay {
    pub date: NaiveDate,
    /// Expected units ordered that day.
    pub units: f64,
    /// 80% prediction interval, from the model's own backtest errors.
    pub lower: f64,
    pub upper: f64,
}

/// The forecast of one series.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ForecastView {
    /// Absent in an operator's factory load (all brands).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
    pub sku: String,
    /// Absent when the series covers every factory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub factory: Option<String>,
    /// The model chosen on the series' own history (`auto` pools several).
    pub model: String,
    /// Days of history: from the first order's day to yesterday.
    pub history_days: usize,
    pub days: Vec<ForecastDay>,
}

impl From<DemandForecast> for ForecastView {
    fn from(forecast: DemandForecast) -> Self {
        ForecastView {
            brand: forecast.key.brand,
            sku: forecast.key.sku,
            factory: forecast.key.factory,
            model: forecast.model,
            history_days: forecast.history_days,
            days: forecast
                .days
                .into_iter()
                .map(|(date, units, lower, upper)| ForecastDay {
                    date,
                    units,
                    lower,
                    upper,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ForecastList {
    pub items: Vec<ForecastView>,
}

/// Daily demand forecasts from the orders accepted so far (counted from
/// the event log). Brands: their own SKUs; operators: their factories'
/// expected load per SKU, over every brand; admins: every brand's.
#[utoipa::path(get, path = "/v1/forecasts", tag = "forecasts", params(ListForecasts),
    responses((status = 200, body = ForecastList)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Query(query): Query<ListForecasts>,
) -> Result<Json<ForecastList>, ApiError> {
    caller.require(&[Role::Brand, Role::Operator, Role::Admin])?;
    let horizon = match query.horizon_days {
        None => 14,
        Some(n) if (1..=MAX_HORIZON_DAYS as i64).contains(&n) => n as usize,
        Some(n) => return Err(invalid("horizon_days", format!("must be 1..=366, got {n}"))),
    };
    let per_factory = query.per_factory.unwrap_or(false);
    let (grouping, factories) = match caller.role {
        Role::Operator if caller.scope == "*" => (Grouping::FactorySku, None),
        Role::Operator => (
            Grouping::FactorySku,
            Some(
                caller
                    .scope
                    .split(',')
                    .map(str::to_string)
                    .collect::<Vec<_>>(),
            ),
        ),
        _ if per_factory => (Grouping::BrandSkuFactory, None),
        _ => (Grouping::BrandSku, None),
    };
    let forecasts = state
        .runtime
        .demand_forecasts(
            grouping,
            caller.brand_scope(),
            query.sku.as_deref(),
            factories.as_deref(),
            horizon,
        )
        .await?;
    Ok(Json(ForecastList {
        items: forecasts.into_iter().map(ForecastView::from).collect(),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    /// The SKU to make.
    pub sku: String,
    /// The factory that makes it (default: the brand's demand at every factory).
    #[serde(default, deserialize_with = "super::empty_as_none")]
    pub factory: Option<String>,
    /// The brand (admins only; a brand token is its own brand).
    #[serde(default, deserialize_with = "super::empty_as_none")]
    pub brand: Option<String>,
    /// The event's first day (`YYYY-MM-DD`, today or later).
    #[param(value_type = String, format = Date)]
    pub event_date: NaiveDate,
    /// How many days the event's demand is counted over, 1..=31 (default 1).
    #[param(minimum = 1, maximum = 31)]
    pub event_days: Option<i64>,
    /// Probability of meeting the whole demand, in (0, 1] (default 0.98).
    #[param(exclusive_minimum = 0.0, maximum = 1.0)]
    pub service_level: Option<f64>,
    /// Finished units on hand (default 0).
    #[param(minimum = 0)]
    pub stock_on_hand: Option<i64>,
    /// Returned units that can be restocked before the event (default 0).
    #[param(minimum = 0)]
    pub restockable_returns: Option<i64>,
    /// Units already sold for the event: demand is never below this (default 0).
    #[param(minimum = 0)]
    pub pre_orders: Option<i64>,
}

/// A recommended production run.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunView {
    pub sku: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub factory: Option<String>,
    pub event_date: NaiveDate,
    pub event_days: i64,
    pub service_level: f64,
    /// Units to produce (0 when stock and returns already cover the target).
    pub quantity: u64,
    /// Units that reach the service level.
    pub target: u64,
    /// Stock plus returns plus the run.
    pub available: u64,
    /// The point forecast of demand over the event.
    pub expected_demand: f64,
    pub expected_leftover: f64,
    pub expected_shortfall: f64,
    /// Share of the sampled demands the available units cover.
    pub availability: f64,
    /// Backtest errors behind the recommendation (0: the point forecast
    /// alone; the history is too short for more).
    pub error_count: usize,
    pub model: String,
    pub history_days: usize,
}

fn count(value: Option<i64>, field: &str) -> Result<u64, ApiError> {
    match value {
        None => Ok(0),
        Some(n) if n >= 0 => Ok(n as u64),
        Some(n) => Err(invalid(field, format!("must be 0 or more, got {n}"))),
    }
}

/// The production run for an upcoming event that reaches a service level,
/// net of stock on hand and restockable returns, with the expected leftover.
#[utoipa::path(get, path = "/v1/forecasts/run", tag = "forecasts", params(RunQuery),
    responses((status = 200, body = RunView),
        (status = 422, description = "A brand the caller may not ask for (or none named by an admin), an event already past or beyond the horizon", body = super::problem::Problem)),
    security(("bearer" = [])))]
pub async fn run(
    State(state): State<ApiState>,
    caller: Caller,
    Query(query): Query<RunQuery>,
) -> Result<Json<RunView>, ApiError> {
    caller.require(&[Role::Brand, Role::Admin])?;
    let brand = match (caller.brand_scope(), &query.brand) {
        (Some(own), None) => own.to_string(),
        (Some(own), Some(asked)) if asked == own => own.to_string(),
        // Who may ask for which brand is a rule of roles, not of the
        // query's shape: 422, as for a body's business rules.
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(vec![FieldError::new(
                "brand",
                "a brand token reads only its own brand",
            )]));
        }
        (None, Some(asked)) => asked.clone(),
        (None, None) => {
            return Err(ApiError::invalid(vec![FieldError::new(
                "brand",
                "an admin must name the brand",
            )]));
        }
    };
    let event_days = match query.event_days {
        None => 1,
        Some(n) if (1..=31).contains(&n) => n,
        Some(n) => return Err(invalid("event_days", format!("must be 1..=31, got {n}"))),
    };
    let service_level = query.service_level.unwrap_or(0.98);
    if !(service_level > 0.0 && service_level <= 1.0) {
        return Err(invalid(
            "service_level",
            format!("must be in (0, 1], got {service_level}"),
        ));
    }
    let request = RunRequest {
        service_level,
        stock_on_hand: count(query.stock_on_hand, "stock_on_hand")?,
        restockable_returns: count(query.restockable_returns, "restockable_returns")?,
    };
    let pre_orders = count(query.pre_orders, "pre_orders")?;
    let advice = state
        .runtime
        .recommend_run(
            &brand,
            &query.sku,
            query.factory.as_deref(),
            query.event_date,
            event_days as usize,
            pre_orders,
            request,
        )
        .await?;
    let r = advice.recommendation;
    Ok(Json(RunView {
        sku: query.sku,
        factory: query.factory,
        event_date: query.event_date,
        event_days,
        service_level,
        quantity: r.quantity,
        target: r.target,
        available: r.available,
        expected_demand: advice.point_demand,
        expected_leftover: r.expected_leftover,
        expected_shortfall: r.expected_shortfall,
        availability: r.availability,
        error_count: r.error_count,
        model: advice.model,
        history_days: advice.history_days,
    }))
}
