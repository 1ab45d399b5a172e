//! fabflow-sim: a simulated microfactory network that speaks only the wire.
//! Machines are real Modbus TCP servers laid out by machine profiles, or
//! MQTT clients publishing JSON reports the profiles describe; order
//! bursts are real HTTP requests; couriers poll their schedules and confirm
//! stops over HTTP (running late, missing customers, fumbling codes and
//! dropping out by seeded chance); customers ask for returns and an operator
//! inspects them.
//!
//! Architecture invariant: the simulator reads profiles (addresses, types) but
//! does its own register encoding, never the adapter's, so an encoding bug in
//! an adapter shows up as a failing compliance test.

pub mod burst;
pub mod control;
pub mod couriers;
pub mod faults;
pub mod fleet;
pub mod machine;
pub mod mqtt_machine;
pub mod returns;
pub mod season;
mod wire;

pub use burst::{BurstReport, fire, generate_orders};
pub use couriers::{
    CodeSource, CourierConfig, CourierCounts, CourierFaults, CourierReport, CourierSpec,
};
pub use faults::{FaultSpec, JamSpec, PowerLossSpec};
pub use fleet::{
    FactorySpec, Fleet, FleetSpec, MachineSpec, SimControlError, SimMachineInfo, SimMachineStatus,
    SimMqttInfo,
};
pub use machine::{SimMachine, SimMachineConfig, SimMachineHandle, SimSnapshot};
pub use mqtt_machine::{SimMqttHandle, SimMqttLogin, SimMqttMachine, SimMqttSnapshot};
pub use returns::{ReturnsReport, ReturnsSpec};
pub use season::{PlanScore, SeasonSpec};

use thiserror::Error;

/// Why the simulator could not start or load something.
#[derive(Debug, Error)]
pub enum SimError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("fleet spec {origin}: {message}")]
    Spec { origin: String, message: String },
    #[error("machine {machine}: no profile for model `{model}`")]
    UnknownModel { machine: String, model: String },
    #[error("machine id `{0}` is used twice")]
    DuplicateMachine(String),
    #[error("machine {machine}: {message}")]
    InvalidMachine { machine: String, message: String },
}
