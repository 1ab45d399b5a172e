//! Handoffs: one stop of a courier's route (a pickup at a factory or a
//! drop-off at a customer). `planned → done` (confirmed with the stop's
//! code), `planned → missed` (never confirmed; the order goes back to the
//! next planning wave), `planned → failed` (an attempt that failed, with its
//! reason), `planned → locked` (too many wrong codes) and `locked → planned`
//! (an operator released it). `done`, `missed` and `failed` never change.
//!
//! The rules around them are pure functions here: when wrong codes lock a
//! stop ([`locks_after`]) and what follows a failed attempt
//! ([`after_failed_attempt`]).

use super::{Event, HOUR_MS, Millis, TransitionError};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HandoffKind {
    Pickup,
    Dropoff,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HandoffState {
    Planned,
    Done,
    Missed,
    /// A courier reported a failed attempt.
    Failed,
    /// Too many wrong codes: waits for an operator's release.
    Locked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoffInput {
    Confirm,
    Miss,
    Fail(FailureReason),
    /// The `wrong_codes`-th wrong code reached the limit.
    Lock {
        wrong_codes: u32,
    },
    Release,
}

/// Why a courier could not complete a stop.
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
pub enum FailureReason {
    NotHome,
    WrongAddress,
    Refused,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::NotHome => "not_home",
            FailureReason::WrongAddress => "wrong_address",
            FailureReason::Refused => "refused",
        }
    }
}

impl FromStr for FailureReason {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [
            FailureReason::NotHome,
            FailureReason::WrongAddress,
            FailureReason::Refused,
        ]
        .into_iter()
        .find(|reason| reason.as_str() == text)
        .ok_or_else(|| format!("unknown failure reason {text:?}"))
    }
}

/// Whether the `wrong_codes`-th wrong code locks a stop, with at most
/// `max_wrong_codes` allowed.
pub fn locks_after(wrong_codes: u32, max_wrong_codes: u32) -> bool {
    wrong_codes >= max_wrong_codes
}

/// What follows a failed attempt at an order's stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Planned again in the next wave.
    Replan,
    /// No more attempts: the order waits for people (operator and brand).
    Escalate,
}

/// After the order's `attempts`-th failed attempt, with at most
/// `max_attempts` allowed.
pub fn after_failed_attempt(attempts: u32, max_attempts: u32) -> AfterFailure {
    if attempts >= max_attempts {
        AfterFailure::Escalate
    } else {
        AfterFailure::Replan
    }
}

/// How long after its ETA an unconfirmed pickup counts as missed (domain time).
pub const MISSED_AFTER_MS: Millis = 2 * HOUR_MS;

/// The shortest window a drop-off is shown with (when its ETA is at or past
/// the order's deadline).
pub const MIN_DROPOFF_WINDOW_MS: Millis = HOUR_MS / 2;

/// The time window of a stop, as couriers are shown it: from its ETA until a
/// pickup counts as missed, or until the order's deadline for a drop-off
/// (at least [`MIN_DROPOFF_WINDOW_MS`], so the window is never empty).
pub fn stop_window(kind: HandoffKind, eta_ms: Millis, deadline_ms: Millis) -> (Millis, Millis) {
    let end = match kind {
        HandoffKind::Pickup => eta_ms.saturating_add(MISSED_AFTER_MS),
        HandoffKind::Dropoff => deadline_ms.max(eta_ms.saturating_add(MIN_DROPOFF_WINDOW_MS)),
    };
    (eta_ms, end)
}

impl HandoffKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HandoffKind::Pickup => "pickup",
            HandoffKind::Dropoff => "dropoff",
        }
    }
}

impl HandoffState {
    pub fn as_str(self) -> &'static str {
        match self {
            HandoffState::Planned => "planned",
            HandoffState::Done => "done",
            HandoffState::Missed => "missed",
            HandoffState::Failed => "failed",
            HandoffState::Locked => "locked",
        }
    }

    pub fn handle(
        self,
        input: HandoffInput,
    ) -> Result<(HandoffState, Vec<Event>), TransitionError> {
        match (self, input) {
            (HandoffState::Planned, HandoffInput::Confirm) => {
                Ok((HandoffState::Done, vec![Event::HandoffConfirmed]))
            }
            (HandoffState::Planned, HandoffInput::Miss) => {
                Ok((HandoffState::Missed, vec![Event::HandoffMissed]))
            }
            (HandoffState::Planned, HandoffInput::Fail(reason)) => {
                Ok((HandoffState::Failed, vec![Event::HandoffFailed { reason }]))
            }
            (HandoffState::Planned, HandoffInput::Lock { wrong_codes }) => Ok((
                HandoffState::Locked,
                vec![Event::HandoffLocked { wrong_codes }],
            )),
            (HandoffState::Locked, HandoffInput::Release) => {
                Ok((HandoffState::Planned, vec![Event::HandoffReleased]))
            }
            (from, input) => Err(TransitionError::new("handoff", from, input)),
        }
    }
}

impl fmt::Display for HandoffState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HandoffState {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [
            HandoffState::Planned,
            HandoffState::Done,
            HandoffState::Missed,
            HandoffState::Failed,
            HandoffState::Locked,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
        .ok_or_else(|| format!("unknown handoff state {text:?}"))
    }
}

impl FromStr for HandoffKind {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [HandoffKind::Pickup, HandoffKind::Dropoff]
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| format!("unknown handoff kind {text:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions() {
        use HandoffInput as I;
        use HandoffState as S;
        let fail = I::Fail(FailureReason::NotHome);
        let lock = I::Lock { wrong_codes: 5 };
        let table = [
            (S::Planned, I::Confirm, Some(S::Done)),
            (S::Planned, I::Miss, Some(S::Missed)),
            (S::Planned, fail, Some(S::Failed)),
            (S::Planned, lock, Some(S::Locked)),
            (S::Planned, I::Release, None),
            (S::Locked, I::Release, Some(S::Planned)),
            (S::Locked, I::Confirm, None),
            (S::Locked, I::Miss, None),
            (S::Locked, fail, None),
            (S::Locked, lock, None),
        ];
        let table = table
            .into_iter()
            .chain(
                [S::Done, S::Missed, S::Failed]
                    .into_iter()
                    .flat_map(|terminal| {
                        [I::Confirm, I::Miss, fail, lock, I::Release]
                            .map(|input| (terminal, input, None))
                    }),
            );
        for (from, input, expected) in table {
            assert_eq!(
                from.handle(input).ok().map(|(next, _)| next),
                expected,
                "{from} + {input:?}"
            );
        }
        assert_eq!("done".parse::<S>(), Ok(S::Done));
        assert_eq!("pickup".parse::<HandoffKind>(), Ok(HandoffKind::Pickup));
    }

    #[test]
    fn wrong_codes_lock_at_the_limit_and_failures_escalate_after_the_last_attempt() {
        assert!(!locks_after(4, 5));
        assert!(locks_after(5, 5));
        assert_eq!(after_failed_attempt(1, 3), AfterFailure::Replan);
        assert_eq!(after_failed_attempt(3, 3), AfterFailure::Escalate);
        assert_eq!("refused".parse(), Ok(FailureReason::Refused));
        assert_eq!("locked".parse::<HandoffState>(), Ok(HandoffState::Locked));
    }

    #[test]
    fn windows_run_from_the_eta_and_are_never_empty() {
        use HandoffKind::{Dropoff, Pickup};
        assert_eq!(
            stop_window(Pickup, 1_000, 0),
            (1_000, 1_000 + MISSED_AFTER_MS)
        );
        assert_eq!(stop_window(Dropoff, 1_000, 9_000_000), (1_000, 9_000_000));
        assert_eq!(
            stop_window(Dropoff, 9_000_000, 1_000),
            (9_000_000, 9_000_000 + MIN_DROPOFF_WINDOW_MS)
        );
    }
}
