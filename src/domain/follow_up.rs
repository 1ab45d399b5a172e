//! What follows when a job changes state: which units are made again, by
//! which new jobs, and how the job's order moves. Pure rules; the store reads
//! the rows they ask for and writes what they return, in the job's transaction.
//!
//! Invariants: units are remade only while their order is still in
//! production; a remade unit goes through every step of its line up to the
//! one that lost it (a shirt ruined at the press needs a new print too); an
//! order moves only by inputs its own state machine accepts.

use super::intake::JobPlan;
use super::{Event, JobState, OrderState, TransitionError, production_input};

/// Units of a job to make again now that it reached `next`: the units of a
/// failed or finished job not reported good (a held job abandoned keeps the
/// good units its machine reported before it stopped), and none once the
/// order has left production (cancelled, or already ready).
pub fn redo_units(next: JobState, quantity: u32, good: u32, order: OrderState) -> u32 {
    if !matches!(order, OrderState::Accepted | OrderState::InProduction) {
        return 0;
    }
    match next {
        JobState::Failed | JobState::Done => quantity.saturating_sub(good),
        _ => 0,
    }
}

/// The new jobs that make `units` again: one per step of the line up to and
/// including the lost job's own, in step order, each with the original
/// step's process, recipe, material, speed and due time. `line` holds the
/// line's original jobs up to the lost one's step (replacements excluded);
/// when it is empty the lost job's own step is remade alone.
pub fn redo_plans(line: &[JobPlan], lost: &JobPlan, units: u32) -> Vec<JobPlan> {
    if units == 0 {
        return Vec::new();
    }
    let steps: Vec<&JobPlan> = if line.is_empty() {
        vec![lost]
    } else {
        let mut steps: Vec<&JobPlan> = line
            .iter()
            .filter(|step| step.line_index == lost.line_index && step.step_index <= lost.step_index)
            .collect();
        steps.sort_by_key(|step| step.step_index);
        if steps.is_empty() { vec![lost] } else { steps }
    };
    steps
        .into_iter()
        .map(|step| JobPlan {
            quantity: units,
            ..step.clone()
        })
        .collect()
}

/// Whether a job reaching `next` can move its order (production started, or
/// every job done; a failed job whose units all came out good needs no
/// replacement): only then are the order's jobs worth reading.
pub fn may_move_order(next: JobState) -> bool {
    matches!(
        next,
        JobState::Dispatched
            | JobState::Running
            | JobState::Done
            | JobState::Failed
            | JobState::Cancelled
    )
}

/// One step of an order's state machine, with the events it emits.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderMove {
    pub from: OrderState,
    pub to: OrderState,
    pub events: Vec<Event>,
}

/// The order moves its jobs call for, in order (usually none or one: an
/// order whose jobs all finish between two polls goes straight to ready).
pub fn order_moves(
    current: OrderState,
    jobs: &[JobState],
) -> Result<Vec<OrderMove>, TransitionError> {
    let mut moves = Vec::new();
    let mut state = current;
    while let Some(input) = production_input(state, jobs) {
        let (to, events) = state.handle(input)?;
        moves.push(OrderMove {
            from: state,
            to,
            events,
        });
        state = to;
    }
    Ok(moves)
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobState as J;
    use OrderState as O;

    fn step(step_index: usize, process: &str) -> JobPlan {
        JobPlan {
            line_index: 0,
            step_index,
            process: process.into(),
            recipe: 10 + step_index as u32,
            material: "cotton_tee".into(),
            quantity: 5,
            seconds_per_unit: 30.0,
            due_ms: 1_000 * step_index as i64,
        }
    }

    #[test]
    fn redo_units_table() {
        // (next, quantity, good, order) -> units
        let cases = [
            (J::Failed, 5, 0, O::InProduction, 5),
            (J::Failed, 5, 3, O::InProduction, 2),
            (J::Failed, 5, 5, O::InProduction, 0),
            (J::Held, 5, 3, O::InProduction, 0),
            (J::Done, 5, 5, O::InProduction, 0),
            (J::Done, 5, 3, O::InProduction, 2),
            (J::Done, 5, 7, O::InProduction, 0),
            (J::Done, 5, 0, O::Accepted, 5),
            (J::Running, 5, 0, O::InProduction, 0),
            (J::Pending, 5, 0, O::InProduction, 0),
            (J::Cancelled, 5, 0, O::InProduction, 0),
            (J::Failed, 5, 0, O::Cancelled, 0),
            (J::Done, 5, 1, O::Ready, 0),
            (J::Failed, 5, 0, O::Delivered, 0),
        ];
        for (next, quantity, good, order, expected) in cases {
            assert_eq!(
                redo_units(next, quantity, good, order),
                expected,
                "{next:?} q={quantity} good={good} order={order:?}"
            );
        }
    }

    #[test]
    fn a_unit_lost_at_a_later_step_is_made_from_the_first_step() {
        let line = [step(1, "heat_press"), step(0, "dtg_print")];
        let plans = redo_plans(&line, &line[0], 2);
        let processes: Vec<&str> = plans.iter().map(|p| p.process.as_str()).collect();
        assert_eq!(processes, ["dtg_print", "heat_press"]);
        assert!(plans.iter().all(|p| p.quantity == 2));
        assert_eq!(plans[0].recipe, 10, "each step keeps its own recipe");
        assert_eq!(plans[1].due_ms, 1_000);
    }

    #[test]
    fn later_steps_and_other_lines_are_not_remade() {
        let mut other_line = step(0, "engrave");
        other_line.line_index = 1;
        let line = [step(0, "dtg_print"), step(1, "heat_press"), other_line];
        let plans = redo_plans(&line, &line[0], 1);
        assert_eq!(plans.len(), 1);
        assert_eq!(plans[0].process, "dtg_print");
    }

    #[test]
    fn without_the_line_the_lost_step_is_remade_alone() {
        let lost = step(1, "heat_press");
        assert_eq!(redo_plans(&[], &lost, 3).len(), 1);
        assert_eq!(redo_plans(&[], &lost, 3)[0].quantity, 3);
        assert!(redo_plans(std::slice::from_ref(&lost), &lost, 0).is_empty());
    }

    #[test]
    fn only_machine_progress_and_cancelling_move_an_order() {
        let moving = [J::Dispatched, J::Running, J::Done, J::Failed, J::Cancelled];
        for state in [
            J::Pending,
            J::Scheduled,
            J::Dispatched,
            J::Running,
            J::Held,
            J::Done,
            J::Failed,
            J::Cancelled,
        ] {
            assert_eq!(may_move_order(state), moving.contains(&state), "{state:?}");
        }
    }

    #[test]
    fn order_moves_table() {
        // (order, jobs) -> states passed through
        let cases: &[(O, &[J], &[O])] = &[
            (O::Accepted, &[J::Pending, J::Scheduled], &[]),
            (
                O::Accepted,
                &[J::Dispatched, J::Pending],
                &[O::InProduction],
            ),
            (O::Accepted, &[J::Done], &[O::Ready]),
            (O::InProduction, &[J::Done, J::Running], &[]),
            (O::InProduction, &[J::Done, J::Failed, J::Done], &[O::Ready]),
            (O::InProduction, &[J::Done, J::Cancelled], &[O::Ready]),
            (
                O::InProduction,
                &[J::Cancelled, J::Cancelled],
                &[O::Cancelled],
            ),
            (O::Accepted, &[J::Cancelled], &[O::Cancelled]),
            (O::Ready, &[J::Done], &[]),
            (O::Cancelled, &[J::Done], &[]),
        ];
        for (order, jobs, expected) in cases {
            let moves = order_moves(*order, jobs).expect("legal");
            let reached: Vec<O> = moves.iter().map(|m| m.to).collect();
            assert_eq!(&reached, expected, "{order:?} with {jobs:?}");
            let mut from = *order;
            for step in &moves {
                assert_eq!(step.from, from, "moves chain");
                assert!(!step.events.is_empty(), "every move emits its event");
                from = step.to;
            }
        }
    }
}
