//! The demo's wiring: the machines of a simulated fleet as configuration.
//! Modbus machines run before the daemon starts (it connects to them); MQTT
//! machines are configured here too, and started once the daemon's broker
//! runs and their logins exist.

use crate::config::MachineConfig;

/// One configured machine per simulated Modbus machine, polled every `poll_interval_ms`.
pub fn machines(
    fleet: &fabflow_sim::Fleet,
    poll_interval_ms: u64,
    request_timeout_ms: u64,
) -> Vec<MachineConfig> {
    fleet
        .machines()
        .into_iter()
        .map(|m| MachineConfig {
            id: m.machine_id,
            factory: m.factory_id,
            model: m.model,
            address: Some(m.addr),
            serial: None,
            materials: None,
            poll_interval_ms,
            request_timeout_ms,
            calendar: None,
            speed: 1.0,
            setup_minutes: 0.0,
        })
        .collect()
}

/// One configured machine per MQTT machine of `spec` (its serial is its id).
pub fn mqtt_machines(
    spec: &fabflow_sim::FleetSpec,
    profiles: &[fabflow_adapters::Profile],
    poll_interval_ms: u64,
    request_timeout_ms: u64,
) -> Vec<MachineConfig> {
    fabflow_sim::Fleet::mqtt_machines_of(spec, profiles)
        .into_iter()
        .map(|m| MachineConfig {
            id: m.machine_id,
            factory: m.factory_id,
            model: m.model,
            address: None,
            serial: Some(m.serial),
            materials: None,
            poll_interval_ms,
            request_timeout_ms,
            calendar: None,
            speed: 1.0,
            setup_minutes: 0.0,
        })
        .collect()
}
