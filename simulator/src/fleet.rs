//! A fleet: factories of simulated machines started together from a
//! [`FleetSpec`] (TOML or [`FleetSpec::demo`]), each on 127.0.0.1:0.
//!
//! Invariant: every machine id is unique across the fleet; a job token started
//! twice anywhere in the fleet is reported by [`Fleet::duplicate_starts`].

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use fabflow_adapters::Profile;
use serde::{Deserialize, Serialize};

use crate::SimError;
use crate::faults::FaultSpec;
use crate::machine::{SimMachine, SimMachineConfig, SimMachineHandle};
use crate::mqtt_machine::{SimMqttHandle, SimMqttLogin, SimMqttMachine};

/// The whole simulated network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSpec {
    /// Seeds every machine's scrap RNG (mixed with the machine id).
    pub seed: u64,
    /// Simulated seconds per real second (> 0).
    pub time_scale: f64,
    pub factories: Vec<FactorySpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FactorySpec {
    pub id: String,
    pub machines: Vec<MachineSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineSpec {
    pub id: String,
    /// A profile's `model`.
    pub model: String,
    /// Simulated seconds per unit.
    pub cycle_seconds: f64,
    /// Probability that a unit is scrap, 0..=1.
    pub scrap_rate: f64,
    /// Injected faults (`faults` module); none by default.
    #[serde(default, skip_serializing_if = "is_default")]
    pub faults: FaultSpec,
}

fn is_default(faults: &FaultSpec) -> bool {
    *faults == FaultSpec::default()
}

impl FleetSpec {
    /// Parses a fleet spec (the same fields as the struct, in TOML).
    pub fn from_toml_str(text: &str, origin: &str) -> Result<FleetSpec, SimError> {
        toml::from_str(text).map_err(|err| SimError::Spec {
            origin: origin.to_string(),
            message: err.to_string(),
        })
    }

    pub fn load(path: impl AsRef<Path>) -> Result<FleetSpec, SimError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)?;
        FleetSpec::from_toml_str(&text, &path.display().to_string())
    }

    /// Three factories (north, centre, south), fifteen machines covering
    /// every builtin profile, more DTG printers and heat presses than
    /// others: twelve Modbus TCP machines and three MQTT ones (two heat
    /// presses speaking the generic JSON protocol, a networked 3D printer).
    /// Every machine `copies` times over (at least once): copy n (from 2)
    /// of machine `id` is `id-c<n>`, in the same factory, with the same
    /// model, cycle time, scrap rate and faults.
    pub fn replicate(&mut self, copies: u32) {
        for factory in &mut self.factories {
            let originals = factory.machines.clone();
            for n in 2..=copies {
                factory
                    .machines
                    .extend(originals.iter().map(|machine| MachineSpec {
                        id: format!("{}-c{n}", machine.id),
                        ..machine.clone()
                    }));
            }
        }
    }

    pub fn demo(seed: u64, time_scale: f64) -> FleetSpec {
        let machine = |id: &str, model: &str, cycle_seconds: f64, scrap_rate: f64| MachineSpec {
            id: id.to_string(),
            model: model.to_string(),
            cycle_seconds,
            scrap_rate,
            faults: FaultSpec::default(),
        };
        let dtg = |id: &str| machine(id, "acme-dtg-200", 90.0, 0.02);
        let press = |id: &str| machine(id, "heatwave-hp-40", 30.0, 0.01);
        let uv = |id: &str| machine(id, "lumen-uv-6", 60.0, 0.03);
        let fdm = |id: &str| machine(id, "forge-fdm-3", 600.0, 0.05);
        let json_press = |id: &str| machine(id, "generic-json", 30.0, 0.01);
        let printer = |id: &str| machine(id, "strata-p1", 480.0, 0.05);
        FleetSpec {
            seed,
            time_scale,
            factories: vec![
                FactorySpec {
                    id: "north".to_string(),
                    machines: vec![
                        dtg("north-dtg-1"),
                        dtg("north-dtg-2"),
                        press("north-press-1"),
                        press("north-press-2"),
                        uv("north-uv-1"),
                        json_press("north-press-3"),
                    ],
                },
                FactorySpec {
                    id: "centre".to_string(),
                    machines: vec![
                        dtg("centre-dtg-1"),
                        press("centre-press-1"),
                        uv("centre-uv-1"),
                        fdm("centre-fdm-1"),
                        printer("centre-printer-1"),
                    ],
                },
                FactorySpec {
                    id: "south".to_string(),
                    machines: vec![
                        dtg("south-dtg-1"),
                        press("south-press-1"),
                        uv("south-uv-1"),
                        json_press("south-press-2"),
                    ],
                },
            ],
        }
    }
}

/// Where one simulated machine listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimMachineInfo {
    pub factory_id: String,
    pub machine_id: String,
    pub model: String,
    pub addr: SocketAddr,
}

/// One simulated MQTT machine of a fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimMqttInfo {
    pub factory_id: String,
    pub machine_id: String,
    pub model: String,
    /// Fills the profile's `{serial}` topics (the machine id).
    pub serial: String,
}

/// One simulated machine as the control API shows it: what it does now,
/// its own start log and its injected faults.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimMachineStatus {
    pub id: String,
    pub factory: String,
    pub model: String,
    pub protocol: &'static str,
    pub state: String,
    pub job_token: u32,
    pub good: u32,
    pub scrap: u32,
    pub fault_code: u32,
    /// Every token started on it, in order.
    pub started: Vec<u32>,
    pub faults: FaultSpec,
}

/// Why a control request was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimControlError {
    #[error("no such machine")]
    UnknownMachine,
    #[error("invalid faults: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

/// A running fleet.
#[derive(Debug)]
pub struct Fleet {
    machines: Vec<(SimMachineInfo, SimMachineHandle)>,
    /// MQTT machines, started by [`Fleet::start_mqtt`] once the broker and
    /// their logins exist.
    mqtt: Vec<(SimMqttInfo, SimMqttHandle)>,
    /// Fleet-wide start counter, shared by every machine.
    sequence: Arc<AtomicU64>,
}

impl Fleet {
    /// Starts every Modbus machine of `spec` with the profile named by its
    /// model (the MQTT ones wait for [`Fleet::start_mqtt`]). On error,
    /// machines already started are shut down.
    pub async fn start(spec: &FleetSpec, profiles: &[Profile]) -> Result<Fleet, SimError> {
        let mut seen = BTreeSet::new();
        for machine in spec.factories.iter().flat_map(|f| &f.machines) {
            if !seen.insert(machine.id.as_str()) {
                return Err(SimError::DuplicateMachine(machine.id.clone()));
            }
            if !profiles.iter().any(|p| p.model == machine.model) {
                return Err(SimError::UnknownModel {
                    machine: machine.id.clone(),
                    model: machine.model.clone(),
                });
            }
            let problems = machine.faults.problems();
            if !problems.is_empty() {
                return Err(SimError::InvalidMachine {
                    machine: machine.id.clone(),
                    message: format!("faults.{}", problems.join("; faults.")),
                });
            }
        }
        let sequence = Arc::new(AtomicU64::new(0));
        let mut fleet = Fleet {
            machines: Vec::new(),
            mqtt: Vec::new(),
            sequence: Arc::clone(&sequence),
        };
        for factory in &spec.factories {
            for machine in &factory.machines {
                let Some(profile) = profiles.iter().find(|p| p.model == machine.model) else {
                    continue; // checked above
                };
                if profile.mqtt.is_some() {
                    continue; // started by start_mqtt
                }
                let config = SimMachineConfig {
                    machine_id: machine.id.clone(),
                    cycle_seconds: machine.cycle_seconds,
                    scrap_rate: machine.scrap_rate,
                    time_scale: spec.time_scale,
                    seed: machine_seed(spec.seed, &machine.id),
                };
                let started = SimMachine::start_with_sequence(
                    config,
                    Arc::new(profile.clone()),
                    Arc::clone(&sequence),
                )
                .await;
                let handle = match started {
                    Ok(handle) => handle,
                    Err(err) => {
                        fleet.shutdown().await;
                        return Err(err);
                    }
                };
                handle.set_faults(machine.faults.clone());
                let info = SimMachineInfo {
                    factory_id: factory.id.clone(),
                    machine_id: machine.id.clone(),
                    model: machine.model.clone(),
                    addr: handle.addr(),
                };
                fleet.machines.push((info, handle));
            }
        }
        Ok(fleet)
    }

    /// The MQTT machines of `spec` (to configure before the broker runs):
    /// their factory, id, model and serial, in spec order.
    pub fn mqtt_machines_of(spec: &FleetSpec, profiles: &[Profile]) -> Vec<SimMqttInfo> {
        spec.factories
            .iter()
            .flat_map(|f| f.machines.iter().map(move |m| (f, m)))
            .filter(|(_, m)| {
                profiles
                    .iter()
                    .any(|p| p.model == m.model && p.mqtt.is_some())
            })
            .map(|(f, m)| SimMqttInfo {
                factory_id: f.id.clone(),
                machine_id: m.id.clone(),
                model: m.model.clone(),
                serial: m.id.clone(),
            })
            .collect()
    }

    /// Starts the MQTT machines of `spec`, each logging in to the broker at
    /// `host:port` as its own user with the password `passwords` gives for
    /// its id. Reports go out every `report_interval` and on change.
    pub async fn start_mqtt(
        &mut self,
        spec: &FleetSpec,
        profiles: &[Profile],
        host: &str,
        port: u16,
        passwords: &std::collections::HashMap<String, String>,
        report_interval: std::time::Duration,
    ) -> Result<(), SimError> {
        for info in Fleet::mqtt_machines_of(spec, profiles) {
            let Some(machine) = spec
                .factories
                .iter()
                .flat_map(|f| &f.machines)
                .find(|m| m.id == info.machine_id)
            else {
                continue;
            };
            let Some(profile) = profiles.iter().find(|p| p.model == machine.model) else {
                continue;
            };
            let Some(password) = passwords.get(&info.machine_id) else {
                return Err(SimError::InvalidMachine {
                    machine: info.machine_id.clone(),
                    message: "no MQTT password for it".into(),
                });
            };
            let config = SimMachineConfig {
                machine_id: machine.id.clone(),
                cycle_seconds: machine.cycle_seconds,
                scrap_rate: machine.scrap_rate,
                time_scale: spec.time_scale,
                seed: machine_seed(spec.seed, &machine.id),
            };
            let login = SimMqttLogin {
                host: host.to_string(),
                port,
                username: info.machine_id.clone(),
                password: password.clone(),
            };
            let handle = SimMqttMachine::start_with_sequence(
                config,
                Arc::new(profile.clone()),
                &info.serial,
                login,
                report_interval,
                Arc::clone(&self.sequence),
            )
            .await?;
            handle.set_faults(machine.faults.clone());
            self.mqtt.push((info, handle));
        }
        Ok(())
    }

    /// The MQTT machines started, in spec order.
    pub fn mqtt_machines(&self) -> Vec<SimMqttInfo> {
        self.mqtt.iter().map(|(info, _)| info.clone()).collect()
    }

    /// One MQTT machine, for fault injection and inspection.
    pub fn mqtt_machine(&self, machine_id: &str) -> Option<SimMqttHandle> {
        self.mqtt
            .iter()
            .find(|(info, _)| info.machine_id == machine_id)
            .map(|(_, handle)| handle.clone())
    }

    /// Every Modbus machine, in spec order.
    pub fn machines(&self) -> Vec<SimMachineInfo> {
        self.machines.iter().map(|(info, _)| info.clone()).collect()
    }

    /// One machine, for fault injection and inspection.
    pub fn machine(&self, machine_id: &str) -> Option<SimMachineHandle> {
        self.machines
            .iter()
            .find(|(info, _)| info.machine_id == machine_id)
            .map(|(_, handle)| handle.clone())
    }

    /// Tokens started on one machine, in order (empty for an unknown id).
    pub fn started_tokens(&self, machine_id: &str) -> Vec<u32> {
        match self.machine(machine_id) {
            Some(machine) => machine.started_tokens(),
            None => self
                .mqtt_machine(machine_id)
                .map(|m| m.started_tokens())
                .unwrap_or_default(),
        }
    }

    /// Jobs finished on one machine: (token, Unix ms of its last unit), in
    /// order (empty for an unknown id).
    pub fn finished_log(&self, machine_id: &str) -> Vec<(u32, u64)> {
        match self.machine(machine_id) {
            Some(machine) => machine.finished_log(),
            None => self
                .mqtt_machine(machine_id)
                .map(|m| m.finished_log())
                .unwrap_or_default(),
        }
    }

    /// Every start of a token that had already been started somewhere in the
    /// fleet (same machine or another), in start order, as (machine, token).
    /// Empty when every job was produced at most once.
    pub fn duplicate_starts(&self) -> Vec<(String, u32)> {
        let mut starts: Vec<(u64, u32, &str)> = self
            .machines
            .iter()
            .flat_map(|(info, handle)| {
                handle
                    .started_log()
                    .into_iter()
                    .map(move |(sequence, token)| (sequence, token, info.machine_id.as_str()))
            })
            .chain(self.mqtt.iter().flat_map(|(info, handle)| {
                handle
                    .started_log()
                    .into_iter()
                    .map(move |(sequence, token)| (sequence, token, info.machine_id.as_str()))
            }))
            .collect();
        starts.sort();
        let mut seen = BTreeSet::new();
        starts
            .into_iter()
            .filter(|(_, token, _)| !seen.insert(*token))
            .map(|(_, token, machine)| (machine.to_string(), token))
            .collect()
    }

    /// Sets one machine's injected faults; the problems with `spec` (as
    /// `key: reason`) or an unknown machine.
    pub fn set_faults(&self, machine_id: &str, spec: FaultSpec) -> Result<(), SimControlError> {
        let problems = spec.problems();
        if !problems.is_empty() {
            return Err(SimControlError::Invalid(problems));
        }
        match (self.machine(machine_id), self.mqtt_machine(machine_id)) {
            (Some(machine), _) => machine.set_faults(spec),
            (None, Some(machine)) => machine.set_faults(spec),
            (None, None) => return Err(SimControlError::UnknownMachine),
        }
        Ok(())
    }

    /// Jams one machine now with `code` (a running job stops, keeping its
    /// token and counts, until cleared).
    pub fn jam(&self, machine_id: &str, code: u32) -> Result<(), SimControlError> {
        match (self.machine(machine_id), self.mqtt_machine(machine_id)) {
            (Some(machine), _) => machine.inject_fault(code),
            (None, Some(machine)) => machine.inject_fault(code),
            (None, None) => return Err(SimControlError::UnknownMachine),
        }
        Ok(())
    }

    /// Clears one machine's fault (a jammed job goes on).
    pub fn clear(&self, machine_id: &str) -> Result<(), SimControlError> {
        match (self.machine(machine_id), self.mqtt_machine(machine_id)) {
            (Some(machine), _) => machine.clear_fault(),
            (None, Some(machine)) => machine.clear_fault(),
            (None, None) => return Err(SimControlError::UnknownMachine),
        }
        Ok(())
    }

    /// Cuts one machine's power: it comes back idle without its job.
    pub async fn power_loss(&self, machine_id: &str) -> Result<(), SimControlError> {
        match (self.machine(machine_id), self.mqtt_machine(machine_id)) {
            (Some(machine), _) => machine.power_cycle().await,
            (None, Some(machine)) => machine.power_cycle(),
            (None, None) => return Err(SimControlError::UnknownMachine),
        }
        Ok(())
    }

    /// One machine as the control API shows it.
    pub fn status(&self, machine_id: &str) -> Option<SimMachineStatus> {
        if let Some((info, machine)) = self
            .machines
            .iter()
            .find(|(i, _)| i.machine_id == machine_id)
        {
            let snapshot = machine.snapshot();
            return Some(SimMachineStatus {
                id: info.machine_id.clone(),
                factory: info.factory_id.clone(),
                model: info.model.clone(),
                protocol: "modbus",
                state: snapshot.state.to_string(),
                job_token: snapshot.job_token,
                good: snapshot.good_count,
                scrap: snapshot.scrap_count,
                fault_code: snapshot.fault_code,
                started: machine.started_tokens(),
                faults: machine.faults(),
            });
        }
        let (info, machine) = self.mqtt.iter().find(|(i, _)| i.machine_id == machine_id)?;
        let snapshot = machine.snapshot();
        Some(SimMachineStatus {
            id: info.machine_id.clone(),
            factory: info.factory_id.clone(),
            model: info.model.clone(),
            protocol: "mqtt",
            state: snapshot.state.to_string(),
            job_token: snapshot.job_token,
            good: snapshot.good_count,
            scrap: snapshot.scrap_count,
            fault_code: snapshot.fault_code,
            started: machine.started_tokens(),
            faults: machine.faults(),
        })
    }

    /// Every machine's id, Modbus ones first, in spec order.
    pub fn machine_ids(&self) -> Vec<String> {
        self.machines
            .iter()
            .map(|(info, _)| info.machine_id.clone())
            .chain(self.mqtt.iter().map(|(info, _)| info.machine_id.clone()))
            .collect()
    }

    /// Stops every machine (closes connections and listeners' accept loops).
    pub async fn shutdown(&self) {
        for (_, handle) in &self.machines {
            handle.shutdown().await;
        }
        for (_, handle) in &self.mqtt {
            handle.shutdown();
        }
    }
}

/// A machine's RNG seed: the fleet seed mixed with an FNV-1a hash of its id
/// (stable across Rust versions, unlike `DefaultHasher`).
fn machine_seed(seed: u64, machine_id: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in machine_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^ seed.rotate_left(17)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_fleet_has_fifteen_machines_covering_every_builtin_profile() {
        let spec = FleetSpec::demo(7, 60.0);
        let machines: Vec<&MachineSpec> = spec.factories.iter().flat_map(|f| &f.machines).collect();
        assert_eq!(machines.len(), 15);
        let profiles = fabflow_adapters::builtin_profiles();
        assert_eq!(Fleet::mqtt_machines_of(&spec, &profiles).len(), 3);
        let ids: Vec<&str> = spec.factories.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["north", "centre", "south"]);
        for profile in fabflow_adapters::builtin_profiles() {
            assert!(
                machines.iter().any(|m| m.model == profile.model),
                "{}",
                profile.model
            );
        }
        let count = |model: &str| machines.iter().filter(|m| m.model == model).count();
        assert!(count("acme-dtg-200") > count("lumen-uv-6"));
        assert!(count("heatwave-hp-40") > count("forge-fdm-3"));
    }

    #[test]
    fn replicating_a_fleet_copies_every_machine_under_a_new_id() {
        let mut spec = FleetSpec::demo(7, 60.0);
        spec.replicate(1);
        assert_eq!(spec, FleetSpec::demo(7, 60.0));
        spec.replicate(3);
        let north = &spec.factories[0].machines;
        assert_eq!(north.len(), 18);
        assert_eq!(north[6].id, "north-dtg-1-c2");
        assert_eq!(north[17].id, "north-press-3-c3");
        assert_eq!(
            (north[17].model.as_str(), north[17].cycle_seconds),
            (north[5].model.as_str(), north[5].cycle_seconds)
        );
        let mut ids: Vec<&str> = spec
            .factories
            .iter()
            .flat_map(|f| f.machines.iter().map(|m| m.id.as_str()))
            .collect();
        let count = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!((count, ids.len()), (45, 45));
    }

    #[test]
    fn machine_faults_are_read_from_the_spec_and_checked_at_start() {
        let text = r#"
seed = 1
time_scale = 60.0
[[factories]]
id = "north"
[[factories.machines]]
id = "north-dtg-1"
model = "acme-dtg-200"
cycle_seconds = 90.0
scrap_rate = 0.02
faults = { slow_factor = 3.0, scrap_burst = 4, jam = { code = 42, after_units = 1, clear_after_ms = 2000, times = 2 } }
"#;
        let spec = FleetSpec::from_toml_str(text, "test").expect("parses");
        let faults = &spec.factories[0].machines[0].faults;
        assert_eq!(faults.slow_factor, Some(3.0));
        assert_eq!(
            faults.jam.as_ref().map(|j| (j.code, j.times)),
            Some((42, 2))
        );
        let text = toml::to_string(&spec).expect("serialise");
        assert_eq!(
            FleetSpec::from_toml_str(&text, "again").expect("parse"),
            spec
        );
        let typo = text.replacen("scrap_burst", "scrap_bust", 1);
        assert!(FleetSpec::from_toml_str(&typo, "typo").is_err());
    }

    #[tokio::test]
    async fn invalid_faults_refuse_the_fleet() {
        let mut spec = FleetSpec::demo(1, 60.0);
        spec.factories[0].machines[0].faults.slow_factor = Some(-1.0);
        let started = Fleet::start(&spec, &fabflow_adapters::builtin_profiles()).await;
        assert!(
            matches!(&started, Err(SimError::InvalidMachine { message, .. }) if message.contains("slow_factor")),
            "{started:?}"
        );
    }

    #[test]
    fn fleet_spec_round_trips_through_toml() {
        let spec = FleetSpec::demo(7, 60.0);
        let text = toml::to_string(&spec).expect("serialise");
        assert_eq!(
            FleetSpec::from_toml_str(&text, "demo").expect("parse"),
            spec
        );
        let bad = text.replacen("seed = 7", "seed = 7\nsed = 1", 1);
        assert!(FleetSpec::from_toml_str(&bad, "demo").is_err());
    }
}
