//! Pure domain types and state machines: orders, jobs, machines, handoffs,
//! returns.
//!
//! Nothing here does I/O, awaits, logs or reads a clock: time comes in as a
//! parameter, and every transition returns the new state plus the events it
//! emits, or a typed error naming the state and the input that was refused.

pub mod calendar;
pub mod catalog;
pub mod counters;
pub mod escalation;
pub mod event;
pub mod event_schema;
pub mod follow_up;
pub mod geo_types;
pub mod handoff;
pub mod ids;
pub mod intake;
pub mod job;
pub mod machine;
pub mod order;
pub mod power;
pub mod promise;
pub mod reconcile;
pub mod returns;
pub mod sales_event;
pub mod waiting;
pub mod webhook;

pub use catalog::{Catalog, ProcessStep, Sku};
pub use event::{Event, OrderedLine};
pub use geo_types::{Location, Zone};
pub use handoff::{
    AfterFailure, FailureReason, HandoffInput, HandoffKind, HandoffState, MISSED_AFTER_MS,
    after_failed_attempt, locks_after, stop_window,
};
pub use ids::{BrandId, CourierId, FactoryId, JobToken, MachineId, OrderId};
pub use job::{HoldCause, JobInput, JobState};
pub use machine::{MachineInput, MachineMode, MachineState, ModeInput, Reported};
pub use order::{OrderInput, OrderState, production_input};
pub use promise::AtRiskReason;
pub use returns::{InspectedLine, ReturnInput, ReturnLine, ReturnState};

use std::fmt;

/// A transition that the state machine does not allow. Carries the state and
/// the input, so the caller can say exactly what was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{machine}: {input} is not allowed in state {from}")]
pub struct TransitionError {
    pub machine: &'static str,
    pub from: String,
    pub input: String,
}

impl TransitionError {
    pub(crate) fn new(
        machine: &'static str,
        from: impl fmt::Display,
        input: impl fmt::Debug,
    ) -> Self {
        Self {
            machine,
            from: from.to_string(),
            input: format!("{input:?}"),
        }
    }
}

/// Milliseconds since the Unix epoch, on the (possibly scaled) domain clock.
pub type Millis = i64;

pub const HOUR_MS: Millis = 3_600_000;
pub const MINUTE_MS: Millis = 60_000;
pub const DAY_MS: Millis = 24 * HOUR_MS;
