//! The job state machine: one process step of one order line on one machine.
//!
//! `pending → scheduled → dispatched → running → done`, with `failed` and
//! `cancelled`, and `held` for a job its machine stopped (a fault, a reset,
//! a power loss): it waits there until the machine resumes the same token
//! or an operator decides (resume, or abandon: `failed`, its units not
//! reported good made again under new tokens). `scheduled → pending` when
//! the planner takes it back; `dispatched → pending` only when the machine
//! refused the start (so it never started). `done`, `failed` and `cancelled`
//! never change. A job that is `dispatched`, `running` or `held` may
//! physically be on its machine, so it leaves that state only on what the
//! machine reports or on an operator's decision about a held job.
//!
//! Invariant: a token is started at most once. A job whose start outcome is
//! unknown and whose machine no longer shows its token may have been made:
//! it fails (its token retired, never dispatched again) rather than going
//! back to `pending`.

use super::{Event, MachineId, TransitionError};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Pending,
    Scheduled,
    Dispatched,
    Running,
    /// Stopped by its machine (fault, reset, power loss); waits for the
    /// machine to resume it or for an operator's decision.
    Held,
    Done,
    Failed,
    Cancelled,
}

/// Why a job is held.
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
pub enum HoldCause {
    /// The machine reports a fault with the job's token.
    Fault,
    /// The machine shows the job's token but is idle after running it: it
    /// dropped the job (reset, or a fault cleared by aborting).
    Reset,
    /// The machine no longer shows the job's token (a power loss, or it was
    /// given another job): it forgot the job.
    Lost,
}

impl HoldCause {
    pub const ALL: [HoldCause; 3] = [HoldCause::Fault, HoldCause::Reset, HoldCause::Lost];

    pub fn as_str(self) -> &'static str {
        match self {
            HoldCause::Fault => "fault",
            HoldCause::Reset => "reset",
            HoldCause::Lost => "lost",
        }
    }
}

impl FromStr for HoldCause {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        HoldCause::ALL
            .into_iter()
            .find(|cause| cause.as_str() == text)
            .ok_or_else(|| format!("unknown hold cause {text:?}"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobInput {
    /// The planner put it in a machine's queue.
    Schedule { machine: MachineId },
    /// The planner took it back out of the queue (machine paused, faulted, re-plan).
    Unschedule,
    /// The start command was written to the machine.
    Dispatch,
    /// The machine reports it running with this job's token.
    MachineStarted,
    /// The machine reports it finished with this job's token.
    MachineFinished { good: u32, scrap: u32 },
    /// The machine stopped it: the job is held. `counts` are the units the
    /// machine reported for it so far (None when it no longer shows the
    /// job, and the counts last recorded stand).
    MachineHeld {
        cause: HoldCause,
        fault_code: Option<u32>,
        counts: Option<(u32, u32)>,
    },
    /// The machine shows the held job's token running again.
    MachineResumed,
    /// The job ended without the machine finishing it and without a way
    /// back: its start outcome is unknown and the machine does not show its
    /// token, the machine never reacted to it, or the machine was removed.
    /// Its token is retired; the units not reported good are made again.
    MachineAborted { fault_code: Option<u32> },
    /// The machine refused the start (it answered with an error before the
    /// start was accepted): it never started, so it may be planned again.
    StartRefused,
    /// An operator: the job (pending, or queued on another machine) goes
    /// to this machine's queue. See [`move_refusal`] for when it may.
    Move { machine: MachineId },
    /// An operator: the held job goes on on its machine.
    Resume,
    /// An operator: the held job ends; its units not reported good are made
    /// again under new tokens, and its token is retired.
    Abandon,
    /// An operator: the held job is made again. The same end as `Abandon`
    /// (failed, token retired, units not reported good remade under new
    /// tokens), told apart in the event log (`job.retried`).
    Retry,
    /// An operator (or the order's cancellation): a job not on a machine
    /// yet is taken off the floor.
    Cancel,
}

impl JobState {
    pub const ALL: [JobState; 8] = [
        JobState::Pending,
        JobState::Scheduled,
        JobState::Dispatched,
        JobState::Running,
        JobState::Held,
        JobState::Done,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Scheduled => "scheduled",
            JobState::Dispatched => "dispatched",
            JobState::Running => "running",
            JobState::Held => "held",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::Cancelled
        )
    }

    /// Still counts towards its order: not failed (a failed job is replaced)
    /// and not cancelled.
    pub fn is_live(self) -> bool {
        !matches!(self, JobState::Failed | JobState::Cancelled)
    }

    /// The job may be physically on its machine.
    pub fn is_on_machine(self) -> bool {
        matches!(
            self,
            JobState::Dispatched | JobState::Running | JobState::Held
        )
    }

    pub fn handle(self, input: JobInput) -> Result<(JobState, Vec<Event>), TransitionError> {
        use JobInput as I;
        use JobState as S;
        let (next, event) = match (self, &input) {
            (S::Pending, I::Schedule { machine }) => (
                S::Scheduled,
                Event::JobScheduled {
                    machine: machine.clone(),
                },
            ),
            (S::Pending | S::Scheduled, I::Move { machine }) => (
                S::Scheduled,
                Event::JobMoved {
                    machine: machine.clone(),
                },
            ),
            (S::Scheduled, I::Unschedule) => (S::Pending, Event::JobRequeued),
            (S::Scheduled, I::Dispatch) => (S::Dispatched, Event::JobDispatched),
            (S::Dispatched, I::MachineStarted) => (S::Running, Event::JobRunning),
            (S::Dispatched | S::Running | S::Held, I::MachineFinished { good, scrap }) => (
                S::Done,
                Event::JobDone {
                    good: *good,
                    scrap: *scrap,
                },
            ),
            (
                S::Dispatched | S::Running,
                I::MachineHeld {
                    cause,
                    fault_code,
                    counts,
                },
            ) => (
                S::Held,
                Event::JobHeld {
                    cause: *cause,
                    fault_code: *fault_code,
                    good: counts.map(|c| c.0),
                    scrap: counts.map(|c| c.1),
                },
            ),
            (S::Held, I::MachineResumed) => (S::Running, Event::JobResumed { operator: false }),
            (S::Held, I::Resume) => (S::Running, Event::JobResumed { operator: true }),
            (S::Held, I::Abandon) => (S::Failed, Event::JobAbandoned),
            (S::Held, I::Retry) => (S::Failed, Event::JobRetried),
            (S::Dispatched | S::Running | S::Held, I::MachineAborted { fault_code }) => (
                S::Failed,
                Event::JobFailed {
                    fault_code: *fault_code,
                },
            ),
            (S::Dispatched, I::StartRefused) => (S::Pending, Event::JobRequeued),
            (S::Pending | S::Scheduled, I::Cancel) => (S::Cancelled, Event::JobCancelled),
            (from, _) => return Err(TransitionError::new("job", from, input)),
        };
        Ok((next, vec![event]))
    }
}

/// What an operator's move of a job to a machine is checked against.
#[derive(Debug, Clone)]
pub struct MoveCheck<'a> {
    pub state: JobState,
    pub factory: &'a str,
    pub process: &'a str,
    pub material: &'a str,
    /// The machine whose queue it is in now, if any.
    pub machine: Option<&'a str>,
    /// The first earlier step of its line that is not done.
    pub open_step: Option<i64>,
    pub target: &'a str,
    pub target_factory: &'a str,
    pub target_capabilities: &'a [String],
    pub target_materials: &'a [String],
    pub target_mode: super::MachineMode,
}

/// Why moving a job to a machine makes no sense, if it does not: only a
/// job that is not on a machine yet (pending, or queued elsewhere) moves,
/// only to a machine of its factory that does its process with its
/// material and takes jobs, and never ahead of an earlier step of its line.
pub fn move_refusal(check: &MoveCheck<'_>) -> Option<String> {
    let target = check.target;
    if !matches!(check.state, JobState::Pending | JobState::Scheduled) {
        return Some(format!(
            "the job is {}: only a pending or queued job moves (a job on its machine stays there)",
            check.state
        ));
    }
    if check.machine == Some(target) {
        return Some(format!("the job is already queued on {target}"));
    }
    if check.target_factory != check.factory {
        return Some(format!(
            "{target} is in factory {}, the job is made in {}",
            check.target_factory, check.factory
        ));
    }
    if !check.target_capabilities.iter().any(|c| c == check.process) {
        return Some(format!("{target} does not do {}", check.process));
    }
    if !check.target_materials.iter().any(|m| m == check.material) {
        return Some(format!("{target} cannot use {}", check.material));
    }
    if check.target_mode != super::MachineMode::Active {
        return Some(format!(
            "{target} takes no jobs: it is {}",
            check.target_mode
        ));
    }
    if let Some(step) = check.open_step {
        return Some(format!("step {step} of its line is not done yet"));
    }
    None
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| format!("unknown job state {text:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobInput as I;
    use JobState as S;

    fn machine() -> MachineId {
        MachineId::new("m1")
    }

    #[test]
    fn a_job_moves_only_when_it_makes_sense() {
        let caps = vec!["print".to_string()];
        let mats = vec!["cotton".to_string()];
        let ok = MoveCheck {
            state: S::Scheduled,
            factory: "north",
            process: "print",
            material: "cotton",
            machine: Some("m1"),
            open_step: None,
            target: "m2",
            target_factory: "north",
            target_capabilities: &caps,
            target_materials: &mats,
            target_mode: crate::domain::MachineMode::Active,
        };
        assert_eq!(move_refusal(&ok), None);
        assert_eq!(
            move_refusal(&MoveCheck {
                state: S::Pending,
                machine: None,
                ..ok.clone()
            }),
            None
        );
        let refused = |check: MoveCheck<'_>, words: &str| {
            let why = move_refusal(&check).unwrap_or_default();
            assert!(why.contains(words), "{why:?} should say {words:?}");
        };
        for state in [
            S::Dispatched,
            S::Running,
            S::Held,
            S::Done,
            S::Failed,
            S::Cancelled,
        ] {
            refused(
                MoveCheck {
                    state,
                    ..ok.clone()
                },
                "only a pending or queued job moves",
            );
        }
        refused(
            MoveCheck {
                target: "m1",
                ..ok.clone()
            },
            "already queued on m1",
        );
        refused(
            MoveCheck {
                target_factory: "south",
                ..ok.clone()
            },
            "in factory south",
        );
        refused(
            MoveCheck {
                process: "embroider",
                ..ok.clone()
            },
            "does not do embroider",
        );
        refused(
            MoveCheck {
                material: "denim",
                ..ok.clone()
            },
            "cannot use denim",
        );
        refused(
            MoveCheck {
                target_mode: crate::domain::MachineMode::Paused,
                ..ok.clone()
            },
            "takes no jobs",
        );
        refused(
            MoveCheck {
                open_step: Some(0),
                ..ok.clone()
            },
            "step 0",
        );
        // The state machine agrees: pending and scheduled jobs move, others do not.
        let to = I::Move {
            machine: MachineId::new("m2"),
        };
        assert_eq!(
            S::Pending.handle(to.clone()).map(|(s, _)| s),
            Ok(S::Scheduled)
        );
        assert_eq!(
            S::Scheduled.handle(to.clone()).map(|(s, _)| s),
            Ok(S::Scheduled)
        );
        assert!(S::Running.handle(to).is_err());
    }

    fn schedule() -> JobInput {
        I::Schedule { machine: machine() }
    }

    fn finished() -> JobInput {
        I::MachineFinished { good: 2, scrap: 1 }
    }

    fn held() -> JobInput {
        I::MachineHeld {
            cause: HoldCause::Fault,
            fault_code: Some(42),
            counts: Some((1, 0)),
        }
    }

    fn check(script: &[JobInput], expected: Result<JobState, usize>) {
        let mut state = S::Pending;
        for (index, input) in script.iter().enumerate() {
            match state.handle(input.clone()) {
                Ok((next, events)) => {
                    assert_eq!(events.len(), 1, "{input:?} must emit one event");
                    state = next;
                }
                Err(err) => {
                    assert_eq!(expected, Err(index), "refused {input:?} in {state}: {err}");
                    assert_eq!(err.machine, "job");
                    return;
                }
            }
        }
        assert_eq!(expected, Ok(state));
    }

    #[test]
    fn happy_path() {
        check(&[schedule()], Ok(S::Scheduled));
        check(&[schedule(), I::Dispatch], Ok(S::Dispatched));
        check(
            &[schedule(), I::Dispatch, I::MachineStarted],
            Ok(S::Running),
        );
        check(
            &[schedule(), I::Dispatch, I::MachineStarted, finished()],
            Ok(S::Done),
        );
        check(&[schedule(), I::Dispatch, finished()], Ok(S::Done));
    }

    #[test]
    fn lost_machines_and_replanning() {
        check(&[schedule(), I::Unschedule], Ok(S::Pending));
        check(&[schedule(), I::Unschedule, schedule()], Ok(S::Scheduled));
        check(&[schedule(), I::Dispatch, I::StartRefused], Ok(S::Pending));
        // Once seen running, only the machine's own report may end it.
        check(
            &[schedule(), I::Dispatch, I::MachineStarted, I::StartRefused],
            Err(3),
        );
        check(&[schedule(), I::Dispatch, I::Unschedule], Err(2));
    }

    #[test]
    fn failures_and_cancels() {
        let abort = I::MachineAborted {
            fault_code: Some(7),
        };
        check(&[schedule(), I::Dispatch, abort.clone()], Ok(S::Failed));
        check(
            &[schedule(), I::Dispatch, I::MachineStarted, abort.clone()],
            Ok(S::Failed),
        );
        check(&[abort], Err(0));
        check(&[I::Cancel], Ok(S::Cancelled));
        check(&[schedule(), I::Cancel], Ok(S::Cancelled));
        check(&[schedule(), I::Dispatch, I::Cancel], Err(2));
    }

    #[test]
    fn held_jobs_wait_for_the_machine_or_a_decision() {
        let run = [schedule(), I::Dispatch, I::MachineStarted];
        let with = |more: &[JobInput]| [&run[..], more].concat();
        check(&with(&[held()]), Ok(S::Held));
        check(&[schedule(), I::Dispatch, held()], Ok(S::Held));
        // The machine resumes the same token, or finishes it.
        check(&with(&[held(), I::MachineResumed]), Ok(S::Running));
        check(&with(&[held(), finished()]), Ok(S::Done));
        check(&with(&[held(), I::MachineResumed, held()]), Ok(S::Held));
        // An operator decides.
        check(&with(&[held(), I::Resume]), Ok(S::Running));
        check(&with(&[held(), I::Abandon]), Ok(S::Failed));
        check(&with(&[held(), I::Retry]), Ok(S::Failed));
        // Decisions only about held jobs; a held job is never requeued,
        // cancelled or held twice.
        check(&with(&[I::Resume]), Err(3));
        check(&with(&[I::Abandon]), Err(3));
        check(&[schedule(), I::Abandon], Err(1));
        check(&[schedule(), I::Retry], Err(1));
        check(&with(&[held(), I::Abandon, I::Retry]), Err(5));
        check(&with(&[held(), I::StartRefused]), Err(4));
        check(&with(&[held(), I::Cancel]), Err(4));
        check(&with(&[held(), held()]), Err(4));
        check(&with(&[held(), I::MachineStarted]), Err(4));
        // Removed with its machine: failed, as any job on it.
        check(
            &with(&[held(), I::MachineAborted { fault_code: None }]),
            Ok(S::Failed),
        );
    }

    #[test]
    fn a_start_of_unknown_outcome_is_never_requeued() {
        // Only a refused start goes back to pending; an unknown one fails
        // (its token retired) whatever the machine shows.
        let abort = I::MachineAborted { fault_code: None };
        check(&[schedule(), I::Dispatch, abort], Ok(S::Failed));
        check(&[schedule(), I::Dispatch, I::StartRefused], Ok(S::Pending));
    }

    #[test]
    fn hold_causes_round_trip() {
        for cause in HoldCause::ALL {
            assert_eq!(cause.as_str().parse::<HoldCause>(), Ok(cause));
        }
    }

    #[test]
    fn refused_inputs() {
        check(&[I::Dispatch], Err(0));
        check(&[I::MachineStarted], Err(0));
        check(&[finished()], Err(0));
        check(&[schedule(), schedule()], Err(1));
        check(&[schedule(), I::MachineStarted], Err(1));
        check(
            &[
                schedule(),
                I::Dispatch,
                I::MachineStarted,
                I::MachineStarted,
            ],
            Err(3),
        );
    }

    #[test]
    fn terminal_states_never_change() {
        let inputs = [
            schedule(),
            I::Unschedule,
            I::Dispatch,
            I::MachineStarted,
            finished(),
            I::MachineAborted { fault_code: None },
            I::StartRefused,
            held(),
            I::MachineResumed,
            I::Resume,
            I::Abandon,
            I::Retry,
            I::Cancel,
        ];
        for state in JobState::ALL.into_iter().filter(|s| s.is_terminal()) {
            for input in &inputs {
                assert!(
                    state.handle(input.clone()).is_err(),
                    "{state} accepted {input:?}"
                );
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>(), Ok(state));
        }
    }
}
