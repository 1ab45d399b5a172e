//! One simulated MQTT machine: a rumqttc client that logs in to the broker
//! as the machine's own user, reads commands on its profile's command topic
//! and publishes JSON reports on its report topic, every `report_interval`
//! and at once on every change.
//!
//! Behaviour (what the tests rely on):
//! - A command matching the profile's start payload (every fixed value
//!   equal, placeholders captured) starts a job when the machine is idle, or
//!   done when the profile has no acknowledge; otherwise it is ignored, as a
//!   busy networked machine ignores a request. The token is logged in
//!   `started_tokens`; units finish every `cycle_seconds / time_scale` real
//!   seconds, each scrap with probability `scrap_rate` (seeded RNG); the
//!   report shows the job's token, its per-job counts and progress.
//! - A command matching the acknowledge payload turns done into idle.
//! - Every report carries a sequence number one above the last (when the
//!   profile has a `sequence` pointer).
//! - It connects with a clean session: commands published while it was away
//!   are not run late.
//! - Faults for tests: silence (no reports), a late duplicate of an older
//!   report published after the current one, hold (a running job's clock
//!   stops), ignored starts, a fault code.
//!
//! Invariant: no adapter code is used: the payloads are read and the reports
//! built here, from the profile's pointers and templates alone.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use fabflow_adapters::RunState;
use fabflow_adapters::profile::{MqttSpec, Profile};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Map, Value};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::faults::{FaultSpec, FaultState};

use crate::SimError;
use crate::machine::SimMachineConfig;

/// Where a simulated MQTT machine connects, and as whom.
#[derive(Debug, Clone)]
pub struct SimMqttLogin {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: String,
}

/// A point-in-time view of a simulated MQTT machine.
#[derive(Debug, Clone, PartialEq)]
pub struct SimMqttSnapshot {
    pub state: RunState,
    pub job_token: u32,
    pub good_count: u32,
    pub scrap_count: u32,
    pub fault_code: u32,
    /// Reports published so far.
    pub reports: u64,
    /// Injected faults so far: reports sent twice, older reports sent
    /// after a newer one, reports never sent.
    pub duplicated: u64,
    pub reordered: u64,
    pub lost: u64,
}

struct Job {
    scrap: Vec<bool>,
    unit: Duration,
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
    phase: Phase,
    token: u32,
    good: u32,
    scrap: u32,
    progress: f64,
    fault_code: u32,
    hold: bool,
    rng: StdRng,
    /// (fleet-wide start sequence, token) of every start taken.
    started: Vec<(u64, u32)>,
    /// (token, Unix ms) of every job finished.
    finished: Vec<(u32, u64)>,
    /// The sequence number of the last report published.
    seq: u64,
    reports: u64,
    duplicated: u64,
    reordered: u64,
    lost: u64,
    /// The last report published, and the last one before it that showed
    /// something else (another state, token or count): a late duplicate
    /// replays that older one.
    last: Option<Value>,
    previous: Option<Value>,
    /// Injected faults (see `faults`).
    faults: FaultState,
}

impl Inner {
    /// What a power loss leaves: idle, without its job (token, counts and
    /// fault code cleared; the start log survives).
    fn lose_power(&mut self) {
        self.phase = Phase::Idle;
        self.token = 0;
        self.good = 0;
        self.scrap = 0;
        self.progress = 0.0;
        self.fault_code = 0;
        self.hold = false;
        self.faults.forget_jam();
    }

    fn state(&self) -> RunState {
        match self.phase {
            Phase::Idle => RunState::Idle,
            Phase::Running(_) => RunState::Running,
            Phase::Done => RunState::Done,
            Phase::Fault(_) => RunState::Fault,
        }
    }

    fn advance(&mut self, now: Instant) {
        // A jam that clears by itself: the job goes on where it stopped.
        if matches!(self.phase, Phase::Fault(Some(_))) && self.faults.cleared(now) {
            if let Phase::Fault(Some(mut job)) = std::mem::replace(&mut self.phase, Phase::Idle) {
                job.last_update = now;
                self.phase = Phase::Running(job);
            }
            self.fault_code = 0;
        }
        let hold = self.hold;
        let Phase::Running(job) = &mut self.phase else {
            return;
        };
        if !hold {
            job.elapsed += now.saturating_duration_since(job.last_update);
        }
        job.last_update = now;
        let total = job.scrap.len();
        // Units' worth of time worked (2.5: two made, the third half way).
        let worked = job.elapsed.as_secs_f64() / job.unit.as_secs_f64().max(1e-9);
        let (finished, good, scrap) = crate::machine::units_done(job.elapsed, job.unit, &job.scrap);
        self.scrap = scrap;
        self.good = good;
        self.progress = if finished == total {
            100.0
        } else {
            (finished as f64 / total as f64 * 100.0).floor()
        };
        if finished == total {
            let at = crate::machine::finished_at_ms(job.elapsed, job.unit, total);
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
            debug!(token = self.token, "sim power loss (fleet spec)");
            self.lose_power();
        }
    }
}

struct Shared {
    config: SimMachineConfig,
    profile: Arc<Profile>,
    spec: MqttSpec,
    report_topic: String,
    command_topic: String,
    inner: Mutex<Inner>,
    /// Set by `set_silent`: no reports go out.
    silent: AtomicBool,
    /// Set by `set_ignore_starts`: starts are read and do nothing.
    ignore_starts: AtomicBool,
    /// Fleet-wide start counter.
    sequence: Arc<AtomicU64>,
    /// Wakes the machine task to publish a report now.
    changed: Notify,
    /// Set by `publish_late_duplicate`: the next report is followed by a
    /// copy of the one before it.
    late_duplicate: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Poisoned only by a panic in the simulator's own code.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes a command payload: a start or an acknowledge, or nothing.
    fn on_command(&self, payload: &[u8]) {
        let Ok(json) = serde_json::from_slice::<Value>(payload) else {
            debug!(machine.id = %self.config.machine_id, "sim: command is not JSON; ignored");
            return;
        };
        let mut inner = self.lock();
        inner.advance(Instant::now());
        if let Some(values) = matches(&self.spec.start, &json) {
            let (Some(token), Some(quantity)) = (values.get("job_token"), values.get("quantity"))
            else {
                return;
            };
            let takes = match inner.phase {
                Phase::Idle => true,
                Phase::Done => self.spec.acknowledge.is_none(),
                Phase::Running(_) | Phase::Fault(_) => false,
            };
            if !takes || *quantity == 0 || self.ignore_starts.load(Ordering::SeqCst) {
                debug!(machine.id = %self.config.machine_id, job.token = token, "sim: start ignored");
                return;
            }
            let (Ok(token), Ok(quantity)) = (u32::try_from(*token), usize::try_from(*quantity))
            else {
                return;
            };
            let scrap_rate = self.config.scrap_rate;
            let scrap: Vec<bool> = (0..quantity)
                .map(|_| inner.rng.random_bool(scrap_rate))
                .collect();
            let scrap = inner.faults.new_job(scrap);
            let sequence = self.sequence.fetch_add(1, Ordering::SeqCst);
            inner.started.push((sequence, token));
            let unit = inner.faults.unit(Duration::from_secs_f64(
                self.config.cycle_seconds / self.config.time_scale,
            ));
            inner.phase = Phase::Running(Job {
                scrap,
                unit,
                elapsed: Duration::ZERO,
                last_update: Instant::now(),
            });
            inner.token = token;
            inner.good = 0;
            inner.scrap = 0;
            inner.progress = 0.0;
            debug!(machine.id = %self.config.machine_id, job.token = token, "sim job started");
        } else if let Some(acknowledge) = &self.spec.acknowledge
            && matches(acknowledge, &json).is_some()
        {
            if matches!(inner.phase, Phase::Done) {
                inner.phase = Phase::Idle;
            }
        } else {
            debug!(machine.id = %self.config.machine_id, "sim: unknown command; ignored");
            return;
        }
        drop(inner);
        self.changed.notify_one();
    }

    /// A garbage report: the state a value the profile does not map, random
    /// numbers at every other pointer.
    fn garbage(&self, inner: &mut Inner) -> Value {
        let mut report = Value::Object(Map::new());
        put(
            &mut report,
            &self.spec.state.pointer,
            Value::from("\u{fffd}garbage"),
        );
        for pointer in [
            &self.spec.token.pointer,
            &self.spec.good_count.pointer,
            &self.spec.scrap_count.pointer,
        ] {
            put(&mut report, pointer, Value::from(inner.rng.random::<u32>()));
        }
        report
    }

    /// The report as the profile lays it out.
    fn report(&self, inner: &mut Inner) -> Value {
        inner.seq += 1;
        let state = inner.state();
        let mut report = Value::Object(Map::new());
        // The first value the profile maps to this state (a number if it reads as one).
        if let Some((text, _)) = self.spec.state_map.iter().find(|(_, s)| **s == state) {
            let value = text
                .parse::<i64>()
                .map_or_else(|_| Value::String(text.clone()), Value::from);
            put(&mut report, &self.spec.state.pointer, value);
        }
        put(
            &mut report,
            &self.spec.token.pointer,
            Value::from(inner.token),
        );
        put(
            &mut report,
            &self.spec.good_count.pointer,
            Value::from(inner.good),
        );
        put(
            &mut report,
            &self.spec.scrap_count.pointer,
            Value::from(inner.scrap),
        );
        if let Some(pointer) = &self.spec.fault_code {
            put(&mut report, &pointer.pointer, Value::from(inner.fault_code));
        }
        if let Some(pointer) = &self.spec.progress {
            let scale = pointer.scale.unwrap_or(1.0);
            put(
                &mut report,
                &pointer.pointer,
                Value::from(inner.progress / scale),
            );
        }
        if let Some(pointer) = &self.spec.sequence {
            put(&mut report, &pointer.pointer, Value::from(inner.seq));
        }
        report
    }
}

/// Sets `value` at an RFC 6901 `pointer`, making objects on the way.
fn put(root: &mut Value, pointer: &str, value: Value) {
    let tokens: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    let Some((last, path)) = tokens.split_last() else {
        *root = value;
        return;
    };
    let mut at = root;
    for token in path {
        if !at.is_object() {
            *at = Value::Object(Map::new());
        }
        let Value::Object(map) = at else { return };
        at = map
            .entry(token.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !at.is_object() {
        *at = Value::Object(Map::new());
    }
    if let Value::Object(map) = at {
        map.insert(last.clone(), value);
    }
}

/// Whether `payload` has the shape of `template`: every fixed value equal,
/// every placeholder (`"{name}"` alone: a number or a string of digits; in a
/// longer string: the digits between the fixed text) captured.
fn matches(template: &Value, payload: &Value) -> Option<BTreeMap<String, u64>> {
    let mut found = BTreeMap::new();
    walk(template, payload, &mut found).then_some(found)
}

fn walk(template: &Value, payload: &Value, found: &mut BTreeMap<String, u64>) -> bool {
    match (template, payload) {
        (Value::String(text), _) if text.contains('{') => {
            let Some(open) = text.find('{') else {
                return false;
            };
            let Some(close) = text[open..].find('}').map(|c| open + c) else {
                return false;
            };
            let name = &text[open + 1..close];
            let (prefix, suffix) = (&text[..open], &text[close + 1..]);
            let number = match payload {
                Value::Number(n) if prefix.is_empty() && suffix.is_empty() => n.as_u64(),
                Value::String(s) => s
                    .strip_prefix(prefix)
                    .and_then(|rest| rest.strip_suffix(suffix))
                    .and_then(|digits| digits.parse::<u64>().ok()),
                _ => None,
            };
            match number {
                Some(number) => {
                    found.insert(name.to_string(), number);
                    true
                }
                None => false,
            }
        }
        (Value::Object(want), Value::Object(got)) => want
            .iter()
            .all(|(key, value)| got.get(key).is_some_and(|g| walk(value, g, found))),
        (Value::Array(want), Value::Array(got)) => {
            want.len() == got.len() && want.iter().zip(got).all(|(w, g)| walk(w, g, found))
        }
        (want, got) => want == got,
    }
}

/// Starts simulated MQTT machines.
#[derive(Debug)]
pub struct SimMqttMachine;

impl SimMqttMachine {
    /// Connects to the broker as `login` and serves the profile until
    /// `shutdown`. `serial` fills the profile's topics.
    pub async fn start(
        config: SimMachineConfig,
        profile: Arc<Profile>,
        serial: &str,
        login: SimMqttLogin,
        report_interval: Duration,
    ) -> Result<SimMqttHandle, SimError> {
        Self::start_with_sequence(
            config,
            profile,
            serial,
            login,
            report_interval,
            Arc::new(AtomicU64::new(0)),
        )
        .await
    }

    pub(crate) async fn start_with_sequence(
        config: SimMachineConfig,
        profile: Arc<Profile>,
        serial: &str,
        login: SimMqttLogin,
        report_interval: Duration,
        sequence: Arc<AtomicU64>,
    ) -> Result<SimMqttHandle, SimError> {
        let invalid = |message: String| SimError::InvalidMachine {
            machine: config.machine_id.clone(),
            message,
        };
        let Some(spec) = profile.mqtt.clone() else {
            return Err(invalid(format!("{} is not an MQTT profile", profile.model)));
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
        let shared = Arc::new(Shared {
            report_topic: spec.report_topic_for(serial),
            command_topic: spec.command_topic_for(serial),
            inner: Mutex::new(Inner {
                phase: Phase::Idle,
                token: 0,
                good: 0,
                scrap: 0,
                progress: 0.0,
                fault_code: 0,
                hold: false,
                rng: StdRng::seed_from_u64(config.seed),
                started: Vec::new(),
                finished: Vec::new(),
                seq: 0,
                reports: 0,
                duplicated: 0,
                reordered: 0,
                lost: 0,
                last: None,
                previous: None,
                faults: FaultState::default(),
            }),
            spec,
            config,
            profile,
            silent: AtomicBool::new(false),
            ignore_starts: AtomicBool::new(false),
            sequence,
            changed: Notify::new(),
            late_duplicate: AtomicBool::new(false),
        });
        let mut options = MqttOptions::new(
            format!("sim-{}", shared.config.machine_id),
            login.host.clone(),
            login.port,
        );
        options.set_credentials(login.username.clone(), login.password.clone());
        options.set_keep_alive(Duration::from_secs(10));
        options.set_clean_session(true);
        let (client, eventloop) = AsyncClient::new(options, 64);
        let cancel = CancellationToken::new();
        // Commands and (re)connections, from the event-loop task to the
        // machine task; bounded: the event loop waits while it is full.
        let (incoming_tx, incoming_rx) = mpsc::channel(64);
        tokio::spawn(drive(
            eventloop,
            shared.command_topic.clone(),
            incoming_tx,
            cancel.clone(),
        ));
        tokio::spawn(run(
            Arc::clone(&shared),
            client,
            incoming_rx,
            report_interval,
            cancel.clone(),
        ));
        Ok(SimMqttHandle { shared, cancel })
    }
}

enum Incoming {
    Connected,
    Command(Vec<u8>),
}

/// Polls the event loop (never publishes), reconnecting after errors.
async fn drive(
    mut eventloop: rumqttc::EventLoop,
    command_topic: String,
    incoming: mpsc::Sender<Incoming>,
    cancel: CancellationToken,
) {
    loop {
        let polled = tokio::select! {
            () = cancel.cancelled() => break,
            polled = eventloop.poll() => polled,
        };
        let message = match polled {
            Ok(Event::Incoming(Packet::ConnAck(_))) => Some(Incoming::Connected),
            Ok(Event::Incoming(Packet::Publish(publish))) if publish.topic == command_topic => {
                Some(Incoming::Command(publish.payload.to_vec()))
            }
            Ok(_) => None,
            Err(err) => {
                debug!(error = %err, "sim MQTT machine: connection lost; reconnecting");
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                None
            }
        };
        if let Some(message) = message {
            tokio::select! {
                () = cancel.cancelled() => break,
                sent = incoming.send(message) => if sent.is_err() { break },
            }
        }
    }
}

/// The machine: takes commands, advances its job, publishes reports.
async fn run(
    shared: Arc<Shared>,
    client: AsyncClient,
    mut incoming: mpsc::Receiver<Incoming>,
    report_interval: Duration,
    cancel: CancellationToken,
) {
    let mut ticker = tokio::time::interval(report_interval);
    // A finished unit shows within a tenth of the report interval.
    let mut step = tokio::time::interval((report_interval / 10).max(Duration::from_millis(10)));
    let mut last_shown = None;
    loop {
        let force = tokio::select! {
            () = cancel.cancelled() => break,
            message = incoming.recv() => match message {
                None => break,
                Some(Incoming::Connected) => {
                    // A clean session: subscribe again after every connect.
                    if client.subscribe(shared.command_topic.clone(), QoS::AtLeastOnce).await.is_err() {
                        break;
                    }
                    true
                }
                Some(Incoming::Command(payload)) => {
                    shared.on_command(&payload);
                    true
                }
            },
            _ = ticker.tick() => true,
            _ = step.tick() => false,
            () = shared.changed.notified() => true,
        };
        let (report, late) = {
            let mut inner = shared.lock();
            inner.advance(Instant::now());
            let shown = (inner.state(), inner.token, inner.good, inner.scrap);
            if !force && last_shown == Some(shown) {
                continue;
            }
            if shared.silent.load(Ordering::SeqCst) || inner.faults.flap_silent(Instant::now()) {
                continue;
            }
            if last_shown.is_some_and(|last| last != shown) {
                inner.previous = inner.last.take();
            }
            last_shown = Some(shown);
            let mut report = shared.report(&mut inner);
            let duplicate = inner.faults.spec.duplicate_reports;
            let reorder = inner.faults.spec.reorder_reports;
            let late: Vec<Value> = if shared.late_duplicate.swap(false, Ordering::SeqCst) {
                // The same report again, then the older one.
                std::iter::once(report.clone())
                    .chain(inner.previous.clone())
                    .collect()
            } else {
                // Injected: the same report again, and/or the older one.
                let again = duplicate.then(|| report.clone());
                let older = if reorder {
                    inner.previous.clone()
                } else {
                    None
                };
                inner.duplicated += u64::from(again.is_some());
                inner.reordered += u64::from(older.is_some());
                again.into_iter().chain(older).collect()
            };
            inner.last = Some(report.clone());
            inner.reports += 1;
            if inner.faults.take_garbage() {
                report = shared.garbage(&mut inner);
            }
            if inner.faults.lose_report() {
                inner.lost += 1;
                debug!(machine.id = %shared.config.machine_id, "sim: report lost");
                continue;
            }
            (report, late)
        };
        if !late.is_empty() {
            // The older report stays the last one heard for a whole interval.
            ticker.reset();
        }
        for payload in std::iter::once(report).chain(late) {
            let bytes = serde_json::to_vec(&payload).unwrap_or_default();
            let published = client
                .publish(shared.report_topic.clone(), QoS::AtLeastOnce, false, bytes)
                .await;
            if published.is_err() {
                return;
            }
        }
    }
}

/// A cheap handle to one simulated MQTT machine.
#[derive(Clone)]
pub struct SimMqttHandle {
    shared: Arc<Shared>,
    /// Stops the machine's tasks (and so its connection).
    cancel: CancellationToken,
}

impl std::fmt::Debug for SimMqttHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimMqttHandle")
            .field("machine_id", &self.shared.config.machine_id)
            .finish_non_exhaustive()
    }
}

impl SimMqttHandle {
    pub fn machine_id(&self) -> &str {
        &self.shared.config.machine_id
    }

    pub fn model(&self) -> &str {
        &self.shared.profile.model
    }

    pub fn report_topic(&self) -> &str {
        &self.shared.report_topic
    }

    pub fn command_topic(&self) -> &str {
        &self.shared.command_topic
    }

    /// Every job token started here, in order.
    pub fn started_tokens(&self) -> Vec<u32> {
        self.shared.lock().started.iter().map(|(_, t)| *t).collect()
    }

    /// Started tokens with their fleet-wide start sequence number.
    pub fn started_log(&self) -> Vec<(u64, u32)> {
        self.shared.lock().started.clone()
    }

    /// Every job finished here: (token, Unix ms of its last unit).
    pub fn finished_log(&self) -> Vec<(u32, u64)> {
        let mut inner = self.shared.lock();
        inner.advance(Instant::now());
        inner.finished.clone()
    }

    pub fn snapshot(&self) -> SimMqttSnapshot {
        let mut inner = self.shared.lock();
        inner.advance(Instant::now());
        SimMqttSnapshot {
            state: inner.state(),
            job_token: inner.token,
            good_count: inner.good,
            scrap_count: inner.scrap,
            fault_code: inner.fault_code,
            reports: inner.reports,
            duplicated: inner.duplicated,
            reordered: inner.reordered,
            lost: inner.lost,
        }
    }

    /// While silent, no report goes out (a machine off the network).
    pub fn set_silent(&self, silent: bool) {
        self.shared.silent.store(silent, Ordering::SeqCst);
        self.shared.changed.notify_one();
    }

    /// While held, a running job's clock stops (it keeps reporting Running).
    pub fn set_hold(&self, hold: bool) {
        let mut inner = self.shared.lock();
        inner.advance(Instant::now());
        inner.hold = hold;
        drop(inner);
        self.shared.changed.notify_one();
    }

    /// While set, starts are read and do nothing.
    pub fn set_ignore_starts(&self, ignore: bool) {
        self.shared.ignore_starts.store(ignore, Ordering::SeqCst);
    }

    /// The next report is followed by a duplicate of itself and then by the
    /// last report that showed something else (older, out of order).
    pub fn publish_late_duplicate(&self) {
        self.shared.late_duplicate.store(true, Ordering::SeqCst);
        self.shared.changed.notify_one();
    }

    /// Puts the machine in fault with `code` (a jam): a running job stops
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
        drop(inner);
        self.shared.changed.notify_one();
    }

    /// Clears a fault: a job the fault stopped resumes under the same
    /// token, counts continuing; without one the machine is idle.
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
        drop(inner);
        self.shared.changed.notify_one();
    }

    /// Sets the machine's injected faults (see `faults`).
    pub fn set_faults(&self, spec: FaultSpec) {
        self.shared.lock().faults.set(spec);
        self.shared.changed.notify_one();
    }

    /// The machine's injected faults as they stand (counts used up).
    pub fn faults(&self) -> FaultSpec {
        self.shared.lock().faults.spec.clone()
    }

    /// A power loss: the machine comes back idle without its job (token 0,
    /// counts and fault code cleared). Its start log is kept.
    pub fn power_cycle(&self) {
        self.shared.lock().lose_power();
        self.shared.changed.notify_one();
    }

    /// Stops the machine: no more reports, the connection closes.
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn commands_match_their_template_and_give_up_their_values() {
        let template = json!({"print": {"command": "project_file", "job_id": "{job_token}",
            "name": "fabflow-{job_token}", "plate": "Metadata/plate_{recipe}.gcode", "n": "{quantity}"}});
        let payload = json!({"print": {"command": "project_file", "job_id": 1207,
            "name": "fabflow-1207", "plate": "Metadata/plate_41.gcode", "n": 2, "extra": true}});
        let values = matches(&template, &payload).expect("matches");
        assert_eq!(values.get("job_token"), Some(&1207));
        assert_eq!(values.get("recipe"), Some(&41));
        assert_eq!(values.get("quantity"), Some(&2));
        let other = json!({"print": {"command": "stop"}});
        assert!(matches(&template, &other).is_none());
    }

    #[test]
    fn reports_are_laid_out_by_pointer() {
        let mut report = Value::Object(Map::new());
        put(&mut report, "/print/gcode_state", json!("RUNNING"));
        put(&mut report, "/print/job_id", json!(7));
        put(&mut report, "/seq", json!(1));
        assert_eq!(
            report,
            json!({"print": {"gcode_state": "RUNNING", "job_id": 7}, "seq": 1})
        );
    }
}
