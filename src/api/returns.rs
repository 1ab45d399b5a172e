//! Returns: a brand requests one on its delivered order, reads it and its
//! stops, cancels it before pickup; the factory's operator records the
//! inspection; operators and admins read the restocked stock.

use super::ApiState;
use super::auth::{Caller, Role};
use super::body::JsonBody;
use super::ops::sees_code;
use super::problem::ApiError;
use super::views::{HandoffView, ReturnDetail, ReturnPage, ReturnView, StockView};
use crate::domain::ReturnState;
use crate::domain::returns::{InspectionLine, RequestedLine};
use crate::runtime::returns::ReturnError;
use crate::store::{ReturnFilter, ReturnRecord};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

impl From<ReturnError> for ApiError {
    fn from(err: ReturnError) -> Self {
        match err {
            ReturnError::Invalid(errors) => ApiError::invalid(errors),
            ReturnError::Store(err) => err.into(),
        }
    }
}

/// Units of one line of the order to take back.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnRequestLine {
    /// The index of the line in the order's `lines` (0-based).
    #[schema(minimum = 0, maximum = 999)]
    pub line: u32,
    /// Units to take back: at most the line's quantity minus what earlier
    /// returns (not cancelled) took.
    #[schema(minimum = 1, maximum = 100)]
    pub quantity: u32,
}

/// A brand's request for a return.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnRequestBody {
    /// The order's lines to take back, each named once.
    #[schema(min_items = 1, max_items = 100)]
    pub lines: Vec<ReturnRequestLine>,
    /// Why the units come back (shown to the brand's shop and the factory).
    #[schema(min_length = 1, max_length = 500, example = "too small")]
    pub reason: String,
}

/// What became of one line's units.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InspectionLineBody {
    /// The order line, as in the return's `lines`.
    #[schema(minimum = 0, maximum = 999)]
    pub line: u32,
    /// Units put back on the factory's shelf.
    #[schema(minimum = 0, maximum = 100)]
    pub restocked: u32,
    /// Units thrown away.
    #[schema(minimum = 0, maximum = 100)]
    pub scrapped: u32,
}

/// The operator's inspection: every line of the return, restocked plus
/// scrapped equal to the units returned.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InspectionBody {
    #[schema(min_items = 1, max_items = 100)]
    pub lines: Vec<InspectionLineBody>,
}

/// A return `caller` may see: a brand its own, an operator those coming
/// back to its factories, an admin any; otherwise a 404.
async fn visible_return(
    state: &ApiState,
    caller: &Caller,
    id: &str,
) -> Result<ReturnRecord, ApiError> {
    caller.require(&[Role::Brand, Role::Operator, Role::Admin])?;
    state
        .runtime
        .store
        .get_return(id, caller.brand_scope())
        .await?
        .filter(|r| caller.role != Role::Operator || caller.covers_factory(&r.factory))
        .ok_or_else(|| ApiError::not_found(format!("return {id}")))
}

/// `record` with its stops, codes shown to whoever hands the parcel over.
async fn detail(
    state: &ApiState,
    caller: &Caller,
    record: &ReturnRecord,
) -> Result<ReturnDetail, ApiError> {
    let handoffs = state
        .runtime
        .store
        .order_handoffs(&record.order_id)
        .await?
        .into_iter()
        .filter(|h| h.return_id.as_deref() == Some(record.id.as_str()))
        .map(|h| {
            let show = sees_code(caller, &h, &record.factory, &record.brand);
            HandoffView::new(&h, show)
        })
        .collect();
    Ok(ReturnDetail {
        record: ReturnView::from(record),
        handoffs,
    })
}

/// Requests a return of a delivered order's units (brand: its own orders;
/// admin: any). Refused (422, with pointers) when the order is not
/// delivered (`""`), the brand's return window has closed (`""`), or a
/// line asks for more than was delivered minus what earlier returns took
/// (`/lines/N/quantity`). The next planning wave plans the pickup at the
/// customer and the drop-off at the order's factory.
#[utoipa::path(post, path = "/v1/orders/{id}/returns", tag = "returns",
    params(("id" = String, Path, description = "The order's id")),
    request_body = ReturnRequestBody,
    responses((status = 201, body = ReturnDetail, description = "Requested; `return.requested` is on the event log"),
        (status = 404, body = super::problem::Problem, description = "No such order for this caller"),
        (status = 409, body = super::problem::Problem),
        (status = 422, body = super::problem::Problem, description = "Refused; `errors` names each reason with its pointer")),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ReturnRequestBody>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Brand, Role::Admin])?;
    let lines = body
        .lines
        .iter()
        .map(|l| RequestedLine {
            line: l.line as usize,
            quantity: l.quantity,
        })
        .collect();
    let record = state
        .runtime
        .request_return(&id, caller.brand_scope(), lines, body.reason)
        .await?;
    let view = detail(&state, &caller, &record).await?;
    let location = format!("/v1/returns/{}", record.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(view),
    )
        .into_response())
}

/// One return with its stops. The brand sees the pickup's code (to pass to
/// its customer), the factory's operator the drop-off's.
#[utoipa::path(get, path = "/v1/returns/{id}", tag = "returns",
    params(("id" = String, Path)),
    responses((status = 200, body = ReturnDetail), (status = 404, body = super::problem::Problem)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ReturnDetail>, ApiError> {
    let record = visible_return(&state, &caller, &id).await?;
    Ok(Json(detail(&state, &caller, &record).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListReturns {
    /// Only returns in this state.
    pub state: Option<ReturnState>,
    /// Cursor: the `next` of the previous page.
    #[serde(default, deserialize_with = "super::empty_as_none")]
    pub after: Option<String>,
    /// Page size, 1..=500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// Returns, oldest first: a brand's own, those coming back to an
/// operator's factories, every one for admins.
#[utoipa::path(get, path = "/v1/returns", tag = "returns", params(ListReturns),
    responses((status = 200, body = ReturnPage)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Query(query): Query<ListReturns>,
) -> Result<Json<ReturnPage>, ApiError> {
    caller.require(&[Role::Brand, Role::Operator, Role::Admin])?;
    let limit = super::page_limit(query.limit)?;
    let factories = (caller.role == Role::Operator && caller.scope != "*")
        .then(|| caller.scope.split(',').map(str::to_string).collect());
    let records = state
        .runtime
        .store
        .list_returns(&ReturnFilter {
            brand: caller.brand_scope().map(str::to_string),
            factories,
            state: query.state,
            after: query.after.clone(),
            limit,
        })
        .await?;
    let next = (records.len() as i64 == limit)
        .then(|| records.last().map(|r| r.id.clone()))
        .flatten();
    Ok(Json(ReturnPage {
        items: records.iter().map(ReturnView::from).collect(),
        next,
    }))
}

/// Records the inspection of a received return (operator of its factory,
/// or admin; audited as `return.inspect`): restocked units go on the
/// factory's shelf for later orders of the SKU. 409 before the parcel is
/// received; 422 (with pointers) when the lines do not account for every
/// unit.
#[utoipa::path(post, path = "/v1/returns/{id}/inspection", tag = "returns",
    params(("id" = String, Path)),
    request_body = InspectionBody,
    responses((status = 200, body = ReturnDetail, description = "Inspected; `return.inspected` is on the event log"),
        (status = 404, body = super::problem::Problem),
        (status = 409, body = super::problem::Problem, description = "The return is not (or no longer) waiting for inspection"),
        (status = 422, body = super::problem::Problem, description = "The lines do not account for every unit; `errors` points at each")),
    security(("bearer" = [])))]
pub async fn inspect(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<InspectionBody>,
) -> Result<Json<ReturnDetail>, ApiError> {
    caller.require(&[Role::Operator, Role::Admin])?;
    visible_return(&state, &caller, &id).await?;
    let lines: Vec<InspectionLine> = body
        .lines
        .iter()
        .map(|l| InspectionLine {
            line: l.line as usize,
            restocked: l.restocked,
            scrapped: l.scrapped,
        })
        .collect();
    let record = state
        .runtime
        .inspect_return(&id, &lines, &caller.actor())
        .await?;
    Ok(Json(detail(&state, &caller, &record).await?))
}

/// Cancels a return whose parcel has not left the customer (brand: its
/// own; admin: any); its planned stops are dropped. 409 once picked up.
#[utoipa::path(post, path = "/v1/returns/{id}/cancel", tag = "returns",
    params(("id" = String, Path)),
    responses((status = 200, body = ReturnDetail), (status = 404, body = super::problem::Problem),
        (status = 409, body = super::problem::Problem, description = "Already picked up, inspected or cancelled")),
    security(("bearer" = [])))]
pub async fn cancel(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ReturnDetail>, ApiError> {
    caller.require(&[Role::Brand, Role::Admin])?;
    let record = state
        .runtime
        .cancel_return(&id, caller.brand_scope(), &caller.actor())
        .await?;
    Ok(Json(detail(&state, &caller, &record).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListStock {
    /// Only this factory's shelf.
    #[serde(default, deserialize_with = "super::empty_as_none")]
    pub factory: Option<String>,
}

/// Restocked units per factory and SKU (operators: their factories;
/// admins: all). Later orders of a SKU at the factory take them first.
#[utoipa::path(get, path = "/v1/stock", tag = "returns", params(ListStock),
    responses((status = 200, body = [StockView]), (status = 404, body = super::problem::Problem)),
    security(("bearer" = [])))]
pub async fn stock(
    State(state): State<ApiState>,
    caller: Caller,
    Query(query): Query<ListStock>,
) -> Result<Json<Vec<StockView>>, ApiError> {
    caller.require(&[Role::Operator, Role::Admin])?;
    if let Some(factory) = &query.factory
        && !caller.covers_factory(factory)
    {
        return Err(ApiError::not_found(format!("factory {factory}")));
    }
    let records = state
        .runtime
        .store
        .list_stock(query.factory.as_deref())
        .await?;
    Ok(Json(
        records
            .iter()
            .filter(|r| caller.covers_factory(&r.factory))
            .map(StockView::from)
            .collect(),
    ))
}
