//! The job state machine: one process step of one order line on one machine.
//!
//! `pending → scheduled → dispatched → running → done`, with `failed` and
//! `cancelled`; `scheduled/dispatched/running → pending` when the machine is
//! lost before the job was seen to finish. `done`, `failed` and `cancelled`
//! never change. A job that is `dispatched` or `running` may physically be on
//! its machine, so it can only leave that state on what the machine reports.

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
    Done,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobInput {
    /// The planner put it in a machine's queue.
    Schedule {
        machine: MachineId,
    },
    /// The planner took it back out of the queue (machine paused, faulted, re-plan).
    Unschedule,
    /// The start command was written to the machine.
    Dispatch,
    /// The machine reports it running with this job's token.
    MachineStarted,
    /// The machine reports it finished with this job's token.
    MachineFinished {
        good: u32,
        scrap: u32,
    },
    /// The machine aborted it (fault) after it had started.
    MachineAborted {
        fault_code: Option<u32>,
    },
    /// The machine never received it: it shows another token and is idle.
    MachineLost,
    Cancel,
}

impl JobState {
    pub const ALL: [JobState; 7] = [
        JobState::Pending,
        JobState::Scheduled,
        JobState::Dispatched,
        JobState::Running,
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
        matches!(self, JobState::Dispatched | JobState::Running)
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
            (S::Scheduled, I::Unschedule) => (S::Pending, Event::JobRequeued),
            (S::Scheduled, I::Dispatch) => (S::Dispatched, Event::JobDispatched),
            (S::Dispatched, I::MachineStarted) => (S::Running, Event::JobRunning),
            (S::Dispatched | S::Running, I::MachineFinished { good, scrap }) => (
                S::Done,
                Event::JobDone {
                    good: *good,
                    scrap: *scrap,
                },
            ),
            (S::Dispatched | S::Running, I::MachineAborted { fault_code }) => (
                S::Failed,
                Event::JobFailed {
                    fault_code: *fault_code,
                },
            ),
            (S::Dispatched, I::MachineLost) => (S::Pending, Event::JobRequeued),
            (S::Pending | S::Scheduled, I::Cancel) => (S::Cancelled, Event::JobCancelled),
            (from, _) => return Err(TransitionError::new("job", from, input)),
        };
        Ok((next, vec![event]))
    }
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

    fn schedule() -> JobInput {
        I::Schedule { machine: machine() }
    }

    fn finished() -> JobInput {
        I::MachineFinished { good: 2, scrap: 1 }
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
        check(&[schedule(), I::Dispatch, I::MachineLost], Ok(S::Pending));
        // Once seen running, only the machine's own report may end it.
        check(
            &[schedule(), I::Dispatch, I::MachineStarted, I::MachineLost],
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
            I::MachineLost,
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
