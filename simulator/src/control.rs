//! The simulator's control API: a small HTTP server on loopback to look at
//! the machines (state, their own start logs, faults) and to inject faults
//! while they run. JSON in and out; errors are `{"error": "..."}`.
//!
//! - `GET  /machines`: every machine's status.
//! - `GET  /machines/{id}`: one machine's status (404 for an unknown id).
//! - `PUT  /machines/{id}/faults`: replace its injected faults with the body
//!   (a `FaultSpec`, as in the fleet spec; 422 with every problem).
//! - `POST /machines/{id}/jam`: `{"code": 42}`: jam it now.
//! - `POST /machines/{id}/clear`: clear its fault (a jammed job goes on).
//! - `POST /machines/{id}/power-loss`: cut its power (it comes back idle,
//!   without its job).
//!
//! Invariant: it binds only where it is told (the CLI refuses addresses
//! that are not loopback); it has no authentication.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::faults::FaultSpec;
use crate::fleet::{Fleet, SimControlError, SimMachineStatus};

/// The control API's routes over `fleet`.
pub fn router(fleet: Arc<Fleet>) -> Router {
    Router::new()
        .route("/machines", get(list))
        .route("/machines/{id}", get(one))
        .route("/machines/{id}/faults", put(set_faults))
        .route("/machines/{id}/jam", post(jam))
        .route("/machines/{id}/clear", post(clear))
        .route("/machines/{id}/power-loss", post(power_loss))
        .with_state(fleet)
}

/// Serves the control API on `listener` until `cancel`.
pub async fn serve(
    listener: TcpListener,
    fleet: Arc<Fleet>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(fleet))
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
}

struct Refused(StatusCode, String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<SimControlError> for Refused {
    fn from(err: SimControlError) -> Self {
        let status = match err {
            SimControlError::UnknownMachine => StatusCode::NOT_FOUND,
            SimControlError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Refused(status, err.to_string())
    }
}

fn status_of(fleet: &Fleet, id: &str) -> Result<Json<SimMachineStatus>, Refused> {
    fleet
        .status(id)
        .map(Json)
        .ok_or_else(|| SimControlError::UnknownMachine.into())
}

async fn list(State(fleet): State<Arc<Fleet>>) -> Json<Vec<SimMachineStatus>> {
    Json(
        fleet
            .machine_ids()
            .iter()
            .filter_map(|id| fleet.status(id))
            .collect(),
    )
}

async fn one(
    State(fleet): State<Arc<Fleet>>,
    Path(id): Path<String>,
) -> Result<Json<SimMachineStatus>, Refused> {
    status_of(&fleet, &id)
}

async fn set_faults(
    State(fleet): State<Arc<Fleet>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<SimMachineStatus>, Refused> {
    let spec: FaultSpec = serde_json::from_slice(&body)
        .map_err(|err| Refused(StatusCode::UNPROCESSABLE_ENTITY, err.to_string()))?;
    fleet.set_faults(&id, spec)?;
    status_of(&fleet, &id)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JamBody {
    code: u32,
}

async fn jam(
    State(fleet): State<Arc<Fleet>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<SimMachineStatus>, Refused> {
    let request: JamBody = serde_json::from_slice(&body)
        .map_err(|err| Refused(StatusCode::UNPROCESSABLE_ENTITY, err.to_string()))?;
    fleet.jam(&id, request.code)?;
    status_of(&fleet, &id)
}

async fn clear(
    State(fleet): State<Arc<Fleet>>,
    Path(id): Path<String>,
) -> Result<Json<SimMachineStatus>, Refused> {
    fleet.clear(&id)?;
    status_of(&fleet, &id)
}

async fn power_loss(
    State(fleet): State<Arc<Fleet>>,
    Path(id): Path<String>,
) -> Result<Json<SimMachineStatus>, Refused> {
    fleet.power_loss(&id).await?;
    status_of(&fleet, &id)
}
