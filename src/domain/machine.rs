//! Machines: what the machine reports (its observed state) and what the
//! operator decided (its mode), kept apart so that neither overwrites the other.
//!
//! The observed state follows every report, except that a machine which has
//! not reacted to a command within its profile's timeout is `stuck` until it
//! does (the supervisor decides that, see `reconcile::reacted`); the mode
//! changes only by an
//! operator's command and refuses commands that make no sense (resume an
//! active machine, pause one in maintenance).

use super::{Event, TransitionError};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What fabflow last saw of the machine, or `offline` when it cannot reach it.
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
pub enum MachineState {
    Offline,
    Idle,
    Running,
    Paused,
    Fault,
    Maintenance,
    /// Did not react to a command (a start, an acknowledge) in time. Takes
    /// no jobs; leaves this state when the machine reacts.
    Stuck,
}

/// A state as the machine reports it (the signal `state` of its profile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reported {
    Idle,
    Running,
    /// Finished a job and waits for it to be acknowledged.
    Done,
    Fault,
    Paused,
}

/// What the operator decided.
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
pub enum MachineMode {
    /// Takes new jobs.
    Active,
    /// Finishes what it runs, takes nothing new.
    Paused,
    /// Out of service for maintenance.
    Maintenance,
    /// Works through the jobs already in its queue, takes nothing new, and
    /// is paused once its queue is empty.
    Draining,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineInput {
    Reported(Reported),
    Disconnected,
    /// Connected and reporting, but it has not reacted to the last command
    /// within its timeout.
    Unresponsive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeInput {
    Pause,
    Resume,
    StartMaintenance,
    EndMaintenance,
    /// Finish the queue, then pause.
    Drain,
}

impl MachineState {
    pub const ALL: [MachineState; 7] = [
        MachineState::Offline,
        MachineState::Idle,
        MachineState::Running,
        MachineState::Paused,
        MachineState::Fault,
        MachineState::Maintenance,
        MachineState::Stuck,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MachineState::Offline => "offline",
            MachineState::Idle => "idle",
            MachineState::Running => "running",
            MachineState::Paused => "paused",
            MachineState::Fault => "fault",
            MachineState::Maintenance => "maintenance",
            MachineState::Stuck => "stuck",
        }
    }

    /// Follows a report. Every observation is accepted; an event is emitted
    /// only when the state changes.
    pub fn handle(self, input: MachineInput) -> (MachineState, Vec<Event>) {
        let next = match input {
            MachineInput::Disconnected => MachineState::Offline,
            MachineInput::Unresponsive => MachineState::Stuck,
            MachineInput::Reported(Reported::Idle) => MachineState::Idle,
            MachineInput::Reported(Reported::Running | Reported::Done) => MachineState::Running,
            MachineInput::Reported(Reported::Fault) => MachineState::Fault,
            MachineInput::Reported(Reported::Paused) => MachineState::Paused,
        };
        let events = if next == self {
            Vec::new()
        } else {
            vec![Event::MachineStateChanged {
                from: self,
                to: next,
            }]
        };
        (next, events)
    }

    /// Follows a report with the fault code it shows (`old_fault`: the code
    /// recorded before): as [`MachineState::handle`], plus `machine.faulted`
    /// when the machine enters a fault or shows a new code while in one.
    pub fn observe(
        self,
        input: MachineInput,
        fault_code: Option<u32>,
        old_fault: Option<u32>,
    ) -> (MachineState, Vec<Event>) {
        let (next, mut events) = self.handle(input);
        if next == MachineState::Fault && (self != MachineState::Fault || fault_code != old_fault) {
            events.push(Event::MachineFaulted { fault_code });
        }
        (next, events)
    }

    /// The state shown to people: the operator's mode wins over the report.
    pub fn effective(self, mode: MachineMode) -> MachineState {
        match mode {
            MachineMode::Active | MachineMode::Draining => self,
            MachineMode::Paused => MachineState::Paused,
            MachineMode::Maintenance => MachineState::Maintenance,
        }
    }

    /// Whether the planner may queue new jobs on the machine.
    pub fn accepts_jobs(self, mode: MachineMode) -> bool {
        mode == MachineMode::Active && matches!(self, MachineState::Idle | MachineState::Running)
    }
}

impl MachineMode {
    pub const ALL: [MachineMode; 4] = [
        MachineMode::Active,
        MachineMode::Paused,
        MachineMode::Maintenance,
        MachineMode::Draining,
    ];

    /// Whether its queued jobs are still started (active, or draining).
    pub fn works_its_queue(self) -> bool {
        matches!(self, MachineMode::Active | MachineMode::Draining)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MachineMode::Active => "active",
            MachineMode::Paused => "paused",
            MachineMode::Maintenance => "maintenance",
            MachineMode::Draining => "draining",
        }
    }

    pub fn handle(self, input: ModeInput) -> Result<MachineMode, TransitionError> {
        use MachineMode as M;
        use ModeInput as I;
        match (self, input) {
            (M::Active | M::Draining, I::Pause) => Ok(M::Paused),
            (M::Paused | M::Draining, I::Resume) => Ok(M::Active),
            (M::Active, I::Drain) => Ok(M::Draining),
            (M::Active | M::Paused | M::Draining, I::StartMaintenance) => Ok(M::Maintenance),
            (M::Maintenance, I::EndMaintenance) => Ok(M::Active),
            (from, input) => Err(TransitionError::new("machine mode", from, input)),
        }
    }
}

impl fmt::Display for MachineState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for MachineMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MachineState {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        MachineState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| format!("unknown machine state {text:?}"))
    }
}

impl FromStr for MachineMode {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        MachineMode::ALL
            .into_iter()
            .find(|mode| mode.as_str() == text)
            .ok_or_else(|| format!("unknown machine mode {text:?}"))
    }
}

/// Why a machine of `model` cannot have `material` loaded, if it cannot:
/// `materials` are the machine's (its profile's, or the subset its
/// configuration gives).
pub fn material_refusal(model: &str, materials: &[String], material: &str) -> Option<String> {
    if material.trim().is_empty() {
        return Some("must name a material".into());
    }
    if materials.iter().any(|m| m == material) {
        return None;
    }
    Some(format!(
        "cannot use {material:?}: its materials (model {model}, as configured) are {}",
        if materials.is_empty() {
            "no material".to_string()
        } else {
            materials.join(", ")
        }
    ))
}

/// Whether a machine with `loaded` material (None: not declared) starts a
/// job of `material`: an unknown material starts anything, as before
/// operators declared materials; a known one only its own jobs.
pub fn material_fits(loaded: Option<&str>, material: &str) -> bool {
    loaded.is_none_or(|loaded| loaded == material)
}

#[cfg(test)]
mod tests {
    use super::*;
    use MachineInput::{Disconnected, Reported as R};
    use MachineState as S;

    fn check(from: MachineState, input: MachineInput, to: MachineState) {
        let (next, events) = from.handle(input);
        assert_eq!(next, to, "{from} + {input:?}");
        assert_eq!(events.is_empty(), from == to, "event iff the state changed");
    }

    #[test]
    fn observed_state_follows_reports() {
        check(S::Offline, R(Reported::Idle), S::Idle);
        check(S::Idle, R(Reported::Running), S::Running);
        check(S::Running, R(Reported::Done), S::Running);
        check(S::Running, R(Reported::Idle), S::Idle);
        check(S::Running, R(Reported::Fault), S::Fault);
        check(S::Fault, R(Reported::Idle), S::Idle);
        check(S::Idle, R(Reported::Paused), S::Paused);
        check(S::Idle, R(Reported::Idle), S::Idle);
        for state in MachineState::ALL {
            check(state, Disconnected, S::Offline);
            check(state, MachineInput::Unresponsive, S::Stuck);
        }
        // Stuck until the supervisor sees a reaction and reports again.
        check(S::Stuck, R(Reported::Idle), S::Idle);
        check(S::Stuck, R(Reported::Running), S::Running);
    }

    #[test]
    fn a_fault_is_announced_with_its_code() {
        let faulted = |code| Event::MachineFaulted { fault_code: code };
        let fault = R(Reported::Fault);
        let (next, events) = S::Running.observe(fault, Some(42), None);
        assert_eq!(next, S::Fault);
        assert_eq!(events.len(), 2);
        assert_eq!(events[1], faulted(Some(42)));
        // Still the same fault: nothing new.
        assert!(S::Fault.observe(fault, Some(42), Some(42)).1.is_empty());
        // Another code while in fault: announced, no state change.
        assert_eq!(
            S::Fault.observe(fault, Some(7), Some(42)).1,
            vec![faulted(Some(7))]
        );
        // Leaving the fault: only the state change.
        let (next, events) = S::Fault.observe(R(Reported::Idle), None, Some(42));
        assert_eq!(next, S::Idle);
        assert_eq!(events.len(), 1);
        assert!(S::Idle.observe(Disconnected, None, None).1.len() == 1);
    }

    #[test]
    fn modes() {
        use MachineMode as M;
        use ModeInput as I;
        let table = [
            (M::Active, I::Pause, Some(M::Paused)),
            (M::Active, I::Resume, None),
            (M::Active, I::StartMaintenance, Some(M::Maintenance)),
            (M::Active, I::EndMaintenance, None),
            (M::Paused, I::Pause, None),
            (M::Paused, I::Resume, Some(M::Active)),
            (M::Paused, I::StartMaintenance, Some(M::Maintenance)),
            (M::Paused, I::EndMaintenance, None),
            (M::Maintenance, I::Pause, None),
            (M::Maintenance, I::Resume, None),
            (M::Maintenance, I::StartMaintenance, None),
            (M::Maintenance, I::EndMaintenance, Some(M::Active)),
            (M::Active, I::Drain, Some(M::Draining)),
            (M::Paused, I::Drain, None),
            (M::Maintenance, I::Drain, None),
            (M::Draining, I::Drain, None),
            (M::Draining, I::Pause, Some(M::Paused)),
            (M::Draining, I::Resume, Some(M::Active)),
            (M::Draining, I::StartMaintenance, Some(M::Maintenance)),
            (M::Draining, I::EndMaintenance, None),
        ];
        for (from, input, expected) in table {
            assert_eq!(from.handle(input).ok(), expected, "{from} + {input:?}");
        }
    }

    #[test]
    fn operator_mode_wins_and_gates_new_jobs() {
        assert_eq!(S::Running.effective(MachineMode::Paused), S::Paused);
        assert_eq!(S::Idle.effective(MachineMode::Maintenance), S::Maintenance);
        assert_eq!(S::Fault.effective(MachineMode::Active), S::Fault);
        assert!(S::Idle.accepts_jobs(MachineMode::Active));
        assert!(S::Running.accepts_jobs(MachineMode::Active));
        assert!(!S::Idle.accepts_jobs(MachineMode::Paused));
        assert!(!S::Fault.accepts_jobs(MachineMode::Active));
        assert!(!S::Offline.accepts_jobs(MachineMode::Active));
        assert!(!S::Stuck.accepts_jobs(MachineMode::Active));
        // Draining: works its queue, shows its own state, takes nothing new.
        assert_eq!(S::Running.effective(MachineMode::Draining), S::Running);
        assert!(!S::Idle.accepts_jobs(MachineMode::Draining));
        assert!(MachineMode::Draining.works_its_queue());
        assert!(!MachineMode::Paused.works_its_queue());
    }

    #[test]
    fn names_round_trip() {
        for state in MachineState::ALL {
            assert_eq!(state.as_str().parse::<MachineState>(), Ok(state));
        }
        for mode in MachineMode::ALL {
            assert_eq!(mode.as_str().parse::<MachineMode>(), Ok(mode));
        }
    }

    #[test]
    fn materials_a_model_cannot_use_are_refused_with_what_it_can() {
        let materials = vec!["cotton_tee".to_string(), "tote".to_string()];
        assert_eq!(material_refusal("acme", &materials, "tote"), None);
        let refused = material_refusal("acme", &materials, "pla").unwrap_or_default();
        assert!(
            refused.contains("acme") && refused.contains("\"pla\""),
            "{refused}"
        );
        assert!(refused.contains("cotton_tee, tote"), "{refused}");
        assert!(material_refusal("acme", &materials, " ").is_some());
        assert!(material_refusal("bare", &[], "tote").is_some_and(|r| r.contains("no material")));
    }

    #[test]
    fn a_known_material_starts_only_its_own_jobs() {
        assert!(material_fits(None, "tote"));
        assert!(material_fits(Some("tote"), "tote"));
        assert!(!material_fits(Some("cotton_tee"), "tote"));
    }
}
