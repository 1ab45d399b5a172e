//! A brand's sales events and the production runs recommended for the next
//! one. A brand token works on its own events; an admin names the brand with
//! `?brand=`.

use super::ApiState;
use super::auth::{Caller, Role};
use super::body::JsonBody;
use super::problem::ApiError;
use crate::domain::intake::FieldError;
use crate::domain::sales_event::{
    EventPlanView, SalesEventRequest, SalesEventView, invalid_event_id,
};
use crate::runtime::event_plans::PlanError;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

impl From<PlanError> for ApiError {
    fn from(err: PlanError) -> Self {
        match err {
            PlanError::NotFound(id) => ApiError::not_found(format!("sales event {id}")),
            PlanError::Invalid { field, reason } => {
                ApiError::invalid(vec![FieldError::new(field, reason)])
            }
            PlanError::Store(err) => err.into(),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct BrandQuery {
    /// The brand (admins only; a brand token is its own brand).
    #[serde(default, deserialize_with = "super::empty_as_none")]
    pub brand: Option<String>,
}

/// The brand the caller works on: its own, or the one an admin names.
fn brand_of(caller: &Caller, asked: Option<&str>) -> Result<String, ApiError> {
    caller.require(&[Role::Brand, Role::Admin])?;
    match (caller.brand_scope(), asked) {
        (Some(own), None) => Ok(own.to_string()),
        (Some(own), Some(asked)) if asked == own => Ok(own.to_string()),
        (Some(_), Some(_)) => Err(ApiError::invalid(vec![FieldError::new(
            "brand",
            "a brand token works only on its own brand",
        )])),
        (None, Some(asked)) => Ok(asked.to_string()),
        (None, None) => Err(ApiError::invalid(vec![FieldError::new(
            "brand",
            "an admin must name the brand",
        )])),
    }
}

fn checked_id(id: &str) -> Result<(), ApiError> {
    match invalid_event_id(id) {
        None => Ok(()),
        Some(reason) => Err(ApiError::invalid(vec![FieldError::new("/id", reason)])),
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SalesEventList {
    pub items: Vec<SalesEventView>,
}

/// Creates or replaces a sales event of the brand (a pop-up or market).
/// Orders accepted from its first day until `forecasts.attribution_days`
/// after its last count toward it; give `footfall` (expected before, counted
/// after) to have demand forecast per visitor, and `pre_orders` (units
/// already sold per SKU) to keep the event's plan from recommending less.
#[utoipa::path(put, path = "/v1/sales-events/{id}", tag = "forecasts",
    params(("id" = String, Path, description = "The brand's own id for the event: 1..=64 of letters, digits, '.', '_', '-'"), BrandQuery),
    request_body = SalesEventRequest,
    responses((status = 201, body = SalesEventView, description = "Created"),
              (status = 200, body = SalesEventView, description = "Replaced"),
              (status = 422, description = "An invalid id, name, days, footfall or pre-order (an unknown SKU)", body = super::problem::Problem)),
    security(("bearer" = [])))]
pub async fn put(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<BrandQuery>,
    JsonBody(body): JsonBody<SalesEventRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let brand = brand_of(&caller, query.brand.as_deref())?;
    checked_id(&id)?;
    let mut problems = body.problems();
    let catalog = &state.runtime.network.catalog;
    problems.extend(body.unknown_skus(&|sku| catalog.get(sku).is_some()));
    if !problems.is_empty() {
        return Err(ApiError::invalid(problems));
    }
    let (view, created) = state
        .runtime
        .put_sales_event(&brand, &id, &body, &caller.actor())
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

/// The brand's sales events, by first day (an admin naming no brand: every brand's).
#[utoipa::path(get, path = "/v1/sales-events", tag = "forecasts", params(BrandQuery),
    responses((status = 200, body = SalesEventList),
        (status = 422, description = "A brand token asking for another brand", body = super::problem::Problem)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Query(query): Query<BrandQuery>,
) -> Result<Json<SalesEventList>, ApiError> {
    caller.require(&[Role::Brand, Role::Admin])?;
    let brand = match (caller.brand_scope(), query.brand.as_deref()) {
        (None, asked) => asked.map(str::to_string),
        (Some(_), asked) => Some(brand_of(&caller, asked)?),
    };
    Ok(Json(SalesEventList {
        items: state.runtime.sales_events(brand.as_deref()).await?,
    }))
}

/// One sales event of the brand.
#[utoipa::path(get, path = "/v1/sales-events/{id}", tag = "forecasts",
    params(("id" = String, Path, description = "The event's id"), BrandQuery),
    responses((status = 200, body = SalesEventView),
        (status = 422, description = "A brand the caller may not ask for, or none named by an admin", body = super::problem::Problem)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<BrandQuery>,
) -> Result<Json<SalesEventView>, ApiError> {
    let brand = brand_of(&caller, query.brand.as_deref())?;
    state
        .runtime
        .sales_events(Some(&brand))
        .await?
        .into_iter()
        .find(|event| event.id == id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("sales event {id}")))
}

/// Removes a sales event; its orders count toward no event any more.
#[utoipa::path(delete, path = "/v1/sales-events/{id}", tag = "forecasts",
    params(("id" = String, Path, description = "The event's id"), BrandQuery),
    responses((status = 204, description = "Removed"),
        (status = 422, description = "A brand the caller may not ask for, or none named by an admin", body = super::problem::Problem)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<BrandQuery>,
) -> Result<StatusCode, ApiError> {
    let brand = brand_of(&caller, query.brand.as_deref())?;
    if state
        .runtime
        .delete_sales_event(&brand, &id, &caller.actor())
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("sales event {id}")))
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PlanQuery {
    /// The brand (admins only).
    #[serde(default, deserialize_with = "super::empty_as_none")]
    pub brand: Option<String>,
    /// Probability of meeting the whole demand of each SKU, in (0, 1] (default 0.98).
    #[param(exclusive_minimum = 0.0, maximum = 1.0)]
    pub service_level: Option<f64>,
    /// Net the finished units on the shelves out of each run (default true).
    pub use_stock: Option<bool>,
}

/// The production run per SKU recommended for an upcoming sales event: each
/// SKU's demand at the brand's past events (their windows closed), per
/// visitor when every event has a footfall, forecast for this event, with
/// the quantity that meets it at the service level net of stock on hand,
/// and the expected leftover.
#[utoipa::path(get, path = "/v1/forecasts/events/{id}", tag = "forecasts",
    params(("id" = String, Path, description = "The sales event's id"), PlanQuery),
    responses((status = 200, body = EventPlanView),
        (status = 422, description = "An event that has already started, or a brand the caller may not ask for", body = super::problem::Problem)),
    security(("bearer" = [])))]
pub async fn plan(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<PlanQuery>,
) -> Result<Json<EventPlanView>, ApiError> {
    let brand = brand_of(&caller, query.brand.as_deref())?;
    let service_level = query.service_level.unwrap_or(0.98);
    if !(service_level > 0.0 && service_level <= 1.0) {
        return Err(ApiError::bad_request(format!(
            "service_level: must be in (0, 1], got {service_level}"
        ))
        .with_errors(vec![FieldError::new(
            "service_level",
            format!("must be in (0, 1], got {service_level}"),
        )]));
    }
    let plan = state
        .runtime
        .event_plan(&brand, &id, service_level, query.use_stock.unwrap_or(true))
        .await?;
    Ok(Json(plan))
}
