//! The order state machine.
//!
//! `accepted → in_production → ready → out_for_delivery → delivered`, with
//! `cancelled` before production ends, and `accepted → ready` when restocked
//! units filled every line. Returns have their own state machine
//! (`domain::returns`) and leave the order `delivered`, so an order can have
//! several; `return_requested → return_in_transit → returned` are kept from
//! the first sketch but nothing enters them. `cancelled` and `returned` never
//! change.

use super::{Event, JobState, TransitionError};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    Accepted,
    InProduction,
    Ready,
    OutForDelivery,
    Delivered,
    Cancelled,
    ReturnRequested,
    ReturnInTransit,
    Returned,
}

/// Facts that move an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderInput {
    /// The first of its jobs went to a machine.
    ProductionStarted,
    /// Restocked units filled every line at acceptance: nothing to make.
    FilledFromStock,
    /// Every job of the order is done.
    AllJobsDone,
    /// A courier confirmed the pickup at the factory.
    PickedUp,
    /// A courier confirmed the drop-off at the customer.
    DroppedOff,
    /// A drop-off attempt failed (not home, wrong address, refused): the
    /// parcel goes back to its factory, ready for the next wave.
    DeliveryFailed,
    /// The courier carrying it went off duty and brought it back to its
    /// factory: ready for the next wave, with another courier. Not a
    /// failed attempt.
    BroughtBack,
    /// The brand (or an operator) cancelled it.
    Cancel,
    /// The brand asked for a return after delivery.
    RequestReturn,
    /// A courier picked the return up from the customer.
    ReturnPickedUp,
    /// The return arrived back at a factory.
    ReturnReceived,
}

impl OrderState {
    pub const ALL: [OrderState; 9] = [
        OrderState::Accepted,
        OrderState::InProduction,
        OrderState::Ready,
        OrderState::OutForDelivery,
        OrderState::Delivered,
        OrderState::Cancelled,
        OrderState::ReturnRequested,
        OrderState::ReturnInTransit,
        OrderState::Returned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Accepted => "accepted",
            OrderState::InProduction => "in_production",
            OrderState::Ready => "ready",
            OrderState::OutForDelivery => "out_for_delivery",
            OrderState::Delivered => "delivered",
            OrderState::Cancelled => "cancelled",
            OrderState::ReturnRequested => "return_requested",
            OrderState::ReturnInTransit => "return_in_transit",
            OrderState::Returned => "returned",
        }
    }

    /// States that never change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, OrderState::Cancelled | OrderState::Returned)
    }

    /// Still owed to the customer: production or delivery not finished.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            OrderState::Accepted
                | OrderState::InProduction
                | OrderState::Ready
                | OrderState::OutForDelivery
        )
    }

    /// The one transition function of the order state machine.
    pub fn handle(self, input: OrderInput) -> Result<(OrderState, Vec<Event>), TransitionError> {
        use OrderInput as I;
        use OrderState as S;
        let next = match (self, input) {
            (S::Accepted, I::ProductionStarted) => S::InProduction,
            (S::Accepted, I::FilledFromStock) => S::Ready,
            // A job can finish between two polls, before "started" was seen.
            (S::Accepted | S::InProduction, I::AllJobsDone) => S::Ready,
            (S::Ready, I::PickedUp) => S::OutForDelivery,
            (S::OutForDelivery, I::DroppedOff) => S::Delivered,
            (S::OutForDelivery, I::DeliveryFailed | I::BroughtBack) => S::Ready,
            (S::Accepted | S::InProduction | S::Ready, I::Cancel) => S::Cancelled,
            (S::Delivered, I::RequestReturn) => S::ReturnRequested,
            (S::ReturnRequested, I::ReturnPickedUp) => S::ReturnInTransit,
            (S::ReturnInTransit, I::ReturnReceived) => S::Returned,
            (from, input) => return Err(TransitionError::new("order", from, input)),
        };
        Ok((
            next,
            vec![Event::OrderStateChanged {
                from: self,
                to: next,
            }],
        ))
    }
}

/// What the states of an order's jobs say should happen to the order, if
/// anything: `AllJobsDone` once every live job is done, `ProductionStarted`
/// once any job has left the queue, `Cancel` once no job is live and some
/// were cancelled (an operator cancelled every line). Failed and cancelled
/// jobs are not live: a failed job is always replaced by a new one (see
/// runtime), which is.
pub fn production_input(state: OrderState, jobs: &[JobState]) -> Option<OrderInput> {
    let live: Vec<JobState> = jobs.iter().copied().filter(|job| job.is_live()).collect();
    match state {
        OrderState::Accepted | OrderState::InProduction
            if live.is_empty() && jobs.contains(&JobState::Cancelled) =>
        {
            Some(OrderInput::Cancel)
        }
        OrderState::Accepted | OrderState::InProduction
            if !live.is_empty() && live.iter().all(|job| *job == JobState::Done) =>
        {
            Some(OrderInput::AllJobsDone)
        }
        OrderState::Accepted
            if live
                .iter()
                .any(|job| !matches!(job, JobState::Pending | JobState::Scheduled)) =>
        {
            Some(OrderInput::ProductionStarted)
        }
        _ => None,
    }
}

impl fmt::Display for OrderState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OrderState {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        OrderState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| format!("unknown order state {text:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderInput as I;
    use OrderState as S;
    use proptest::prelude::*;

    /// Runs `script` from `accepted`; `expected` is the final state, or the
    /// index of the input that must be refused.
    fn check(script: &[OrderInput], expected: Result<OrderState, usize>) {
        let mut state = S::Accepted;
        for (index, input) in script.iter().enumerate() {
            match state.handle(*input) {
                Ok((next, events)) => {
                    assert_eq!(
                        events,
                        vec![Event::OrderStateChanged {
                            from: state,
                            to: next
                        }]
                    );
                    state = next;
                }
                Err(err) => {
                    assert_eq!(expected, Err(index), "refused {input:?} in {state}: {err}");
                    assert_eq!(err.from, state.as_str());
                    return;
                }
            }
        }
        assert_eq!(expected, Ok(state));
    }

    #[test]
    fn happy_path_and_returns() {
        check(&[], Ok(S::Accepted));
        check(&[I::ProductionStarted], Ok(S::InProduction));
        check(&[I::ProductionStarted, I::AllJobsDone], Ok(S::Ready));
        check(&[I::AllJobsDone], Ok(S::Ready));
        check(&[I::FilledFromStock], Ok(S::Ready));
        check(&[I::FilledFromStock, I::PickedUp], Ok(S::OutForDelivery));
        check(&[I::AllJobsDone, I::PickedUp], Ok(S::OutForDelivery));
        check(
            &[I::AllJobsDone, I::PickedUp, I::DroppedOff],
            Ok(S::Delivered),
        );
        check(
            &[I::AllJobsDone, I::PickedUp, I::DroppedOff, I::RequestReturn],
            Ok(S::ReturnRequested),
        );
        check(
            &[
                I::AllJobsDone,
                I::PickedUp,
                I::DroppedOff,
                I::RequestReturn,
                I::ReturnPickedUp,
            ],
            Ok(S::ReturnInTransit),
        );
        check(
            &[
                I::AllJobsDone,
                I::PickedUp,
                I::DroppedOff,
                I::RequestReturn,
                I::ReturnPickedUp,
                I::ReturnReceived,
            ],
            Ok(S::Returned),
        );
    }

    #[test]
    fn a_parcel_back_at_its_factory_is_ready_again() {
        let out = [I::AllJobsDone, I::PickedUp];
        for back in [I::DeliveryFailed, I::BroughtBack] {
            check(&[out[0], out[1], back], Ok(S::Ready));
            check(
                &[out[0], out[1], back, I::PickedUp, I::DroppedOff],
                Ok(S::Delivered),
            );
        }
    }

    #[test]
    fn cancellation() {
        check(&[I::Cancel], Ok(S::Cancelled));
        check(&[I::ProductionStarted, I::Cancel], Ok(S::Cancelled));
        check(&[I::AllJobsDone, I::Cancel], Ok(S::Cancelled));
        check(&[I::AllJobsDone, I::PickedUp, I::Cancel], Err(2));
        check(&[I::Cancel, I::ProductionStarted], Err(1));
        check(&[I::Cancel, I::Cancel], Err(1));
    }

    #[test]
    fn refused_inputs() {
        check(&[I::PickedUp], Err(0));
        check(&[I::DroppedOff], Err(0));
        check(&[I::ProductionStarted, I::FilledFromStock], Err(1));
        check(&[I::AllJobsDone, I::FilledFromStock], Err(1));
        check(&[I::RequestReturn], Err(0));
        check(&[I::ProductionStarted, I::ProductionStarted], Err(1));
        check(&[I::AllJobsDone, I::AllJobsDone], Err(1));
        check(&[I::AllJobsDone, I::DroppedOff], Err(1));
        check(&[I::AllJobsDone, I::BroughtBack], Err(1));
        check(&[I::AllJobsDone, I::DeliveryFailed], Err(1));
        check(
            &[
                I::AllJobsDone,
                I::PickedUp,
                I::DroppedOff,
                I::ReturnReceived,
            ],
            Err(3),
        );
    }

    #[test]
    fn terminal_states_never_change() {
        let inputs = [
            I::ProductionStarted,
            I::FilledFromStock,
            I::AllJobsDone,
            I::PickedUp,
            I::DroppedOff,
            I::DeliveryFailed,
            I::BroughtBack,
            I::Cancel,
            I::RequestReturn,
            I::ReturnPickedUp,
            I::ReturnReceived,
        ];
        for state in OrderState::ALL.into_iter().filter(|s| s.is_terminal()) {
            for input in inputs {
                assert!(state.handle(input).is_err(), "{state} accepted {input:?}");
            }
        }
    }

    fn job_state() -> impl Strategy<Value = JobState> {
        prop::sample::select(JobState::ALL.to_vec())
    }

    proptest! {
        /// An order is ready only when all its (not cancelled) jobs are done,
        /// and an order whose jobs are all done always becomes ready.
        #[test]
        fn ready_only_when_all_jobs_are_done(
            jobs in prop::collection::vec(job_state(), 0..12),
            start in prop::sample::select(vec![S::Accepted, S::InProduction]),
        ) {
            let mut state = start;
            while let Some(input) = production_input(state, &jobs) {
                state = state.handle(input).expect("production_input proposes legal inputs").0;
            }
            let live: Vec<_> = jobs.iter().filter(|j| !matches!(j, JobState::Cancelled | JobState::Failed)).collect();
            let all_done = !live.is_empty() && live.iter().all(|j| **j == JobState::Done);
            prop_assert_eq!(state == S::Ready, all_done);
            // Cancelled only when nothing is left to make and some line was cancelled.
            let all_cancelled = live.is_empty() && jobs.contains(&JobState::Cancelled);
            prop_assert_eq!(state == S::Cancelled, all_cancelled);
        }
    }

    #[test]
    fn production_input_table() {
        use JobState as J;
        assert_eq!(production_input(S::Accepted, &[]), None);
        assert_eq!(
            production_input(S::Accepted, &[J::Pending, J::Scheduled]),
            None
        );
        assert_eq!(
            production_input(S::Accepted, &[J::Pending, J::Dispatched]),
            Some(I::ProductionStarted)
        );
        assert_eq!(
            production_input(S::InProduction, &[J::Done, J::Running]),
            None
        );
        assert_eq!(
            production_input(S::InProduction, &[J::Done, J::Cancelled]),
            Some(I::AllJobsDone)
        );
        // Every line cancelled by an operator: the order is cancelled.
        assert_eq!(
            production_input(S::Accepted, &[J::Cancelled]),
            Some(I::Cancel)
        );
        assert_eq!(
            production_input(S::InProduction, &[J::Cancelled, J::Failed]),
            Some(I::Cancel)
        );
        assert_eq!(
            production_input(S::Accepted, &[J::Cancelled, J::Pending]),
            None
        );
        assert_eq!(production_input(S::Ready, &[J::Done]), None);
    }

    #[test]
    fn names_round_trip() {
        for state in OrderState::ALL {
            assert_eq!(state.as_str().parse::<OrderState>(), Ok(state));
            assert_eq!(
                serde_json::to_string(&state).ok(),
                Some(format!("\"{state}\""))
            );
        }
        assert!("shipped".parse::<OrderState>().is_err());
    }
}
