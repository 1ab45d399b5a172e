//! What a machine's report means for a job the store has on that machine.
//!
//! The rule that keeps a job from being produced twice: a job stored as
//! dispatched or running is moved only on what the machine shows. A machine
//! showing the job's token has (or had) the job; one showing another token
//! never got it, unless this daemon started it moments ago and the report
//! predates the start.

use super::{JobInput, JobState, JobToken, Reported};

/// One status report of a machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown {
    pub state: Reported,
    pub token: u32,
    pub good: u32,
    pub scrap: u32,
    pub fault_code: Option<u32>,
}

/// What this daemon knows about its own start of the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Not started by this process (a restart or another daemon): only the
    /// machine can tell.
    Unknown,
    /// Started moments ago: a report that does not show it may predate it.
    Recent,
    /// Started long enough ago that the machine must show it by now.
    Settled,
}

/// The input to apply to the job, or None to wait for a later report.
pub fn reconcile(shown: Shown, token: JobToken, state: JobState, start: Start) -> Option<JobInput> {
    use Reported as R;
    let aborted = |fault_code| Some(JobInput::MachineAborted { fault_code });
    if shown.token == token.0 {
        return match (shown.state, state) {
            (R::Running | R::Paused, JobState::Dispatched) => Some(JobInput::MachineStarted),
            (R::Running | R::Paused, _) => None,
            (R::Done, _) => Some(JobInput::MachineFinished {
                good: shown.good,
                scrap: shown.scrap,
            }),
            (R::Fault, _) => aborted(shown.fault_code),
            // Token loaded but the start never completed (cut short before its
            // last step): the job never ran, so it may be started again.
            (R::Idle, JobState::Dispatched) if start == Start::Unknown => {
                Some(JobInput::MachineLost)
            }
            // Seen running, now idle with its token: finished jobs are
            // acknowledged only once stored as done, so the machine was reset.
            (R::Idle, JobState::Running) => aborted(None),
            (R::Idle, _) if start == Start::Settled => aborted(None),
            (R::Idle, _) => None,
        };
    }
    match (start, state) {
        // The report may have been read before our start.
        (Start::Recent, _) => None,
        // The token never reached the machine (the start was never written).
        (Start::Unknown, JobState::Dispatched) => Some(JobInput::MachineLost),
        // We started it, or saw it run, and the machine shows another job: it lost ours.
        _ => aborted(None),
    }
}

/// A command sent to a machine whose effect the daemon waits to see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Awaited {
    Start { token: u32 },
    Acknowledge,
}

impl Awaited {
    pub fn name(self) -> &'static str {
        match self {
            Awaited::Start { .. } => "start",
            Awaited::Acknowledge => "acknowledge",
        }
    }
}

/// Whether `now` shows the machine reacting to `command`, against `before`,
/// its last report before the command went out: another state, moved
/// counters, or (for a start, on a machine that echoes the token it runs in
/// a register of its own) the command's token. A token read from the
/// register the start wrote proves nothing: it shows what was written.
pub fn reacted(before: Shown, now: Shown, command: Awaited, echoes_token: bool) -> bool {
    if now.state != before.state || now.good != before.good || now.scrap != before.scrap {
        return true;
    }
    match command {
        Awaited::Start { token } => echoes_token && now.token == token,
        Awaited::Acknowledge => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobState as J;
    use Reported as R;

    const MINE: u32 = 7;
    const OTHER: u32 = 3;

    fn check(state: Reported, token: u32, job: JobState, start: Start, expected: Option<JobInput>) {
        let shown = Shown {
            state,
            token,
            good: 4,
            scrap: 1,
            fault_code: Some(9),
        };
        assert_eq!(
            reconcile(shown, JobToken(MINE), job, start),
            expected,
            "{state:?} token {token}, job {job}, {start:?}"
        );
    }

    #[test]
    fn the_machine_shows_our_token() {
        let finished = Some(JobInput::MachineFinished { good: 4, scrap: 1 });
        let faulted = Some(JobInput::MachineAborted {
            fault_code: Some(9),
        });
        let reset = Some(JobInput::MachineAborted { fault_code: None });
        for start in [Start::Unknown, Start::Recent, Start::Settled] {
            check(
                R::Running,
                MINE,
                J::Dispatched,
                start,
                Some(JobInput::MachineStarted),
            );
            check(
                R::Paused,
                MINE,
                J::Dispatched,
                start,
                Some(JobInput::MachineStarted),
            );
            check(R::Running, MINE, J::Running, start, None);
            check(R::Done, MINE, J::Dispatched, start, finished.clone());
            check(R::Done, MINE, J::Running, start, finished.clone());
            check(R::Fault, MINE, J::Running, start, faulted.clone());
            check(R::Idle, MINE, J::Running, start, reset.clone());
        }
        check(
            R::Idle,
            MINE,
            J::Dispatched,
            Start::Unknown,
            Some(JobInput::MachineLost),
        );
        check(R::Idle, MINE, J::Dispatched, Start::Recent, None);
        check(R::Idle, MINE, J::Dispatched, Start::Settled, reset);
    }

    #[test]
    fn the_machine_shows_another_token() {
        let reset = Some(JobInput::MachineAborted { fault_code: None });
        for reported in [R::Idle, R::Running, R::Done, R::Fault] {
            check(
                reported,
                OTHER,
                J::Dispatched,
                Start::Unknown,
                Some(JobInput::MachineLost),
            );
            check(reported, OTHER, J::Dispatched, Start::Recent, None);
            check(
                reported,
                OTHER,
                J::Dispatched,
                Start::Settled,
                reset.clone(),
            );
            check(reported, OTHER, J::Running, Start::Unknown, reset.clone());
            check(reported, OTHER, J::Running, Start::Recent, None);
        }
    }

    #[test]
    fn a_reaction_is_a_new_state_moved_counters_or_an_echoed_token() {
        let shown = |state, token, good| Shown {
            state,
            token,
            good,
            scrap: 0,
            fault_code: None,
        };
        let start = Awaited::Start { token: MINE };
        // (before, now, command, echoes, reacted)
        let table = [
            (
                shown(R::Idle, OTHER, 0),
                shown(R::Idle, OTHER, 0),
                start,
                true,
                false,
            ),
            (
                shown(R::Idle, OTHER, 0),
                shown(R::Idle, MINE, 0),
                start,
                false,
                false,
            ),
            (
                shown(R::Idle, OTHER, 0),
                shown(R::Idle, MINE, 0),
                start,
                true,
                true,
            ),
            (
                shown(R::Idle, MINE, 0),
                shown(R::Running, MINE, 0),
                start,
                false,
                true,
            ),
            (
                shown(R::Done, OTHER, 4),
                shown(R::Done, OTHER, 4),
                start,
                true,
                false,
            ),
            (
                shown(R::Done, OTHER, 4),
                shown(R::Done, MINE, 6),
                start,
                true,
                true,
            ),
            (
                shown(R::Done, OTHER, 4),
                shown(R::Done, OTHER, 6),
                start,
                false,
                true,
            ),
            (
                shown(R::Idle, OTHER, 0),
                shown(R::Fault, OTHER, 0),
                start,
                false,
                true,
            ),
            (
                shown(R::Done, MINE, 2),
                shown(R::Done, MINE, 2),
                Awaited::Acknowledge,
                true,
                false,
            ),
            (
                shown(R::Done, MINE, 2),
                shown(R::Idle, MINE, 2),
                Awaited::Acknowledge,
                false,
                true,
            ),
        ];
        for (before, now, command, echoes, expected) in table {
            assert_eq!(
                reacted(before, now, command, echoes),
                expected,
                "{before:?} -> {now:?} after {command:?} (echoes: {echoes})"
            );
        }
    }

    #[test]
    fn every_proposed_input_is_legal_for_the_job() {
        let states = [R::Idle, R::Running, R::Done, R::Fault, R::Paused];
        for reported in states {
            for token in [MINE, OTHER] {
                for job in [J::Dispatched, J::Running] {
                    for start in [Start::Unknown, Start::Recent, Start::Settled] {
                        let shown = Shown {
                            state: reported,
                            token,
                            good: 1,
                            scrap: 0,
                            fault_code: None,
                        };
                        if let Some(input) = reconcile(shown, JobToken(MINE), job, start) {
                            assert!(
                                job.handle(input.clone()).is_ok(),
                                "{input:?} refused in {job}"
                            );
                        }
                    }
                }
            }
        }
    }
}
