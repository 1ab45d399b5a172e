//! Handoffs: one stop of a courier's route (a pickup at a factory or a
//! drop-off at a customer). `planned → done`, or `planned → missed` (the order
//! goes back to the next planning wave). `done` and `missed` never change.

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoffInput {
    Confirm,
    Miss,
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
        let table = [
            (S::Planned, I::Confirm, Some(S::Done)),
            (S::Planned, I::Miss, Some(S::Missed)),
            (S::Done, I::Confirm, None),
            (S::Done, I::Miss, None),
            (S::Missed, I::Confirm, None),
            (S::Missed, I::Miss, None),
        ];
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
