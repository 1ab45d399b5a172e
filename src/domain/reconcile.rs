//! What a machine's report means for a job the store has on that machine.
//!
//! The rule that keeps a job from being produced twice: a job stored as
//! dispatched, running or held is moved only on what the machine shows. A
//! machine showing the job's token has (or had) the job. One showing another
//! token does not have it now, but may have had it: a machine that lost
//! power comes back without its job, and after a daemon crash nobody knows
//! whether the start went out. So a job whose start outcome is unknown is
//! never requeued under its token: it fails and its token is retired (its
//! units made again under new tokens). A job seen running that its machine
//! stops (a fault, a reset, a power loss) is held: it waits for the machine
//! to resume the same token or for an operator's decision.

use super::{HoldCause, JobInput, JobState, JobToken, MachineState, Reported};

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
    use JobState as J;
    use Reported as R;
    // The token may have reached the machine: never start it again.
    let retire = Some(JobInput::MachineAborted { fault_code: None });
    let held = |cause, counts| {
        Some(JobInput::MachineHeld {
            cause,
            fault_code: if cause == HoldCause::Fault {
                shown.fault_code
            } else {
                None
            },
            counts,
        })
    };
    let counts = Some((shown.good, shown.scrap));
    if shown.token == token.0 {
        return match (shown.state, state) {
            (R::Running | R::Paused, J::Dispatched) => Some(JobInput::MachineStarted),
            // The machine resumed the same job: its counts continue.
            (R::Running | R::Paused, J::Held) => Some(JobInput::MachineResumed),
            (R::Running | R::Paused, _) => None,
            (R::Done, _) => Some(JobInput::MachineFinished {
                good: shown.good,
                scrap: shown.scrap,
            }),
            (R::Fault, J::Held) => None,
            (R::Fault, _) => held(HoldCause::Fault, counts),
            // Seen running, now idle with its token: finished jobs are
            // acknowledged only once stored as done, so the machine dropped it.
            (R::Idle, J::Running) => held(HoldCause::Reset, counts),
            // Token loaded, machine idle: the start was cut short, or the
            // job ran before a power loss on a machine that keeps its
            // registers. Unknown (or never reacted to): retire the token.
            (R::Idle, J::Dispatched) if start != Start::Recent => retire,
            (R::Idle, _) => None,
        };
    }
    match (start, state) {
        // Held: waits for the machine or an operator, whatever it runs now.
        (_, J::Held) => None,
        // The report may have been read before our start.
        (Start::Recent, _) => None,
        // The start may or may not have reached the machine before it lost
        // it (power loss, crash): the token is retired, never reused.
        (_, J::Dispatched) => retire,
        // Seen running, and the machine shows another job: it lost ours
        // (counts as last recorded).
        _ => held(HoldCause::Lost, None),
    }
}

/// The units the machine shows for a running job when they moved past
/// those recorded (`recorded`): recorded as it goes, so a job whose machine
/// later forgets it keeps the units it was seen to make.
pub fn progressed(
    shown: Shown,
    token: JobToken,
    state: JobState,
    recorded: (u32, u32),
) -> Option<(u32, u32)> {
    let on_it = shown.token == token.0
        && state == JobState::Running
        && matches!(shown.state, Reported::Running | Reported::Paused);
    let moved = shown.good > recorded.0 || shown.scrap > recorded.1;
    (on_it && moved).then_some((shown.good.max(recorded.0), shown.scrap.max(recorded.1)))
}

/// Why an operator may not resume a held job whose machine last showed
/// `machine_token` in `machine_state`, or None if they may: the machine
/// must still show the job (a machine that forgot it cannot go on with it:
/// abandon it instead) and must not still be in fault or unreachable.
pub fn resume_refusal(
    token: JobToken,
    machine_token: Option<i64>,
    machine_state: MachineState,
) -> Option<String> {
    if machine_token != Some(i64::from(token.0)) {
        let shows = machine_token.map_or_else(|| "no token".to_string(), |t| format!("token {t}"));
        return Some(format!(
            "the machine no longer has job {token} (it shows {shows}); abandon the job to make its units again"
        ));
    }
    match machine_state {
        MachineState::Fault => Some(format!(
            "the machine still reports a fault; clear it at the machine before resuming job {token}"
        )),
        MachineState::Offline => Some(format!(
            "the machine is offline; job {token} can be resumed once it is back"
        )),
        _ => None,
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

    fn held(cause: HoldCause, counts: Option<(u32, u32)>) -> Option<JobInput> {
        Some(JobInput::MachineHeld {
            cause,
            fault_code: (cause == HoldCause::Fault).then_some(9),
            counts,
        })
    }

    #[test]
    fn the_machine_shows_our_token() {
        let finished = Some(JobInput::MachineFinished { good: 4, scrap: 1 });
        let faulted = held(HoldCause::Fault, Some((4, 1)));
        let reset = held(HoldCause::Reset, Some((4, 1)));
        let retired = Some(JobInput::MachineAborted { fault_code: None });
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
            check(R::Fault, MINE, J::Dispatched, start, faulted.clone());
            check(R::Idle, MINE, J::Running, start, reset.clone());
            // A held job: resumed by the machine, finished, or still waiting.
            check(
                R::Running,
                MINE,
                J::Held,
                start,
                Some(JobInput::MachineResumed),
            );
            check(
                R::Paused,
                MINE,
                J::Held,
                start,
                Some(JobInput::MachineResumed),
            );
            check(R::Done, MINE, J::Held, start, finished.clone());
            check(R::Fault, MINE, J::Held, start, None);
            check(R::Idle, MINE, J::Held, start, None);
        }
        // Loaded but idle: a start of unknown outcome is never made again
        // under its token; one that never reacted is retired too.
        check(
            R::Idle,
            MINE,
            J::Dispatched,
            Start::Unknown,
            retired.clone(),
        );
        check(R::Idle, MINE, J::Dispatched, Start::Recent, None);
        check(R::Idle, MINE, J::Dispatched, Start::Settled, retired);
    }

    #[test]
    fn the_machine_shows_another_token() {
        let retired = Some(JobInput::MachineAborted { fault_code: None });
        let lost = held(HoldCause::Lost, None);
        for reported in [R::Idle, R::Running, R::Done, R::Fault] {
            // A power loss after a crash: the start may have happened, so
            // the job is never requeued under its token.
            check(
                reported,
                OTHER,
                J::Dispatched,
                Start::Unknown,
                retired.clone(),
            );
            check(reported, OTHER, J::Dispatched, Start::Recent, None);
            check(
                reported,
                OTHER,
                J::Dispatched,
                Start::Settled,
                retired.clone(),
            );
            check(reported, OTHER, J::Running, Start::Unknown, lost.clone());
            check(reported, OTHER, J::Running, Start::Settled, lost.clone());
            check(reported, OTHER, J::Running, Start::Recent, None);
            for start in [Start::Unknown, Start::Recent, Start::Settled] {
                check(reported, OTHER, J::Held, start, None);
            }
        }
    }

    #[test]
    fn an_operator_resumes_only_a_job_its_machine_still_has() {
        let mine = JobToken(MINE);
        let table = [
            (Some(i64::from(MINE)), MachineState::Idle, true),
            (Some(i64::from(MINE)), MachineState::Paused, true),
            (Some(i64::from(MINE)), MachineState::Running, true),
            (Some(i64::from(MINE)), MachineState::Fault, false),
            (Some(i64::from(MINE)), MachineState::Offline, false),
            (Some(i64::from(OTHER)), MachineState::Idle, false),
            (Some(0), MachineState::Idle, false),
            (None, MachineState::Idle, false),
        ];
        for (shown, state, allowed) in table {
            assert_eq!(
                resume_refusal(mine, shown, state).is_none(),
                allowed,
                "{shown:?} {state}"
            );
        }
    }

    #[test]
    fn progress_is_recorded_as_it_goes() {
        let shown = |state, token, good| Shown {
            state,
            token,
            good,
            scrap: 0,
            fault_code: None,
        };
        let mine = JobToken(MINE);
        assert_eq!(
            progressed(shown(R::Running, MINE, 3), mine, J::Running, (1, 0)),
            Some((3, 0))
        );
        assert_eq!(
            progressed(shown(R::Running, MINE, 1), mine, J::Running, (1, 0)),
            None
        );
        // A late report with fewer units never lowers the record.
        assert_eq!(
            progressed(shown(R::Running, MINE, 0), mine, J::Running, (2, 0)),
            None
        );
        assert_eq!(
            progressed(shown(R::Running, OTHER, 5), mine, J::Running, (1, 0)),
            None
        );
        assert_eq!(
            progressed(shown(R::Running, MINE, 5), mine, J::Dispatched, (0, 0)),
            None
        );
        assert_eq!(
            progressed(shown(R::Idle, MINE, 5), mine, J::Running, (0, 0)),
            None
        );
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
                for job in [J::Dispatched, J::Running, J::Held] {
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
