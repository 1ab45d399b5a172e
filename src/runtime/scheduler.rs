//! The scheduling loop: every interval (or when woken), ready jobs are put in
//! machine queues by the pure planner, earliest deadline first.

use crate::plan::{JobCandidate, MachineSlot, assign_jobs};
use crate::runtime::clock::Clock;
use crate::runtime::wake::{Wake, Wakers};
use crate::store::{Store, StoreError};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

pub struct Scheduler {
    pub store: Store,
    pub clock: Clock,
    pub interval: Duration,
    pub max_queue: usize,
    /// Woken by supervisors and intake when there is new work or a free
    /// machine; wakes the outbox publisher after a round that queued jobs.
    pub wakers: Wakers,
}

impl Scheduler {
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            match self.round().await {
                Ok(0) => {}
                Ok(count) => {
                    debug!(jobs = count, "jobs scheduled");
                    self.wakers.wake(Wake::OUTBOX);
                }
                Err(err) => warn!(error = %err, "scheduling round failed"),
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.wakers.scheduler_woken() => {}
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
        debug!("scheduler stopped");
    }

    /// One scheduling round; returns how many jobs were queued.
    pub async fn round(&self) -> Result<usize, StoreError> {
        let candidates: Vec<JobCandidate> = self
            .store
            .schedulable_jobs(200)
            .await?
            .into_iter()
            .map(|job| JobCandidate {
                token: job.token,
                factory: job.factory,
                process: job.process,
                material: job.material,
                due_ms: job.due_ms,
            })
            .collect();
        if candidates.is_empty() {
            return Ok(0);
        }
        let loads = self.store.machine_loads().await?;
        let slots: Vec<MachineSlot> = self
            .store
            .list_machines(None)
            .await?
            .into_iter()
            .map(|machine| MachineSlot {
                queue_len: loads.get(machine.id.as_str()).copied().unwrap_or(0),
                accepts_jobs: machine.state.accepts_jobs(machine.mode),
                id: machine.id,
                factory: machine.factory,
                capabilities: machine.capabilities,
                materials: machine.materials,
            })
            .collect();
        let assignments = assign_jobs(&candidates, &slots, self.max_queue);
        if assignments.is_empty() {
            return Ok(0);
        }
        let count = self
            .store
            .schedule_jobs(&assignments, self.clock.now_ms())
            .await?;
        metrics::counter!("fabflow_jobs_scheduled_total").increment(count as u64);
        Ok(count)
    }
}
