//! Why jobs wait: the floor read from the store, explained by
//! `plan::explain` (the API shows it on every job and machine queue).

use super::Runtime;
use crate::domain::waiting::Waiting;
use crate::plan::explain::{FactoryPower, FloorJob, FloorMachine, explain};
use crate::store::{JobRecord, StoreError};
use std::collections::HashMap;

fn floor_job(job: &JobRecord, waits_for_step: Option<(i64, String)>) -> FloorJob {
    FloorJob {
        token: job.token.0,
        factory: job.factory.to_string(),
        process: job.process.clone(),
        material: job.material.clone(),
        quantity: job.quantity,
        good: job.good,
        seconds_per_unit: job.seconds_per_unit,
        state: job.state,
        machine: job.machine.as_ref().map(ToString::to_string),
        waits_for_step,
    }
}

impl Runtime {
    /// The calendar of `machine` as configured, with `windows` (its planned
    /// maintenance).
    pub fn calendar_of(
        &self,
        machine: &str,
        windows: &[crate::store::WindowRecord],
    ) -> crate::domain::calendar::Calendar {
        let shifts = self
            .network
            .machines
            .iter()
            .find(|(config, _)| config.id == machine)
            .and_then(|(config, _)| config.calendar.as_ref())
            .map(crate::config::CalendarConfig::shifts)
            .unwrap_or_default();
        crate::domain::calendar::Calendar {
            shifts,
            windows: windows
                .iter()
                .filter(|w| w.machine == machine)
                .map(crate::store::WindowRecord::window)
                .collect(),
        }
    }

    /// Why each job of `factory` (or of every factory) that is not running
    /// waits, with queue positions and estimated start and finish; running
    /// and finished jobs have no entry.
    pub async fn explain_jobs(
        &self,
        factory: Option<&str>,
    ) -> Result<HashMap<u32, Waiting>, StoreError> {
        let now = self.clock.now_ms();
        let windows = self.store.maintenance_windows(None, now).await?;
        let machines: Vec<FloorMachine> =
            self.store
                .list_machines(factory)
                .await?
                .into_iter()
                .map(|m| FloorMachine {
                    calendar: self.calendar_of(m.id.as_str(), &windows),
                    startup_power_w: self
                        .network
                        .machines
                        .iter()
                        .find(|(config, _)| config.id == m.id.as_str())
                        .and_then(|(_, profile)| profile.startup)
                        .map_or(0, |startup| startup.power_w),
                    factory_power: self.power.budget(m.factory.as_str()).map(|budget_w| {
                        FactoryPower {
                            budget_w,
                            drawing: self.power.drawing(m.factory.as_str(), now),
                        }
                    }),
                    id: m.id.to_string(),
                    factory: m.factory.to_string(),
                    capabilities: m.capabilities,
                    materials: m.materials,
                    state: m.state,
                    mode: m.mode,
                    fault_code: m.fault_code,
                    loaded_material: m.loaded_material,
                })
                .collect();
        let mut queues: HashMap<String, Vec<FloorJob>> = HashMap::new();
        for job in self.store.queued_jobs(factory).await? {
            if let Some(machine) = &job.machine {
                queues
                    .entry(machine.to_string())
                    .or_default()
                    .push(floor_job(&job, None));
            }
        }
        let pending: Vec<FloorJob> = self
            .store
            .pending_jobs(factory)
            .await?
            .into_iter()
            .map(|(job, step)| floor_job(&job, step))
            .collect();
        Ok(explain(now, &machines, &queues, &pending))
    }
}
