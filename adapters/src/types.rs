//! The vocabulary shared by every adapter: machine states, status snapshots,
//! job commands and the [`MachineLink`] trait a protocol implements.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::AdapterError;

/// The state a machine reports, after the profile's state map is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Idle,
    Running,
    Done,
    Fault,
    Paused,
}

impl RunState {
    /// Every state, in declaration order.
    pub const ALL: [RunState; 5] = [
        RunState::Idle,
        RunState::Running,
        RunState::Done,
        RunState::Fault,
        RunState::Paused,
    ];

    /// The lowercase name used in profiles and on the wire (`"idle"`...).
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Idle => "idle",
            RunState::Running => "running",
            RunState::Done => "done",
            RunState::Fault => "fault",
            RunState::Paused => "paused",
        }
    }

    /// Parses a lowercase state name as written in a profile's `map`.
    pub fn from_name(name: &str) -> Option<RunState> {
        RunState::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One poll of a machine: what it says it is doing, and for which job token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineStatus {
    pub state: RunState,
    /// The job token the machine shows: its `token_echo` signal when the
    /// profile has one, otherwise the `job_token` register the start writes
    /// (0 when none ever was).
    pub job_token: u32,
    /// Raw counter values, as the profile's `counts` says (per job, or
    /// lifetime totals wrapping at the register width).
    pub good_count: u32,
    pub scrap_count: u32,
    /// `None` when the profile has no `fault_code` signal.
    pub fault_code: Option<u32>,
    /// Percent (0..=100); `None` when the profile has no `progress` signal.
    pub progress_percent: Option<f64>,
}

/// What to load onto a machine when starting a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCommand {
    /// Fencing token, read back in every status so a job is never started twice.
    pub job_token: u32,
    pub recipe: u32,
    pub quantity: u32,
}

/// One live connection to one machine, speaking its protocol.
///
/// A link translates; it never decides. It holds no retry or reconnect logic:
/// after a [`AdapterError::breaks_connection`] error the caller drops it and
/// connects a new one (see [`crate::driver`]).
#[async_trait]
pub trait MachineLink: Send {
    /// Reads every status signal once.
    async fn read_status(&mut self) -> Result<MachineStatus, AdapterError>;
    /// Runs the profile's `start` steps with the command's values. Not
    /// idempotent: after any error, read the status (job token) before retrying.
    async fn start_job(&mut self, cmd: &JobCommand) -> Result<(), AdapterError>;
    /// Runs the profile's `acknowledge` steps (done → idle). A profile
    /// without them gets [`AdapterError::Profile`].
    async fn acknowledge(&mut self) -> Result<(), AdapterError>;
    /// Resolves when the machine has pushed news worth reading now, before
    /// the next poll (an MQTT report that changed its state, token, counts
    /// or fault). Cancel-safe. Links that only answer reads (Modbus) never
    /// resolve: the default.
    async fn news(&mut self) {
        std::future::pending::<()>().await
    }
}
