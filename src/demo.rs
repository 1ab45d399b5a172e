//! The demo's wiring: the machines of a simulated fleet as configuration.

use crate::config::MachineConfig;

/// One configured machine per simulated machine, polled every `poll_interval_ms`.
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
        })
        .collect()
}
