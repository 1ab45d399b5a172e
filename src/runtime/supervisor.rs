//! One supervisor per machine: turns the driver's facts into job transitions
//! and dispatches the next queued job.
//!
//! Invariant: a job is physically started at most once, and a token too. The
//! job is stored as `dispatched` before its start command is written
//! (persist, then act), and whenever the outcome of a start is unknown
//! (error, restart, reconnect) the machine's job token is read back before
//! anything else is sent: a machine showing the token has the job; one
//! showing another token may have lost it (power), so the job fails with its
//! token retired rather than being started again. A job the machine stops
//! is held until the machine resumes its token or an operator decides
//! (`domain::reconcile`). The token read is the machine's own echo when its
//! profile has one.
//!
//! What the profile says about the model ([`Behaviour`]): a machine without
//! an acknowledge step is never acknowledged and takes its next job from
//! `done`; lifetime counters are read at the start (the baseline, stored with
//! the dispatch) and the job is recorded with the difference; a machine that
//! does not react to a start or an acknowledge within the profile's
//! `command_timeout_ms` is recorded `stuck` (and warned about) until it does.
//!
//! Every store call's consequences are gathered as a [`Wake`] and handed to
//! the wakers once per fact, in [`Supervisor::run`].

use crate::domain::counters::{Counting, produced};
use crate::domain::reconcile::{Awaited, Shown, Start, progressed, reacted, reconcile};
use crate::domain::{
    JobInput, JobState, JobToken, MachineInput, MachineMode, MachineState, ModeInput, Reported,
    TransitionError,
};
use crate::runtime::clock::Clock;
use crate::runtime::wake::{Wake, Wakers};
use crate::store::{CounterBaseline, JobRecord, JobTransition, Store, StoreError};
use fabflow_adapters::profile::{Counts, SignalName};
use fabflow_adapters::{JobCommand, MachineFact, MachineHandle, MachineStatus, Profile, RunState};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// What the machine holds after reconciliation.
enum Holding {
    /// One of our jobs (or one whose state another actor just changed).
    Busy,
    /// Nothing of ours.
    Free,
}

/// Tokens started in this session and when their start command was sent.
type Started = HashMap<u32, Instant>;

/// How a machine model behaves, from its profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Behaviour {
    /// False when the machine takes its next start straight from `done`.
    pub acknowledges: bool,
    /// Whether the token in its status is the machine's own echo.
    pub echoes_token: bool,
    /// How long the machine may take to react to a command. Past it after a
    /// start, a machine that does not show the job has lost it; a machine
    /// that showed no reaction at all is stuck.
    pub command_timeout: Duration,
    pub good: Counting,
    pub scrap: Counting,
}

impl Behaviour {
    pub fn of(profile: &Profile) -> Behaviour {
        // Validation allows cumulative counters only on u16 and u32 signals.
        let counting = |name: SignalName| match profile.counting(name) {
            (Counts::Cumulative, Some(modulus)) => Counting::Cumulative { modulus },
            _ => Counting::PerJob,
        };
        Behaviour {
            acknowledges: profile.acknowledges(),
            echoes_token: profile.echoes_token(),
            command_timeout: Duration::from_millis(profile.command_timeout_ms),
            good: counting(SignalName::GoodCount),
            scrap: counting(SignalName::ScrapCount),
        }
    }

    fn cumulative(&self) -> bool {
        matches!(self.good, Counting::Cumulative { .. })
            || matches!(self.scrap, Counting::Cumulative { .. })
    }
}

/// A command sent to the machine whose effect has not been seen yet.
#[derive(Debug, Clone, Copy)]
struct Awaiting {
    command: Awaited,
    /// The last report before the command went out.
    before: Shown,
    sent: Instant,
    /// Past the timeout without a reaction: recorded stuck, warned once.
    stuck: bool,
}

/// What one supervisor remembers between reports (not persisted: after a
/// restart the machine's token decides).
#[derive(Default)]
struct Session {
    /// Tokens this supervisor started, and when: a status that does not show
    /// one of them may predate the start, so it proves nothing until the
    /// command timeout has passed.
    started: Started,
    /// The last command whose effect is awaited. A lost connection ends the
    /// wait (after the reconnect the machine is read afresh).
    awaiting: Option<Awaiting>,
    /// The machine state last recorded, to tell watchers when it moves.
    recorded: Option<MachineState>,
    /// The last report observed in the store, and when: the same report
    /// again changes nothing, so it is not read back from the store each
    /// poll (at most once per OBSERVED_FOR, in case the row moved under
    /// another daemon). Cleared by every connect and lost connection.
    observed: Option<(Observed, Instant)>,
    /// The last report of a machine running one of our jobs that needed
    /// nothing (no transition, no count, no command), and when: the same
    /// report again is not reconciled against the stored queue until
    /// QUIET_FOR has passed. Any other report clears it.
    quiet: Option<(Shown, Instant)>,
    /// Set by `reconcile` when it wrote anything (counts, a transition).
    wrote: bool,
}

/// How long a running machine's unchanged report is taken as needing
/// nothing, without reading its queue back.
const QUIET_FOR: Duration = Duration::from_secs(5);

/// What `observe_machine` was told: (input, token, fault code), and the
/// state it answered.
type Observed = ((MachineInput, Option<u32>, Option<u32>), MachineState);

/// How long an observation stands in for the store's row.
const OBSERVED_FOR: Duration = Duration::from_secs(10);

/// Starts refused in a row before the machine is put in maintenance.
const MAX_REFUSALS: u32 = 3;

pub struct Supervisor {
    pub machine: String,
    pub store: Store,
    pub clock: Clock,
    pub handle: MachineHandle,
    /// Wakes the scheduler (this machine freed up or lost its queue) and the
    /// outbox publisher (events written).
    pub wakers: Wakers,
    /// Starts the machine refused in a row.
    pub refusals: AtomicU32,
    /// What the machine's profile says about it.
    pub behaviour: Behaviour,
    /// Its profile's protocol (`modbus`, `mqtt`), a metrics label.
    pub protocol: &'static str,
    /// The factory lease this supervisor runs under (None: unfenced, as in
    /// tests): no command goes to the machine once it is not valid here.
    pub lease: Option<crate::runtime::cluster::LeaseCheck>,
    /// Its configured shifts (none: it always works); with its maintenance
    /// windows from the store they decide whether a job may start now.
    pub shifts: Vec<crate::domain::calendar::Shift>,
    /// Its factory, whose power budget its starts share.
    pub factory: String,
    /// What it draws while it starts a job (its profile's), if anything.
    pub startup: Option<fabflow_adapters::profile::Startup>,
    /// The factories' start-up draws: a start takes room here first.
    pub power: std::sync::Arc<crate::runtime::power::PowerLedger>,
}

/// The driver's facts while a command to it is in flight.
struct InFlight<'a> {
    facts: &'a mut mpsc::Receiver<MachineFact>,
    /// Set when a Disconnected was taken (and no Connected after it).
    lost: Option<String>,
}

impl InFlight<'_> {
    /// Awaits a driver command while still taking the driver's facts: the
    /// driver waits for room in the facts channel before it serves a command,
    /// so not reading them could deadlock the two. Facts taken meanwhile
    /// predate the outcome and are dropped, except a lost connection.
    async fn command<T>(&mut self, call: impl std::future::Future<Output = T>) -> T {
        tokio::pin!(call);
        loop {
            tokio::select! {
                biased;
                result = &mut call => return result,
                fact = self.facts.recv() => match fact {
                    Some(fact) => note(&mut self.lost, fact),
                    // The driver stopped: the call ends with an error.
                    None => return call.await,
                },
            }
        }
    }
}

fn note(lost: &mut Option<String>, fact: MachineFact) {
    match fact {
        MachineFact::Disconnected { error, .. } => *lost = Some(error),
        MachineFact::Connected => *lost = None,
        MachineFact::Status(_) | MachineFact::ReadFailed { .. } => {}
    }
}

/// Empties the facts channel of what is queued now (all read before the last
/// command's outcome). Returns the error of a disconnection if the connection
/// was lost and not yet regained.
fn drain_stale(
    facts: &mut mpsc::Receiver<MachineFact>,
    mut lost: Option<String>,
) -> Option<String> {
    while let Ok(fact) = facts.try_recv() {
        note(&mut lost, fact);
    }
    lost
}

fn shown(status: &MachineStatus) -> Shown {
    Shown {
        state: reported(status.state),
        token: status.job_token,
        good: status.good_count,
        scrap: status.scrap_count,
        fault_code: status.fault_code,
    }
}

fn reported(state: RunState) -> Reported {
    match state {
        RunState::Idle => Reported::Idle,
        RunState::Running => Reported::Running,
        RunState::Done => Reported::Done,
        RunState::Fault => Reported::Fault,
        RunState::Paused => Reported::Paused,
    }
}

impl Supervisor {
    /// Whether this daemon may still send commands to the machine: its
    /// factory's lease is valid here at the epoch this supervisor started
    /// under (checked right before every command, after the fenced commit).
    fn may_drive(&self) -> bool {
        match &self.lease {
            Some(lease) if !lease.valid() => {
                warn!(lease = %lease.lease, epoch = lease.epoch, "lease not valid here: no command sent");
                false
            }
            _ => true,
        }
    }

    /// Runs until the driver's facts channel closes (the driver stopped).
    pub async fn run(self, mut facts: mpsc::Receiver<MachineFact>) {
        let mut session = Session::default();
        while let Some(fact) = facts.recv().await {
            let mut wake = Wake::NONE;
            let result = match fact {
                MachineFact::Connected => {
                    session.observed = None;
                    Ok(())
                }
                MachineFact::Status(status) => {
                    let mut in_flight = InFlight {
                        facts: &mut facts,
                        lost: None,
                    };
                    let result = self
                        .on_status(status, &mut session, &mut in_flight, &mut wake)
                        .await;
                    // A command went out: every report still queued was read
                    // before it and says nothing about the job. Drop them;
                    // the driver's next poll is fresh.
                    let lost = match result {
                        Ok(true) => drain_stale(in_flight.facts, in_flight.lost),
                        _ => in_flight.lost,
                    };
                    if let Some(reason) = lost {
                        session.awaiting = None;
                        session.observed = None;
                        if let Err(err) = self.on_lost(&mut wake).await {
                            warn!(error = %err, reason = %reason, "recording the lost connection failed");
                        }
                    }
                    result.map(|_| ())
                }
                MachineFact::ReadFailed { error, reason } => {
                    metrics::counter!("fabflow_machine_errors_total", "protocol" => self.protocol, "kind" => "read", "reason" => reason)
                        .increment(1);
                    warn!(error = %error, "machine status unreadable");
                    Ok(())
                }
                MachineFact::Disconnected { error, reason } => {
                    metrics::counter!("fabflow_machine_errors_total", "protocol" => self.protocol, "kind" => "connection", "reason" => reason)
                        .increment(1);
                    debug!(error = %error, "machine disconnected");
                    session.awaiting = None;
                    session.observed = None;
                    self.on_lost(&mut wake).await
                }
            };
            // The one place this supervisor's changes become wake-ups.
            self.wakers.wake(wake);
            if let Err(err) = result {
                metrics::counter!("fabflow_supervisor_errors_total").increment(1);
                warn!(error = %err, "machine supervisor step failed; continuing with the next report");
            }
        }
        debug!("machine supervisor stopped");
    }

    async fn on_lost(&self, wake: &mut Wake) -> Result<(), StoreError> {
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
            *wake |= Wake::OUTBOX;
        }
        *wake |= Wake::unscheduled(self.store.unschedule_machine(&self.machine, now).await?);
        Ok(())
    }

    /// Returns whether a command was sent to the machine.
    async fn on_status(
        &self,
        status: MachineStatus,
        session: &mut Session,
        in_flight: &mut InFlight<'_>,
        wake: &mut Wake,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now_ms();
        let stuck = self.check_reaction(&status, session);
        let input = if stuck {
            MachineInput::Unresponsive
        } else if status.state == RunState::Done && !self.behaviour.acknowledges {
            // Done is where this machine waits for its next job.
            MachineInput::Reported(Reported::Idle)
        } else {
            MachineInput::Reported(reported(status.state))
        };
        let key = (input, Some(status.job_token), status.fault_code);
        let state = match session.observed {
            Some(((seen, state), at)) if seen == key && at.elapsed() < OBSERVED_FOR => state,
            _ => {
                let state = self
                    .store
                    .observe_machine(
                        &self.machine,
                        input,
                        Some(status.job_token),
                        status.fault_code,
                        now,
                    )
                    .await?;
                session.observed = Some(((key, state), Instant::now()));
                state
            }
        };
        if session.recorded != Some(state) {
            session.recorded = Some(state);
            self.wakers.changed();
        }
        // A running machine's report that changed nothing since the last
        // one that needed nothing: no need to read its queue again yet.
        let seen = shown(&status);
        let quiet = state == MachineState::Running && !stuck && session.awaiting.is_none();
        match session.quiet {
            Some((last, at)) if quiet && last == seen && at.elapsed() < QUIET_FOR => {
                return Ok(false);
            }
            _ => session.quiet = None,
        }
        // The machine's queue, read once per report.
        let queue = self.store.machine_queue(&self.machine).await?;
        let before = *wake;
        let held = self.reconcile(&status, &queue, session, wake).await?;
        if quiet && matches!(held, Holding::Busy) && *wake == before && !session.wrote {
            session.quiet = Some((seen, Instant::now()));
        }
        session.wrote = false;
        if matches!(
            state,
            MachineState::Fault
                | MachineState::Paused
                | MachineState::Offline
                | MachineState::Stuck
        ) {
            *wake |= Wake::unscheduled(self.store.unschedule_machine(&self.machine, now).await?);
        }
        match (held, status.state) {
            (Holding::Busy, _) => Ok(false),
            // A finished job whose completion is already stored (or was
            // never ours): acknowledge it so the machine returns to idle.
            (Holding::Free, RunState::Done) if self.behaviour.acknowledges => {
                self.acknowledge(&status, session, in_flight, wake).await
            }
            (Holding::Free, _) if stuck => Ok(false),
            (Holding::Free, RunState::Idle | RunState::Done) => {
                self.dispatch_next(&status, &queue, session, in_flight, wake)
                    .await
            }
            (Holding::Free, _) => Ok(false),
        }
    }

    /// Ends the wait for the last command if the machine reacted to it, or
    /// marks the machine stuck once the wait passed the command timeout.
    /// Returns whether the machine is stuck.
    fn check_reaction(&self, status: &MachineStatus, session: &mut Session) -> bool {
        let Some(awaiting) = session.awaiting.as_mut() else {
            return false;
        };
        if reacted(
            awaiting.before,
            shown(status),
            awaiting.command,
            self.behaviour.echoes_token,
        ) {
            if awaiting.stuck {
                info!(
                    command = awaiting.command.name(),
                    state = %status.state,
                    "machine reacted; no longer stuck"
                );
            }
            session.awaiting = None;
            return false;
        }
        let waited = awaiting.sent.elapsed();
        if !awaiting.stuck && waited >= self.behaviour.command_timeout {
            awaiting.stuck = true;
            metrics::counter!("fabflow_machine_stuck_total", "command" => awaiting.command.name())
                .increment(1);
            let token = match awaiting.command {
                Awaited::Start { token } => Some(token),
                Awaited::Acknowledge => None,
            };
            warn!(
                command = awaiting.command.name(),
                job.token = ?token,
                waited_ms = waited.as_millis() as u64,
                timeout_ms = self.behaviour.command_timeout.as_millis() as u64,
                state = %status.state,
                shown.token = status.job_token,
                "machine did not react to the command; shown as stuck"
            );
        }
        awaiting.stuck
    }

    /// Acknowledges a finished job, unless an acknowledge is still awaited
    /// (a stuck machine is sent it again once per command timeout). Returns
    /// whether a command went out.
    async fn acknowledge(
        &self,
        status: &MachineStatus,
        session: &mut Session,
        in_flight: &mut InFlight<'_>,
        wake: &mut Wake,
    ) -> Result<bool, StoreError> {
        let mut stuck = false;
        if let Some(awaiting) = &session.awaiting
            && awaiting.command == Awaited::Acknowledge
        {
            if !awaiting.stuck || awaiting.sent.elapsed() < self.behaviour.command_timeout {
                return Ok(false);
            }
            stuck = true;
        }
        if !self.may_drive() {
            return Ok(false);
        }
        match in_flight.command(self.handle.acknowledge()).await {
            Ok(()) => {
                debug!(job.token = status.job_token, "acknowledged finished job");
                session.awaiting = Some(Awaiting {
                    command: Awaited::Acknowledge,
                    before: shown(status),
                    sent: Instant::now(),
                    stuck,
                });
            }
            Err(err) => warn!(error = %err, "acknowledge failed; will retry on the next poll"),
        }
        *wake |= Wake::SCHEDULER;
        Ok(true)
    }

    /// Brings the stored jobs in line with what the machine shows.
    async fn reconcile(
        &self,
        status: &MachineStatus,
        queue: &[JobRecord],
        session: &mut Session,
        wake: &mut Wake,
    ) -> Result<Holding, StoreError> {
        let mut busy = false;
        let base = shown(status);
        for job in queue.iter().filter(|job| job.state.is_on_machine()) {
            let token = job.token;
            let start = match session.started.get(&token.0) {
                None => Start::Unknown,
                Some(at) if at.elapsed() > self.behaviour.command_timeout => Start::Settled,
                Some(_) => Start::Recent,
            };
            // What this job made: lifetime counters count from the values
            // read when it was started.
            let shown = Shown {
                good: produced(
                    self.behaviour.good,
                    job.baseline.map(|b| b.good),
                    status.good_count,
                ),
                scrap: produced(
                    self.behaviour.scrap,
                    job.baseline.map(|b| b.scrap),
                    status.scrap_count,
                ),
                ..base
            };
            if self.behaviour.cumulative() && job.baseline.is_none() {
                debug!(job.token = %token, "no counter baseline stored; counts taken as shown");
            }
            // A held job keeps its machine only while the machine shows it
            // (it may resume it); one the machine forgot waits for an
            // operator while the machine takes other work.
            let blocks = |state: JobState| state != JobState::Held || status.job_token == token.0;
            if let Some((good, scrap)) = progressed(shown, token, job.state, (job.good, job.scrap))
            {
                session.wrote = true;
                self.store.record_progress(token, good, scrap).await?;
                self.wakers.changed();
            }
            let input = reconcile(shown, token, job.state, start);
            if input.is_some() {
                session.wrote = true;
            }
            match input {
                Some(input) => match self.apply(token, input, wake).await? {
                    Some(state) if state.is_terminal() => {
                        session.started.remove(&token.0);
                    }
                    Some(state) if !state.is_on_machine() => {}
                    Some(state) => busy |= blocks(state),
                    // Changed by someone else: look again next poll.
                    None => busy = true,
                },
                None => busy |= blocks(job.state),
            }
        }
        Ok(if busy { Holding::Busy } else { Holding::Free })
    }

    /// Applies `input` to the job. Returns the new state if this
    /// compare-and-set won, None if the job had changed meanwhile.
    async fn apply(
        &self,
        token: JobToken,
        input: JobInput,
        wake: &mut Wake,
    ) -> Result<Option<JobState>, StoreError> {
        let label = format!("{input:?}");
        let now = self.clock.now_ms();
        let result = self.store.transition_job(token, input, now).await;
        self.applied(token, &label, result, wake)
    }

    /// Logs and counts a job transition; None if the job had changed meanwhile.
    fn applied(
        &self,
        token: JobToken,
        label: &str,
        result: Result<JobTransition, StoreError>,
        wake: &mut Wake,
    ) -> Result<Option<JobState>, StoreError> {
        match result {
            Ok(moved) => {
                info!(job.token = %token, order.id = %moved.job.order_id, from = %moved.from, to = %moved.job.state, "job {}", moved.job.state);
                metrics::counter!("fabflow_job_transitions_total", "to" => moved.job.state.as_str()).increment(1);
                if moved.job.state == JobState::Done {
                    // Domain seconds from the job's creation to its last unit.
                    let took = (self.clock.now_ms() - moved.job.created_ms).max(0) as f64 / 1000.0;
                    metrics::histogram!("fabflow_job_completion_seconds").record(took);
                }
                *wake |= Wake::job_moved(&moved);
                Ok(Some(moved.job.state))
            }
            Err(
                StoreError::Conflict(reason)
                | StoreError::Transition(TransitionError { from: reason, .. }),
            ) => {
                debug!(job.token = %token, input = %label, reason = %reason, "job changed meanwhile");
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }

    /// Counts a start the machine (or its profile) refused; after
    /// MAX_REFUSALS in a row the machine goes into maintenance: it needs a
    /// person, not more jobs.
    async fn refused(&self, wake: &mut Wake) -> Result<(), StoreError> {
        let refusals = self.refusals.fetch_add(1, Ordering::Relaxed) + 1;
        if refusals < MAX_REFUSALS {
            return Ok(());
        }
        self.refusals.store(0, Ordering::Relaxed);
        let now = self.clock.now_ms();
        match self
            .store
            .change_machine_mode(
                &self.machine,
                ModeInput::StartMaintenance,
                "daemon (start refused three times)",
                now,
            )
            .await
        {
            Ok(change) => *wake |= Wake::mode_changed(&change),
            // Already in maintenance (an operator was quicker): nothing to add.
            Err(StoreError::Transition(_)) => {}
            Err(err) => return Err(err),
        }
        tracing::error!(
            refusals,
            "machine refused its last starts; put in maintenance for an operator"
        );
        Ok(())
    }

    /// Starts the next queued job if the machine is active. Returns whether a
    /// start command was sent.
    async fn dispatch_next(
        &self,
        status: &MachineStatus,
        queue: &[JobRecord],
        session: &mut Session,
        in_flight: &mut InFlight<'_>,
        wake: &mut Wake,
    ) -> Result<bool, StoreError> {
        let Some(machine) = self.store.get_machine(&self.machine).await? else {
            return Ok(false);
        };
        let loaded = machine.loaded_material.as_deref();
        let startable = |job: &&JobRecord| {
            job.state == JobState::Scheduled
                && crate::domain::machine::material_fits(loaded, &job.material)
        };
        if machine.mode == MachineMode::Draining
            && !queue
                .iter()
                .any(|job| startable(&job) || job.state.is_on_machine())
        {
            // Drained: its queue is done; it pauses.
            match self
                .store
                .change_machine_mode(
                    &self.machine,
                    ModeInput::Pause,
                    "daemon (drained)",
                    self.clock.now_ms(),
                )
                .await
            {
                Ok(change) => *wake |= Wake::mode_changed(&change),
                // An operator decided otherwise meanwhile.
                Err(StoreError::Transition(_)) => {}
                Err(err) => return Err(err),
            }
            return Ok(false);
        }
        if !machine.mode.works_its_queue() {
            // Paused or in maintenance: jobs queued meanwhile go back to the planner.
            let count = self
                .store
                .unschedule_machine(&self.machine, self.clock.now_ms())
                .await?;
            *wake |= Wake::unscheduled(count);
            return Ok(false);
        }
        // A machine with a declared material starts only jobs of it; the
        // others wait (`material_not_loaded`) for the operator.
        let Some(job) = queue.iter().find(startable) else {
            return Ok(false);
        };
        // Only inside a shift, and never into planned maintenance (the
        // job's estimated run: its quantity at its seconds per unit).
        let now = self.clock.now_ms();
        let windows = self
            .store
            .maintenance_windows(Some(&self.machine), now)
            .await?;
        let calendar = crate::domain::calendar::Calendar {
            shifts: self.shifts.clone(),
            windows: windows.iter().map(|w| w.window()).collect(),
        };
        if let Some(blocked) = calendar.check(
            now,
            crate::domain::calendar::work_ms(job.quantity, job.seconds_per_unit),
        ) {
            debug!(job.token = %job.token, closed = ?blocked.why, opens_ms = ?blocked.opens_ms, "not started: the machine's calendar");
            return Ok(false);
        }
        // Staggered under the factory's power budget: the room is taken
        // here, before the dispatch is stored (a start that then does not
        // happen only keeps the room until its window ends).
        if let Err(wait) = self
            .power
            .try_start(&self.factory, &self.machine, self.startup, now)
        {
            debug!(job.token = %job.token, drawing_w = wait.drawing_w, budget_w = wait.budget_w, "not started: the factory's power budget");
            return Ok(false);
        }
        let token = job.token;
        // Persist first: once dispatched is stored, a crash at any later point
        // leads to a read-back of the machine, never to a blind second start.
        // Only a dispatch this supervisor won may be started. Lifetime
        // counters are stored with it as they stand before the start (the
        // machine is idle or done: they do not move until it runs the job).
        let baseline = self.behaviour.cumulative().then_some(CounterBaseline {
            good: status.good_count,
            scrap: status.scrap_count,
        });
        let dispatched = self
            .store
            .dispatch_job(token, baseline, self.clock.now_ms())
            .await;
        if self.applied(token, "Dispatch", dispatched, wake)? != Some(JobState::Dispatched) {
            self.power.release(&self.factory, &self.machine);
            return Ok(false);
        }
        // Stored dispatched under the lease; the start goes out only while
        // the lease is still valid here. Not sent, the job's start outcome
        // is unknown to whoever drives the machine next: it reads the
        // machine's token first, as after any restart.
        if !self.may_drive() {
            self.power.release(&self.factory, &self.machine);
            return Ok(false);
        }
        let started = &mut session.started;
        started.insert(token.0, Instant::now());
        let command = JobCommand {
            job_token: token.0,
            recipe: job.recipe,
            quantity: job.quantity,
        };
        let result = in_flight.command(self.handle.start_job(command)).await;
        // Whatever the outcome, the machine may be starting from now on: its
        // start-up draw counts from now against its factory's budget.
        self.power.started(
            &self.factory,
            &self.machine,
            self.startup,
            self.clock.now_ms(),
        );
        // From here on the job may be on the machine: it stays "started" (a
        // report not showing it proves nothing until the command timeout has
        // passed), and the machine's reaction is awaited.
        started.insert(token.0, Instant::now());
        session.awaiting = Some(Awaiting {
            command: Awaited::Start { token: token.0 },
            before: shown(status),
            sent: Instant::now(),
            stuck: false,
        });
        match result {
            Ok(()) => {
                self.refusals.store(0, Ordering::Relaxed);
                metrics::counter!("fabflow_jobs_dispatched_total").increment(1);
                // Domain seconds from the job's creation to its start.
                let waited = (self.clock.now_ms() - job.created_ms).max(0) as f64 / 1000.0;
                metrics::histogram!("fabflow_job_dispatch_seconds").record(waited);
                info!(job.token = %token, order.id = %job.order_id, "job started on machine");
            }
            Err(err) if err.device_code().is_some() => {
                // The machine answered and refused (a Modbus exception): the
                // steps stop at the first refusal, so the start coil or
                // command was never accepted and the job is not running.
                metrics::counter!("fabflow_job_start_errors_total", "reason" => err.reason())
                    .increment(1);
                warn!(job.token = %token, error = %err, "the machine refused the job; planning it again");
                session.started.remove(&token.0);
                session.awaiting = None;
                self.apply(token, JobInput::StartRefused, wake).await?;
                self.refused(wake).await?;
            }
            Err(err) => {
                metrics::counter!("fabflow_job_start_errors_total", "reason" => err.reason())
                    .increment(1);
                warn!(job.token = %token, error = %err, "start command failed; reading the machine back");
                if !err.is_retryable() {
                    // Not a lost connection: the same start would fail again.
                    self.refused(wake).await?;
                }
                // The outcome is unknown: only the machine's token can tell.
                // This read runs after the failed start on the driver's task,
                // so it is fresh.
                match in_flight.command(self.handle.read_status()).await {
                    // A machine showing another token does not have the job
                    // now, but it may have started it and lost it (a power
                    // loss between the start and this read): the token is
                    // retired and the units made again under new tokens.
                    Ok(status) if status.job_token != token.0 => {
                        session.started.remove(&token.0);
                        session.awaiting = None;
                        self.apply(token, JobInput::MachineAborted { fault_code: None }, wake)
                            .await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use fabflow_adapters::{AdapterError, DriverConfig, MachineDriver, MachineLink};
    use tokio_util::sync::CancellationToken;

    /// An always-idle machine in memory.
    struct Idle;

    #[async_trait]
    impl MachineLink for Idle {
        async fn read_status(&mut self) -> Result<MachineStatus, AdapterError> {
            Ok(MachineStatus {
                state: RunState::Idle,
                job_token: 0,
                good_count: 0,
                scrap_count: 0,
                fault_code: None,
                progress_percent: None,
            })
        }
        async fn start_job(&mut self, _cmd: &JobCommand) -> Result<(), AdapterError> {
            Ok(())
        }
        async fn acknowledge(&mut self) -> Result<(), AdapterError> {
            Ok(())
        }
    }

    // Paused time makes the interleaving exact: the driver polls only when
    // the test advances the clock, and blocks for good once the channel is full.
    #[tokio::test(start_paused = true)]
    async fn a_command_completes_while_the_facts_channel_is_full() {
        let cancel = CancellationToken::new();
        let mut config = DriverConfig::new("m");
        config.poll_interval = Duration::from_millis(1);
        let connector = || async { Ok(Box::new(Idle) as Box<dyn MachineLink>) };
        let (handle, mut facts) = MachineDriver::spawn(config, connector, cancel.clone());
        while facts.len() < facts.max_capacity() {
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        // One more poll: the driver now waits for room before it serves anything.
        tokio::time::advance(Duration::from_millis(5)).await;
        let command = JobCommand {
            job_token: 7,
            recipe: 1,
            quantity: 1,
        };
        let bare = tokio::time::timeout(
            Duration::from_millis(300),
            handle.start_job(command.clone()),
        )
        .await;
        assert!(
            bare.is_err(),
            "awaited bare, the command waits for the driver forever"
        );
        let mut in_flight = InFlight {
            facts: &mut facts,
            lost: None,
        };
        let result = tokio::time::timeout(
            Duration::from_secs(10),
            in_flight.command(handle.start_job(command)),
        )
        .await;
        assert!(matches!(result, Ok(Ok(()))), "{result:?}");
        assert_eq!(in_flight.lost, None);
        cancel.cancel();
    }
}
