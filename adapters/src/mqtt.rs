//! MQTT link: implements [`MachineLink`] for a machine that pushes JSON
//! reports and takes JSON commands, purely from a [`Profile`]'s
//! [`MqttSpec`].
//!
//! The generic [`crate::driver`] polls every link; here a poll reads the
//! last report taken from the report topic. Invariants:
//! - One rumqttc client per link, with a persistent session (clean session
//!   off, a stable client id) and QoS 1 both ways: reports published while
//!   the link was down are delivered when the next link connects.
//! - The event loop runs on its own task and never publishes; commands are
//!   published from the driver's task and end when the broker acknowledges
//!   them (PUBACK), or time out, which breaks the link.
//! - A report whose `sequence` is smaller than that of the last report taken
//!   (a late or replayed one) is dropped: the link never shows an older
//!   report after a newer one. Equal sequences are taken (a duplicate
//!   changes nothing).
//! - No report for the profile's `report_timeout_ms` (since the last one
//!   taken, or since connecting) is a [`AdapterError::Timeout`]: the link is
//!   dropped and the driver reports the machine disconnected.
//! - The link never reconnects by itself: after any error of the event loop
//!   it is broken, and the driver connects a new one.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Outgoing, Packet, QoS};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::debug;

use crate::driver::{BoxFuture, Connector};
use crate::error::AdapterError;
use crate::profile::{MqttSpec, Pointer, Profile};
use crate::types::{JobCommand, MachineLink, MachineStatus, RunState};

/// Where the broker is and how to log in to it.
#[derive(Clone)]
pub struct MqttBroker {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    /// TLS to the broker, if any.
    pub tls: Option<rumqttc::TlsConfiguration>,
}

impl std::fmt::Debug for MqttBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("MqttBroker")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Reports remembered for PUBACK matching (recent packet ids).
const RECENT_PACKETS: usize = 64;

/// Makes [`MqttLink`]s to one machine.
#[derive(Debug, Clone)]
pub struct MqttConnector {
    broker: MqttBroker,
    profile: Arc<Profile>,
    client_id: String,
    report_topic: String,
    command_topic: String,
    request_timeout: Duration,
}

impl MqttConnector {
    /// A connector for the machine with `serial` (filled into the
    /// profile's topics). `client_id` must be stable across restarts (the
    /// broker keeps the session under it) and unique per machine.
    /// `request_timeout` bounds the wait for a CONNACK, SUBACK or PUBACK.
    pub fn new(
        broker: MqttBroker,
        profile: Arc<Profile>,
        serial: &str,
        client_id: impl Into<String>,
        request_timeout: Duration,
    ) -> Result<MqttConnector, AdapterError> {
        let Some(spec) = &profile.mqtt else {
            return Err(AdapterError::Profile {
                model: profile.model.clone(),
                message: "not an MQTT profile".into(),
            });
        };
        Ok(MqttConnector {
            report_topic: spec.report_topic_for(serial),
            command_topic: spec.command_topic_for(serial),
            broker,
            client_id: client_id.into(),
            request_timeout,
            profile,
        })
    }

    /// Connects, waits for the CONNACK and the report subscription's SUBACK.
    pub async fn connect_link(&self) -> Result<MqttLink, AdapterError> {
        let Some(spec) = self.profile.mqtt.clone() else {
            return Err(AdapterError::Profile {
                model: self.profile.model.clone(),
                message: "not an MQTT profile".into(),
            });
        };
        let mut options = MqttOptions::new(
            self.client_id.clone(),
            self.broker.host.clone(),
            self.broker.port,
        );
        options.set_keep_alive(Duration::from_secs(15));
        options.set_clean_session(false);
        options.set_max_packet_size(1024 * 1024, 1024 * 1024);
        if let (Some(user), Some(password)) = (&self.broker.username, &self.broker.password) {
            options.set_credentials(user.clone(), password.clone());
        }
        if let Some(tls) = &self.broker.tls {
            options.set_transport(rumqttc::Transport::tls_with_config(tls.clone()));
        }
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        let operation = format!("MQTT connect to {}:{}", self.broker.host, self.broker.port);
        let transport = |message: String| AdapterError::Transport {
            operation: operation.clone(),
            source: std::io::Error::other(message),
        };
        let connack = tokio::time::timeout(self.request_timeout, async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => return Ok(ack),
                    Ok(_) => {}
                    Err(err) => return Err(err),
                }
            }
        })
        .await
        .map_err(|_| AdapterError::Timeout {
            operation: operation.clone(),
            after: self.request_timeout,
        })?
        .map_err(|err| transport(err.to_string()))?;
        if connack.code != ConnectReturnCode::Success {
            return Err(transport(format!("refused: {:?}", connack.code)));
        }
        let (changes, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changes,
        });
        let cancel = CancellationToken::new();
        tokio::spawn(drive(
            eventloop,
            Arc::clone(&shared),
            spec.clone(),
            self.report_topic.clone(),
            cancel.clone(),
        ));
        let link = MqttLink {
            client,
            shared,
            model: self.profile.model.clone(),
            spec,
            command_topic: self.command_topic.clone(),
            request_timeout: self.request_timeout,
            connected_at: Instant::now(),
            shown: None,
            _stop: cancel.drop_guard(),
        };
        link.client
            .subscribe(self.report_topic.clone(), QoS::AtLeastOnce)
            .await
            .map_err(|err| transport(err.to_string()))?;
        link.wait("SUBACK", |state| state.subscribed)
            .await?
            .then_some(())
            .ok_or_else(|| AdapterError::Device {
                operation: format!("subscribe to {}", self.report_topic),
                code: crate::DeviceErrorCode::Other(0x80),
            })?;
        debug!(
            client.id = %self.client_id,
            session_present = connack.session_present,
            topic = %self.report_topic,
            "MQTT machine link up"
        );
        Ok(link)
    }
}

impl Connector for MqttConnector {
    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn crate::MachineLink>, AdapterError>> {
        Box::pin(async move {
            let link = self.connect_link().await?;
            Ok(Box::new(link) as Box<dyn crate::MachineLink>)
        })
    }
}

/// The last report taken, and when.
#[derive(Debug, Clone)]
struct Taken {
    status: Result<MachineStatus, String>,
    sequence: Option<u64>,
    at: Instant,
}

#[derive(Debug, Default)]
struct State {
    latest: Option<Taken>,
    /// Why the event loop ended; the link is unusable from then on.
    broken: Option<String>,
    /// The SUBACK of the report subscription: granted or refused.
    subscribed: Option<bool>,
    /// Outgoing QoS 1 publishes, counted, and the packet id of the last.
    published: u64,
    last_sent: Option<u16>,
    /// Recently acknowledged packet ids (PUBACK).
    acked: Vec<u16>,
    /// Reports dropped as older than the last taken.
    dropped: u64,
}

struct Shared {
    state: Mutex<State>,
    /// Bumped after every change of `state`; waiters watch it.
    changes: watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Poisoned only by a panic in this module's own short sections.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.lock());
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Runs the event loop of one link until it fails or the link is dropped.
async fn drive(
    mut eventloop: rumqttc::EventLoop,
    shared: Arc<Shared>,
    spec: MqttSpec,
    report_topic: String,
    cancel: CancellationToken,
) {
    loop {
        let polled = tokio::select! {
            () = cancel.cancelled() => break,
            polled = eventloop.poll() => polled,
        };
        match polled {
            Ok(Event::Incoming(Packet::Publish(publish))) if publish.topic == report_topic => {
                let taken = read_report(&spec, &publish.payload);
                shared.update(|state| take(state, taken));
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                let granted = ack
                    .return_codes
                    .iter()
                    .all(|code| matches!(code, rumqttc::SubscribeReasonCode::Success(_)));
                shared.update(|state| state.subscribed = Some(granted));
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => shared.update(|state| {
                state.published += 1;
                state.last_sent = Some(pkid);
            }),
            Ok(Event::Incoming(Packet::PubAck(ack))) => shared.update(|state| {
                if state.acked.len() >= RECENT_PACKETS {
                    state.acked.remove(0);
                }
                state.acked.push(ack.pkid);
            }),
            Ok(_) => {}
            Err(err) => {
                shared.update(|state| state.broken = Some(err.to_string()));
                break;
            }
        }
    }
    debug!("MQTT machine link event loop stopped");
}

/// Takes a report unless it is older than the last one taken.
fn take(state: &mut State, report: (Result<MachineStatus, String>, Option<u64>)) {
    let (status, sequence) = report;
    if let (
        Some(new),
        Some(Taken {
            sequence: Some(last),
            ..
        }),
    ) = (sequence, &state.latest)
        && new < *last
    {
        state.dropped += 1;
        debug!(
            sequence = new,
            last = *last,
            "report older than the last one taken; dropped"
        );
        return;
    }
    state.latest = Some(Taken {
        status,
        sequence,
        at: Instant::now(),
    });
}

/// A report's status and sequence, or why it cannot be read.
pub fn read_report(
    spec: &MqttSpec,
    payload: &[u8],
) -> (Result<MachineStatus, String>, Option<u64>) {
    let json: Value = match serde_json::from_slice(payload) {
        Ok(json) => json,
        Err(err) => return (Err(format!("report is not JSON: {err}")), None),
    };
    let sequence = spec
        .sequence
        .as_ref()
        .and_then(|p| json.pointer(&p.pointer))
        .and_then(as_u64);
    (status_of(spec, &json), sequence)
}

/// A report's JSON read through the profile's pointers.
pub fn status_of(spec: &MqttSpec, json: &Value) -> Result<MachineStatus, String> {
    let at = |pointer: &Pointer| json.pointer(&pointer.pointer).filter(|v| !v.is_null());
    let Some(raw_state) = at(&spec.state) else {
        return Err(format!("no state at `{}`", spec.state.pointer));
    };
    let state_text = match raw_state {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(b) => b.to_string(),
        other => return Err(format!("state at `{}` is {other}", spec.state.pointer)),
    };
    let Some(state) = spec.state_map.get(&state_text).copied() else {
        return Err(format!(
            "state `{state_text}` at `{}` is not in the profile's map",
            spec.state.pointer
        ));
    };
    let whole = |pointer: &Pointer, what: &str| -> Result<Option<u32>, String> {
        match at(pointer) {
            None => Ok(None),
            Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
            Some(value) => as_u64(value)
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    format!(
                        "{what} at `{}` is not a whole number 0..=4294967295: {value}",
                        pointer.pointer
                    )
                }),
        }
    };
    let job_token = whole(&spec.token, "job token")?.unwrap_or(0);
    let good_count = whole(&spec.good_count, "good count")?.unwrap_or(0);
    let scrap_count = whole(&spec.scrap_count, "scrap count")?.unwrap_or(0);
    let fault_code = match &spec.fault_code {
        Some(pointer) => whole(pointer, "fault code")?,
        None => None,
    };
    let progress_percent = match &spec.progress {
        Some(pointer) => match at(pointer) {
            None => None,
            Some(value) => {
                let number = match value {
                    Value::Number(n) => n.as_f64(),
                    Value::String(text) => text.trim().parse::<f64>().ok(),
                    _ => None,
                };
                let Some(number) = number.filter(|n| n.is_finite()) else {
                    return Err(format!(
                        "progress at `{}` is not a number: {value}",
                        pointer.pointer
                    ));
                };
                Some(number * pointer.scale.unwrap_or(1.0))
            }
        },
        None => None,
    };
    Ok(MachineStatus {
        state,
        job_token,
        good_count,
        scrap_count,
        fault_code,
        progress_percent,
    })
}

/// A whole non-negative number: a JSON integer, an integral float, or a
/// string of decimal digits (many machines send ids as strings).
fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0 && *f < 1.8e19)
                .map(|f| f as u64)
        }),
        Value::String(text) => text.trim().parse::<u64>().ok(),
        _ => None,
    }
}

/// The start payload with the command's values filled in: a string that is
/// exactly `"{job_token}"` becomes the number; inside a longer string a
/// placeholder becomes its decimal text.
pub fn fill_payload(template: &Value, cmd: &JobCommand) -> Value {
    let values = [
        ("{job_token}", cmd.job_token),
        ("{recipe}", cmd.recipe),
        ("{quantity}", cmd.quantity),
    ];
    match template {
        Value::String(text) => {
            if let Some((_, value)) = values.iter().find(|(name, _)| name == text) {
                return Value::from(*value);
            }
            let mut out = text.clone();
            for (name, value) in values {
                out = out.replace(name, &value.to_string());
            }
            Value::String(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| fill_payload(v, cmd)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), fill_payload(v, cmd)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A connected MQTT machine.
pub struct MqttLink {
    client: AsyncClient,
    shared: Arc<Shared>,
    model: String,
    spec: MqttSpec,
    command_topic: String,
    request_timeout: Duration,
    connected_at: Instant,
    /// What the last status read returned, as [`news_key`] sees it.
    shown: Option<NewsKey>,
    /// Stops the event-loop task when the link is dropped.
    _stop: DropGuard,
}

/// The parts of a status whose change is news (progress alone is not).
type NewsKey = (RunState, u32, u32, u32, Option<u32>);

fn news_key(status: &MachineStatus) -> NewsKey {
    (
        status.state,
        status.job_token,
        status.good_count,
        status.scrap_count,
        status.fault_code,
    )
}

impl std::fmt::Debug for MqttLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttLink")
            .field("model", &self.model)
            .field("command_topic", &self.command_topic)
            .finish_non_exhaustive()
    }
}

impl MqttLink {
    fn broken(&self, operation: &str, state: &State) -> Option<AdapterError> {
        state.broken.as_ref().map(|error| AdapterError::Transport {
            operation: operation.to_string(),
            source: std::io::Error::other(error.clone()),
        })
    }

    /// Waits until `check` says something, the link breaks, or the request
    /// timeout passes.
    async fn wait<T>(
        &self,
        operation: &str,
        check: impl Fn(&State) -> Option<T>,
    ) -> Result<T, AdapterError> {
        let deadline = Instant::now() + self.request_timeout;
        let mut changes = self.shared.changes.subscribe();
        loop {
            changes.mark_unchanged();
            {
                let state = self.shared.lock();
                if let Some(found) = check(&state) {
                    return Ok(found);
                }
                if let Some(error) = self.broken(operation, &state) {
                    return Err(error);
                }
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() {
                    return Err(AdapterError::Transport {
                        operation: operation.to_string(),
                        source: std::io::Error::other("link closed"),
                    });
                },
                () = tokio::time::sleep_until(deadline) => return Err(AdapterError::Timeout {
                    operation: operation.to_string(),
                    after: self.request_timeout,
                }),
            }
        }
    }

    /// Publishes `payload` on the command topic (QoS 1) and waits for the
    /// broker's PUBACK.
    async fn command(&self, name: &str, payload: &Value) -> Result<(), AdapterError> {
        let operation = format!("{name} on {}", self.command_topic);
        let before = self.shared.lock().published;
        let bytes = serde_json::to_vec(payload).map_err(|err| AdapterError::Profile {
            model: self.model.clone(),
            message: err.to_string(),
        })?;
        self.client
            .publish(self.command_topic.clone(), QoS::AtLeastOnce, false, bytes)
            .await
            .map_err(|err| AdapterError::Transport {
                operation: operation.clone(),
                source: std::io::Error::other(err.to_string()),
            })?;
        // Commands run one at a time on the driver's task: the first
        // publish written after `before` is this one.
        let pkid = self
            .wait(&operation, |state| {
                (state.published > before).then_some(state.last_sent)
            })
            .await?;
        let Some(pkid) = pkid else {
            return Ok(());
        };
        self.wait(&operation, |state| {
            state.acked.contains(&pkid).then_some(())
        })
        .await
    }
}

#[async_trait]
impl MachineLink for MqttLink {
    async fn read_status(&mut self) -> Result<MachineStatus, AdapterError> {
        let timeout = Duration::from_millis(self.spec.report_timeout_ms);
        let first_deadline = self.connected_at + timeout;
        let mut changes = self.shared.changes.subscribe();
        loop {
            changes.mark_unchanged();
            {
                let state = self.shared.lock();
                if let Some(error) = self.broken("report", &state) {
                    return Err(error);
                }
                let silent = || AdapterError::Timeout {
                    operation: "report (the machine is silent)".into(),
                    after: timeout,
                };
                // Seen, whatever this read returns: not news any more.
                self.shown = state
                    .latest
                    .as_ref()
                    .and_then(|taken| taken.status.as_ref().ok())
                    .map(news_key);
                match &state.latest {
                    Some(taken) if taken.at.elapsed() <= timeout => {
                        return taken
                            .status
                            .clone()
                            .map_err(|message| AdapterError::Protocol {
                                operation: "report".into(),
                                message,
                            });
                    }
                    Some(_) => return Err(silent()),
                    None if Instant::now() >= first_deadline => return Err(silent()),
                    None => {}
                }
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() {
                    return Err(AdapterError::Transport {
                        operation: "report".into(),
                        source: std::io::Error::other("link closed"),
                    });
                },
                () = tokio::time::sleep_until(first_deadline) => {}
            }
        }
    }

    async fn news(&mut self) {
        let mut changes = self.shared.changes.subscribe();
        loop {
            changes.mark_unchanged();
            {
                let state = self.shared.lock();
                if state.broken.is_some() {
                    return; // the read that follows says so
                }
                if let Some(Taken {
                    status: Ok(status), ..
                }) = &state.latest
                    && Some(news_key(status)) != self.shown
                {
                    return;
                }
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    async fn start_job(&mut self, cmd: &JobCommand) -> Result<(), AdapterError> {
        let payload = fill_payload(&self.spec.start, cmd);
        self.command("start", &payload).await
    }

    async fn acknowledge(&mut self) -> Result<(), AdapterError> {
        let Some(payload) = self.spec.acknowledge.clone() else {
            return Err(AdapterError::Profile {
                model: self.model.clone(),
                message: "no acknowledge command".into(),
            });
        };
        self.command("acknowledge", &payload).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> MqttSpec {
        let profile = Profile::from_toml_str(
            r#"
model = "t"
protocol = "mqtt"
capabilities = ["x"]
report_topic = "m/{serial}/r"
command_topic = "m/{serial}/c"
[signals.state]
pointer = "/s"
map = { IDLE = "idle", RUN = "running", END = "done", "3" = "fault" }
[signals.token_echo]
pointer = "/job"
[signals.good_count]
pointer = "/n/good"
[signals.scrap_count]
pointer = "/n/bad"
[signals.progress]
pointer = "/p"
scale = 100.0
[signals.sequence]
pointer = "/seq"
[commands.start]
payload = { go = { id = "{job_token}", name = "job-{job_token}", r = "{recipe}", q = "{quantity}" } }
"#,
            "t.toml",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        profile.mqtt.unwrap_or_else(|| panic!("an MQTT profile"))
    }

    #[test]
    fn reports_read_through_pointers_and_the_state_map() {
        let spec = spec();
        let (status, sequence) = read_report(
            &spec,
            br#"{"s":"RUN","job":"42","n":{"good":3,"bad":1},"p":0.5,"seq":9}"#,
        );
        assert_eq!(sequence, Some(9));
        let status = status.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status.state, RunState::Running);
        assert_eq!(status.job_token, 42);
        assert_eq!((status.good_count, status.scrap_count), (3, 1));
        assert_eq!(status.progress_percent, Some(50.0));
        // A numeric state is looked up as its decimal text.
        let (fault, _) = read_report(&spec, br#"{"s":3,"job":null,"n":{}}"#);
        let fault = fault.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((fault.state, fault.job_token), (RunState::Fault, 0));
        for bad in [
            &br#"{"s":"WHAT"}"#[..],
            br#"{"job":1}"#,
            br#"{"s":"RUN","job":-1}"#,
            br#"not json"#,
        ] {
            assert!(read_report(&spec, bad).0.is_err(), "{bad:?}");
        }
    }

    #[test]
    fn older_reports_are_dropped_and_equal_ones_taken() {
        let spec = spec();
        let mut state = State::default();
        let report = |seq: u64, job: u32| {
            read_report(
                &spec,
                format!(r#"{{"s":"RUN","job":{job},"n":{{"good":0,"bad":0}},"seq":{seq}}}"#)
                    .as_bytes(),
            )
        };
        take(&mut state, report(5, 7));
        take(&mut state, report(4, 6));
        let shown = |state: &State| {
            state
                .latest
                .as_ref()
                .and_then(|t| t.status.as_ref().ok())
                .map(|s| s.job_token)
        };
        assert_eq!(shown(&state), Some(7));
        assert_eq!(state.dropped, 1);
        take(&mut state, report(5, 8));
        assert_eq!(shown(&state), Some(8));
    }

    #[test]
    fn the_start_payload_is_filled_in() {
        let spec = spec();
        let cmd = JobCommand {
            job_token: 1207,
            recipe: 3,
            quantity: 2,
        };
        assert_eq!(
            fill_payload(&spec.start, &cmd),
            serde_json::json!({"go": {"id": 1207, "name": "job-1207", "r": 3, "q": 2}})
        );
    }
}
