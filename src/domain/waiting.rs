//! Why a job that is not running waits, as operators read it: one reason,
//! a sentence, and where it is known the machine, its place in that
//! machine's queue and when it should start and finish.

use super::Millis;
use serde::Serialize;

/// The reason a job is not running (yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WaitReason {
    /// An earlier step of its line is not done.
    PreviousStep,
    /// No machine of its factory does its process with its material.
    NoCapableMachine,
    /// Every capable machine is paused, in maintenance, faulted, stuck or
    /// offline.
    NoMachineAvailable,
    /// Capable machines work, but their queues are full; it is placed when
    /// one has room (earliest deadline first).
    QueuesFull,
    /// Its material is not the one loaded: on its machine (queued), or on
    /// every capable machine (pending). An operator loads it.
    MaterialNotLoaded,
    /// First in its machine's queue, outside the machine's shift; the
    /// estimate is when the next shift opens.
    OutsideShift,
    /// First in its machine's queue, and its estimated run would meet a
    /// planned maintenance window; the estimate is after it.
    Maintenance,
    /// First in its machine's queue, which is free, but the start-up draws
    /// of its factory's machines starting now leave no room in the
    /// factory's power budget; the estimate is when there is.
    PowerBudget,
    /// In a machine's queue behind other jobs.
    Queued,
    /// In the queue of a machine that is paused or in maintenance.
    MachinePaused,
    /// In the queue of a machine that is faulted or stuck.
    MachineFaulted,
    /// In the queue of a machine fabflow cannot reach.
    MachineOffline,
    /// Sent to its machine, which has not started it yet.
    Starting,
    /// Stopped by its machine; waits for it to resume, or for an operator.
    Held,
}

/// Why one job waits.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub reason: WaitReason,
    /// The same, said in a sentence that names machines and steps.
    pub detail: String,
    /// The machine whose queue it is in (or would be in first).
    pub machine: Option<String>,
    /// 1 for the next job the machine takes.
    pub position: Option<usize>,
    pub estimated_start_ms: Option<Millis>,
    pub estimated_finish_ms: Option<Millis>,
}
