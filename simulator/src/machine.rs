//! One simulated machine: a real tokio-modbus TCP server on a listener we
//! bind, holding a register image laid out by a machine profile.
//!
//! Behaviour (the contract the compliance suite checks):
//! - The start trigger (the last step of the profile's `start`: a coil or a
//!   command register) starts a job from the job_token/recipe/quantity
//!   registers; the token is logged in `started_tokens`. The machine runs for
//!   `cycle_seconds * quantity / time_scale` of real time, counting units as
//!   they finish (each unit is scrap with probability `scrap_rate`, drawn from
//!   a seeded RNG: deterministic per seed and job sequence), then is Done.
//! - The acknowledge trigger returns Done to Idle; the job token stays.
//! - Writing job parameters or the start trigger while not Idle is refused
//!   with exception 0x06 ServerDeviceBusy (so the reported token always
//!   belongs to the job that ran). Acknowledging while Running is Busy too;
//!   while Fault it is 0x04 ServerDeviceFailure (clear the fault first).
//! - A profile without `acknowledge`: the machine takes its next job (the
//!   parameters and the start trigger) straight from Done as from Idle.
//! - A profile with `token_echo`: the machine shows the token of the job it
//!   took in that signal, and takes the start registers as a mailbox: the
//!   `job_token` register the start wrote reads 0 once the job is taken.
//! - Counters with `counts = "cumulative"` show lifetime totals (from
//!   [`SimMachineHandle::set_lifetime_counts`]) wrapping at the register
//!   width; per-job counters restart at 0 with each job.
//! - Every write request is counted by table and start address
//!   ([`SimMachineHandle::writes`]).
//! - Writes to status signals are 0x02 IllegalDataAddress; a command register
//!   written with an unknown value is 0x03 IllegalDataValue. Trigger coils and
//!   command registers read back as 0 (they act, they do not store).
//! - A request for another unit id gets 0x0B GatewayTargetDevice (tokio-modbus
//!   does not filter unit ids; we do).
//!
//! Invariant: no adapter encoding is used; see `wire`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use fabflow_adapters::RunState;
use fabflow_adapters::profile::{Counts, Profile, RegisterKind, Signal, SignalName, Step};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};
use tracing::debug;

use crate::SimError;
use crate::faults::{FaultSpec, FaultState};
use crate::wire;

/// How one simulated machine behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct SimMachineConfig {
    pub machine_id: String,
    /// Simulated seconds per unit.
    pub cycle_seconds: f64,
    /// Probability that a unit is scrap, 0..=1.
    pub scrap_rate: f64,
    /// Simulated seconds per real second (> 0).
    pub time_scale: f64,
    /// Seed of this machine's scrap RNG.
    pub seed: u64,
}

/// A point-in-time view of a simulated machine, for tests and operators.
#[derive(Debug, Clone, PartialEq)]
pub struct SimSnapshot {
    pub state: RunState,
    pub job_token: u32,
    pub recipe: u32,
    pub quantity: u32,
    pub good_count: u32,
    pub scrap_count: u32,
    pub fault_code: u32,
    pub progress_percent: f64,
}

/// Starts simulated machines.
#[derive(Debug)]
pub struct SimMachine;

impl SimMachine {
    /// Binds 127.0.0.1:0 and serves the profile until `shutdown`.
    pub async fn start(
        config: SimMachineConfig,
        profile: Arc<Profile>,
    ) -> Result<SimMachineHandle, SimError> {
        Self::start_with_sequence(config, profile, Arc::new(AtomicU64::new(0))).await
    }

    /// Like [`SimMachine::start`], numbering starts with a counter shared by a fleet.
    pub(crate) async fn start_with_sequence(
        config: SimMachineConfig,
        profile: Arc<Profile>,
        sequence: Arc<AtomicU64>,
    ) -> Result<SimMachineHandle, SimError> {
        let invalid = |message: String| SimError::InvalidMachine {
            machine: config.machine_id.clone(),
            message,
        };
        if !(config.time_scale.is_finite() && config.time_scale > 0.0) {
            return Err(invalid(format!(
                "time_scale must be > 0, got {}",
                config.time_scale
            )));
        }
        if !(config.cycle_seconds.is_finite() && config.cycle_seconds >= 0.0) {
            return Err(invalid(format!(
                "cycle_seconds must be >= 0, got {}",
                config.cycle_seconds
            )));
        }
        if !(0.0..=1.0).contains(&config.scrap_rate) {
            return Err(invalid(format!(
                "scrap_rate must be 0..=1, got {}",
                config.scrap_rate
            )));
        }
        let layout = Layout::from_profile(&profile).map_err(invalid)?;
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let image = Image {
            holding: vec![0; layout.table_len(RegisterKind::Holding)],
            input: vec![0; layout.table_len(RegisterKind::Input)],
            coils: vec![false; layout.table_len(RegisterKind::Coil)],
            discrete: vec![false; layout.table_len(RegisterKind::Discrete)],
        };
        let rng = StdRng::seed_from_u64(config.seed);
        let shared = Arc::new(Shared {
            config,
            profile,
            layout,
            addr,
            silent: AtomicBool::new(false),
            refuse_starts: AtomicBool::new(false),
            ignore_starts: AtomicBool::new(false),
            ignore_acks: AtomicBool::new(false),
            drop_start_replies: AtomicU32::new(0),
            dropped_start_replies: AtomicU32::new(0),
            sequence,
            inner: Mutex::new(Inner {
                image,
                phase: Phase::Idle,
                rng,
                started: Vec::new(),
                finished: Vec::new(),
                fault_code: 0,
                good_count: 0,
                scrap_count: 0,
                lifetime_good: 0,
                lifetime_scrap: 0,
                echo: 0,
                writes: BTreeMap::new(),
                progress_percent: 0.0,
                hold: false,
                paused: false,
                faults: FaultState::default(),
                power_cut: false,
            }),
            stopped: AtomicBool::new(false),
            flapping: AtomicBool::new(false),
            server: Arc::new(Server::new(listener)),
            serve_task: Mutex::new(None),
        });
        shared.publish_initial();
        let handle = SimMachineHandle { shared };
        handle.spawn_server();
        Ok(handle)
    }
}

/// A cheap handle to one simulated machine: inspection and fault injection.
#[derive(Debug, Clone)]
pub struct SimMachineHandle {
    shared: Arc<Shared>,
}

impl SimMachineHandle {
    pub fn machine_id(&self) -> &str {
        &self.shared.config.machine_id
    }

    pub fn model(&self) -> &str {
        &self.shared.profile.model
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    pub fn profile(&self) -> &Arc<Profile> {
        &self.shared.profile
    }

    /// Every job token started here, in order (a duplicate means a job was
    /// physically produced twice).
    pub fn started_tokens(&self) -> Vec<u32> {
        self.shared
            .lock()
            .started
            .iter()
            .map(|(_, token)| *token)
            .collect()
    }

    /// Started tokens with their fleet-wide start sequence number.
    pub fn started_log(&self) -> Vec<(u64, u32)> {
        self.shared.lock().started.clone()
    }

    /// Every job finished here: (token, Unix ms of its last unit). A job's
    /// finish is noticed when the machine is next read, and dated back to
    /// when its last unit was made.
    pub fn finished_log(&self) -> Vec<(u32, u64)> {
        let mut inner = self.shared.lock();
        inner.advance(Instant::now());
        inner.finished.clone()
    }

    pub fn snapshot(&self) -> SimSnapshot {
        let mut inner = self.shared.lock();
        inner.advance(Instant::now());
        let token = if self.shared.profile.echoes_token() {
            inner.echo
        } else {
            self.shared.read_holding(&inner, SignalName::JobToken)
        };
        let recipe = self.shared.read_holding(&inner, SignalName::Recipe);
        let quantity = self.shared.read_holding(&inner, SignalName::Quantity);
        SimSnapshot {
            state: inner.state(),
            job_token: token,
            recipe,
            quantity,
            good_count: inner.good_count,
            scrap_count: inner.scrap_count,
            fault_code: inner.fault_code,
            progress_percent: inner.progress_percent,
        }
    }

    /// Puts the machine in Fault with `code` (a jam): a running job stops
    /// where it is, keeping its token and counts, and goes on when the
    /// fault is cleared.
    pub fn inject_fault(&self, code: u32) {
        let mut inner = self.shared.lock();
        inner.advance(Instant::now());
        let interrupted = match std::mem::replace(&mut inner.phase, Phase::Idle) {
            Phase::Running(job) => Some(job),
            Phase::Fault(job) => job,
            Phase::Idle | Phase::Done => None,
        };
        inner.phase = Phase::Fault(interrupted);
        inner.fault_code = code;
        inner.publish_with(&self.shared);
    }

    /// Clears a fault, fault code 0: a job the fault stopped resumes under
    /// the same token, its counts continuing (it is not a new start);
    /// without one the machine is Idle. No effect in other states.
    pub fn clear_fault(&self) {
        let mut inner = self.shared.lock();
        let phase = std::mem::replace(&mut inner.phase, Phase::Idle);
        let cleared = matches!(phase, Phase::Fault(_));
        inner.phase = match phase {
            Phase::Fault(Some(mut job)) => {
                job.last_update = Instant::now();
                Phase::Running(job)
            }
            Phase::Fault(None) => Phase::Idle,
            other => other,
        };
        if cleared {
            inner.fault_code = 0;
            inner.faults.forget_jam();
        }
        inner.publish_with(&self.shared);
    }

    /// A power loss: every connection drops, and the machine comes back
    /// idle without its job: job registers, token, counts and fault code
    /// cleared (lifetime counters survive). Its start log is kept (it is
    /// the test's record of what was physically started).
    pub async fn power_cycle(&self) {
        self.stop_server().await;
        {
            let mut inner = self.shared.lock();
            inner.lose_power();
            inner.power_cut = false;
            inner.publish_with(&self.shared);
        }
        self.spawn_server();
    }

    /// While silent, requests are read but never answered (client timeouts).
    pub fn set_silent(&self, silent: bool) {
        self.shared.silent.store(silent, Ordering::SeqCst);
    }

    /// While set, the machine answers every start trigger as if it took it
    /// but does nothing: no job, no state change (a machine that does not
    /// react to commands).
    pub fn set_ignore_starts(&self, ignore: bool) {
        self.shared.ignore_starts.store(ignore, Ordering::SeqCst);
    }

    /// While set, the machine answers every acknowledge trigger as if it
    /// took it but stays where it is (a finished job stays `done`).
    pub fn set_ignore_acks(&self, ignore: bool) {
        self.shared.ignore_acks.store(ignore, Ordering::SeqCst);
    }

    /// The next `count` start triggers start their job but their replies
    /// are never sent: the client times out not knowing whether the start
    /// happened.
    pub fn drop_next_start_replies(&self, count: u32) {
        self.shared
            .drop_start_replies
            .store(count, Ordering::SeqCst);
    }

    /// How many start replies were dropped so far.
    pub fn dropped_start_replies(&self) -> u32 {
        self.shared.dropped_start_replies.load(Ordering::SeqCst)
    }

    /// Sets the lifetime totals shown by cumulative counters (before any
    /// job); they wrap at the register width.
    pub fn set_lifetime_counts(&self, good: u64, scrap: u64) {
        let mut inner = self.shared.lock();
        inner.lifetime_good = good;
        inner.lifetime_scrap = scrap;
        inner.publish_with(&self.shared);
    }

    /// How many write requests reached each (table, start address).
    pub fn writes(&self) -> BTreeMap<(RegisterKind, u16), u64> {
        self.shared.lock().writes.clone()
    }

    /// While set, the machine refuses every start with exception 0x04
    /// ServerDeviceFailure (a door open, a sensor fault): it stays idle.
    pub fn set_refuse_starts(&self, refuse: bool) {
        self.shared.refuse_starts.store(refuse, Ordering::SeqCst);
    }

    /// While held, a running job's clock stops but it still reports Running
    /// (lets tests observe Running without racing the clock).
    pub fn set_hold(&self, hold: bool) {
        let mut inner = self.shared.lock();
        inner.advance(Instant::now());
        inner.hold = hold;
        inner.publish_with(&self.shared);
    }

    /// Pauses (reports Paused, clock stopped) or resumes a running job.
    pub fn set_paused(&self, paused: bool) {
        let mut inner = self.shared.lock();
        inner.advance(Instant::now());
        inner.paused = paused;
        inner.publish_with(&self.shared);
    }

    /// Closes every open client connection; the listener keeps accepting.
    pub async fn drop_connections(&self) {
        self.stop_server().await;
        self.spawn_server();
    }

    /// Stops serving: closes the connections and the accept loop.
    pub async fn shutdown(&self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.stop_server().await;
    }

    /// Sets the machine's injected faults (see `faults`); a flapping
    /// network starts at once and stops when `flap_every_ms` is set to 0.
    pub fn set_faults(&self, spec: FaultSpec) {
        let flap = spec.flap_every_ms;
        self.shared.lock().faults.set(spec);
        if flap == 0 || self.shared.flapping.swap(true, Ordering::SeqCst) {
            return;
        }
        let handle = self.clone();
        tokio::spawn(async move {
            loop {
                let period = handle.shared.lock().faults.spec.flap_every_ms;
                if period == 0 || handle.shared.stopped.load(Ordering::SeqCst) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(period)).await;
                if handle.shared.stopped.load(Ordering::SeqCst) {
                    break;
                }
                debug!(machine.id = %handle.machine_id(), "sim network flap: connections dropped");
                handle.drop_connections().await;
            }
            handle.shared.flapping.store(false, Ordering::SeqCst);
        });
    }

    /// The machine's injected faults as they stand (counts used up).
    pub fn faults(&self) -> FaultSpec {
        self.shared.lock().faults.spec.clone()
    }

    async fn stop_server(&self) {
        let task = self.shared.serve_lock().take();
        if let Some(task) = task {
            task.abort();
            // Aborting drops `serve`, whose drop guard cancels every connection.
            let _cancelled = task.await;
        }
    }

    fn spawn_server(&self) {
        if self.shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let server = Arc::clone(&self.shared.server);
        let service = SimService {
            shared: Arc::clone(&self.shared),
        };
        let machine_id = self.shared.config.machine_id.clone();
        let task = tokio::spawn(async move {
            let on_connected = |stream, peer| {
                let service = service.clone();
                std::future::ready(accept_tcp_connection(stream, peer, move |_| {
                    Ok(Some(service.clone()))
                }))
            };
            let on_error = move |err: std::io::Error| debug!(machine.id = %machine_id, error = %err, "sim connection ended");
            if let Err(err) = server.serve(&on_connected, on_error).await {
                debug!(error = %err, "sim server stopped");
            }
        });
        *self.shared.serve_lock() = Some(task);
    }
}

struct Shared {
    config: SimMachineConfig,
    profile: Arc<Profile>,
    layout: Layout,
    addr: SocketAddr,
    /// Set by `set_silent`: requests are swallowed.
    silent: AtomicBool,
    /// Set by `set_refuse_starts`: every start gets ServerDeviceFailure.
    refuse_starts: AtomicBool,
    /// Set by `set_ignore_starts`: start triggers are answered and do nothing.
    ignore_starts: AtomicBool,
    /// Set by `set_ignore_acks`: acknowledge triggers are answered and do
    /// nothing.
    ignore_acks: AtomicBool,
    /// Set by `drop_next_start_replies`: how many of the next start triggers
    /// act but get no reply (the client cannot know the start happened).
    drop_start_replies: AtomicU32,
    /// Start replies dropped so far.
    dropped_start_replies: AtomicU32,
    /// Fleet-wide start counter (orders duplicate starts across machines).
    sequence: Arc<AtomicU64>,
    inner: Mutex<Inner>,
    /// Set by `shutdown`: the server is never started again (a flapping
    /// network stops with it).
    stopped: AtomicBool,
    /// A flapping task runs (at most one).
    flapping: AtomicBool,
    /// The tokio-modbus server; `serve` borrows it, so it can be restarted.
    server: Arc<Server>,
    /// The running accept loop; aborting it closes every connection.
    serve_task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("machine_id", &self.config.machine_id)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock means a panic inside the simulator's own code; the
        // image is still usable for a test to report on.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn serve_lock(&self) -> MutexGuard<'_, Option<JoinHandle<()>>> {
        self.serve_task
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn signal(&self, name: SignalName) -> Option<&Signal> {
        self.profile.signal(name)
    }

    fn read_holding(&self, inner: &Inner, name: SignalName) -> u32 {
        let Some(signal) = self.signal(name) else {
            return 0;
        };
        let start = usize::from(signal.address);
        let end = start + usize::from(signal.value_type.width());
        let value = inner
            .image
            .holding
            .get(start..end)
            .map_or(0.0, |w| wire::decode(signal, w));
        let rounded = value.round();
        if rounded.is_finite() && rounded >= 0.0 && rounded <= f64::from(u32::MAX) {
            rounded as u32
        } else {
            0
        }
    }

    fn handle(&self, request: SlaveRequest<'static>) -> Result<Option<Response>, ExceptionCode> {
        if self.silent.load(Ordering::SeqCst) {
            return Ok(None);
        }
        if request.slave != self.profile.unit_id {
            return Err(ExceptionCode::GatewayTargetDevice);
        }
        let mut inner = self.lock();
        inner.publish_with(self);
        let written = match &request.request {
            Request::WriteSingleCoil(address, _) | Request::WriteMultipleCoils(address, _) => {
                Some((RegisterKind::Coil, *address))
            }
            Request::WriteSingleRegister(address, _)
            | Request::WriteMultipleRegisters(address, _) => {
                Some((RegisterKind::Holding, *address))
            }
            _ => None,
        };
        if let Some(key) = written {
            *inner.writes.entry(key).or_insert(0) += 1;
        }
        let started_before = inner.started.len();
        if let Some(words) = self.garbage(&mut inner, &request.request) {
            return Ok(Some(words));
        }
        let response = match request.request {
            Request::ReadHoldingRegisters(address, count) => Response::ReadHoldingRegisters(
                read_range(&inner.image.holding, address, count, 125)?,
            ),
            Request::ReadInputRegisters(address, count) => {
                Response::ReadInputRegisters(read_range(&inner.image.input, address, count, 125)?)
            }
            Request::ReadCoils(address, count) => {
                Response::ReadCoils(read_range(&inner.image.coils, address, count, 2000)?)
            }
            Request::ReadDiscreteInputs(address, count) => Response::ReadDiscreteInputs(
                read_range(&inner.image.discrete, address, count, 2000)?,
            ),
            Request::WriteSingleCoil(address, value) => {
                self.write_coils(&mut inner, address, &[value])?;
                Response::WriteSingleCoil(address, value)
            }
            Request::WriteMultipleCoils(address, values) => {
                self.write_coils(&mut inner, address, &values)?;
                Response::WriteMultipleCoils(address, values.len() as u16)
            }
            Request::WriteSingleRegister(address, word) => {
                self.write_registers(&mut inner, address, &[word])?;
                Response::WriteSingleRegister(address, word)
            }
            Request::WriteMultipleRegisters(address, words) => {
                self.write_registers(&mut inner, address, &words)?;
                Response::WriteMultipleRegisters(address, words.len() as u16)
            }
            _ => return Err(ExceptionCode::IllegalFunction),
        };
        inner.publish_with(self);
        if inner.started.len() != started_before
            && self
                .drop_start_replies
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            self.dropped_start_replies.fetch_add(1, Ordering::SeqCst);
            debug!(machine.id = %self.config.machine_id, "sim start reply dropped");
            return Ok(None);
        }
        Ok(Some(response))
    }

    /// Garbage for a read of the status that covers the state signal, while
    /// `garbage_reads` lasts: random words, the state an unknown code.
    fn garbage(&self, inner: &mut Inner, request: &Request<'_>) -> Option<Response> {
        let (kind, address, count) = match request {
            Request::ReadInputRegisters(a, c) => (RegisterKind::Input, *a, *c),
            Request::ReadHoldingRegisters(a, c) => (RegisterKind::Holding, *a, *c),
            _ => return None,
        };
        let state = self.signal(SignalName::State)?;
        let span = usize::from(address)..usize::from(address) + usize::from(count);
        if state.kind != kind || !span.contains(&usize::from(state.address)) {
            return None;
        }
        if check_range(
            match kind {
                RegisterKind::Input => inner.image.input.len(),
                _ => inner.image.holding.len(),
            },
            address,
            usize::from(count),
            125,
        )
        .is_err()
            || !inner.faults.take_garbage()
        {
            return None;
        }
        let mut words: Vec<u16> = (0..count).map(|_| inner.rng.random::<u16>()).collect();
        let code = wire::encode(state, f64::from(self.layout.unknown_state_code));
        let at = usize::from(state.address - address);
        if let Some(slot) = words.get_mut(at..at + code.len()) {
            slot.copy_from_slice(&code);
        }
        debug!(machine.id = %self.config.machine_id, "sim: garbage status read");
        Some(match kind {
            RegisterKind::Input => Response::ReadInputRegisters(words),
            _ => Response::ReadHoldingRegisters(words),
        })
    }

    /// Whether the machine takes job parameters and a start now: when idle,
    /// or done if it has no acknowledge step.
    fn takes_job(&self, phase: &Phase) -> bool {
        match phase {
            Phase::Idle => true,
            Phase::Done => self.profile.acknowledge.is_none(),
            Phase::Running(_) | Phase::Fault(_) => false,
        }
    }

    fn write_coils(
        &self,
        inner: &mut Inner,
        address: u16,
        values: &[bool],
    ) -> Result<(), ExceptionCode> {
        check_range(inner.image.coils.len(), address, values.len(), 1968)?;
        for (offset, value) in values.iter().enumerate() {
            let at = address as usize + offset;
            if let Some(trigger) = self.layout.trigger_at(RegisterKind::Coil, at) {
                if *value {
                    self.fire(inner, trigger)?;
                }
                continue;
            }
            inner.image.coils[at] = *value;
        }
        Ok(())
    }

    fn write_registers(
        &self,
        inner: &mut Inner,
        address: u16,
        words: &[u16],
    ) -> Result<(), ExceptionCode> {
        check_range(inner.image.holding.len(), address, words.len(), 123)?;
        let span = address as usize..address as usize + words.len();
        if self
            .layout
            .read_only
            .iter()
            .any(|r| r.start < span.end && span.start < r.end)
        {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        let touches_job = self
            .layout
            .job_params
            .iter()
            .any(|r| r.start < span.end && span.start < r.end);
        if touches_job && !self.takes_job(&inner.phase) {
            return Err(ExceptionCode::ServerDeviceBusy);
        }
        for (offset, word) in words.iter().enumerate() {
            let at = span.start + offset;
            if self.layout.command_registers.contains(&at) {
                match self.layout.register_trigger(at, *word) {
                    Some(trigger) => self.fire(inner, trigger)?,
                    None => return Err(ExceptionCode::IllegalDataValue),
                }
                continue;
            }
            inner.image.holding[at] = *word;
        }
        Ok(())
    }

    fn fire(&self, inner: &mut Inner, trigger: Trigger) -> Result<(), ExceptionCode> {
        match trigger {
            Trigger::Start => self.start_job(inner),
            Trigger::Acknowledge if self.ignore_acks.load(Ordering::SeqCst) => {
                debug!(machine.id = %self.config.machine_id, "sim acknowledge ignored");
                Ok(())
            }
            Trigger::Acknowledge => match inner.phase {
                Phase::Done | Phase::Idle => {
                    inner.phase = Phase::Idle;
                    Ok(())
                }
                Phase::Running(_) => Err(ExceptionCode::ServerDeviceBusy),
                Phase::Fault(_) => Err(ExceptionCode::ServerDeviceFailure),
            },
        }
    }

    fn start_job(&self, inner: &mut Inner) -> Result<(), ExceptionCode> {
        if !self.takes_job(&inner.phase) {
            return Err(ExceptionCode::ServerDeviceBusy);
        }
        if self.refuse_starts.load(Ordering::SeqCst) {
            return Err(ExceptionCode::ServerDeviceFailure);
        }
        if self.ignore_starts.load(Ordering::SeqCst) {
            debug!(machine.id = %self.config.machine_id, "sim start ignored");
            return Ok(());
        }
        let token = self.read_holding(inner, SignalName::JobToken);
        let quantity = self.read_holding(inner, SignalName::Quantity);
        if quantity == 0 {
            return Err(ExceptionCode::IllegalDataValue);
        }
        let scrap_rate = self.config.scrap_rate;
        let scrap: Vec<bool> = (0..quantity)
            .map(|_| inner.rng.random_bool(scrap_rate))
            .collect();
        let scrap = inner.faults.new_job(scrap);
        let sequence = self.sequence.fetch_add(1, Ordering::SeqCst);
        inner.started.push((sequence, token));
        let unit_seconds = self.config.cycle_seconds / self.config.time_scale;
        let unit = inner.faults.unit(Duration::from_secs_f64(unit_seconds));
        inner.phase = Phase::Running(Job {
            scrap,
            unit,
            elapsed: Duration::ZERO,
            last_update: Instant::now(),
        });
        // The last job's units join the lifetime totals; this job counts from 0.
        inner.lifetime_good += u64::from(inner.good_count);
        inner.lifetime_scrap += u64::from(inner.scrap_count);
        inner.good_count = 0;
        inner.scrap_count = 0;
        inner.progress_percent = 0.0;
        if self.profile.echoes_token() {
            inner.echo = token;
            // The start registers are a mailbox: the machine took the token.
            if let Some(signal) = self.signal(SignalName::JobToken) {
                let start = usize::from(signal.address);
                let end = start + usize::from(signal.value_type.width());
                if let Some(slot) = inner.image.holding.get_mut(start..end) {
                    slot.fill(0);
                }
            }
        }
        debug!(machine.id = %self.config.machine_id, job.token = token, quantity, "sim job started");
        Ok(())
    }
}

#[derive(Clone)]
struct SimService {
    shared: Arc<Shared>,
}

impl tokio_modbus::server::Service for SimService {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = std::future::Ready<Result<Self::Response, Self::Exception>>;

    fn call(&self, request: Self::Request) -> Self::Future {
        let reply = self.shared.handle(request);
        // A power loss set in the fleet spec struck while this request was
        // served: every connection drops, as at `power_cycle`.
        if std::mem::take(&mut self.shared.lock().power_cut) {
            let handle = SimMachineHandle {
                shared: Arc::clone(&self.shared),
            };
            tokio::spawn(async move { handle.drop_connections().await });
        }
        std::future::ready(reply)
    }
}

fn check_range(len: usize, address: u16, count: usize, max: usize) -> Result<(), ExceptionCode> {
    if count == 0 || count > max {
        return Err(ExceptionCode::IllegalDataValue);
    }
    if usize::from(address) + count > len {
        return Err(ExceptionCode::IllegalDataAddress);
    }
    Ok(())
}

fn read_range<T: Copy>(
    table: &[T],
    address: u16,
    count: u16,
    max: usize,
) -> Result<Vec<T>, ExceptionCode> {
    check_range(table.len(), address, usize::from(count), max)?;
    let start = usize::from(address);
    Ok(table[start..start + usize::from(count)].to_vec())
}

struct Image {
    holding: Vec<u16>,
    input: Vec<u16>,
    coils: Vec<bool>,
    discrete: Vec<bool>,
}

struct Job {
    /// Per unit, in order: true when that unit will be scrap.
    scrap: Vec<bool>,
    /// Real time per unit.
    unit: Duration,
    /// Real time the job has run (excluding hold and pause).
    elapsed: Duration,
    last_update: Instant,
}

enum Phase {
    Idle,
    Running(Job),
    Done,
    /// With the job the fault stopped, if any: it resumes when cleared.
    Fault(Option<Job>),
}

struct Inner {
    image: Image,
    phase: Phase,
    rng: StdRng,
    started: Vec<(u64, u32)>,
    /// (token, Unix ms) of every job finished.
    finished: Vec<(u32, u64)>,
    fault_code: u32,
    /// Units of the current (or last) job.
    good_count: u32,
    scrap_count: u32,
    /// Units of every earlier job (and the starting totals).
    lifetime_good: u64,
    lifetime_scrap: u64,
    /// The token of the last job taken (shown in `token_echo`).
    echo: u32,
    /// Write requests per (table, start address).
    writes: BTreeMap<(RegisterKind, u16), u64>,
    progress_percent: f64,
    hold: bool,
    paused: bool,
    /// Injected faults (see `faults`).
    faults: FaultState,
    /// An injected power loss struck while serving a request: the
    /// connections are to be dropped.
    power_cut: bool,
}

impl Inner {
    /// What a power loss leaves: idle, without its job (registers, token,
    /// counts and fault code cleared; lifetime counters and the start log
    /// survive).
    fn lose_power(&mut self) {
        self.phase = Phase::Idle;
        self.lifetime_good += u64::from(self.good_count);
        self.lifetime_scrap += u64::from(self.scrap_count);
        self.good_count = 0;
        self.scrap_count = 0;
        self.fault_code = 0;
        self.progress_percent = 0.0;
        self.echo = 0;
        self.hold = false;
        self.paused = false;
        self.faults.forget_jam();
        self.image.holding.fill(0);
        self.image.coils.fill(false);
        self.power_cut = true;
    }

    fn state(&self) -> RunState {
        match &self.phase {
            Phase::Idle => RunState::Idle,
            Phase::Running(_) if self.paused => RunState::Paused,
            Phase::Running(_) => RunState::Running,
            Phase::Done => RunState::Done,
            Phase::Fault(_) => RunState::Fault,
        }
    }

    /// Moves a running job's clock to `now` and updates counts and progress.
    fn advance(&mut self, now: Instant) {
        // A jam that clears by itself: the job goes on where it stopped.
        if matches!(self.phase, Phase::Fault(Some(_))) && self.faults.cleared(now) {
            if let Phase::Fault(Some(mut job)) = std::mem::replace(&mut self.phase, Phase::Idle) {
                job.last_update = now;
                self.phase = Phase::Running(job);
            }
            self.fault_code = 0;
        }
        let frozen = self.hold || self.paused;
        let Phase::Running(job) = &mut self.phase else {
            return;
        };
        if !frozen {
            job.elapsed += now.saturating_duration_since(job.last_update);
        }
        job.last_update = now;
        let total = job.scrap.len();
        // Units' worth of time worked (2.5: two made, the third half way).
        let worked = job.elapsed.as_secs_f64() / job.unit.as_secs_f64().max(1e-9);
        let (finished, good, scrap) = units_done(job.elapsed, job.unit, &job.scrap);
        self.scrap_count = scrap;
        self.good_count = good;
        self.progress_percent = if finished == total {
            100.0
        } else {
            (job.elapsed.as_secs_f64() / (job.unit.as_secs_f64() * total as f64) * 100.0).min(100.0)
        };
        if finished == total {
            let at = finished_at_ms(job.elapsed, job.unit, total);
            if let Some(&(_, token)) = self.started.last() {
                self.finished.push((token, at));
            }
            self.phase = Phase::Done;
        } else if let Some(code) = self.faults.jam_now(finished, total, now)
            && let Phase::Running(job) = std::mem::replace(&mut self.phase, Phase::Idle)
        {
            self.phase = Phase::Fault(Some(job));
            self.fault_code = code;
        } else if self.faults.power_loss_now(worked, total) {
            debug!(token = self.echo, "sim power loss (fleet spec)");
            self.lose_power();
        }
    }

    /// Writes the status signals into the register image.
    fn publish_with(&mut self, shared: &Shared) {
        self.advance(Instant::now());
        let state = self.state();
        let code = shared.layout.state_codes.get(&state).copied();
        let counter = |name: SignalName, job: u32, lifetime: u64| -> Option<f64> {
            let signal = shared.signal(name)?;
            match (signal.counts, signal.modulus()) {
                (Counts::Cumulative, Some(modulus)) => {
                    Some(((lifetime + u64::from(job)) % modulus) as f64)
                }
                _ => Some(f64::from(job)),
            }
        };
        let values = [
            (SignalName::State, code.map(|c| c as f64)),
            (
                SignalName::GoodCount,
                counter(SignalName::GoodCount, self.good_count, self.lifetime_good),
            ),
            (
                SignalName::ScrapCount,
                counter(
                    SignalName::ScrapCount,
                    self.scrap_count,
                    self.lifetime_scrap,
                ),
            ),
            (SignalName::FaultCode, Some(f64::from(self.fault_code))),
            (SignalName::Progress, Some(self.progress_percent)),
            (SignalName::TokenEcho, Some(f64::from(self.echo))),
        ];
        for (name, value) in values {
            let (Some(signal), Some(value)) = (shared.signal(name), value) else {
                continue;
            };
            let words = wire::encode(signal, value);
            let table = match signal.kind {
                RegisterKind::Holding => &mut self.image.holding,
                RegisterKind::Input => &mut self.image.input,
                RegisterKind::Coil | RegisterKind::Discrete => continue,
            };
            let start = usize::from(signal.address);
            if let Some(slot) = table.get_mut(start..start + words.len()) {
                slot.copy_from_slice(&words);
            }
        }
    }
}

impl Shared {
    fn publish_initial(&self) {
        let mut inner = self.lock();
        inner.publish_with(self);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Start,
    Acknowledge,
}

/// Where things live, worked out once from the profile.
struct Layout {
    /// Registers/coils used per table (for sizing).
    ends: BTreeMap<RegisterKind, usize>,
    /// Holding spans of status signals (client writes refused).
    read_only: Vec<std::ops::Range<usize>>,
    /// Holding spans of job_token, recipe, quantity.
    job_params: Vec<std::ops::Range<usize>>,
    /// Command registers and the value → trigger they accept.
    register_triggers: BTreeMap<(usize, u16), Trigger>,
    command_registers: Vec<usize>,
    coil_triggers: BTreeMap<usize, Trigger>,
    /// The code reported for each state (the smallest code mapping to it).
    state_codes: BTreeMap<RunState, i64>,
    /// A state code the profile does not map (for garbage reads).
    unknown_state_code: u16,
}

impl Layout {
    fn from_profile(profile: &Profile) -> Result<Layout, String> {
        let mut ends: BTreeMap<RegisterKind, usize> = BTreeMap::new();
        let mut read_only = Vec::new();
        let mut job_params = Vec::new();
        for (name, signal) in &profile.signals {
            let span = usize::from(signal.address)
                ..usize::from(signal.address) + usize::from(signal.value_type.width());
            let end = ends.entry(signal.kind).or_insert(0);
            *end = (*end).max(span.end);
            if signal.kind == RegisterKind::Holding {
                if name.is_command_value() {
                    job_params.push(span);
                } else {
                    read_only.push(span);
                }
            }
        }
        let mut register_triggers = BTreeMap::new();
        let mut coil_triggers = BTreeMap::new();
        let mut commands = vec![(&profile.start.steps, Trigger::Start)];
        if let Some(acknowledge) = &profile.acknowledge {
            commands.push((&acknowledge.steps, Trigger::Acknowledge));
        }
        for (steps, trigger) in commands {
            match steps.last() {
                Some(Step::WriteCoil {
                    address,
                    value: true,
                }) => {
                    coil_triggers.insert(usize::from(*address), trigger);
                    let end = ends.entry(RegisterKind::Coil).or_insert(0);
                    *end = (*end).max(usize::from(*address) + 1);
                }
                Some(Step::WriteRegister { address, value }) => {
                    register_triggers.insert((usize::from(*address), *value), trigger);
                    let end = ends.entry(RegisterKind::Holding).or_insert(0);
                    *end = (*end).max(usize::from(*address) + 1);
                }
                other => {
                    return Err(format!(
                        "profile {}: unsupported trigger step {other:?} (need a coil set true or a register write)",
                        profile.model
                    ));
                }
            }
        }
        let command_registers = register_triggers
            .keys()
            .map(|(address, _)| *address)
            .collect();
        let mut state_codes = BTreeMap::new();
        if let Some(state) = profile.signal(SignalName::State) {
            for (code, name) in &state.map {
                state_codes.entry(*name).or_insert(*code);
            }
        }
        let mapped: Vec<i64> = profile
            .signal(SignalName::State)
            .map(|state| state.map.keys().copied().collect())
            .unwrap_or_default();
        let unknown_state_code = (0..=u16::MAX)
            .rev()
            .find(|code| !mapped.contains(&i64::from(*code)))
            .unwrap_or(u16::MAX);
        Ok(Layout {
            ends,
            read_only,
            job_params,
            register_triggers,
            command_registers,
            coil_triggers,
            state_codes,
            unknown_state_code,
        })
    }

    /// Table size: everything used plus some slack, so block reads spanning
    /// small gaps succeed; beyond it, IllegalDataAddress.
    fn table_len(&self, kind: RegisterKind) -> usize {
        (self.ends.get(&kind).copied().unwrap_or(0) + 16).min(65536)
    }

    fn trigger_at(&self, kind: RegisterKind, at: usize) -> Option<Trigger> {
        match kind {
            RegisterKind::Coil => self.coil_triggers.get(&at).copied(),
            _ => None,
        }
    }

    fn register_trigger(&self, at: usize, value: u16) -> Option<Trigger> {
        self.register_triggers.get(&(at, value)).copied()
    }
}

/// Unix ms at which a job of `total` units at `unit` each made its last
/// unit, seen now after it has run `elapsed`: `elapsed` past the last unit
/// is how long ago that was.
pub(crate) fn finished_at_ms(elapsed: Duration, unit: Duration, total: usize) -> u64 {
    let made = unit.saturating_mul(u32::try_from(total).unwrap_or(u32::MAX));
    let ago = elapsed.saturating_sub(made);
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_sub(ago)
        .as_millis() as u64
}

/// Units of a job finished after `elapsed` at `unit` per unit (all at once
/// for a zero unit time), and how many of those came out good and scrap
/// (`scrap[i]`: whether unit `i` is scrap). Shared by Modbus and MQTT machines.
pub(crate) fn units_done(elapsed: Duration, unit: Duration, scrap: &[bool]) -> (usize, u32, u32) {
    let total = scrap.len();
    let finished = if unit.is_zero() {
        total
    } else {
        ((elapsed.as_secs_f64() / unit.as_secs_f64()).floor() as usize).min(total)
    };
    let bad = scrap[..finished].iter().filter(|s| **s).count();
    (finished, (finished - bad) as u32, bad as u32)
}
