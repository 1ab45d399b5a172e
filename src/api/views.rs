//! What the API returns: stable JSON shapes, separate from storage rows.

use crate::domain::intake::LineRequest;
use crate::domain::waiting::{WaitReason, Waiting};
use crate::domain::{
    FailureReason, HandoffKind, HandoffState, HoldCause, InspectedLine, JobState, MachineMode,
    MachineState, OrderState, ReturnLine, ReturnState,
};
use crate::store::{
    AuditRecord, Escalation, HandoffDetail, HandoffRecord, JobRecord, MachineRecord, OrderRecord,
    ReturnRecord, StockRecord,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::HashMap;

pub fn rfc3339(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

/// One page of orders, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrderPage {
    pub items: Vec<OrderView>,
    /// Cursor for the next page (`after=`), absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// One page of jobs, by token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobPage {
    pub items: Vec<JobView>,
    /// Cursor for the next page (`after=`), absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CustomerView {
    pub name: String,
    pub lat: f64,
    pub lon: f64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrderView {
    pub id: String,
    pub brand: String,
    pub external_ref: Option<String>,
    pub state: OrderState,
    pub customer: CustomerView,
    pub lines: Vec<LineRequest>,
    pub zone: String,
    /// The factory that makes it.
    pub factory: String,
    /// Latest delivery time (the promise).
    pub deadline: Option<DateTime<Utc>>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    /// When the current plan expects it ready at its factory (absent until
    /// estimated, or when no machine can make it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_ready_at: Option<DateTime<Utc>>,
    /// When the current plan expects it delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_delivery_at: Option<DateTime<Utc>>,
    /// Set once the plan sees that the order cannot be delivered by its
    /// deadline (event `order.at_risk`); it stays set as a record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_risk: Option<AtRiskView>,
}

/// Why an order is at risk of missing its promise, and since when.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AtRiskView {
    /// `no_capable_machine`, `production_backlog`, `no_courier_in_time` or
    /// `deadline_close`.
    pub reason: String,
    /// The reason in words.
    pub detail: String,
    pub since: Option<DateTime<Utc>>,
}

impl From<&OrderRecord> for OrderView {
    fn from(order: &OrderRecord) -> Self {
        OrderView {
            id: order.id.to_string(),
            brand: order.brand.to_string(),
            external_ref: order.external_ref.clone(),
            state: order.state,
            customer: CustomerView {
                name: order.customer_name.clone(),
                lat: order.location.lat,
                lon: order.location.lon,
            },
            lines: order.lines.clone(),
            zone: order.zone.clone(),
            factory: order.factory.to_string(),
            deadline: rfc3339(order.deadline_ms),
            accepted_at: rfc3339(order.accepted_ms),
            updated_at: rfc3339(order.updated_ms),
            estimated_ready_at: order.promise.eta_ready_ms.and_then(rfc3339),
            estimated_delivery_at: order.promise.eta_delivery_ms.and_then(rfc3339),
            at_risk: order.promise.at_risk.as_ref().map(|reason| AtRiskView {
                detail: crate::domain::AtRiskReason::parse(reason)
                    .map_or("", |r| r.describe())
                    .to_string(),
                reason: reason.clone(),
                since: order.promise.at_risk_ms.and_then(rfc3339),
            }),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrderDetail {
    #[serde(flatten)]
    pub order: OrderView,
    pub jobs: Vec<JobView>,
    pub handoffs: Vec<HandoffView>,
    /// The order's returns, oldest first (their stops are among `handoffs`).
    pub returns: Vec<ReturnView>,
    /// Set when the order's delivery attempts ran out: no wave plans it
    /// again; the operator and the brand decide.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escalation: Option<EscalationView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EscalationView {
    /// The reason of the last failed attempt.
    pub reason: FailureReason,
    pub attempts: i64,
    pub at: Option<DateTime<Utc>>,
}

impl From<&Escalation> for EscalationView {
    fn from(escalation: &Escalation) -> Self {
        EscalationView {
            reason: escalation.reason,
            attempts: escalation.attempts,
            at: rfc3339(escalation.at_ms),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HandoffView {
    pub id: String,
    pub courier: String,
    pub kind: HandoffKind,
    pub state: HandoffState,
    pub eta: Option<DateTime<Utc>>,
    /// The proof-of-handoff code, to those who hand it over: the brand sees
    /// the code of the stop at its customer (a delivery's drop-off, a
    /// return's pickup) to pass on, the factory's operator the code of the
    /// stop at the factory (a delivery's pickup, a return's drop-off);
    /// absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Why the attempt failed, for a failed stop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureReason>,
    /// The return this stop moves (a pickup at the customer, a drop-off at
    /// the factory); absent for the order's own delivery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_id: Option<String>,
}

impl HandoffView {
    /// `handoff` as seen by someone who may (`show_code`) or may not see its code.
    pub fn new(handoff: &HandoffRecord, show_code: bool) -> HandoffView {
        HandoffView {
            id: handoff.id.clone(),
            courier: handoff.courier.to_string(),
            kind: handoff.kind,
            state: handoff.state,
            eta: rfc3339(handoff.eta_ms),
            code: handoff.code.clone().filter(|_| show_code),
            failure: handoff.failure,
            return_id: handoff.return_id.clone(),
        }
    }
}

/// One handoff with its order, for the people at either end of it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HandoffDetailView {
    #[serde(flatten)]
    pub handoff: HandoffView,
    pub order_id: String,
    pub wave: String,
    pub seq: i64,
    /// Factory id for a stop at a factory, `customer` for one at the customer.
    pub place: String,
    pub lat: f64,
    pub lon: f64,
    /// Wrong codes tried since it was planned or last released.
    pub wrong_codes: i64,
    pub updated_at: Option<DateTime<Utc>>,
}

impl HandoffDetailView {
    pub fn new(found: &HandoffDetail, show_code: bool) -> HandoffDetailView {
        let h = &found.handoff;
        HandoffDetailView {
            handoff: HandoffView::new(h, show_code),
            order_id: h.order_id.to_string(),
            wave: h.wave.clone(),
            seq: h.seq,
            place: h.place.clone(),
            lat: h.location.lat,
            lon: h.location.lon,
            wrong_codes: h.wrong_codes,
            updated_at: rfc3339(h.updated_ms),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobView {
    /// The job token written to the machine.
    pub token: u32,
    pub order_id: String,
    pub line_index: i64,
    pub step_index: i64,
    pub process: String,
    pub recipe: u32,
    pub material: String,
    pub quantity: u32,
    pub factory: String,
    pub machine: Option<String>,
    pub state: JobState,
    /// Units reported good so far (a running job's as its machine counts them).
    pub good: u32,
    pub scrap: u32,
    /// Why its machine stopped it (a held job; kept once it failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold_cause: Option<HoldCause>,
    /// The fault code its machine showed when it stopped it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault_code: Option<u32>,
    /// The job whose failed or scrapped units this one makes again.
    pub replaces: Option<u32>,
    pub due: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    /// Why it is not running (yet): absent for running and finished jobs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<WaitingView>,
}

/// Why a job waits, and when a queued one should start and finish.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WaitingView {
    pub reason: WaitReason,
    /// The reason in a sentence naming machines and steps.
    pub detail: String,
    /// The machine whose queue it is in, or the capable one free first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// Its place in that machine's queue (1: taken next).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
    /// Absent while its machine waits on a person (paused, faulted, offline).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_start: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_finish: Option<DateTime<Utc>>,
}

pub fn waiting_view(waiting: &Waiting) -> WaitingView {
    WaitingView {
        reason: waiting.reason,
        detail: waiting.detail.clone(),
        machine: waiting.machine.clone(),
        position: waiting.position,
        estimated_start: waiting.estimated_start_ms.and_then(rfc3339),
        estimated_finish: waiting.estimated_finish_ms.and_then(rfc3339),
    }
}

/// A job as the API shows it, with why it waits when `waiting` knows.
pub fn job_view_explained(job: &JobRecord, waiting: &HashMap<u32, Waiting>) -> JobView {
    JobView {
        waiting: waiting.get(&job.token.0).map(waiting_view),
        ..job_view(job)
    }
}

pub fn job_view(job: &JobRecord) -> JobView {
    JobView {
        token: job.token.0,
        order_id: job.order_id.to_string(),
        line_index: job.line_index,
        step_index: job.step_index,
        process: job.process.clone(),
        recipe: job.recipe,
        material: job.material.clone(),
        quantity: job.quantity,
        factory: job.factory.to_string(),
        machine: job.machine.as_ref().map(ToString::to_string),
        state: job.state,
        good: job.good,
        scrap: job.scrap,
        hold_cause: job.hold_cause,
        fault_code: job.fault_code,
        replaces: job.replaces.map(|t| t.0),
        due: rfc3339(job.due_ms),
        updated_at: rfc3339(job.updated_ms),
        waiting: None,
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MachineView {
    pub id: String,
    pub factory: String,
    pub model: String,
    pub address: String,
    /// What people see: the operator's mode wins over the machine's report.
    pub state: MachineState,
    /// What the machine last reported (or offline).
    pub observed: MachineState,
    pub mode: MachineMode,
    pub capabilities: Vec<String>,
    pub materials: Vec<String>,
    /// The material an operator declared loaded (null: not known; the
    /// machine then starts jobs of any of its materials).
    pub loaded_material: Option<String>,
    /// The job token the machine last showed.
    pub job_token: Option<i64>,
    pub fault_code: Option<i64>,
    /// Jobs queued, dispatched or running on it.
    pub queue: usize,
    pub updated_at: Option<DateTime<Utc>>,
}

pub fn machine_view(machine: &MachineRecord, queue: usize) -> MachineView {
    MachineView {
        id: machine.id.to_string(),
        factory: machine.factory.to_string(),
        model: machine.model.clone(),
        address: machine.address.clone(),
        state: machine.state.effective(machine.mode),
        observed: machine.state,
        mode: machine.mode,
        capabilities: machine.capabilities.clone(),
        materials: machine.materials.clone(),
        loaded_material: machine.loaded_material.clone(),
        job_token: machine.job_token,
        fault_code: machine.fault_code,
        queue,
        updated_at: rfc3339(machine.updated_ms),
    }
}

/// A machine with its queue in the order it takes jobs: the running job
/// first, then each queued one with its position and estimated start and
/// finish.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MachineQueueView {
    pub machine: MachineView,
    pub jobs: Vec<JobView>,
}

/// A courier's schedule: every stop planned for them, in visiting order.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = CourierSchedule)]
pub struct CourierScheduleView {
    pub schema: u32,
    pub courier: String,
    pub generated_at: Option<DateTime<Utc>>,
    pub stops: Vec<ScheduleStopView>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = ScheduleStop)]
pub struct ScheduleStopView {
    /// Handoff id, to confirm the stop with.
    pub id: String,
    pub wave: String,
    pub order_id: String,
    pub kind: HandoffKind,
    pub seq: i64,
    /// Factory id for a stop at a factory, `customer` for one at the customer.
    pub place: String,
    pub lat: f64,
    pub lon: f64,
    pub eta: Option<DateTime<Utc>>,
    pub state: HandoffState,
    /// Set on a return's stops: collect the parcel at the customer, bring
    /// it to the factory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_id: Option<String>,
}

impl CourierScheduleView {
    pub fn new(courier: &str, records: &[HandoffRecord], now_ms: i64) -> CourierScheduleView {
        CourierScheduleView {
            schema: 1,
            courier: courier.to_string(),
            generated_at: rfc3339(now_ms),
            stops: records
                .iter()
                .map(|r| ScheduleStopView {
                    id: r.id.clone(),
                    wave: r.wave.clone(),
                    order_id: r.order_id.to_string(),
                    kind: r.kind,
                    seq: r.seq,
                    place: r.place.clone(),
                    lat: r.location.lat,
                    lon: r.location.lon,
                    eta: rfc3339(r.eta_ms),
                    state: r.state,
                    return_id: r.return_id.clone(),
                })
                .collect(),
        }
    }
}

/// One operator or admin decision.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditView {
    /// Position in the trail (the `after` cursor).
    pub seq: i64,
    pub at: Option<DateTime<Utc>>,
    /// Who: role, scope and token id, or `cli`, or the daemon itself.
    pub actor: String,
    /// What: `machine.mode`, `order.cancel`, `token.create`, `token.revoke`.
    pub action: String,
    /// The machine, order or token it was about.
    pub target: String,
    pub detail: String,
}

impl From<&AuditRecord> for AuditView {
    fn from(record: &AuditRecord) -> Self {
        AuditView {
            seq: record.seq,
            at: rfc3339(record.at_ms),
            actor: record.actor.clone(),
            action: record.action.clone(),
            target: record.target.clone(),
            detail: record.detail.clone(),
        }
    }
}

/// One page of the audit trail, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditView>,
    /// Cursor for the next page (`after=`), absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
}

/// One page of the event log, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventPage {
    /// Event envelopes, as published on MQTT: `schema`, `id`, `seq`, `kind`,
    /// `at`, `subject`, `order_id`, `brand`, `data`.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<serde_json::Value>,
    /// Cursor for the next page (`after=`): the last item's `seq`. Absent on
    /// the last page; resume later with the last `seq` seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
}

/// A return: what comes back from which order, where it stands, and what
/// inspection made of it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReturnView {
    pub id: String,
    pub order_id: String,
    pub brand: String,
    /// Where the units go back: the order's factory.
    pub factory: String,
    pub state: ReturnState,
    pub reason: String,
    pub lines: Vec<ReturnLine>,
    /// Per line, units restocked and scrapped (once inspected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inspection: Option<Vec<InspectedLine>>,
    pub requested_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl From<&ReturnRecord> for ReturnView {
    fn from(record: &ReturnRecord) -> Self {
        ReturnView {
            id: record.id.clone(),
            order_id: record.order_id.to_string(),
            brand: record.brand.to_string(),
            factory: record.factory.to_string(),
            state: record.state,
            reason: record.reason.clone(),
            lines: record.lines.clone(),
            inspection: record.inspection.clone(),
            requested_at: rfc3339(record.requested_ms),
            updated_at: rfc3339(record.updated_ms),
        }
    }
}

/// One return with its stops (the pickup at the customer and the drop-off
/// at the factory, per planning wave).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReturnDetail {
    #[serde(flatten)]
    pub record: ReturnView,
    pub handoffs: Vec<HandoffView>,
}

/// One page of returns, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReturnPage {
    pub items: Vec<ReturnView>,
    /// Cursor for the next page (`after=`), absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Restocked units of a SKU at a factory, which later orders take first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StockView {
    pub factory: String,
    pub sku: String,
    #[schema(minimum = 0)]
    pub units: i64,
    pub updated_at: Option<DateTime<Utc>>,
}

impl From<&StockRecord> for StockView {
    fn from(record: &StockRecord) -> Self {
        StockView {
            factory: record.factory.to_string(),
            sku: record.sku.clone(),
            units: record.units,
            updated_at: rfc3339(record.updated_ms),
        }
    }
}
