//! Machine profiles: one TOML file per machine model (adapters/profiles/*.toml)
//! saying where each signal the daemon knows lives on the wire.
//!
//! A profile is parsed with `deny_unknown_fields`, then validated; validation
//! reports every problem at once, each with its file and key. A [`Profile`]
//! value is always valid: links may rely on its invariants (required signals
//! present, types fit their register kind, word order known for 32-bit types).
//!
//! Here: the validated types. `load` reads files and the built-in set;
//! `validate` turns the raw parsed form into a [`Profile`].

mod load;
mod validate;

pub use load::{BUILTIN_SOURCES, builtin_profiles, load_dir, read_dir};

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use crate::types::RunState;
use validate::{RawProfile, line_column, validate};

/// `command_timeout_ms` when a profile does not set it.
pub const DEFAULT_COMMAND_TIMEOUT_MS: u64 = 10_000;
/// The range `command_timeout_ms` must lie in.
pub const COMMAND_TIMEOUT_RANGE_MS: std::ops::RangeInclusive<u64> = 100..=3_600_000;

/// `report_timeout_ms` of an MQTT profile when it does not set it.
pub const DEFAULT_REPORT_TIMEOUT_MS: u64 = 10_000;
/// The range `report_timeout_ms` must lie in.
pub const REPORT_TIMEOUT_RANGE_MS: std::ops::RangeInclusive<u64> = 200..=3_600_000;

/// The wire protocol of a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Modbus TCP: registers, polled; the profile's `signals` and command `steps`.
    Modbus,
    /// JSON over MQTT: reports pushed by the machine, commands published to
    /// it; the profile's [`MqttSpec`].
    Mqtt,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Modbus => "modbus",
            Protocol::Mqtt => "mqtt",
        }
    }
}

/// One JSON value in a report, found by an RFC 6901 pointer.
#[derive(Debug, Clone, PartialEq)]
pub struct Pointer {
    /// The pointer (`/print/gcode_state`); "" is the whole report.
    pub pointer: String,
    /// Multiplier applied on read (`progress` only).
    pub scale: Option<f64>,
    /// What a counter counts (`good_count`, `scrap_count`); `PerJob` otherwise.
    pub counts: Counts,
}

/// How an MQTT machine is driven: where it reports and takes commands, and
/// where each signal sits in its JSON reports.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttSpec {
    /// The topic the machine publishes its reports on; `{serial}` is
    /// replaced by the machine's serial (see [`MqttSpec::topic`]).
    pub report_topic: String,
    /// The topic the machine reads its commands from; `{serial}` as above.
    pub command_topic: String,
    /// A machine whose last report is older than this is offline.
    pub report_timeout_ms: u64,
    /// The state value (a JSON string, or an integer as its decimal text) → state.
    pub state: Pointer,
    pub state_map: BTreeMap<String, RunState>,
    /// The token of the job the machine took (the machine's own echo).
    pub token: Pointer,
    pub good_count: Pointer,
    pub scrap_count: Pointer,
    pub fault_code: Option<Pointer>,
    /// Percent after `scale`.
    pub progress: Option<Pointer>,
    /// A number that grows with every report (a sequence or a timestamp):
    /// a report with a smaller one than the last taken is old and dropped.
    pub sequence: Option<Pointer>,
    /// The start command's JSON payload: a string value `"{job_token}"`,
    /// `"{recipe}"` or `"{quantity}"` becomes that number; inside a longer
    /// string the placeholder becomes its decimal text.
    pub start: serde_json::Value,
    /// The acknowledge command's payload (no placeholders), if the machine
    /// needs one to leave `done`.
    pub acknowledge: Option<serde_json::Value>,
}

impl MqttSpec {
    /// A topic template with the machine's serial filled in.
    pub fn topic(template: &str, serial: &str) -> String {
        template.replace("{serial}", serial)
    }

    pub fn report_topic_for(&self, serial: &str) -> String {
        MqttSpec::topic(&self.report_topic, serial)
    }

    pub fn command_topic_for(&self, serial: &str) -> String {
        MqttSpec::topic(&self.command_topic, serial)
    }
}

/// Which Modbus table a signal lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegisterKind {
    /// Read/write 16-bit registers (FC 3, 6, 16).
    Holding,
    /// Read-only 16-bit registers (FC 4).
    Input,
    /// Read/write bits (FC 1, 5).
    Coil,
    /// Read-only bits (FC 2).
    Discrete,
}

impl RegisterKind {
    /// True for the bit tables (coil, discrete).
    pub fn is_bit(self) -> bool {
        matches!(self, RegisterKind::Coil | RegisterKind::Discrete)
    }

    /// True for the tables a client may write (holding, coil).
    pub fn is_writable(self) -> bool {
        matches!(self, RegisterKind::Holding | RegisterKind::Coil)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RegisterKind::Holding => "holding",
            RegisterKind::Input => "input",
            RegisterKind::Coil => "coil",
            RegisterKind::Discrete => "discrete",
        }
    }
}

/// The value type of a signal on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
}

impl ValueType {
    /// How many 16-bit registers (or bits, for `bool`) the value occupies.
    pub fn width(self) -> u16 {
        match self {
            ValueType::U16 | ValueType::I16 | ValueType::Bool => 1,
            ValueType::U32 | ValueType::I32 | ValueType::F32 => 2,
        }
    }

    pub fn is_32_bit(self) -> bool {
        self.width() == 2
    }

    pub fn is_integer(self) -> bool {
        matches!(
            self,
            ValueType::U16 | ValueType::I16 | ValueType::U32 | ValueType::I32
        )
    }

    /// The inclusive range of raw values the type can carry (integers only).
    pub fn integer_range(self) -> Option<(i64, i64)> {
        match self {
            ValueType::U16 => Some((0, i64::from(u16::MAX))),
            ValueType::I16 => Some((i64::from(i16::MIN), i64::from(i16::MAX))),
            ValueType::U32 => Some((0, i64::from(u32::MAX))),
            ValueType::I32 => Some((i64::from(i32::MIN), i64::from(i32::MAX))),
            ValueType::F32 | ValueType::Bool => None,
        }
    }
}

/// Order of the two 16-bit words of a 32-bit value. Bytes inside a word are
/// always big-endian, as Modbus says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WordOrder {
    /// High word at the lower address.
    #[default]
    Big,
    /// Low word at the lower address.
    Little,
}

/// The signals the daemon knows. A profile names where each one lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SignalName {
    JobToken,
    Recipe,
    Quantity,
    State,
    GoodCount,
    ScrapCount,
    FaultCode,
    Progress,
    TokenEcho,
}

impl SignalName {
    pub const ALL: [SignalName; 9] = [
        SignalName::JobToken,
        SignalName::Recipe,
        SignalName::Quantity,
        SignalName::State,
        SignalName::GoodCount,
        SignalName::ScrapCount,
        SignalName::FaultCode,
        SignalName::Progress,
        SignalName::TokenEcho,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SignalName::JobToken => "job_token",
            SignalName::Recipe => "recipe",
            SignalName::Quantity => "quantity",
            SignalName::State => "state",
            SignalName::GoodCount => "good_count",
            SignalName::ScrapCount => "scrap_count",
            SignalName::FaultCode => "fault_code",
            SignalName::Progress => "progress",
            SignalName::TokenEcho => "token_echo",
        }
    }

    pub fn from_name(name: &str) -> Option<SignalName> {
        SignalName::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Signals a profile must define.
    pub fn is_required(self) -> bool {
        !matches!(
            self,
            SignalName::FaultCode | SignalName::Progress | SignalName::TokenEcho
        )
    }

    /// Signals whose value comes from a [`crate::JobCommand`] (the only ones a
    /// `write` step may name).
    pub fn is_command_value(self) -> bool {
        matches!(
            self,
            SignalName::JobToken | SignalName::Recipe | SignalName::Quantity
        )
    }
}

impl fmt::Display for SignalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a counter (`good_count`, `scrap_count`) counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Counts {
    /// Units of the current job: reset by the machine at each start.
    #[default]
    PerJob,
    /// Lifetime totals that never reset; they wrap at the register width
    /// (the type is u16 or u32 without scale). The daemon records the
    /// difference from the value read when it started the job.
    Cumulative,
}

impl Counts {
    pub fn as_str(self) -> &'static str {
        match self {
            Counts::PerJob => "per_job",
            Counts::Cumulative => "cumulative",
        }
    }
}

/// Where one signal lives and how it is encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    pub kind: RegisterKind,
    pub address: u16,
    pub value_type: ValueType,
    /// Meaningful only for 32-bit types (always given in the file for those).
    pub word_order: WordOrder,
    /// Multiplier applied on read, divided on write.
    pub scale: Option<f64>,
    /// Raw value → state; present exactly on the `state` signal.
    pub map: BTreeMap<i64, RunState>,
    /// What a counter counts; `PerJob` on every other signal.
    pub counts: Counts,
}

impl Signal {
    /// The addresses `address..address + width` this signal occupies.
    pub fn span(&self) -> std::ops::Range<u32> {
        let start = u32::from(self.address);
        start..start + u32::from(self.value_type.width())
    }

    /// The number of distinct raw values of an unsigned integer signal
    /// (65 536 for u16, 2^32 for u32): where a cumulative counter wraps.
    /// `None` for other types.
    pub fn modulus(&self) -> Option<u64> {
        match self.value_type {
            ValueType::U16 => Some(1 << 16),
            ValueType::U32 => Some(1 << 32),
            _ => None,
        }
    }
}

/// One step of a command.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Write the command's value for this signal (job_token, recipe, quantity).
    Write(SignalName),
    /// Write one coil.
    WriteCoil { address: u16, value: bool },
    /// Write one holding register (a command register).
    WriteRegister { address: u16, value: u16 },
}

/// A command: steps run in order on one connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub steps: Vec<Step>,
}

/// A validated machine profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Where the profile came from (a path, or `adapters/profiles/<file>` for builtins).
    pub origin: String,
    pub model: String,
    pub protocol: Protocol,
    pub description: String,
    pub capabilities: Vec<String>,
    pub materials: Vec<String>,
    /// Modbus unit (slave) id, 1..=247 (0 on an MQTT profile).
    pub unit_id: u8,
    /// Every defined signal; all required ones are present.
    pub signals: BTreeMap<SignalName, Signal>,
    pub start: Command,
    /// `None` for a machine that takes its next start straight from `done`
    /// (it then has a `token_echo` signal).
    pub acknowledge: Option<Command>,
    /// How long the machine may take to react to a command (a start shows
    /// a new state or its token, an acknowledge leaves `done`) before the
    /// daemon calls it stuck. Default 10 000.
    pub command_timeout_ms: u64,
    /// What the machine draws while it starts a job (`startup_power_w`,
    /// `startup_ms`); a factory's `power_budget_w` staggers starts so the
    /// draws of machines still starting stay under it. None: no draw counted.
    pub startup: Option<Startup>,
    /// Topics, JSON pointers and payloads of an MQTT profile (`protocol =
    /// "mqtt"`); `None` on a Modbus profile, whose `signals`, `start` and
    /// `acknowledge` are then the whole story. An MQTT profile has no
    /// `signals` and empty `start` steps.
    pub mqtt: Option<MqttSpec>,
}

/// A machine's start-up draw: `power_w` for `duration_ms` after a start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Startup {
    pub power_w: u32,
    pub duration_ms: u64,
}

/// The largest `startup_power_w` a profile may give (100 kW).
pub const STARTUP_POWER_MAX_W: u32 = 100_000;
/// The longest `startup_ms` a profile may give (an hour).
pub const STARTUP_MAX_MS: u64 = 3_600_000;

impl Profile {
    /// Parses and validates one profile. `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Profile, ProfileErrors> {
        let raw: RawProfile = toml::from_str(text).map_err(|err| {
            let key = match err.span() {
                Some(span) => {
                    let (line, column) = line_column(text, span.start);
                    format!("line {line}, column {column}")
                }
                None => String::new(),
            };
            ProfileErrors(vec![ProfileError {
                origin: origin.to_string(),
                key,
                message: err.message().trim().to_string(),
            }])
        })?;
        validate(raw, origin)
    }

    /// A defined signal. Required signals are always present.
    pub fn signal(&self, name: SignalName) -> Option<&Signal> {
        self.signals.get(&name)
    }

    /// Whether the machine echoes the token it runs in a signal of its own
    /// (`token_echo`), apart from the `job_token` register the start writes.
    /// An MQTT machine's report is written by the machine itself, so the
    /// token in it is always its own echo.
    pub fn echoes_token(&self) -> bool {
        self.mqtt.is_some() || self.signals.contains_key(&SignalName::TokenEcho)
    }

    /// Whether the machine needs an acknowledge to leave `done`.
    pub fn acknowledges(&self) -> bool {
        match &self.mqtt {
            Some(mqtt) => mqtt.acknowledge.is_some(),
            None => self.acknowledge.is_some(),
        }
    }

    /// What a counter (`good_count`, `scrap_count`) counts, and where a
    /// cumulative one wraps (`None` for other signals or types).
    pub fn counting(&self, name: SignalName) -> (Counts, Option<u64>) {
        if let Some(mqtt) = &self.mqtt {
            let pointer = match name {
                SignalName::GoodCount => &mqtt.good_count,
                SignalName::ScrapCount => &mqtt.scrap_count,
                _ => return (Counts::PerJob, None),
            };
            // JSON counters are read as u32: a cumulative one wraps there.
            return (pointer.counts, Some(1 << 32));
        }
        match self.signal(name) {
            Some(signal) => (signal.counts, signal.modulus()),
            None => (Counts::PerJob, None),
        }
    }

    /// A required signal (job_token, recipe, quantity, state, good_count, scrap_count).
    ///
    /// # Panics
    /// If `name` is optional and absent, or a validated profile lacks a
    /// required signal (a broken invariant of [`validate`]).
    pub fn required(&self, name: SignalName) -> &Signal {
        assert!(name.is_required(), "{name} is an optional signal");
        self.signals.get(&name).unwrap_or_else(|| {
            panic!(
                "validated profile {} lacks required signal {name}",
                self.model
            )
        })
    }
}

/// One problem in one profile, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileError {
    pub origin: String,
    /// Dotted key (`signals.good_count.word_order`), a parse position, or empty.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.origin, self.message)
        } else {
            write!(f, "{}: {}: {}", self.origin, self.key, self.message)
        }
    }
}

/// Every problem found, one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileErrors(pub Vec<ProfileError>);

impl ProfileErrors {
    pub fn iter(&self) -> impl Iterator<Item = &ProfileError> {
        self.0.iter()
    }
}

impl fmt::Display for ProfileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProfileErrors {}
