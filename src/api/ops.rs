//! Operators' and couriers' resources: jobs, machines, schedules, handoffs,
//! plus health and metrics.

use super::ApiState;
use super::auth::{Caller, FeedCaller, Role};
use super::body::{json_value, typed};
use super::feeds;
use super::problem::ApiError;
use super::views::{
    AuditPage, AuditView, EventPage, JobPage, JobView, MachineQueueView, MachineView, job_view,
    job_view_explained, machine_view,
};
use super::views::{CourierScheduleView, HandoffDetailView};
use crate::domain::intake::FieldError;
use crate::domain::{
    FailureReason, HandoffKind, HandoffState, JobState, JobToken, ModeInput, OrderState,
};
use crate::runtime::operations::HeldDecision;
use crate::store::{Confirmation, HandoffDetail, HandoffRecord, JobFilter};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListJobs {
    #[serde(default, deserialize_with = "super::empty_as_none")]
    pub factory: Option<String>,
    #[serde(default, deserialize_with = "super::empty_as_none")]
    pub machine: Option<String>,
    pub state: Option<JobState>,
    #[serde(default, deserialize_with = "super::empty_as_none")]
    pub order_id: Option<String>,
    /// Cursor: the `next` of the previous page (a job token: digits; empty for none).
    #[serde(default, deserialize_with = "super::empty_as_none")]
    #[param(pattern = "^[0-9]{0,18}$")]
    pub after: Option<String>,
    /// Page size, 1..=500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// Jobs, filtered by factory, machine, state or order (operators: their factories).
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(ListJobs),
    responses((status = 200, body = JobPage)), security(("bearer" = [])))]
pub async fn list_jobs(
    State(state): State<ApiState>,
    caller: Caller,
    Query(query): Query<ListJobs>,
) -> Result<Json<JobPage>, ApiError> {
    caller.require(&[Role::Operator, Role::Admin])?;
    if let Some(factory) = &query.factory
        && !caller.covers_factory(factory)
    {
        return Err(ApiError::not_found(format!("factory {factory}")));
    }
    let limit = super::page_limit(query.limit)?;
    let after = match &query.after {
        Some(text) => Some(
            text.parse::<i64>()
                .ok()
                .filter(|token| *token >= 0)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "after must be a job token (digits), got {text:?}"
                    ))
                    .with_errors(vec![
                        crate::domain::intake::FieldError::new(
                            "after",
                            "must be a job token (digits)",
                        ),
                    ])
                })?,
        ),
        None => None,
    };
    let jobs = state
        .runtime
        .store
        .list_jobs(&JobFilter {
            factory: query.factory.clone(),
            machine: query.machine.clone(),
            state: query.state,
            order_id: query.order_id.clone(),
            after,
            limit,
        })
        .await?;
    let next = (jobs.len() as i64 == limit)
        .then(|| jobs.last().map(|j| j.token.0.to_string()))
        .flatten();
    let waits = jobs
        .iter()
        .any(|job| !matches!(job.state, JobState::Running) && !job.state.is_terminal());
    let waiting = if waits {
        state.runtime.explain_jobs(query.factory.as_deref()).await?
    } else {
        Default::default()
    };
    let items = jobs
        .iter()
        .filter(|job| caller.covers_factory(&job.factory))
        .map(|job| job_view_explained(job, &waiting))
        .collect();
    Ok(Json(JobPage { items, next }))
}

/// A held job (one its machine stopped: a fault, a reset, a power loss)
/// goes on on its machine: refused (409) unless the job is held, its
/// machine still shows it and is out of its fault. One transaction, one
/// event (`job.resumed`), audited.
#[utoipa::path(post, path = "/v1/jobs/{token}/resume", tag = "jobs",
    params(("token" = u32, Path, description = "The job token")),
    responses((status = 200, body = JobView), (status = 404, body = super::problem::Problem),
        (status = 409, body = super::problem::Problem, description = "Not held, or its machine no longer has it or is still in fault")),
    security(("bearer" = [])))]
pub async fn resume_job(
    State(state): State<ApiState>,
    caller: Caller,
    Path(token): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    decide_job(&state, &caller, &token, HeldDecision::Resume).await
}

/// A held job is abandoned: it fails, its token is retired, and its units
/// not reported good are made again under new tokens. Refused (409) unless
/// the job is held. One transaction, one event (`job.abandoned`), audited.
#[utoipa::path(post, path = "/v1/jobs/{token}/abandon", tag = "jobs",
    params(("token" = u32, Path, description = "The job token")),
    responses((status = 200, body = JobView), (status = 404, body = super::problem::Problem),
        (status = 409, body = super::problem::Problem, description = "Not held")),
    security(("bearer" = [])))]
pub async fn abandon_job(
    State(state): State<ApiState>,
    caller: Caller,
    Path(token): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    decide_job(&state, &caller, &token, HeldDecision::Abandon).await
}

/// A held job is made again: the same end as `abandon` (it fails, its
/// token is retired, its units not reported good are made again by new
/// jobs whose `replaces` is its token), recorded as a retry (`job.retried`,
/// audit `job.retry`). Refused (409) unless the job is held: a failed job's
/// units are already being made again. One transaction, one event.
#[utoipa::path(post, path = "/v1/jobs/{token}/retry", tag = "jobs",
    params(("token" = u32, Path, description = "The job token")),
    responses((status = 200, body = JobView), (status = 404, body = super::problem::Problem),
        (status = 409, body = super::problem::Problem, description = "Not held; `detail` says why")),
    security(("bearer" = [])))]
pub async fn retry_job(
    State(state): State<ApiState>,
    caller: Caller,
    Path(token): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    decide_job(&state, &caller, &token, HeldDecision::Retry).await
}

/// What a job's cancellation did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CancelledJobView {
    /// The job, now cancelled.
    pub job: JobView,
    /// Every job cancelled with it: the jobs of its line not yet made
    /// (earlier and later steps, replacements), itself included.
    pub cancelled: Vec<u32>,
    /// The order's state after the cancellation (cancelled when every line
    /// is, ready when the lines left are all done).
    pub order_state: OrderState,
}

/// A job not yet on a machine (pending or queued) is taken off the floor,
/// and with it its order line: every job of the line not yet made (earlier
/// and later steps, replacements) is cancelled (`job.cancelled` each). The
/// order follows: cancelled once every line is, ready once the lines left
/// are all done, otherwise unchanged. Refused (409, with the reason) for a
/// job that is running, dispatched, held or finished, or while another job
/// of its line is on a machine. One transaction, audited (`job.cancel`).
#[utoipa::path(post, path = "/v1/jobs/{token}/cancel", tag = "jobs",
    params(("token" = u32, Path, description = "The job token")),
    responses((status = 200, body = CancelledJobView), (status = 404, body = super::problem::Problem),
        (status = 409, body = super::problem::Problem, description = "The job (or another of its line) is on a machine or finished; `detail` says which")),
    security(("bearer" = [])))]
pub async fn cancel_job(
    State(state): State<ApiState>,
    caller: Caller,
    Path(token): Path<String>,
) -> Result<Json<CancelledJobView>, ApiError> {
    let token = operators_job(&state, &caller, &token).await?;
    let (moved, cancelled) = state.runtime.cancel_job(token, &caller.actor()).await?;
    let order_state = match moved.order_state {
        Some(order_state) => order_state,
        None => state
            .runtime
            .store
            .get_order(moved.job.order_id.as_str(), None)
            .await?
            .map(|order| order.state)
            .ok_or_else(|| ApiError::not_found(format!("order {}", moved.job.order_id)))?,
    };
    Ok(Json(CancelledJobView {
        job: job_view(&moved.job),
        cancelled: cancelled.iter().map(|t| t.0).collect(),
        order_state,
    }))
}

/// The job `token` if `caller` (an operator or admin) may see it: an
/// operator sees its factories' jobs; anything else is a 404.
async fn operators_job(
    state: &ApiState,
    caller: &Caller,
    token: &str,
) -> Result<JobToken, ApiError> {
    caller.require(&[Role::Operator, Role::Admin])?;
    let not_found = || ApiError::not_found(format!("job {token}"));
    let token = token
        .parse::<u32>()
        .map(JobToken)
        .map_err(|_| not_found())?;
    state
        .runtime
        .store
        .get_job(token)
        .await?
        .filter(|job| caller.covers_factory(&job.factory))
        .ok_or_else(not_found)?;
    Ok(token)
}

/// Finds the job `token` among those `caller` may see and applies the
/// decision.
async fn decide_job(
    state: &ApiState,
    caller: &Caller,
    token: &str,
    decision: HeldDecision,
) -> Result<Json<JobView>, ApiError> {
    let token = operators_job(state, caller, token).await?;
    let moved = state
        .runtime
        .decide_held_job(token, decision, &caller.actor())
        .await?;
    Ok(Json(job_view(&moved.job)))
}

/// Where an operator moves a job.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveRequest {
    /// The machine whose queue takes the job (same factory, capable, active).
    #[schema(min_length = 1)]
    pub machine: String,
}

/// A pending or queued job goes to another machine's queue. Refused (409,
/// with the reason) for a job already on its machine (dispatched, running,
/// held) or finished, a machine of another factory, one that does not do
/// its process or cannot use its material, one that takes no jobs (paused,
/// maintenance), or while an earlier step of its line is not done. One
/// transaction, one event (`job.moved`), audited.
#[utoipa::path(post, path = "/v1/jobs/{token}/move", tag = "jobs",
    params(("token" = u32, Path, description = "The job token")),
    request_body = MoveRequest,
    responses((status = 200, body = JobView), (status = 400, body = super::problem::Problem),
        (status = 404, body = super::problem::Problem, description = "No such job or machine (for this operator)"),
        (status = 409, body = super::problem::Problem, description = "The move makes no sense; `detail` says why"),
        (status = 422, body = super::problem::Problem)),
    security(("bearer" = [])))]
pub async fn move_job(
    State(state): State<ApiState>,
    caller: Caller,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<JobView>, ApiError> {
    let value = json_value(&headers, &body)?;
    let token = operators_job(&state, &caller, &token).await?;
    let request: MoveRequest = serde_json::from_value(value)
        .ok()
        .filter(|r: &MoveRequest| !r.machine.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(vec![FieldError::new(
                "/machine",
                "must be a machine id (and the only field)",
            )])
        })?;
    let visible = state
        .runtime
        .store
        .get_machine(&request.machine)
        .await?
        .is_some_and(|m| caller.covers_factory(&m.factory));
    if !visible {
        return Err(ApiError::not_found(format!("machine {}", request.machine)));
    }
    let moved = state
        .runtime
        .move_job(token, &request.machine, &caller.actor())
        .await?;
    Ok(Json(job_view(&moved.job)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListMachines {
    #[serde(default, deserialize_with = "super::empty_as_none")]
    pub factory: Option<String>,
}

/// Machines with their live state and queue length.
#[utoipa::path(get, path = "/v1/machines", tag = "machines", params(ListMachines),
    responses((status = 200, body = [MachineView])), security(("bearer" = [])))]
pub async fn list_machines(
    State(state): State<ApiState>,
    caller: Caller,
    Query(query): Query<ListMachines>,
) -> Result<Json<Vec<MachineView>>, ApiError> {
    caller.require(&[Role::Operator, Role::Admin])?;
    let machines = state
        .runtime
        .store
        .list_machines(query.factory.as_deref())
        .await?;
    let loads = state.runtime.store.machine_loads().await?;
    Ok(Json(
        machines
            .iter()
            .filter(|m| caller.covers_factory(&m.factory))
            .map(|m| machine_view(m, loads.get(m.id.as_str()).copied().unwrap_or(0)))
            .collect(),
    ))
}

/// A machine and its queue in the order it takes jobs: the running job
/// first, then each queued job with its position, why it waits and its
/// estimated start and finish.
#[utoipa::path(get, path = "/v1/machines/{id}/queue", tag = "machines",
    params(("id" = String, Path)),
    responses((status = 200, body = MachineQueueView), (status = 404, body = super::problem::Problem)),
    security(("bearer" = [])))]
pub async fn machine_queue(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<MachineQueueView>, ApiError> {
    caller.require(&[Role::Operator, Role::Admin])?;
    let machine = state
        .runtime
        .store
        .get_machine(&id)
        .await?
        .filter(|m| caller.covers_factory(&m.factory))
        .ok_or_else(|| ApiError::not_found(format!("machine {id}")))?;
    let queue = state.runtime.store.machine_queue(&id).await?;
    let waiting = state
        .runtime
        .explain_jobs(Some(machine.factory.as_str()))
        .await?;
    Ok(Json(MachineQueueView {
        machine: machine_view(&machine, queue.len()),
        jobs: queue
            .iter()
            .map(|job| job_view_explained(job, &waiting))
            .collect(),
    }))
}

/// Pause (finish the current job, take nothing new), drain (finish the
/// whole queue, take nothing new, then pause), resume, or start/end
/// maintenance.
#[utoipa::path(post, path = "/v1/machines/{id}/{action}", tag = "machines",
    params(("id" = String, Path), ("action" = String, Path, description = "pause | resume | maintenance | end-maintenance | drain (finish the queue, take nothing new, then pause)")),
    responses((status = 200, body = MachineView), (status = 409, body = super::problem::Problem)),
    security(("bearer" = [])))]
pub async fn machine_action(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, action)): Path<(String, String)>,
) -> Result<Json<MachineView>, ApiError> {
    caller.require(&[Role::Operator, Role::Admin])?;
    let machine = state
        .runtime
        .store
        .get_machine(&id)
        .await?
        .filter(|m| caller.covers_factory(&m.factory))
        .ok_or_else(|| ApiError::not_found(format!("machine {id}")))?;
    let input = match action.as_str() {
        "pause" => ModeInput::Pause,
        "resume" => ModeInput::Resume,
        "maintenance" => ModeInput::StartMaintenance,
        "end-maintenance" => ModeInput::EndMaintenance,
        "drain" => ModeInput::Drain,
        other => return Err(ApiError::not_found(format!("machine action {other:?}"))),
    };
    state
        .runtime
        .change_machine_mode(&machine.id, input, &caller.actor())
        .await?;
    Ok(Json(current_machine_view(&state, &id).await?))
}

/// A machine as it is now, after a decision about it.
async fn current_machine_view(state: &ApiState, id: &str) -> Result<MachineView, ApiError> {
    let machine = state
        .runtime
        .store
        .get_machine(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("machine {id}")))?;
    let loads = state.runtime.store.machine_loads().await?;
    Ok(machine_view(&machine, loads.get(id).copied().unwrap_or(0)))
}

/// The material an operator loaded on a machine.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MaterialRequest {
    /// One of the machine's `materials`; null when it is not known (the
    /// machine then starts jobs of any of its materials).
    #[schema(example = "tote")]
    pub material: Option<String>,
}

/// An operator declares the material loaded on a machine. From then on the
/// machine starts only jobs of that material; jobs of another material
/// wait (`material_not_loaded`) and its queued ones go back to the planner,
/// which places jobs only on machines whose loaded material fits (or is
/// not known). Refused (422, pointing at `/material`) for a material the
/// machine's model cannot use. One transaction, one event
/// (`machine.material_loaded`), audited (`machine.material`).
#[utoipa::path(post, path = "/v1/machines/{id}/material", tag = "machines",
    params(("id" = String, Path)),
    request_body = MaterialRequest,
    responses((status = 200, body = MachineView), (status = 400, body = super::problem::Problem),
        (status = 404, body = super::problem::Problem, description = "No such machine (for this operator)"),
        (status = 409, body = super::problem::Problem, description = "The machine changed meanwhile"),
        (status = 422, body = super::problem::Problem, description = "Not a material the machine's model can use (`errors` points at `/material`)")),
    security(("bearer" = [])))]
pub async fn load_material(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<MachineView>, ApiError> {
    caller.require(&[Role::Operator, Role::Admin])?;
    let value = json_value(&headers, &body)?;
    let machine = state
        .runtime
        .store
        .get_machine(&id)
        .await?
        .filter(|m| caller.covers_factory(&m.factory))
        .ok_or_else(|| ApiError::not_found(format!("machine {id}")))?;
    let request: MaterialRequest = serde_json::from_value(value).map_err(|_| {
        ApiError::invalid(vec![FieldError::new(
            "/material",
            "must be a material name or null (and the only field)",
        )])
    })?;
    let material = request.material.as_deref().map(str::trim);
    if let Some(material) = material
        && let Some(reason) =
            crate::domain::machine::material_refusal(&machine.model, &machine.materials, material)
    {
        return Err(ApiError::invalid(vec![FieldError::new(
            "/material",
            format!("{id}: {reason}"),
        )]));
    }
    state
        .runtime
        .load_material(&machine.id, material, &caller.actor())
        .await?;
    Ok(Json(current_machine_view(&state, &id).await?))
}

/// Maintenance planned on a machine.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceRequest {
    /// When it starts (RFC 3339, on the daemon's clock; see `/healthz` `now`).
    #[schema(example = "2026-12-07T10:00:00Z")]
    pub start: String,
    /// When it ends (RFC 3339), after `start`, at most 31 days later, not past.
    #[schema(example = "2026-12-07T12:00:00Z")]
    pub end: String,
    /// Why (1..=200 characters), shown to operators in waiting jobs.
    #[schema(example = "print head cleaning")]
    pub reason: String,
}

/// A maintenance window planned on a machine.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MaintenanceWindowView {
    pub id: String,
    pub machine: String,
    pub start: Option<chrono::DateTime<chrono::Utc>>,
    pub end: Option<chrono::DateTime<chrono::Utc>>,
    pub reason: String,
}

fn window_view(window: &crate::store::WindowRecord) -> MaintenanceWindowView {
    MaintenanceWindowView {
        id: window.id.clone(),
        machine: window.machine.clone(),
        start: super::views::rfc3339(window.start_ms),
        end: super::views::rfc3339(window.end_ms),
        reason: window.reason.clone(),
    }
}

/// The machine `id` if `caller` (an operator or admin) may see it.
async fn operators_machine(
    state: &ApiState,
    caller: &Caller,
    id: &str,
) -> Result<crate::store::MachineRecord, ApiError> {
    caller.require(&[Role::Operator, Role::Admin])?;
    state
        .runtime
        .store
        .get_machine(id)
        .await?
        .filter(|m| caller.covers_factory(&m.factory))
        .ok_or_else(|| ApiError::not_found(format!("machine {id}")))
}

/// Plans maintenance on a machine ahead: the dispatcher starts no job on it
/// that would run into `[start, end)` (a job's run estimated as its
/// quantity times its seconds per unit); queued jobs held back say so
/// (`waiting.reason` `maintenance`, with the estimated start after it).
/// One transaction, one event (`machine.maintenance_scheduled`), audited
/// (`machine.maintenance_window`).
#[utoipa::path(post, path = "/v1/machines/{id}/maintenance-windows", tag = "machines",
    params(("id" = String, Path)),
    request_body = MaintenanceRequest,
    responses((status = 201, body = MaintenanceWindowView), (status = 400, body = super::problem::Problem),
        (status = 404, body = super::problem::Problem, description = "No such machine (for this operator)"),
        (status = 422, body = super::problem::Problem, description = "`errors` point at `/start`, `/end` or `/reason`")),
    security(("bearer" = [])))]
pub async fn schedule_maintenance(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<MaintenanceWindowView>), ApiError> {
    let machine = operators_machine(&state, &caller, &id).await?;
    let value = json_value(&headers, &body)?;
    let request: MaintenanceRequest = serde_json::from_value(value).map_err(|err| {
        ApiError::invalid(vec![FieldError::new(
            "",
            format!("must be {{\"start\", \"end\", \"reason\"}} and nothing else: {err}"),
        )])
    })?;
    let mut errors = Vec::new();
    let mut instant = |pointer: &str, text: &str| match chrono::DateTime::parse_from_rfc3339(text) {
        Ok(at) => Some(at.timestamp_millis()),
        Err(err) => {
            errors.push(FieldError::new(
                pointer,
                format!("must be an RFC 3339 time such as 2026-12-07T10:00:00Z: {err}"),
            ));
            None
        }
    };
    let start = instant("/start", &request.start);
    let end = instant("/end", &request.end);
    let reason = request.reason.trim();
    if let (Some(start), Some(end)) = (start, end) {
        let now = state.runtime.clock.now_ms();
        for (pointer, why) in crate::domain::calendar::window_problems(start, end, reason, now) {
            errors.push(FieldError::new(pointer, why));
        }
    }
    let (Some(start), Some(end), true) = (start, end, errors.is_empty()) else {
        return Err(ApiError::invalid(errors));
    };
    let window = state
        .runtime
        .schedule_maintenance(&machine.id, start, end, reason, &caller.actor())
        .await?;
    Ok((StatusCode::CREATED, Json(window_view(&window))))
}

/// The maintenance windows planned on a machine that are not over yet,
/// earliest first.
#[utoipa::path(get, path = "/v1/machines/{id}/maintenance-windows", tag = "machines",
    params(("id" = String, Path)),
    responses((status = 200, body = [MaintenanceWindowView]), (status = 404, body = super::problem::Problem)),
    security(("bearer" = [])))]
pub async fn list_maintenance(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<MaintenanceWindowView>>, ApiError> {
    let machine = operators_machine(&state, &caller, &id).await?;
    let windows = state
        .runtime
        .store
        .maintenance_windows(Some(machine.id.as_str()), state.runtime.clock.now_ms())
        .await?;
    Ok(Json(windows.iter().map(window_view).collect()))
}

/// Removes a planned maintenance window of a machine. One transaction, one
/// event (`machine.maintenance_cancelled`), audited.
#[utoipa::path(delete, path = "/v1/machines/{id}/maintenance-windows/{window}", tag = "machines",
    params(("id" = String, Path), ("window" = String, Path)),
    responses((status = 200, body = MaintenanceWindowView), (status = 404, body = super::problem::Problem)),
    security(("bearer" = [])))]
pub async fn cancel_maintenance(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, window)): Path<(String, String)>,
) -> Result<Json<MaintenanceWindowView>, ApiError> {
    let machine = operators_machine(&state, &caller, &id).await?;
    let removed = state
        .runtime
        .cancel_maintenance(&machine.id, &window, &caller.actor())
        .await?;
    Ok(Json(window_view(&removed)))
}

/// A courier's stops (a courier sees only its own).
#[utoipa::path(get, path = "/v1/couriers/{id}/schedule", tag = "couriers",
    params(("id" = String, Path)),
    responses((status = 200, body = CourierScheduleView), (status = 404, body = super::problem::Problem)),
    security(("bearer" = [])))]
pub async fn courier_schedule(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<CourierScheduleView>, ApiError> {
    let stops = schedule_for(&state, &caller, &id).await?;
    let records: Vec<_> = stops.into_iter().map(|stop| stop.handoff).collect();
    Ok(Json(CourierScheduleView::new(
        &id,
        &records,
        state.runtime.clock.now_ms(),
    )))
}

/// The courier `id`'s stops, if `caller` may see them (a courier only its
/// own; operators and admins any): another courier's is a 404.
async fn schedule_for(
    state: &ApiState,
    caller: &Caller,
    id: &str,
) -> Result<Vec<crate::store::ScheduledStop>, ApiError> {
    caller.require(&[Role::Courier, Role::Operator, Role::Admin])?;
    let known = state.runtime.network.couriers.iter().any(|c| c.id == id);
    if !known || (caller.role == Role::Courier && caller.scope != id) {
        return Err(ApiError::not_found(format!("courier {id}")));
    }
    Ok(state.runtime.store.courier_schedule(id).await?)
}

/// A courier's stops as an iCalendar feed (RFC 5545): one VEVENT per stop
/// with its time window (UTC), place, contact and handoff id. Calendar apps
/// that cannot send a bearer header may give the token as `?token=`.
#[utoipa::path(get, path = "/v1/couriers/{id}/schedule.ics", tag = "couriers",
    params(("id" = String, Path),
        ("token" = Option<String>, Query, description = "The bearer token, for calendar apps that cannot send an Authorization header")),
    responses((status = 200, content_type = "text/calendar", body = String, description = "iCalendar (RFC 5545)"),
        (status = 404, body = super::problem::Problem)),
    security(("bearer" = [])))]
pub async fn courier_schedule_ics(
    State(state): State<ApiState>,
    FeedCaller(caller): FeedCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let stops = schedule_for(&state, &caller, &id).await?;
    let body = feeds::icalendar(&id, &stops, state.runtime.clock.now_ms());
    Ok(([(header::CONTENT_TYPE, feeds::ICALENDAR)], body).into_response())
}

/// A courier's route as a GeoJSON FeatureCollection (RFC 7946, `[lon, lat]`):
/// a LineString per wave through its stops, and a Point per stop.
#[utoipa::path(get, path = "/v1/couriers/{id}/route.geojson", tag = "couriers",
    params(("id" = String, Path),
        ("token" = Option<String>, Query, description = "The bearer token, for map apps that cannot send an Authorization header")),
    responses((status = 200, content_type = "application/geo+json", body = Object, description = "GeoJSON FeatureCollection (RFC 7946)"),
        (status = 404, body = super::problem::Problem)),
    security(("bearer" = [])))]
pub async fn courier_route_geojson(
    State(state): State<ApiState>,
    FeedCaller(caller): FeedCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let stops = schedule_for(&state, &caller, &id).await?;
    let body = feeds::geojson(&id, &stops, state.runtime.clock.now_ms());
    Ok(([(header::CONTENT_TYPE, feeds::GEOJSON)], body.to_string()).into_response())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Confirmed {
    pub id: String,
    pub order_id: String,
    pub state: HandoffState,
}

/// A confirmation: the stop's proof-of-handoff code, which the factory
/// operator (pickup) or the customer (drop-off) gives the courier.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    /// The stop's code (six digits). Required of couriers; an admin may
    /// confirm without it.
    #[schema(example = "042137")]
    pub code: Option<String>,
}

/// A JSON body that may be absent (empty): the type's default.
fn optional_body<T: serde::de::DeserializeOwned + Default>(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    typed(json_value(headers, body)?)
}

fn code_error(reason: impl Into<String>) -> Vec<FieldError> {
    vec![FieldError::new("/code", reason)]
}

/// A courier confirms a stop with the code the operator (pickup) or the
/// customer (drop-off) gave them: pickup (order out for delivery) or
/// drop-off (delivered). A wrong code is 422 and counted; at the configured
/// limit the stop locks (423) until an operator releases it.
#[utoipa::path(post, path = "/v1/handoffs/{id}/confirm", tag = "couriers",
    params(("id" = String, Path)),
    request_body(content = ConfirmRequest, description = "The stop's code (an admin may send no body)"),
    responses((status = 200, body = Confirmed), (status = 404, body = super::problem::Problem),
        (status = 409, body = super::problem::Problem),
        (status = 422, body = super::problem::Problem, description = "No code, or a wrong code (`errors` points at `/code`)"),
        (status = 423, body = super::problem::Problem, description = "Locked after too many wrong codes")),
    security(("bearer" = [])))]
pub async fn confirm_handoff(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Confirmed>, ApiError> {
    caller.require(&[Role::Courier, Role::Admin])?;
    let request: ConfirmRequest = optional_body(&headers, &body)?;
    let courier = (caller.role == Role::Courier).then_some(caller.scope.as_str());
    let code = request.code.as_deref().map(str::trim);
    if code.is_none() && courier.is_some() {
        // Not found comes first: a missing code says nothing of other stops.
        let found = state.runtime.store.get_handoff(&id).await?;
        if found.is_none_or(|f| Some(f.handoff.courier.as_str()) != courier) {
            return Err(ApiError::not_found(format!("handoff {id}")));
        }
        return Err(ApiError::invalid(code_error(
            "required: the code the factory operator (pickup) or the customer (drop-off) gives you",
        )));
    }
    match state.runtime.confirm_handoff(&id, courier, code).await? {
        Confirmation::Confirmed(handoff) => Ok(Json(Confirmed {
            id: handoff.id,
            order_id: handoff.order_id.to_string(),
            state: handoff.state,
        })),
        Confirmation::WrongCode {
            wrong_codes,
            locked: false,
        } => {
            let limit = state.runtime.network.handoffs.max_wrong_codes;
            Err(ApiError::invalid(code_error(format!(
                "wrong code ({wrong_codes} of {limit} wrong codes; the stop locks at {limit})"
            ))))
        }
        Confirmation::WrongCode {
            wrong_codes,
            locked: true,
        } => Err(ApiError::new(
            StatusCode::LOCKED,
            "locked",
            format!("wrong code; handoff {id} is now locked after {wrong_codes} wrong codes until an operator releases it"),
        )
        .with_errors(code_error("wrong code; the stop is now locked"))),
    }
}

/// A failed attempt: why the courier could not complete the stop.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    pub reason: FailureReason,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FailedView {
    pub id: String,
    pub order_id: String,
    pub state: HandoffState,
    pub reason: FailureReason,
    /// The order's failed attempts so far, this one included.
    pub attempts: u32,
    /// True when the attempts ran out: the order is no longer planned and
    /// waits for the operator and the brand (`order.escalated`).
    pub escalated: bool,
}

/// A courier reports a failed attempt (not home, wrong address, refused):
/// the order is planned again in the next wave, or escalated after the
/// configured number of attempts.
#[utoipa::path(post, path = "/v1/handoffs/{id}/fail", tag = "couriers",
    params(("id" = String, Path)),
    request_body = FailRequest,
    responses((status = 200, body = FailedView), (status = 404, body = super::problem::Problem),
        (status = 409, body = super::problem::Problem)),
    security(("bearer" = [])))]
pub async fn fail_handoff(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<FailedView>, ApiError> {
    caller.require(&[Role::Courier, Role::Admin])?;
    let courier = (caller.role == Role::Courier).then_some(caller.scope.as_str());
    let value = json_value(&headers, &body)?;
    let request: FailRequest = serde_json::from_value(value).map_err(|_| {
        ApiError::invalid(vec![FieldError::new(
            "/reason",
            "must be one of not_home, wrong_address, refused",
        )])
    })?;
    let failed = state
        .runtime
        .fail_handoff(&id, courier, request.reason)
        .await?;
    Ok(Json(FailedView {
        id: failed.handoff.id,
        order_id: failed.handoff.order_id.to_string(),
        state: failed.handoff.state,
        reason: request.reason,
        attempts: failed.attempts,
        escalated: failed.escalated,
    }))
}

/// A courier's duty: off (dropping out for the day) or back on.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DutyRequest {
    pub on_duty: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DutyView {
    pub courier: String,
    pub on_duty: bool,
    /// Pickups not yet made that were handed back for other couriers.
    pub released: u64,
    /// Deliveries the courier had on board, brought back to their factory
    /// for another courier.
    pub brought_back: u64,
}

/// A courier goes off duty (or back on): the courier itself, an operator or
/// an admin. Off duty, its pickups not yet made are handed back, the
/// deliveries it has on board are brought back to their factory (ready
/// again, for another courier), and every zone re-plans at once. Audited.
#[utoipa::path(post, path = "/v1/couriers/{id}/duty", tag = "couriers",
    params(("id" = String, Path)),
    request_body = DutyRequest,
    responses((status = 200, body = DutyView), (status = 400, body = super::problem::Problem),
        (status = 404, body = super::problem::Problem), (status = 422, body = super::problem::Problem)),
    security(("bearer" = [])))]
pub async fn courier_duty(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<DutyView>, ApiError> {
    caller.require(&[Role::Courier, Role::Operator, Role::Admin])?;
    let known = state.runtime.network.couriers.iter().any(|c| c.id == id);
    if !known || (caller.role == Role::Courier && caller.scope != id) {
        return Err(ApiError::not_found(format!("courier {id}")));
    }
    let value = json_value(&headers, &body)?;
    let request: DutyRequest = serde_json::from_value(value).map_err(|_| {
        ApiError::invalid(vec![FieldError::new(
            "/on_duty",
            "must be true or false (and the only field)",
        )])
    })?;
    let change = state
        .runtime
        .set_courier_duty(&id, request.on_duty, &caller.actor())
        .await?;
    Ok(Json(DutyView {
        courier: id,
        on_duty: request.on_duty,
        released: change.released as u64,
        brought_back: change.brought_back as u64,
    }))
}

/// Whether `caller` may see the code of `handoff`, a stop of an order made
/// at `factory` for `brand`: the code of the stop at the factory to
/// operators of that factory (a delivery's pickup, a return's drop-off),
/// the code of the stop at the customer to that brand, to pass on (a
/// delivery's drop-off, a return's pickup); every code to admins, none to
/// couriers.
pub fn sees_code(caller: &Caller, handoff: &HandoffRecord, factory: &str, brand: &str) -> bool {
    let at_factory = (handoff.kind == HandoffKind::Pickup) == handoff.return_id.is_none();
    match caller.role {
        Role::Admin => true,
        Role::Operator => at_factory && caller.covers_factory(factory),
        Role::Brand => !at_factory && caller.scope == brand,
        Role::Courier => false,
    }
}

/// Finds a handoff `caller` may see: a courier its own stops, an operator
/// its factories' orders', a brand its own orders', an admin any.
async fn visible_handoff(
    state: &ApiState,
    caller: &Caller,
    id: &str,
) -> Result<HandoffDetail, ApiError> {
    let found = state.runtime.store.get_handoff(id).await?;
    found
        .filter(|found| match caller.role {
            Role::Admin => true,
            Role::Operator => caller.covers_factory(&found.factory),
            Role::Brand => caller.scope == found.brand,
            Role::Courier => caller.scope == found.handoff.courier.as_str(),
        })
        .ok_or_else(|| ApiError::not_found(format!("handoff {id}")))
}

/// One handoff. The factory's operator sees a pickup's code (to give the
/// courier), the brand a drop-off's (to pass to its customer); a courier
/// never sees a code.
#[utoipa::path(get, path = "/v1/handoffs/{id}", tag = "couriers",
    params(("id" = String, Path)),
    responses((status = 200, body = HandoffDetailView), (status = 404, body = super::problem::Problem)),
    security(("bearer" = [])))]
pub async fn get_handoff(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<HandoffDetailView>, ApiError> {
    let found = visible_handoff(&state, &caller, &id).await?;
    let show = sees_code(&caller, &found.handoff, &found.factory, &found.brand);
    Ok(Json(HandoffDetailView::new(&found, show)))
}

/// An operator (of the order's factory) or an admin releases a stop locked
/// by wrong codes: planned again, its count of wrong codes reset; audited.
#[utoipa::path(post, path = "/v1/handoffs/{id}/release", tag = "couriers",
    params(("id" = String, Path)),
    responses((status = 200, body = HandoffDetailView), (status = 404, body = super::problem::Problem),
        (status = 409, body = super::problem::Problem)),
    security(("bearer" = [])))]
pub async fn release_handoff(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<HandoffDetailView>, ApiError> {
    caller.require(&[Role::Operator, Role::Admin])?;
    let found = visible_handoff(&state, &caller, &id).await?;
    let handoff = state.runtime.release_handoff(&id, &caller.actor()).await?;
    let show = sees_code(&caller, &handoff, &found.factory, &found.brand);
    let found = HandoffDetail { handoff, ..found };
    Ok(Json(HandoffDetailView::new(&found, show)))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
    /// `ok`, `unreachable`, or `refusing_writes` (its last write transaction
    /// was refused, e.g. a full disk; clears with the next one that commits).
    pub database: &'static str,
    /// Why the database refuses writes, and since how long.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_detail: Option<String>,
    /// The domain clock (scaled by time_scale).
    pub now: Option<chrono::DateTime<chrono::Utc>>,
    pub time_scale: f64,
}

/// Liveness and database reachability.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn healthz(State(state): State<ApiState>) -> Response {
    let reachable = state.runtime.store.outbox_backlog().await.is_ok();
    let refusing = state.runtime.store.refusing_writes();
    let database_ok = reachable && refusing.is_none();
    let health = Health {
        status: if database_ok { "ok" } else { "degraded" },
        database: match (reachable, &refusing) {
            (false, _) => "unreachable",
            (true, Some(_)) => "refusing_writes",
            (true, None) => "ok",
        },
        database_detail: refusing
            .map(|(since, reason)| format!("{reason} (for {} s)", since.as_secs())),
        now: state.runtime.clock.now().into(),
        time_scale: state.runtime.clock.scale(),
    };
    let status = if database_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health)).into_response()
}

/// Prometheus metrics. The state gauges (orders, jobs, machines, the
/// outbox, courier plans) are read from the store at every scrape, every
/// label value included, so a state that emptied reads 0. When
/// `[http] metrics_token` is set, a scrape must send it as a bearer token.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, content_type = "text/plain"),
    (status = 401, body = super::problem::Problem, description = "`[http] metrics_token` is set and the request did not send it")))]
pub async fn metrics(State(state): State<ApiState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(expected) = &state.metrics_token {
        let sent = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim_start().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let matches = sent.is_some_and(|sent| {
            sent.len() == expected.len()
                && sent
                    .bytes()
                    .zip(expected.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        });
        if !matches {
            return ApiError::unauthorized(
                "metrics need Authorization: Bearer <[http] metrics_token>",
            )
            .into_response();
        }
    }
    if let Err(err) = record_state_gauges(&state).await {
        tracing::warn!(error = %err, "reading the state gauges failed");
        metrics::counter!("fabflow_metrics_errors_total").increment(1);
    }
    match &state.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "metrics recorder not installed",
        )
        .into_response(),
    }
}

/// Sets every state gauge from the store, each label value included.
async fn record_state_gauges(state: &ApiState) -> Result<(), crate::store::StoreError> {
    let store = &state.runtime.store;
    let network = &state.runtime.network;
    let orders = store.order_counts().await?;
    for order_state in OrderState::ALL {
        let count = orders.get(&order_state).copied().unwrap_or(0);
        metrics::gauge!("fabflow_orders", "state" => order_state.as_str()).set(count as f64);
    }
    let jobs = store.job_counts().await?;
    for job_state in JobState::ALL {
        let count = jobs.get(&job_state).copied().unwrap_or(0);
        metrics::gauge!("fabflow_jobs", "state" => job_state.as_str()).set(count as f64);
    }
    let machines = store.list_machines(None).await?;
    let mut factories: Vec<String> = network.factories.iter().map(|f| f.id.to_string()).collect();
    for machine in &machines {
        if !factories.iter().any(|f| f == machine.factory.as_str()) {
            factories.push(machine.factory.to_string());
        }
    }
    for factory in &factories {
        for machine_state in crate::domain::MachineState::ALL {
            let count = machines
                .iter()
                .filter(|m| m.factory.as_str() == factory.as_str())
                .filter(|m| m.state.effective(m.mode) == machine_state)
                .count();
            metrics::gauge!("fabflow_machines", "factory" => factory.clone(), "state" => machine_state.as_str())
                .set(count as f64);
        }
    }
    metrics::gauge!("fabflow_outbox_backlog").set(store.outbox_backlog().await? as f64);
    let oldest = store.outbox_oldest_unpublished().await?;
    let age = oldest.map_or(0.0, |created| {
        (state.runtime.clock.now_ms() - created).max(0) as f64 / 1000.0
    });
    metrics::gauge!("fabflow_outbox_oldest_age_seconds").set(age);
    metrics::gauge!("fabflow_orders_at_risk").set(store.at_risk_count().await? as f64);
    let plans = store.courier_plan_counts().await?;
    for courier in &network.couriers {
        let (planned, late) = plans.get(&courier.id).copied().unwrap_or((0, 0));
        metrics::gauge!("fabflow_courier_planned_stops", "courier" => courier.id.clone())
            .set(planned as f64);
        metrics::gauge!("fabflow_courier_late_stops", "courier" => courier.id.clone())
            .set(late as f64);
    }
    Ok(())
}

/// A position cursor (`after`): a sequence number, 0 or more.
fn cursor(after: Option<i64>) -> Result<Option<i64>, ApiError> {
    match after {
        Some(n) if n < 0 => Err(
            ApiError::bad_request(format!("after must be 0 or more, got {n}")).with_errors(vec![
                crate::domain::intake::FieldError::new("after", "must be 0 or more"),
            ]),
        ),
        other => Ok(other),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListAudit {
    /// Cursor: the `next` of the previous page.
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// Page size, 1..=500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// The audit trail of operator and admin decisions (admins only).
#[utoipa::path(get, path = "/v1/audit", tag = "ops", params(ListAudit),
    responses((status = 200, body = AuditPage)), security(("bearer" = [])))]
pub async fn list_audit(
    State(state): State<ApiState>,
    caller: Caller,
    Query(query): Query<ListAudit>,
) -> Result<Json<AuditPage>, ApiError> {
    caller.require(&[Role::Admin])?;
    let limit = super::page_limit(query.limit)?;
    let after = cursor(query.after)?;
    let records = state.runtime.store.list_audit(after, limit).await?;
    let next = (records.len() as i64 == limit)
        .then(|| records.last().map(|r| r.seq))
        .flatten();
    Ok(Json(AuditPage {
        items: records.iter().map(AuditView::from).collect(),
        next,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListEvents {
    /// Cursor: events with a larger `seq` (the `next` of the previous page,
    /// or the last `seq` a consumer saw).
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// Page size, 1..=500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// The event log, from a position on: a brand reads its own events, an
/// admin every event. A consumer that was away resumes with `after`.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(ListEvents),
    responses((status = 200, body = EventPage)), security(("bearer" = [])))]
pub async fn list_events(
    State(state): State<ApiState>,
    caller: Caller,
    Query(query): Query<ListEvents>,
) -> Result<Json<EventPage>, ApiError> {
    caller.require(&[Role::Brand, Role::Admin])?;
    let limit = super::page_limit(query.limit)?;
    let after = cursor(query.after)?;
    let records = state
        .runtime
        .store
        .events_after(caller.brand_scope(), after, limit)
        .await?;
    let next = (records.len() as i64 == limit)
        .then(|| records.last().map(|r| r.seq))
        .flatten();
    let items = records
        .iter()
        .map(|record| serde_json::from_str(&record.payload).map_err(ApiError::internal))
        .collect::<Result<Vec<serde_json::Value>, ApiError>>()?;
    Ok(Json(EventPage { items, next }))
}

/// The operator dashboard: one page, its script and stylesheet embedded in
/// the binary; it reads the API with a session cookie (`session`). Only its
/// own origin may serve it anything, and no other site may frame it.
pub async fn dashboard() -> Response {
    (
        [
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Html(include_str!("dashboard.html")),
    )
        .into_response()
}

/// The dashboard's own stylesheet and script, embedded in the binary.
pub async fn dashboard_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("dashboard.js"),
    )
        .into_response()
}

pub async fn dashboard_css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("dashboard.css"),
    )
        .into_response()
}

/// A factory at a glance: its machines by state and their queued jobs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FactoryOverview {
    pub id: String,
    /// Machines per state as people see it (`idle`, `running`, `paused`, ...).
    pub machines: std::collections::BTreeMap<String, usize>,
    /// Jobs queued, dispatched or running on its machines.
    pub queued_jobs: usize,
    /// Orders made here, per state.
    pub orders: std::collections::BTreeMap<String, i64>,
}

/// A courier at a glance.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CourierOverview {
    pub id: String,
    pub zone: String,
    /// Orders one route can carry.
    pub capacity: usize,
}

/// The network at a glance, for an operator's factories (an admin's: all).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Overview {
    pub factories: Vec<FactoryOverview>,
    pub couriers: Vec<CourierOverview>,
    /// Orders per state over the caller's factories.
    pub orders_by_state: std::collections::BTreeMap<String, i64>,
    /// Orders still on their way whose promise is at risk, earliest deadline first (at most 50).
    pub at_risk: Vec<super::views::OrderView>,
    /// Machines in fault, offline or stuck.
    pub faults: Vec<MachineView>,
    /// Jobs held after their machine stopped them, waiting for the machine or a decision.
    pub held_jobs: Vec<JobView>,
    /// Events written but not yet published.
    pub outbox_backlog: i64,
    /// How long the oldest unpublished event has waited (domain clock), in seconds.
    pub outbox_oldest_age_seconds: Option<f64>,
    pub generated_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The network at a glance: factories with their machines by state,
/// couriers, orders by state and at risk, faults, held jobs and the outbox
/// backlog (operators: their factories).
#[utoipa::path(get, path = "/v1/overview", tag = "ops",
    responses((status = 200, body = Overview)), security(("bearer" = [])))]
pub async fn overview(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Overview>, ApiError> {
    caller.require(&[Role::Operator, Role::Admin])?;
    let store = &state.runtime.store;
    let now = state.runtime.clock.now_ms();
    let machines = store.list_machines(None).await?;
    let loads = store.machine_loads().await?;
    let order_counts = store.order_counts_by_factory().await?;
    let mut factories = Vec::new();
    for site in &state.runtime.network.factories {
        let id = site.id.to_string();
        if !caller.covers_factory(&id) {
            continue;
        }
        let mut by_state = std::collections::BTreeMap::new();
        let mut queued_jobs = 0;
        for machine in machines.iter().filter(|m| m.factory.as_str() == id) {
            let shown = machine.state.effective(machine.mode);
            *by_state.entry(shown.as_str().to_string()).or_insert(0) += 1;
            queued_jobs += loads.get(machine.id.as_str()).copied().unwrap_or(0);
        }
        let orders = order_counts
            .iter()
            .filter(|(factory, _, _)| *factory == id)
            .map(|(_, order_state, n)| (order_state.as_str().to_string(), *n))
            .collect();
        factories.push(FactoryOverview {
            id,
            machines: by_state,
            queued_jobs,
            orders,
        });
    }
    let mut orders_by_state = std::collections::BTreeMap::new();
    for (factory, order_state, n) in &order_counts {
        if caller.covers_factory(factory) {
            *orders_by_state
                .entry(order_state.as_str().to_string())
                .or_insert(0) += n;
        }
    }
    let at_risk = store
        .at_risk_orders(500)
        .await?
        .iter()
        .filter(|order| caller.covers_factory(order.factory.as_str()))
        .take(50)
        .map(super::views::OrderView::from)
        .collect();
    let faults = machines
        .iter()
        .filter(|m| caller.covers_factory(m.factory.as_str()))
        .filter(|m| {
            matches!(
                m.state,
                crate::domain::MachineState::Fault
                    | crate::domain::MachineState::Offline
                    | crate::domain::MachineState::Stuck
            )
        })
        .map(|m| machine_view(m, loads.get(m.id.as_str()).copied().unwrap_or(0)))
        .collect();
    let held_jobs = store
        .list_jobs(&JobFilter {
            factory: None,
            machine: None,
            state: Some(JobState::Held),
            order_id: None,
            after: None,
            limit: 500,
        })
        .await?
        .iter()
        .filter(|job| caller.covers_factory(job.factory.as_str()))
        .map(job_view)
        .collect();
    let outbox_backlog = store.outbox_backlog().await?;
    let outbox_oldest_age_seconds = store
        .outbox_oldest_unpublished()
        .await?
        .map(|created| (now - created).max(0) as f64 / 1000.0);
    let couriers = state
        .runtime
        .network
        .couriers
        .iter()
        .map(|c| CourierOverview {
            id: c.id.clone(),
            zone: c.zone.clone(),
            capacity: c.capacity,
        })
        .collect();
    Ok(Json(Overview {
        factories,
        couriers,
        orders_by_state,
        at_risk,
        faults,
        held_jobs,
        outbox_backlog,
        outbox_oldest_age_seconds,
        generated_at: super::views::rfc3339(now),
    }))
}
