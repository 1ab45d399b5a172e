//! The HTTP API (axum): `/v1` resources, `/openapi.json`, `/healthz`,
//! `/metrics` and the dashboard at `/`. Errors are problem+json.
//!
//! Invariant: every object lookup is scoped by the caller (another brand's
//! order is a 404, never a 403); writable fields are listed explicitly.
//!
//! Architecture invariant: handlers parse, authorise, call a runtime use case
//! (or read the store) and render. The API knows no planner and no machine
//! adapter; its response types live in `views`.

pub mod auth;
pub mod body;
pub mod feeds;
pub mod forecasts;
pub mod ops;
pub mod order_json;
pub mod orders;
pub mod problem;
pub mod returns;
pub mod sales_events;
pub mod serve;
pub mod session;
pub mod views;
pub mod webhooks;

use crate::config::HttpConfig;
use crate::runtime::Runtime;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use problem::ApiError;
use std::sync::Arc;
use std::time::Duration;
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "fabflow", description = "Fulfilment orchestration for neighbourhood microfactories"),
    paths(
        orders::create, orders::get, orders::list, orders::cancel, orders::import, orders::decide_escalation,
        ops::list_jobs, ops::resume_job, ops::abandon_job, ops::retry_job, ops::cancel_job, ops::move_job, ops::list_machines, ops::machine_queue, ops::machine_action, ops::load_material, ops::schedule_maintenance, ops::list_maintenance, ops::cancel_maintenance, ops::courier_schedule,
        ops::courier_schedule_ics, ops::courier_route_geojson, ops::confirm_handoff,
        ops::fail_handoff, ops::get_handoff, ops::release_handoff, ops::courier_duty,
        ops::list_audit, ops::list_events, ops::healthz, ops::metrics, ops::overview,
        webhooks::create, webhooks::list, webhooks::get, webhooks::delete, webhooks::rotate_secret,
        webhooks::deliveries, webhooks::replay, webhooks::replay_dead,
        forecasts::list, forecasts::run,
        sales_events::put, sales_events::list, sales_events::get, sales_events::delete, sales_events::plan,
        returns::create, returns::get, returns::list, returns::inspect, returns::cancel, returns::stock
    ),
    components(schemas(
        problem::Problem, views::OrderView, views::AtRiskView, views::OrderPage, views::JobPage, views::OrderDetail, views::JobView, views::WaitingView, crate::domain::waiting::WaitReason, views::MachineQueueView, views::MachineView, crate::domain::HoldCause,
        ops::Overview, ops::FactoryOverview, ops::CourierOverview,
        views::HandoffView, views::CustomerView, views::AuditView, views::AuditPage, views::EventPage, orders::ImportReport, orders::ImportLine, ops::Confirmed, ops::Health,
        views::CourierScheduleView, views::ScheduleStopView, views::HandoffDetailView, views::EscalationView,
        ops::ConfirmRequest, ops::FailRequest, ops::FailedView, ops::DutyRequest, ops::DutyView, ops::MoveRequest, ops::MaterialRequest, ops::CancelledJobView, ops::MaintenanceRequest, ops::MaintenanceWindowView, orders::EscalationRequest, crate::domain::escalation::EscalationDecision, crate::domain::FailureReason,
        crate::domain::intake::OrderRequest, crate::domain::intake::FieldError,
        webhooks::EndpointBody, webhooks::EndpointView, webhooks::EndpointWithSecret, webhooks::EndpointList,
        webhooks::DeliveryView, webhooks::DeliveryPage, webhooks::Replayed,
        forecasts::ForecastList, forecasts::ForecastView, forecasts::ForecastDay, forecasts::RunView,
        sales_events::SalesEventList, crate::domain::sales_event::SalesEventRequest, crate::domain::sales_event::SalesEventView,
        crate::domain::sales_event::EventPlanView, crate::domain::sales_event::SkuPlanView,
        returns::ReturnRequestBody, returns::ReturnRequestLine, returns::InspectionBody, returns::InspectionLineBody,
        views::ReturnView, views::ReturnDetail, views::ReturnPage, views::StockView,
        crate::domain::ReturnState, crate::domain::ReturnLine, crate::domain::InspectedLine
    )),
    modifiers(&BearerAuth, &ProblemResponses)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every operation can answer with a problem: a malformed request, a missing
/// or unknown token, a token of the wrong role, too many failed
/// authentications, a body over the limit, or an internal error. Every error
/// response is `application/problem+json`.
struct ProblemResponses;

impl utoipa::Modify for ProblemResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        let problem = || {
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build()
        };
        let common = [
            ("400", "Malformed request (JSON, query string, header)"),
            ("401", "Missing or unknown token"),
            ("403", "The token's role may not do this"),
            ("404", "No such resource for this caller"),
            ("408", "The request took longer than the limit"),
            (
                "429",
                "Too many failed authentications from this address (see Retry-After)",
            ),
            ("500", "Internal error (details in the daemon's log)"),
        ];
        let with_body = [
            ("413", "Request body over the limit"),
            ("415", "Unsupported Content-Type"),
            ("422", "Invalid fields; `errors` names each one"),
        ];
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                (item.get.as_mut(), false),
                (item.post.as_mut(), true),
                (item.put.as_mut(), true),
                (item.delete.as_mut(), false),
            ];
            for (operation, has_body) in operations {
                let Some(operation) = operation else { continue };
                let responses = &mut operation.responses.responses;
                for (code, response) in responses.iter_mut() {
                    if !code.starts_with('2')
                        && let RefOr::T(response) = response
                    {
                        let content = std::mem::take(&mut response.content);
                        for (_, body) in content {
                            response
                                .content
                                .insert("application/problem+json".into(), body);
                        }
                    }
                }
                if !path.starts_with("/v1/") {
                    continue;
                }
                let extra: &[(&str, &str)] = if has_body { &with_body } else { &[] };
                for (code, description) in common.iter().chain(extra) {
                    responses.entry(code.to_string()).or_insert_with(|| {
                        RefOr::T(
                            ResponseBuilder::new()
                                .description(*description)
                                .content("application/problem+json", problem())
                                .build(),
                        )
                    });
                }
            }
        }
    }
}

/// Query parameters given empty (`?factory=`) count as absent.
pub(crate) fn empty_as_none<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let value: Option<String> = serde::Deserialize::deserialize(deserializer)?;
    Ok(value.filter(|v| !v.is_empty()))
}

pub fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(100),
        Some(n) if (1..=500).contains(&n) => Ok(n),
        Some(n) => Err(
            ApiError::bad_request(format!("limit must be 1..=500, got {n}")).with_errors(vec![
                crate::domain::intake::FieldError::new("limit", "must be 1..=500"),
            ]),
        ),
    }
}

/// What the HTTP layer holds: the runtime's handle (its use cases, and the
/// store and clock for reads), the token guard and the metrics renderer.
/// Every request's handler and middleware take a clone: one reference
/// count, not one per field.
#[derive(Clone)]
pub struct ApiState(Arc<ApiShared>);

impl std::ops::Deref for ApiState {
    type Target = ApiShared;

    fn deref(&self) -> &ApiShared {
        &self.0
    }
}

/// The fields of [`ApiState`].
pub struct ApiShared {
    pub runtime: Runtime,
    /// Token cache and failed-authentication counts, shared by every request.
    pub guard: Arc<auth::Guard>,
    pub metrics: Option<PrometheusHandle>,
    pub max_body_bytes: usize,
    /// A request that takes longer is answered 408.
    pub request_timeout: Duration,
    /// When set, `/metrics` answers only requests bearing it.
    pub metrics_token: Option<String>,
    /// Dashboard sessions (cookie to token hash), in memory.
    pub sessions: Arc<auth::Sessions>,
    /// Ends the dashboard's event streams; cancelled when HTTP stops, so
    /// a stream never holds the graceful shutdown open.
    pub streams_stop: tokio_util::sync::CancellationToken,
}

impl ApiState {
    pub fn new(runtime: Runtime, http: &HttpConfig, metrics: Option<PrometheusHandle>) -> ApiState {
        ApiState(Arc::new(ApiShared {
            runtime,
            guard: Arc::default(),
            metrics,
            max_body_bytes: http.max_body_bytes,
            request_timeout: Duration::from_millis(http.request_timeout_ms),
            metrics_token: http.metrics_token.clone().filter(|t| !t.is_empty()),
            sessions: Arc::default(),
            streams_stop: tokio_util::sync::CancellationToken::new(),
        }))
    }
}

pub fn router(state: ApiState) -> Router {
    let max_body = state.max_body_bytes;
    let request_timeout = state.request_timeout;
    Router::new()
        .route("/", get(ops::dashboard))
        .route("/dashboard/app.js", get(ops::dashboard_js))
        .route("/dashboard/app.css", get(ops::dashboard_css))
        .route(
            "/dashboard/session",
            post(session::sign_in)
                .get(session::current)
                .delete(session::sign_out),
        )
        .route("/dashboard/events", get(session::events))
        .route("/openapi.json", get(openapi))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .route("/v1/orders", post(orders::create).get(orders::list))
        .route("/v1/orders/import", post(orders::import))
        .route("/v1/orders/{id}", get(orders::get))
        .route("/v1/orders/{id}/cancel", post(orders::cancel))
        .route(
            "/v1/orders/{id}/escalation",
            post(orders::decide_escalation),
        )
        .route("/v1/orders/{id}/returns", post(returns::create))
        .route("/v1/returns", get(returns::list))
        .route("/v1/returns/{id}", get(returns::get))
        .route("/v1/returns/{id}/inspection", post(returns::inspect))
        .route("/v1/returns/{id}/cancel", post(returns::cancel))
        .route("/v1/stock", get(returns::stock))
        .route("/v1/jobs", get(ops::list_jobs))
        .route("/v1/jobs/{token}/resume", post(ops::resume_job))
        .route("/v1/jobs/{token}/abandon", post(ops::abandon_job))
        .route("/v1/jobs/{token}/retry", post(ops::retry_job))
        .route("/v1/jobs/{token}/cancel", post(ops::cancel_job))
        .route("/v1/jobs/{token}/move", post(ops::move_job))
        .route("/v1/overview", get(ops::overview))
        .route("/v1/machines", get(ops::list_machines))
        .route("/v1/machines/{id}/queue", get(ops::machine_queue))
        .route("/v1/machines/{id}/material", post(ops::load_material))
        .route(
            "/v1/machines/{id}/maintenance-windows",
            post(ops::schedule_maintenance).get(ops::list_maintenance),
        )
        .route(
            "/v1/machines/{id}/maintenance-windows/{window}",
            axum::routing::delete(ops::cancel_maintenance),
        )
        .route("/v1/machines/{id}/{action}", post(ops::machine_action))
        .route("/v1/couriers/{id}/schedule", get(ops::courier_schedule))
        .route("/v1/couriers/{id}/duty", post(ops::courier_duty))
        .route(
            "/v1/couriers/{id}/schedule.ics",
            get(ops::courier_schedule_ics),
        )
        .route(
            "/v1/couriers/{id}/route.geojson",
            get(ops::courier_route_geojson),
        )
        .route("/v1/handoffs/{id}", get(ops::get_handoff))
        .route("/v1/handoffs/{id}/confirm", post(ops::confirm_handoff))
        .route("/v1/handoffs/{id}/fail", post(ops::fail_handoff))
        .route("/v1/handoffs/{id}/release", post(ops::release_handoff))
        .route("/v1/audit", get(ops::list_audit))
        .route("/v1/events", get(ops::list_events))
        .route("/v1/forecasts", get(forecasts::list))
        .route("/v1/forecasts/run", get(forecasts::run))
        .route("/v1/forecasts/events/{id}", get(sales_events::plan))
        .route("/v1/sales-events", get(sales_events::list))
        .route(
            "/v1/sales-events/{id}",
            get(sales_events::get)
                .put(sales_events::put)
                .delete(sales_events::delete),
        )
        .route("/v1/webhooks", post(webhooks::create).get(webhooks::list))
        .route(
            "/v1/webhooks/{id}",
            get(webhooks::get).delete(webhooks::delete),
        )
        .route(
            "/v1/webhooks/{id}/rotate-secret",
            post(webhooks::rotate_secret),
        )
        .route("/v1/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route(
            "/v1/webhooks/{id}/deliveries/{delivery}/replay",
            post(webhooks::replay),
        )
        .route("/v1/webhooks/{id}/replay-dead", post(webhooks::replay_dead))
        .fallback(not_found)
        // Inside the problem mapper, so a 408 is problem+json too.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .layer(axum::middleware::map_response(problem_for_rejections))
        .layer(axum::middleware::from_fn(count_requests))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(state)
}

/// The span of one request: a fresh id (never taken from the client), so
/// every line logged while serving it can be told apart and grepped, and
/// the order, job or machine its route names (`order.id`, `job.token`,
/// `machine.id`, read where the matched route has `/orders/{id}`,
/// `/jobs/{token}`, `/machines/{id}`; intake records the new order's id
/// once it is stored).
fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    let path = request.uri().path();
    let span = tracing::info_span!(
        "request",
        request.id = %uuid::Uuid::now_v7().simple(),
        method = %request.method(),
        path = %path,
        order.id = tracing::field::Empty,
        job.token = tracing::field::Empty,
        machine.id = tracing::field::Empty,
    );
    if let Some(route) = request.extensions().get::<axum::extract::MatchedPath>() {
        let template: Vec<&str> = route.as_str().split('/').collect();
        let actual: Vec<&str> = path.split('/').collect();
        for (at, pair) in template.windows(2).enumerate() {
            let field = match pair {
                ["orders", "{id}"] => "order.id",
                ["jobs", "{token}"] => "job.token",
                ["machines", "{id}"] => "machine.id",
                _ => continue,
            };
            if let Some(value) = actual.get(at + 1) {
                span.record(field, tracing::field::display(value));
            }
        }
    }
    span
}

/// Counts every request by method, route template (the matched path, such
/// as `/v1/orders/{id}`, never the raw path with its ids; `unmatched` for
/// none) and status, and times it by route.
async fn count_requests(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |path| path.as_str().to_string());
    let method = match *request.method() {
        axum::http::Method::GET => "GET",
        axum::http::Method::POST => "POST",
        axum::http::Method::DELETE => "DELETE",
        axum::http::Method::HEAD => "HEAD",
        axum::http::Method::PUT => "PUT",
        axum::http::Method::PATCH => "PATCH",
        axum::http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("fabflow_http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("fabflow_http_request_seconds", "method" => method, "route" => route)
        .record(started.elapsed());
    response
}

async fn openapi() -> impl IntoResponse {
    axum::Json(ApiDoc::openapi())
}

async fn not_found() -> ApiError {
    ApiError::not_found("resource")
}

/// axum answers some errors itself (bad query, body too large, wrong method)
/// in plain text; turn those into problem+json too.
async fn problem_for_rejections(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.starts_with("application/problem+json") || v.starts_with("application/json")
        });
    if (status.is_client_error() || status.is_server_error()) && !is_problem {
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 64 * 1024)
            .await
            .unwrap_or_default();
        let detail = String::from_utf8_lossy(&bytes).trim().to_string();
        let detail = if parts.status == StatusCode::REQUEST_TIMEOUT {
            // The handler was dropped, but what it handed on (an order to
            // intake) may still be committed.
            "the request took longer than the server's limit; whatever it asked \
             for may or may not have been done: send it again with the same \
             Idempotency-Key to learn which"
                .to_string()
        } else if detail.is_empty() {
            parts
                .status
                .canonical_reason()
                .unwrap_or("error")
                .to_string()
        } else {
            detail
        };
        return problem::rejection(parts.status, detail).into_response();
    }
    response
}
