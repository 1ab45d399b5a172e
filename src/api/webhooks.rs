//! Brand webhook endpoints: register, list, remove, rotate the secret, and
//! the deliveries of an endpoint (list, replay). A brand sees only its own
//! endpoints (another brand's is a 404); an admin reads and manages all.

use super::ApiState;
use super::auth::{Caller, Role};
use super::body::JsonBody;
use super::problem::ApiError;
use super::views::rfc3339;
use crate::domain::intake::FieldError;
use crate::domain::webhook::DeliveryState;
use crate::domain::{BrandId, Millis};
use crate::runtime::webhooks::{EndpointRequest, WebhookError, wall_ms};
use crate::store::{WebhookDelivery, WebhookEndpoint};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

impl From<WebhookError> for ApiError {
    fn from(err: WebhookError) -> Self {
        match err {
            WebhookError::Invalid(errors) => ApiError::invalid(errors),
            WebhookError::Store(err) => err.into(),
        }
    }
}

/// A webhook endpoint to register.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointBody {
    /// Where events are POSTed: an absolute http(s) URL.
    #[schema(example = "https://shop.example.com/hooks/fabflow")]
    pub url: String,
    /// A note for the brand's own use.
    #[serde(default)]
    pub description: String,
    /// Event kinds (`order.delivered`) or families (`order.*`) to receive;
    /// empty or absent for every kind.
    #[serde(default)]
    pub kinds: Vec<String>,
}

/// A registered endpoint (its secret is shown only when made).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EndpointView {
    pub id: String,
    pub brand: String,
    pub url: String,
    pub description: String,
    /// Event kinds or families received; empty for every kind.
    pub kinds: Vec<String>,
    pub created_at: Option<DateTime<Utc>>,
    /// Until when the secret before the last rotation still signs too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_until: Option<DateTime<Utc>>,
}

impl EndpointView {
    fn new(endpoint: &WebhookEndpoint, now: Millis) -> EndpointView {
        EndpointView {
            id: endpoint.id.clone(),
            brand: endpoint.brand.clone(),
            url: endpoint.url.clone(),
            description: endpoint.description.clone(),
            kinds: endpoint.kinds.clone(),
            created_at: rfc3339(endpoint.created_ms),
            previous_secret_until: endpoint
                .previous_until_ms
                .filter(|until| *until > now)
                .and_then(rfc3339),
        }
    }
}

/// An endpoint with its signing secret: shown once, at registration and at
/// each rotation. Verify deliveries with any Standard Webhooks library.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EndpointWithSecret {
    #[serde(flatten)]
    pub endpoint: EndpointView,
    /// `whsec_` and the base64 of the key.
    pub secret: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EndpointList {
    pub items: Vec<EndpointView>,
}

/// One event's delivery to one endpoint.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    pub id: i64,
    /// The event's `seq` (read it at `GET /v1/events?after=<seq - 1>&limit=1`).
    pub event_seq: i64,
    pub kind: String,
    /// `pending` (waiting for its next attempt), `delivered` or `dead`
    /// (retried for the whole retry span without success; replay it).
    pub state: String,
    pub attempts: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The endpoint's last HTTP status, if it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
}

impl From<&WebhookDelivery> for DeliveryView {
    fn from(d: &WebhookDelivery) -> Self {
        DeliveryView {
            id: d.id,
            event_seq: d.event_seq,
            kind: d.kind.clone(),
            state: d.state.as_str().into(),
            attempts: d.attempts,
            next_attempt_at: (d.state == DeliveryState::Pending)
                .then_some(d.next_attempt_ms)
                .and_then(rfc3339),
            last_attempt_at: d.last_attempt_ms.and_then(rfc3339),
            last_status: d.last_status,
            last_error: d.last_error.clone(),
            created_at: rfc3339(d.created_ms),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryPage {
    pub items: Vec<DeliveryView>,
    /// Cursor for the next page (`after=`), absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Replayed {
    /// How many dead deliveries were put back to pending.
    pub replayed: u64,
}

/// Registers a webhook endpoint for the calling brand. The response carries
/// the signing secret, shown only here and at rotation.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", request_body = EndpointBody,
    responses((status = 201, body = EndpointWithSecret),
              (status = 409, description = "The brand has the most endpoints allowed", body = super::problem::Problem)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    JsonBody(body): JsonBody<EndpointBody>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(&[Role::Brand])?;
    let brand = BrandId::from(caller.scope.as_str());
    let endpoint = state
        .runtime
        .register_webhook(
            &brand,
            EndpointRequest {
                url: body.url,
                description: body.description,
                kinds: body.kinds,
            },
        )
        .await?;
    let view = EndpointWithSecret {
        endpoint: EndpointView::new(&endpoint, wall_ms()),
        secret: endpoint.secret.clone(),
    };
    Ok((StatusCode::CREATED, Json(view)))
}

/// The caller's webhook endpoints (an admin: every brand's).
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks",
    responses((status = 200, body = EndpointList)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<EndpointList>, ApiError> {
    caller.require(&[Role::Brand, Role::Admin])?;
    let now = wall_ms();
    let endpoints = state
        .runtime
        .store
        .list_endpoints(caller.brand_scope())
        .await?;
    Ok(Json(EndpointList {
        items: endpoints
            .iter()
            .map(|e| EndpointView::new(e, now))
            .collect(),
    }))
}

async fn find(state: &ApiState, caller: &Caller, id: &str) -> Result<WebhookEndpoint, ApiError> {
    caller.require(&[Role::Brand, Role::Admin])?;
    state
        .runtime
        .store
        .endpoint(caller.brand_scope(), id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("webhook endpoint {id}")))
}

/// One webhook endpoint.
#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, body = EndpointView)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    let endpoint = find(&state, &caller, &id).await?;
    Ok(Json(EndpointView::new(&endpoint, wall_ms())))
}

/// Removes an endpoint and its deliveries; nothing more is sent to it.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 204, description = "Removed")), security(("bearer" = [])))]
pub async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(&[Role::Brand, Role::Admin])?;
    if state
        .runtime
        .store
        .delete_endpoint(caller.brand_scope(), &id, &caller.actor(), wall_ms())
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("webhook endpoint {id}")))
    }
}

/// Gives the endpoint a new secret (in the response). Until
/// `previous_secret_until`, deliveries carry a signature with the old
/// secret too, so the receiver can switch over without losing any.
#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate-secret", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, body = EndpointWithSecret)), security(("bearer" = [])))]
pub async fn rotate_secret(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<EndpointWithSecret>, ApiError> {
    caller.require(&[Role::Brand, Role::Admin])?;
    let endpoint = state
        .runtime
        .rotate_webhook_secret(caller.brand_scope(), &id, &caller.actor())
        .await?;
    Ok(Json(EndpointWithSecret {
        endpoint: EndpointView::new(&endpoint, wall_ms()),
        secret: endpoint.secret.clone(),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListDeliveries {
    /// Only deliveries in this state: `pending`, `delivered` or `dead`.
    #[serde(default, deserialize_with = "super::empty_as_none")]
    #[param(value_type = Option<String>, pattern = "^(pending|delivered|dead)$")]
    pub state: Option<String>,
    /// Cursor: deliveries with a larger id (the `next` of the previous page).
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// Page size, 1..=500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// An endpoint's deliveries, oldest first: the dead-letter list is
/// `state=dead`.
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id"), ListDeliveries),
    responses((status = 200, body = DeliveryPage)), security(("bearer" = [])))]
pub async fn deliveries(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<ListDeliveries>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let endpoint = find(&state, &caller, &id).await?;
    let limit = super::page_limit(query.limit)?;
    let wanted = match query.state.as_deref() {
        None => None,
        Some(text) => Some(DeliveryState::parse(text).ok_or_else(|| {
            ApiError::bad_request(format!(
                "state must be pending, delivered or dead, got {text:?}"
            ))
            .with_errors(vec![FieldError::new(
                "state",
                "must be pending, delivered or dead",
            )])
        })?),
    };
    let after = match query.after {
        Some(n) if n < 0 => {
            return Err(
                ApiError::bad_request(format!("after must be 0 or more, got {n}"))
                    .with_errors(vec![FieldError::new("after", "must be 0 or more")]),
            );
        }
        other => other,
    };
    let records = state
        .runtime
        .store
        .list_deliveries(&endpoint.id, wanted, after, limit)
        .await?;
    let next = (records.len() as i64 == limit)
        .then(|| records.last().map(|r| r.id))
        .flatten();
    Ok(Json(DeliveryPage {
        items: records.iter().map(DeliveryView::from).collect(),
        next,
    }))
}

/// Sends one delivery again from its first attempt (a dead one, or a
/// delivered one the receiver lost). A pending delivery is a conflict.
#[utoipa::path(post, path = "/v1/webhooks/{id}/deliveries/{delivery}/replay", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id"),
           ("delivery" = i64, Path, description = "Delivery id")),
    responses((status = 200, body = DeliveryView),
              (status = 409, description = "The delivery is pending already", body = super::problem::Problem)),
    security(("bearer" = [])))]
pub async fn replay(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, delivery)): Path<(String, i64)>,
) -> Result<Json<DeliveryView>, ApiError> {
    let endpoint = find(&state, &caller, &id).await?;
    let record = state
        .runtime
        .store
        .replay_delivery(&endpoint.id, delivery, &caller.actor(), wall_ms())
        .await?;
    state.runtime.wake_webhooks();
    Ok(Json(DeliveryView::from(&record)))
}

/// Sends every dead delivery of the endpoint again.
#[utoipa::path(post, path = "/v1/webhooks/{id}/replay-dead", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, body = Replayed)), security(("bearer" = [])))]
pub async fn replay_dead(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Replayed>, ApiError> {
    let endpoint = find(&state, &caller, &id).await?;
    let replayed = state
        .runtime
        .store
        .replay_dead(&endpoint.id, &caller.actor(), wall_ms())
        .await?;
    state.runtime.wake_webhooks();
    Ok(Json(Replayed { replayed }))
}
