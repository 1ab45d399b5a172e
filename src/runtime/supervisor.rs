//! One supervisor per machine: turns the driver's facts into job transitions
//! and dispatches the next queued job.
//!
//! Invariant: a job is physically started at most once. The job is stored as
//! `dispatched` before its start command is written (persist, then act), and
//! whenever the outcome of a start is unknown (error, restart, reconnect) the
//! machine's job token is read back before anything else is sent: a machine
//! showing the token has the job; one showing another token never got it.

use crate::domain::reconcile::{Shown, Start, reconcile};
use crate::domain::{
    JobInput, JobState, JobToken, MachineInput, MachineMode, MachineState, Reported,
};
use crate::runtime::clock::Clock;
use crate::store::{JobRecord, Store, StoreError};
use fabflow_adapters::{JobCommand, MachineFact, MachineHandle, MachineStatus};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc};
use tracing::{debug, info, warn};

/// What the machine holds after reconciliation.
enum Holding {
    /// One of our jobs (or one whose state another actor just changed).
    Busy,
    /// A finished job was acknowledged: a command went out.
    Acknowledged,
    /// Nothing of ours.
    Free,
}

/// Tokens started in this session and when their start command was sent.
type Started = HashMap<u32, Instant>;

/// How long after a successful start the machine may still show something
/// else (a status read before the start, a slow machine). Past it, a machine
/// that does not show the job running has lost it.
const START_GRACE: Duration = Duration::from_secs(10);

pub struct Supervisor {
    pub machine: String,
    pub store: Store,
    pub clock: Clock,
    pub handle: MachineHandle,
    /// Wakes the scheduler when this machine frees up or loses its queue.
    pub scheduler: Arc<Notify>,
    /// Wakes the outbox publisher after a change.
    pub outbox: Arc<Notify>,
}

/// Empties the facts channel of what is queued now. Returns the error of a
/// disconnection if the connection was lost and not yet regained among them.
fn drain_stale(facts: &mut mpsc::Receiver<MachineFact>) -> Option<String> {
    let mut lost = None;
    while let Ok(fact) = facts.try_recv() {
        match fact {
            MachineFact::Disconnected { error } => lost = Some(error),
            MachineFact::Connected => lost = None,
            MachineFact::Status(_) | MachineFact::ReadFailed { .. } => {}
        }
    }
    lost
}

fn reported(state: fabflow_adapters::MachineState) -> Reported {
    use fabflow_adapters::MachineState as A;
    match state {
        A::Idle => Reported::Idle,
        A::Running => Reported::Running,
        A::Done => Reported::Done,
        A::Fault => Reported::Fault,
        A::Paused => Reported::Paused,
    }
}

impl Supervisor {
    /// Runs until the driver's facts channel closes (the driver stopped).
    pub async fn run(self, mut facts: mpsc::Receiver<MachineFact>) {
        // Tokens this supervisor started in this session, and when: a status
        // that does not show one of them may predate the start, so it proves
        // nothing until START_GRACE has passed.
        let mut started: Started = HashMap::new();
        while let Some(fact) = facts.recv().await {
            let result = match fact {
                MachineFact::Connected => Ok(false),
                MachineFact::Status(status) => self.on_status(status, &mut started).await,
                MachineFact::ReadFailed { error } => {
                    warn!(error = %error, "machine status unreadable");
                    Ok(false)
                }
                MachineFact::Disconnected { error } => {
                    debug!(error = %error, "machine disconnected");
                    self.on_lost().await.map(|()| false)
                }
            };
            match result {
                // A start command went out: every report still queued was
                // read before it and says nothing about the job. Drop them;
                // the driver's next poll is fresh.
                Ok(true) => {
                    if let Some(lost) = drain_stale(&mut facts)
                        && let Err(err) = self.on_lost().await
                    {
                        warn!(error = %err, reason = %lost, "recording the lost connection failed");
                    }
                }
                Ok(false) => {}
                Err(err) => {
                    metrics::counter!("fabflow_supervisor_errors_total").increment(1);
                    warn!(error = %err, "machine supervisor step failed; continuing with the next report");
                }
            }
        }
        debug!("machine supervisor stopped");
    }

    async fn on_lost(&self) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let before = self
            .store
            .get_machine(&self.machine)
            .await?
            .map(|m| m.state);
        let state = self
            .store
            .observe_machine(&self.machine, MachineInput::Disconnected, None, None, now)
            .await?;
        if before != Some(state) {
            self.outbox.notify_one();
        }
        if self.store.unschedule_machine(&self.machine, now).await? > 0 {
            self.scheduler.notify_one();
        }
        Ok(())
    }

    /// Returns whether a start command was sent to the machine.
    async fn on_status(
        &self,
        status: MachineStatus,
        started: &mut Started,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now_ms();
        let state = self
            .store
            .observe_machine(
                &self.machine,
                MachineInput::Reported(reported(status.state)),
                Some(status.job_token),
                status.fault_code,
                now,
            )
            .await?;
        let held = self.reconcile(&status, started).await?;
        if matches!(
            state,
            MachineState::Fault | MachineState::Paused | MachineState::Offline
        ) && self.store.unschedule_machine(&self.machine, now).await? > 0
        {
            self.scheduler.notify_one();
        }
        match held {
            Holding::Acknowledged => Ok(true),
            Holding::Busy => Ok(false),
            Holding::Free if status.state == fabflow_adapters::MachineState::Idle => {
                self.dispatch_next(started).await
            }
            Holding::Free => Ok(false),
        }
    }

    /// Brings the stored jobs in line with what the machine shows.
    async fn reconcile(
        &self,
        status: &MachineStatus,
        started: &mut Started,
    ) -> Result<Holding, StoreError> {
        use fabflow_adapters::MachineState as A;
        let on_machine: Vec<JobRecord> = self
            .store
            .machine_queue(&self.machine)
            .await?
            .into_iter()
            .filter(|job| job.state.is_on_machine())
            .collect();
        let mut busy = false;
        let shown = Shown {
            state: reported(status.state),
            token: status.job_token,
            good: status.good_count,
            scrap: status.scrap_count,
            fault_code: status.fault_code,
        };
        for job in on_machine {
            let token = job.token;
            let start = match started.get(&token.0) {
                None => Start::Unknown,
                Some(at) if at.elapsed() > START_GRACE => Start::Settled,
                Some(_) => Start::Recent,
            };
            let input = reconcile(shown, token, job.state, start);
            match input {
                Some(input) => match self.apply(token, input).await? {
                    Some(state) if state.is_terminal() => {
                        started.remove(&token.0);
                    }
                    Some(state) if !state.is_on_machine() => {}
                    // Still on the machine, or changed by someone else: look again next poll.
                    _ => busy = true,
                },
                None => busy = true,
            }
        }
        // A finished job whose completion is already stored (or was never
        // ours): acknowledge it so the machine returns to idle.
        if status.state == A::Done && !busy {
            match self.handle.acknowledge().await {
                Ok(()) => debug!(job.token = status.job_token, "acknowledged finished job"),
                Err(err) => warn!(error = %err, "acknowledge failed; will retry on the next poll"),
            }
            self.scheduler.notify_one();
            return Ok(Holding::Acknowledged);
        }
        Ok(if busy { Holding::Busy } else { Holding::Free })
    }

    /// Applies `input` to the job. Returns the new state if this
    /// compare-and-set won, None if the job had changed meanwhile.
    async fn apply(
        &self,
        token: JobToken,
        input: JobInput,
    ) -> Result<Option<JobState>, StoreError> {
        let label = format!("{input:?}");
        let now = self.clock.now_ms();
        match self.store.transition_job(token, input, now).await {
            Ok(moved) => {
                info!(job.token = %token, order.id = %moved.job.order_id, from = %moved.from, to = %moved.job.state, "job {}", moved.job.state);
                metrics::counter!("fabflow_job_transitions_total", "to" => moved.job.state.as_str()).increment(1);
                self.outbox.notify_one();
                if moved.job.state.is_terminal() || moved.job.state == JobState::Pending {
                    self.scheduler.notify_one();
                }
                Ok(Some(moved.job.state))
            }
            Err(
                StoreError::Conflict(reason)
                | StoreError::Transition(crate::domain::TransitionError { from: reason, .. }),
            ) => {
                debug!(job.token = %token, input = %label, reason = %reason, "job changed meanwhile");
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }

    /// Starts the next queued job if the machine is active. Returns whether a
    /// start command was sent.
    async fn dispatch_next(&self, started: &mut Started) -> Result<bool, StoreError> {
        let Some(machine) = self.store.get_machine(&self.machine).await? else {
            return Ok(false);
        };
        if machine.mode != MachineMode::Active {
            // Paused or in maintenance: jobs queued meanwhile go back to the planner.
            if self
                .store
                .unschedule_machine(&self.machine, self.clock.now_ms())
                .await?
                > 0
            {
                self.scheduler.notify_one();
            }
            return Ok(false);
        }
        let Some(job) = self
            .store
            .machine_queue(&self.machine)
            .await?
            .into_iter()
            .find(|job| job.state == JobState::Scheduled)
        else {
            return Ok(false);
        };
        let token = job.token;
        // Persist first: once dispatched is stored, a crash at any later point
        // leads to a read-back of the machine, never to a blind second start.
        // Only a dispatch this supervisor won may be started.
        if self.apply(token, JobInput::Dispatch).await? != Some(JobState::Dispatched) {
            return Ok(false);
        }
        started.insert(token.0, Instant::now());
        let command = JobCommand {
            job_token: token.0,
            recipe: job.recipe,
            quantity: job.quantity,
        };
        let result = self.handle.start_job(command).await;
        // From here on the job may be on the machine: it stays "started" (a
        // report not showing it proves nothing until START_GRACE has passed).
        started.insert(token.0, Instant::now());
        match result {
            Ok(()) => {
                metrics::counter!("fabflow_jobs_dispatched_total").increment(1);
                info!(job.token = %token, order.id = %job.order_id, "job started on machine");
            }
            Err(err) => {
                metrics::counter!("fabflow_job_start_errors_total", "reason" => err.reason())
                    .increment(1);
                warn!(job.token = %token, error = %err, "start command failed; reading the machine back");
                // The outcome is unknown: only the machine's token can tell.
                // This read runs after the failed start on the driver's task,
                // so it is fresh.
                match self.handle.read_status().await {
                    // The token is written first: a machine showing another
                    // one never got this job, and it can be planned again.
                    Ok(status) if status.job_token != token.0 => {
                        started.remove(&token.0);
                        self.apply(token, JobInput::MachineLost).await?;
                    }
                    // It has the token: reports decide (running, or still
                    // idle after the grace: failed and made again).
                    Ok(_) => {}
                    Err(read_err) => {
                        debug!(error = %read_err, "read-back failed; the reports after the reconnect decide");
                    }
                }
            }
        }
        Ok(true)
    }
}
