//! Events emitted by transitions. The runtime writes each one to the outbox in
//! the same transaction as the state change that caused it.

use super::returns::{InspectedLine, ReturnLine};
use super::{
    FactoryId, FailureReason, HoldCause, JobState, MachineId, MachineMode, MachineState, OrderState,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// An order was accepted: where it is made and what was ordered (the
    /// demand the forecasts are built on).
    OrderAccepted {
        factory: FactoryId,
        lines: Vec<OrderedLine>,
    },
    OrderStateChanged {
        from: OrderState,
        to: OrderState,
    },
    JobScheduled {
        machine: MachineId,
    },
    JobRequeued,
    /// An operator moved the job to this machine's queue.
    JobMoved {
        machine: MachineId,
    },
    JobDispatched,
    JobRunning,
    JobDone {
        good: u32,
        scrap: u32,
    },
    JobFailed {
        fault_code: Option<u32>,
    },
    /// Its machine stopped it; it waits for the machine or an operator.
    JobHeld {
        cause: HoldCause,
        fault_code: Option<u32>,
        /// Units reported so far (null: the machine no longer shows the job).
        good: Option<u32>,
        scrap: Option<u32>,
    },
    /// Running again after a hold: the machine resumed the same token, or
    /// an operator decided it goes on (`operator`).
    JobResumed {
        operator: bool,
    },
    /// An operator abandoned a held job: failed, its units not reported
    /// good made again under new tokens.
    JobAbandoned,
    /// An operator retried a held job: failed, its token retired, its
    /// units not reported good made again under new tokens.
    JobRetried,
    /// A job not on a machine yet was taken off the floor (its order was
    /// cancelled, or an operator cancelled its line).
    JobCancelled,
    MachineStateChanged {
        from: MachineState,
        to: MachineState,
    },
    /// The machine reports a fault (entering it, or a new code while in it).
    MachineFaulted {
        fault_code: Option<u32>,
    },
    MachineModeChanged {
        from: MachineMode,
        to: MachineMode,
    },
    /// An operator declared the material loaded on the machine (null: not
    /// known, any material starts). A known material starts only its jobs.
    MachineMaterialLoaded {
        from: Option<String>,
        to: Option<String>,
    },
    /// An operator planned maintenance on the machine: no job starts that
    /// would run into `[start_ms, end_ms)` (domain clock).
    MachineMaintenanceScheduled {
        window: String,
        start_ms: i64,
        end_ms: i64,
        reason: String,
    },
    /// An operator removed a planned maintenance window.
    MachineMaintenanceCancelled {
        window: String,
    },
    HandoffPlanned,
    /// A wave rebuilt the courier routes: this stop, not yet made, has a new
    /// place in a route (`to_courier`'s, perhaps another courier's than
    /// before) and a new ETA. Its code stays.
    HandoffReplanned {
        from_courier: String,
        to_courier: String,
    },
    HandoffConfirmed,
    HandoffMissed,
    /// A courier reported a failed attempt.
    HandoffFailed {
        reason: FailureReason,
    },
    /// Too many wrong codes: the stop waits for an operator.
    HandoffLocked {
        wrong_codes: u32,
    },
    /// An operator released a locked stop.
    HandoffReleased,
    /// An operator decided what becomes of an escalated order: delivered
    /// again (by `deliver_by_ms`, if set), or cancelled with its units back
    /// on its factory's shelf, or cancelled.
    OrderEscalationDecided {
        decision: super::escalation::EscalationDecision,
        deliver_by_ms: Option<i64>,
    },
    /// The order's attempts ran out: it waits for the operator and the brand.
    OrderEscalated {
        reason: FailureReason,
        attempts: u32,
    },
    /// The plan says the order cannot be delivered by its deadline: flagged
    /// once, as soon as the plan sees it, long before the deadline passes.
    OrderAtRisk {
        reason: super::AtRiskReason,
        /// The delivery the plan expects (None: it cannot say, e.g. no machine).
        estimated_delivery_ms: Option<i64>,
        deadline_ms: i64,
    },
    /// A courier went off duty (its pickups not yet made were handed back
    /// for the next wave, the parcels it had on board brought back to
    /// their factory) or back on duty.
    CourierDutyChanged {
        on_duty: bool,
        released: u32,
        /// Deliveries it had on board, back at their factory (added in v1;
        /// 0 when absent).
        #[serde(default)]
        brought_back: u32,
    },
    /// Restocked units filled a line of a new order at its factory (the
    /// line gets no jobs).
    StockTaken {
        factory: FactoryId,
        line: usize,
        sku: String,
        units: u32,
    },
    /// A brand asked for units of a delivered order back.
    ReturnRequested {
        factory: FactoryId,
        reason: String,
        lines: Vec<ReturnLine>,
    },
    /// A wave planned the pickup at the customer and the drop-off at the factory.
    ReturnPickupPlanned,
    /// The planned pickup was missed or failed; the next wave plans it again.
    ReturnPickupMissed,
    ReturnPickedUp,
    /// The parcel arrived at the factory.
    ReturnReceived,
    /// The operator restocked or scrapped every unit.
    ReturnInspected {
        lines: Vec<InspectedLine>,
    },
    ReturnCancelled,
}

impl Event {
    /// The event kind, also the last segment of its MQTT topic
    /// (`fabflow/v1/events/<kind>`).
    pub fn kind(&self) -> &'static str {
        match self {
            Event::OrderAccepted { .. } => "order.accepted",
            Event::OrderStateChanged { to, .. } => match to {
                OrderState::Accepted => "order.accepted",
                OrderState::InProduction => "order.in_production",
                OrderState::Ready => "order.ready",
                OrderState::OutForDelivery => "order.out_for_delivery",
                OrderState::Delivered => "order.delivered",
                OrderState::Cancelled => "order.cancelled",
                OrderState::ReturnRequested => "order.return_requested",
                OrderState::ReturnInTransit => "order.return_in_transit",
                OrderState::Returned => "order.returned",
            },
            Event::JobScheduled { .. } => "job.scheduled",
            Event::JobMoved { .. } => "job.moved",
            Event::JobRequeued => "job.requeued",
            Event::JobDispatched => "job.dispatched",
            Event::JobRunning => "job.running",
            Event::JobDone { .. } => "job.done",
            Event::JobFailed { .. } => "job.failed",
            Event::JobHeld { .. } => "job.held",
            Event::JobResumed { .. } => "job.resumed",
            Event::JobAbandoned => "job.abandoned",
            Event::JobRetried => "job.retried",
            Event::JobCancelled => "job.cancelled",
            Event::MachineStateChanged { .. } => "machine.state_changed",
            Event::MachineFaulted { .. } => "machine.faulted",
            Event::MachineModeChanged { .. } => "machine.mode_changed",
            Event::MachineMaterialLoaded { .. } => "machine.material_loaded",
            Event::MachineMaintenanceScheduled { .. } => "machine.maintenance_scheduled",
            Event::MachineMaintenanceCancelled { .. } => "machine.maintenance_cancelled",
            Event::HandoffPlanned => "handoff.planned",
            Event::HandoffReplanned { .. } => "handoff.replanned",
            Event::HandoffConfirmed => "handoff.confirmed",
            Event::HandoffMissed => "handoff.missed",
            Event::HandoffFailed { .. } => "handoff.failed",
            Event::HandoffLocked { .. } => "handoff.locked",
            Event::HandoffReleased => "handoff.released",
            Event::OrderEscalated { .. } => "order.escalated",
            Event::OrderEscalationDecided { .. } => "order.escalation_decided",
            Event::OrderAtRisk { .. } => "order.at_risk",
            Event::CourierDutyChanged { .. } => "courier.duty_changed",
            Event::StockTaken { .. } => "stock.taken",
            Event::ReturnRequested { .. } => "return.requested",
            Event::ReturnPickupPlanned => "return.pickup_planned",
            Event::ReturnPickupMissed => "return.pickup_missed",
            Event::ReturnPickedUp => "return.picked_up",
            Event::ReturnReceived => "return.received",
            Event::ReturnInspected { .. } => "return.inspected",
            Event::ReturnCancelled => "return.cancelled",
        }
    }

    /// The job state this event leaves a job in, if it is a job event.
    pub fn job_state(&self) -> Option<JobState> {
        Some(match self {
            Event::JobScheduled { .. } | Event::JobMoved { .. } => JobState::Scheduled,
            Event::JobRequeued => JobState::Pending,
            Event::JobDispatched => JobState::Dispatched,
            Event::JobRunning => JobState::Running,
            Event::JobDone { .. } => JobState::Done,
            Event::JobFailed { .. } | Event::JobAbandoned | Event::JobRetried => JobState::Failed,
            Event::JobHeld { .. } => JobState::Held,
            Event::JobResumed { .. } => JobState::Running,
            Event::JobCancelled => JobState::Cancelled,
            _ => return None,
        })
    }
}

/// One line of an accepted order, as events carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OrderedLine {
    pub sku: String,
    pub quantity: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_dotted_and_serialised_with_a_tag() {
        let event = Event::OrderStateChanged {
            from: OrderState::InProduction,
            to: OrderState::Ready,
        };
        assert_eq!(event.kind(), "order.ready");
        let json = serde_json::to_value(&event).unwrap_or_default();
        assert_eq!(json["kind"], "order_state_changed");
        assert_eq!(json["to"], "ready");
        assert_eq!(Event::JobDone { good: 1, scrap: 0 }.kind(), "job.done");
        assert_eq!(
            Event::JobDone { good: 1, scrap: 0 }.job_state(),
            Some(JobState::Done)
        );
        assert_eq!(Event::HandoffPlanned.job_state(), None);
    }
}
