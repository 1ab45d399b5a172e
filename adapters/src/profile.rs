//! Machine profiles: one TOML file per machine model (adapters/profiles/*.toml)
//! saying where each signal the daemon knows lives on the wire.
//!
//! A profile is parsed with `deny_unknown_fields`, then validated; validation
//! reports every problem at once, each with its file and key. A [`Profile`]
//! value is always valid: links may rely on its invariants (required signals
//! present, types fit their register kind, word order known for 32-bit types).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use serde::Deserialize;

use crate::types::MachineState;

/// The wire protocol of a profile. Only Modbus TCP is implemented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Modbus,
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
}

impl SignalName {
    pub const ALL: [SignalName; 8] = [
        SignalName::JobToken,
        SignalName::Recipe,
        SignalName::Quantity,
        SignalName::State,
        SignalName::GoodCount,
        SignalName::ScrapCount,
        SignalName::FaultCode,
        SignalName::Progress,
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
        }
    }

    pub fn from_name(name: &str) -> Option<SignalName> {
        SignalName::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Signals a profile must define.
    pub fn is_required(self) -> bool {
        !matches!(self, SignalName::FaultCode | SignalName::Progress)
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
    pub map: BTreeMap<i64, MachineState>,
}

impl Signal {
    /// The addresses `address..address + width` this signal occupies.
    pub fn span(&self) -> std::ops::Range<u32> {
        let start = u32::from(self.address);
        start..start + u32::from(self.value_type.width())
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
    /// Modbus unit (slave) id, 1..=247.
    pub unit_id: u8,
    /// Every defined signal; all required ones are present.
    pub signals: BTreeMap<SignalName, Signal>,
    pub start: Command,
    pub acknowledge: Command,
}

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

/// Loads and validates every `*.toml` file in `dir` (sorted by name), reporting
/// the problems of all files at once, plus models defined twice.
pub fn load_dir(dir: impl AsRef<Path>) -> Result<Vec<Profile>, ProfileErrors> {
    let dir = dir.as_ref();
    let io_error = |origin: &Path, err: std::io::Error| ProfileError {
        origin: origin.display().to_string(),
        key: String::new(),
        message: err.to_string(),
    };
    let entries = std::fs::read_dir(dir).map_err(|err| ProfileErrors(vec![io_error(dir, err)]))?;
    let mut paths = Vec::new();
    let mut errors = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => {
                let path = entry.path();
                if path.extension().is_some_and(|ext| ext == "toml") {
                    paths.push(path);
                }
            }
            Err(err) => errors.push(io_error(dir, err)),
        }
    }
    paths.sort();
    let mut texts = Vec::new();
    for path in paths {
        match std::fs::read_to_string(&path) {
            Ok(text) => texts.push((path.display().to_string(), text)),
            Err(err) => errors.push(io_error(&path, err)),
        }
    }
    let sources: Vec<(&str, &str)> = texts
        .iter()
        .map(|(o, t)| (o.as_str(), t.as_str()))
        .collect();
    match parse_all(&sources) {
        Ok(profiles) if errors.is_empty() => Ok(profiles),
        Ok(_) => Err(ProfileErrors(errors)),
        Err(more) => {
            errors.extend(more.0);
            Err(ProfileErrors(errors))
        }
    }
}

/// The profile files compiled into the binary, as (origin, text).
/// `tests` check that this list matches adapters/profiles/ exactly.
pub const BUILTIN_SOURCES: &[(&str, &str)] = &[
    (
        "adapters/profiles/acme-dtg-200.toml",
        include_str!("../profiles/acme-dtg-200.toml"),
    ),
    (
        "adapters/profiles/forge-fdm-3.toml",
        include_str!("../profiles/forge-fdm-3.toml"),
    ),
    (
        "adapters/profiles/heatwave-hp-40.toml",
        include_str!("../profiles/heatwave-hp-40.toml"),
    ),
    (
        "adapters/profiles/lumen-uv-6.toml",
        include_str!("../profiles/lumen-uv-6.toml"),
    ),
];

/// Every profile of adapters/profiles, embedded at build time so an installed
/// binary works without the files.
///
/// # Panics
/// If an embedded profile is invalid: a broken invariant of this crate, which
/// its tests check.
pub fn builtin_profiles() -> Vec<Profile> {
    match parse_all(BUILTIN_SOURCES) {
        Ok(profiles) => profiles,
        Err(errors) => panic!("embedded profiles of fabflow-adapters are invalid:\n{errors}"),
    }
}

/// Parses several profiles, collecting every error and duplicate models.
fn parse_all(sources: &[(&str, &str)]) -> Result<Vec<Profile>, ProfileErrors> {
    let mut profiles: Vec<Profile> = Vec::new();
    let mut errors = Vec::new();
    for (origin, text) in sources {
        match Profile::from_toml_str(text, origin) {
            Ok(profile) => {
                if let Some(first) = profiles.iter().find(|p| p.model == profile.model) {
                    errors.push(ProfileError {
                        origin: profile.origin.clone(),
                        key: "model".to_string(),
                        message: format!(
                            "model `{}` is already defined in {}",
                            profile.model, first.origin
                        ),
                    });
                } else {
                    profiles.push(profile);
                }
            }
            Err(more) => errors.extend(more.0),
        }
    }
    if errors.is_empty() {
        Ok(profiles)
    } else {
        Err(ProfileErrors(errors))
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

// ---- raw (parsed, not yet validated) form ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    model: Option<String>,
    protocol: Option<String>,
    description: Option<String>,
    capabilities: Option<Vec<String>>,
    #[serde(default)]
    materials: Vec<String>,
    unit_id: Option<i64>,
    #[serde(default)]
    signals: BTreeMap<String, RawSignal>,
    #[serde(default)]
    commands: BTreeMap<String, RawCommand>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignal {
    kind: Option<RegisterKind>,
    address: Option<i64>,
    #[serde(rename = "type")]
    value_type: Option<ValueType>,
    word_order: Option<WordOrder>,
    scale: Option<f64>,
    map: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommand {
    steps: Option<Vec<RawStep>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    write: Option<String>,
    write_coil: Option<i64>,
    write_register: Option<i64>,
    value: Option<toml::Value>,
}

struct Problems<'a> {
    origin: &'a str,
    list: Vec<ProfileError>,
}

impl Problems<'_> {
    fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.list.push(ProfileError {
            origin: self.origin.to_string(),
            key: key.into(),
            message: message.into(),
        });
    }
}

const STATE_NAMES: &str = "idle, running, done, fault, paused";

fn validate(raw: RawProfile, origin: &str) -> Result<Profile, ProfileErrors> {
    let mut p = Problems {
        origin,
        list: Vec::new(),
    };

    let model = raw.model.unwrap_or_default();
    if model.is_empty() {
        p.push("model", "required, a non-empty name like `acme-dtg-200`");
    } else if !model
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        p.push(
            "model",
            format!("must use only a-z, 0-9, '-' and '_', got `{model}`"),
        );
    }

    match raw.protocol.as_deref() {
        Some("modbus") => {}
        Some(other) => p.push(
            "protocol",
            format!("unsupported protocol `{other}` (supported: modbus)"),
        ),
        None => p.push("protocol", "required (supported: modbus)"),
    }

    let capabilities = raw.capabilities.unwrap_or_default();
    if capabilities.is_empty() {
        p.push("capabilities", "required, at least one capability");
    }
    for (index, capability) in capabilities.iter().enumerate() {
        if capability.trim().is_empty() {
            p.push(format!("capabilities[{index}]"), "must not be empty");
        }
    }
    for (index, material) in raw.materials.iter().enumerate() {
        if material.trim().is_empty() {
            p.push(format!("materials[{index}]"), "must not be empty");
        }
    }

    let unit_id = match raw.unit_id {
        Some(id @ 1..=247) => u8::try_from(id).unwrap_or(1),
        Some(other) => {
            p.push("unit_id", format!("must be 1..=247, got {other}"));
            1
        }
        None => {
            p.push("unit_id", "required, 1..=247");
            1
        }
    };

    let mut signals = BTreeMap::new();
    for (name, raw_signal) in &raw.signals {
        let key = format!("signals.{name}");
        let Some(signal_name) = SignalName::from_name(name) else {
            let known: Vec<&str> = SignalName::ALL.iter().map(|s| s.as_str()).collect();
            p.push(key, format!("unknown signal (known: {})", known.join(", ")));
            continue;
        };
        if let Some(signal) = validate_signal(&mut p, &key, signal_name, raw_signal) {
            signals.insert(signal_name, signal);
        }
    }
    for name in SignalName::ALL {
        if name.is_required() && !raw.signals.contains_key(name.as_str()) {
            p.push(format!("signals.{name}"), "required signal is missing");
        }
    }
    check_overlaps(&mut p, &signals);

    let mut start = None;
    let mut acknowledge = None;
    for (name, raw_command) in &raw.commands {
        let key = format!("commands.{name}");
        match name.as_str() {
            "start" => start = Some(validate_command(&mut p, &key, true, raw_command, &signals)),
            "acknowledge" => {
                acknowledge = Some(validate_command(&mut p, &key, false, raw_command, &signals));
            }
            _ => p.push(key, "unknown command (known: start, acknowledge)"),
        }
    }
    if start.is_none() {
        p.push("commands.start", "required command is missing");
    }
    if acknowledge.is_none() {
        p.push("commands.acknowledge", "required command is missing");
    }

    if !p.list.is_empty() {
        return Err(ProfileErrors(p.list));
    }
    Ok(Profile {
        origin: origin.to_string(),
        model,
        protocol: Protocol::Modbus,
        description: raw.description.unwrap_or_default(),
        capabilities,
        materials: raw.materials,
        unit_id,
        signals,
        start: start.unwrap_or(Command { steps: Vec::new() }),
        acknowledge: acknowledge.unwrap_or(Command { steps: Vec::new() }),
    })
}

fn validate_signal(
    p: &mut Problems<'_>,
    key: &str,
    name: SignalName,
    raw: &RawSignal,
) -> Option<Signal> {
    let before = p.list.len();
    if raw.kind.is_none() {
        p.push(
            format!("{key}.kind"),
            "required: holding | input | coil | discrete",
        );
    }
    if raw.value_type.is_none() {
        p.push(
            format!("{key}.type"),
            "required: u16 | i16 | u32 | i32 | f32 | bool",
        );
    }
    let address = match raw.address {
        Some(address) => match u16::try_from(address) {
            Ok(address) => Some(address),
            Err(_) => {
                p.push(
                    format!("{key}.address"),
                    format!("must be 0..=65535, got {address}"),
                );
                None
            }
        },
        None => {
            p.push(format!("{key}.address"), "required, 0..=65535");
            None
        }
    };

    if let (Some(kind), Some(value_type)) = (raw.kind, raw.value_type) {
        if kind.is_bit() != (value_type == ValueType::Bool) {
            p.push(
                format!("{key}.type"),
                format!(
                    "`{}` signals must be {}, got {value_type:?}",
                    kind.as_str(),
                    if kind.is_bit() {
                        "bool"
                    } else {
                        "u16 | i16 | u32 | i32 | f32"
                    }
                ),
            );
        }
        if let Some(address) = address
            && u32::from(address) + u32::from(value_type.width()) > 65536
        {
            p.push(format!("{key}.address"), "value runs past address 65535");
        }
        if name.is_command_value() && !kind.is_writable() {
            p.push(
                format!("{key}.kind"),
                format!("`{name}` is written by the daemon, so it must be holding or coil"),
            );
        }
    }

    if let Some(value_type) = raw.value_type {
        if value_type.is_32_bit() && raw.word_order.is_none() {
            p.push(
                format!("{key}.word_order"),
                "required for 32-bit types (big | little)",
            );
        }
        if !value_type.is_32_bit() && raw.word_order.is_some() {
            p.push(format!("{key}.word_order"), "only allowed for 32-bit types");
        }
        let wants_integer = matches!(
            name,
            SignalName::JobToken | SignalName::State | SignalName::FaultCode
        );
        if wants_integer && !value_type.is_integer() {
            p.push(
                format!("{key}.type"),
                format!("`{name}` must be an integer type"),
            );
        }
        if name == SignalName::JobToken && value_type != ValueType::U32 {
            p.push(format!("{key}.type"), "`job_token` must be u32");
        }
        if matches!(name, SignalName::Recipe | SignalName::Quantity)
            && value_type == ValueType::Bool
        {
            p.push(format!("{key}.type"), format!("`{name}` must be numeric"));
        }
        if matches!(
            name,
            SignalName::GoodCount | SignalName::ScrapCount | SignalName::Progress
        ) && value_type == ValueType::Bool
        {
            p.push(format!("{key}.type"), format!("`{name}` must be numeric"));
        }
    }

    if let Some(scale) = raw.scale {
        if !scale.is_finite() || scale == 0.0 {
            p.push(
                format!("{key}.scale"),
                format!("must be finite and non-zero, got {scale}"),
            );
        }
        if matches!(
            name,
            SignalName::JobToken | SignalName::State | SignalName::FaultCode
        ) {
            p.push(
                format!("{key}.scale"),
                format!("not allowed on `{name}` (it must be exact)"),
            );
        }
        if raw.value_type == Some(ValueType::Bool) {
            p.push(format!("{key}.scale"), "not allowed on bool signals");
        }
    }

    let mut map = BTreeMap::new();
    match (&raw.map, name == SignalName::State) {
        (None, true) => p.push(
            format!("{key}.map"),
            format!("required: raw code = state ({STATE_NAMES})"),
        ),
        (Some(_), false) => p.push(format!("{key}.map"), "only allowed on `state`"),
        (None, false) => {}
        (Some(raw_map), true) => {
            let range = raw.value_type.and_then(ValueType::integer_range);
            for (code, state_name) in raw_map {
                let entry_key = format!("{key}.map.{code}");
                let parsed_code = code.trim().parse::<i64>();
                let state = MachineState::from_name(state_name);
                match &parsed_code {
                    Err(_) => p.push(entry_key.clone(), "key must be an integer code"),
                    Ok(value) => {
                        if let Some((min, max)) = range
                            && (*value < min || *value > max)
                        {
                            p.push(
                                entry_key.clone(),
                                format!(
                                    "code {value} does not fit the signal's type ({min}..={max})"
                                ),
                            );
                        }
                    }
                }
                if state.is_none() {
                    p.push(
                        entry_key,
                        format!("unknown state `{state_name}` (known: {STATE_NAMES})"),
                    );
                }
                if let (Ok(value), Some(state)) = (parsed_code, state) {
                    map.insert(value, state);
                }
            }
            for needed in [
                MachineState::Idle,
                MachineState::Running,
                MachineState::Done,
                MachineState::Fault,
            ] {
                if raw_map.values().all(|v| v != needed.as_str()) {
                    p.push(format!("{key}.map"), format!("no code maps to `{needed}`"));
                }
            }
        }
    }

    if p.list.len() != before {
        return None;
    }
    Some(Signal {
        kind: raw.kind?,
        address: address?,
        value_type: raw.value_type?,
        word_order: raw.word_order.unwrap_or_default(),
        scale: raw.scale,
        map,
    })
}

fn check_overlaps(p: &mut Problems<'_>, signals: &BTreeMap<SignalName, Signal>) {
    let list: Vec<(&SignalName, &Signal)> = signals.iter().collect();
    for (index, (name_a, a)) in list.iter().enumerate() {
        for (name_b, b) in &list[index + 1..] {
            if same_table(a.kind, b.kind) && ranges_overlap(&a.span(), &b.span()) {
                p.push(
                    format!("signals.{name_b}.address"),
                    format!(
                        "{} {}..{} overlaps signal `{name_a}` ({}..{})",
                        b.kind.as_str(),
                        b.span().start,
                        b.span().end,
                        a.span().start,
                        a.span().end
                    ),
                );
            }
        }
    }
}

fn same_table(a: RegisterKind, b: RegisterKind) -> bool {
    a == b
}

fn ranges_overlap(a: &std::ops::Range<u32>, b: &std::ops::Range<u32>) -> bool {
    a.start < b.end && b.start < a.end
}

fn validate_command(
    p: &mut Problems<'_>,
    key: &str,
    is_start: bool,
    raw: &RawCommand,
    signals: &BTreeMap<SignalName, Signal>,
) -> Command {
    let mut steps = Vec::new();
    let Some(raw_steps) = &raw.steps else {
        p.push(format!("{key}.steps"), "required, a list of steps");
        return Command { steps };
    };
    if raw_steps.is_empty() {
        p.push(format!("{key}.steps"), "must have at least one step");
    }
    let mut written = BTreeSet::new();
    for (index, step) in raw_steps.iter().enumerate() {
        let step_key = format!("{key}.steps[{index}]");
        let chosen = [
            step.write.is_some(),
            step.write_coil.is_some(),
            step.write_register.is_some(),
        ]
        .into_iter()
        .filter(|x| *x)
        .count();
        if chosen != 1 {
            p.push(
                step_key,
                "must have exactly one of `write`, `write_coil`, `write_register`",
            );
            continue;
        }
        if let Some(signal) = &step.write {
            if step.value.is_some() {
                p.push(
                    format!("{step_key}.value"),
                    "not allowed with `write` (the value comes from the job command)",
                );
            }
            let Some(name) = SignalName::from_name(signal) else {
                p.push(
                    format!("{step_key}.write"),
                    format!("unknown signal `{signal}`"),
                );
                continue;
            };
            if !name.is_command_value() {
                p.push(
                    format!("{step_key}.write"),
                    format!("`{name}` is not a command value (job_token, recipe, quantity)"),
                );
                continue;
            }
            if !is_start {
                p.push(
                    format!("{step_key}.write"),
                    "only `start` carries job values; this command has none",
                );
                continue;
            }
            if !signals.contains_key(&name) {
                // Reported as a missing signal already, or invalid signal.
                continue;
            }
            written.insert(name);
            steps.push(Step::Write(name));
        } else if let Some(address) = step.write_coil {
            let address = match u16::try_from(address) {
                Ok(a) => a,
                Err(_) => {
                    p.push(
                        format!("{step_key}.write_coil"),
                        format!("must be 0..=65535, got {address}"),
                    );
                    continue;
                }
            };
            match &step.value {
                Some(toml::Value::Boolean(value)) => {
                    check_command_address(p, &step_key, RegisterKind::Coil, address, signals);
                    steps.push(Step::WriteCoil {
                        address,
                        value: *value,
                    });
                }
                Some(_) => p.push(
                    format!("{step_key}.value"),
                    "must be true or false for a coil",
                ),
                None => p.push(format!("{step_key}.value"), "required (true or false)"),
            }
        } else if let Some(address) = step.write_register {
            let address = match u16::try_from(address) {
                Ok(a) => a,
                Err(_) => {
                    p.push(
                        format!("{step_key}.write_register"),
                        format!("must be 0..=65535, got {address}"),
                    );
                    continue;
                }
            };
            match &step.value {
                Some(toml::Value::Integer(value)) => match u16::try_from(*value) {
                    Ok(value) => {
                        check_command_address(
                            p,
                            &step_key,
                            RegisterKind::Holding,
                            address,
                            signals,
                        );
                        steps.push(Step::WriteRegister { address, value });
                    }
                    Err(_) => p.push(
                        format!("{step_key}.value"),
                        format!("must be 0..=65535, got {value}"),
                    ),
                },
                Some(_) => p.push(format!("{step_key}.value"), "must be an integer 0..=65535"),
                None => p.push(format!("{step_key}.value"), "required (0..=65535)"),
            }
        }
    }
    if is_start {
        for name in [
            SignalName::JobToken,
            SignalName::Recipe,
            SignalName::Quantity,
        ] {
            if signals.contains_key(&name) && !written.contains(&name) {
                p.push(
                    format!("{key}.steps"),
                    format!("must write signal `{name}`"),
                );
            }
        }
        if matches!(steps.last(), Some(Step::Write(_))) {
            p.push(
                format!("{key}.steps"),
                "must end with a trigger step (`write_coil` or `write_register`)",
            );
        }
    }
    Command { steps }
}

fn check_command_address(
    p: &mut Problems<'_>,
    step_key: &str,
    kind: RegisterKind,
    address: u16,
    signals: &BTreeMap<SignalName, Signal>,
) {
    let at = u32::from(address);
    for (name, signal) in signals {
        if signal.kind == kind && signal.span().contains(&at) {
            p.push(
                step_key.to_string(),
                format!(
                    "{} {address} is signal `{name}`; use a separate command address",
                    kind.as_str()
                ),
            );
        }
    }
}
