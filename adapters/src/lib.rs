//! Machine adapters for fabflow: machine profiles, the [`MachineLink`] trait a
//! protocol implements, the Modbus TCP and MQTT links, and the one generic
//! [`driver`] that owns reconnect, backoff, polling and timeouts.
//!
//! Invariant: adapters translate, they never decide. Nothing here knows about
//! orders, jobs or the daemon's store; a link only reads and writes signals
//! named by a [`profile::Profile`].

pub mod driver;
pub mod error;
pub mod modbus;
pub mod mqtt;
pub mod profile;
mod types;

pub use driver::{Connector, DriverConfig, MachineDriver, MachineFact, MachineHandle};
pub use error::{AdapterError, DeviceErrorCode};
pub use modbus::{ModbusConnector, ModbusLink, decode_status, status_from_reads};
pub use mqtt::{MqttBroker, MqttConnector, MqttLink};
pub use profile::{Profile, ProfileError, ProfileErrors, builtin_profiles, load_dir, read_dir};
pub use types::{JobCommand, MachineLink, MachineStatus, RunState};
