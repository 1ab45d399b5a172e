//! Validation: the raw parsed form of a profile file becomes a [`Profile`]
//! whose invariants links rely on, or every problem of the file, each with
//! its dotted key.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::*;

pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
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
pub(super) struct RawProfile {
    model: Option<String>,
    protocol: Option<String>,
    description: Option<String>,
    capabilities: Option<Vec<String>>,
    #[serde(default)]
    materials: Vec<String>,
    unit_id: Option<i64>,
    command_timeout_ms: Option<i64>,
    startup_power_w: Option<i64>,
    startup_ms: Option<i64>,
    report_topic: Option<String>,
    command_topic: Option<String>,
    report_timeout_ms: Option<i64>,
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
    counts: Option<Counts>,
    pointer: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommand {
    steps: Option<Vec<RawStep>>,
    payload: Option<toml::Value>,
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

pub(super) fn validate(raw: RawProfile, origin: &str) -> Result<Profile, ProfileErrors> {
    let mut p = Problems {
        origin,
        list: Vec::new(),
    };

    let model = raw.model.clone().unwrap_or_default();
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

    let protocol = match raw.protocol.as_deref() {
        Some("modbus") => Protocol::Modbus,
        Some("mqtt") => Protocol::Mqtt,
        Some(other) => {
            p.push(
                "protocol",
                format!("unsupported protocol `{other}` (supported: modbus, mqtt)"),
            );
            Protocol::Modbus
        }
        None => {
            p.push("protocol", "required (supported: modbus, mqtt)");
            Protocol::Modbus
        }
    };

    let capabilities = raw.capabilities.clone().unwrap_or_default();
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

    let command_timeout_ms = command_timeout(&mut p, raw.command_timeout_ms);
    let startup = startup(&mut p, raw.startup_power_w, raw.startup_ms);
    if protocol == Protocol::Mqtt {
        let mqtt = validate_mqtt(&mut p, &raw);
        if !p.list.is_empty() {
            return Err(ProfileErrors(p.list));
        }
        return Ok(Profile {
            origin: origin.to_string(),
            model,
            protocol,
            description: raw.description.unwrap_or_default(),
            capabilities,
            materials: raw.materials,
            unit_id: 0,
            signals: BTreeMap::new(),
            start: Command { steps: Vec::new() },
            acknowledge: None,
            command_timeout_ms,
            startup,
            mqtt,
        });
    }
    for (key, given) in [
        ("report_topic", raw.report_topic.is_some()),
        ("command_topic", raw.command_topic.is_some()),
        ("report_timeout_ms", raw.report_timeout_ms.is_some()),
    ] {
        if given {
            p.push(key, "only allowed with `protocol = \"mqtt\"`");
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
    // A machine without an acknowledge step shows `done` with the token of
    // the job it finished until its next start: only a token it echoes
    // itself (written by the machine, not by the start) tells a finished
    // job from a start it has not taken yet.
    if acknowledge.is_none() && !raw.signals.contains_key(SignalName::TokenEcho.as_str()) {
        p.push(
            "commands.acknowledge",
            "may be left out only when the machine echoes the job token it runs \
             (`signals.token_echo`): without an echo a finished job and a start \
             not yet taken look alike",
        );
    }

    if !p.list.is_empty() {
        return Err(ProfileErrors(p.list));
    }
    Ok(Profile {
        origin: origin.to_string(),
        model,
        protocol,
        description: raw.description.unwrap_or_default(),
        capabilities,
        materials: raw.materials,
        unit_id,
        signals,
        start: start.unwrap_or(Command { steps: Vec::new() }),
        acknowledge,
        command_timeout_ms,
        startup,
        mqtt: None,
    })
}

/// The start-up draw: `startup_power_w` and `startup_ms` together, or neither.
fn startup(p: &mut Problems<'_>, power_w: Option<i64>, ms: Option<i64>) -> Option<Startup> {
    match (power_w, ms) {
        (None, None) => None,
        (Some(power_w), Some(ms)) => {
            let power = u32::try_from(power_w)
                .ok()
                .filter(|w| (1..=STARTUP_POWER_MAX_W).contains(w));
            if power.is_none() {
                p.push(
                    "startup_power_w",
                    format!("must be 1..={STARTUP_POWER_MAX_W} (watts), got {power_w}"),
                );
            }
            let duration = u64::try_from(ms)
                .ok()
                .filter(|ms| (1..=STARTUP_MAX_MS).contains(ms));
            if duration.is_none() {
                p.push(
                    "startup_ms",
                    format!("must be 1..={STARTUP_MAX_MS} (milliseconds), got {ms}"),
                );
            }
            Some(Startup {
                power_w: power?,
                duration_ms: duration?,
            })
        }
        (Some(_), None) => {
            p.push(
                "startup_ms",
                "needed with startup_power_w: how long the start-up draw lasts",
            );
            None
        }
        (None, Some(_)) => {
            p.push(
                "startup_power_w",
                "needed with startup_ms: what the machine draws while it starts",
            );
            None
        }
    }
}

fn command_timeout(p: &mut Problems<'_>, raw: Option<i64>) -> u64 {
    match raw {
        None => DEFAULT_COMMAND_TIMEOUT_MS,
        Some(ms) => match u64::try_from(ms) {
            Ok(ms) if COMMAND_TIMEOUT_RANGE_MS.contains(&ms) => ms,
            _ => {
                p.push(
                    "command_timeout_ms",
                    format!(
                        "must be {}..={} (milliseconds), got {ms}",
                        COMMAND_TIMEOUT_RANGE_MS.start(),
                        COMMAND_TIMEOUT_RANGE_MS.end()
                    ),
                );
                DEFAULT_COMMAND_TIMEOUT_MS
            }
        },
    }
}

fn validate_signal(
    p: &mut Problems<'_>,
    key: &str,
    name: SignalName,
    raw: &RawSignal,
) -> Option<Signal> {
    let before = p.list.len();
    if raw.pointer.is_some() {
        p.push(
            format!("{key}.pointer"),
            "only allowed with `protocol = \"mqtt\"` (a Modbus signal has kind and address)",
        );
    }
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
            SignalName::JobToken
                | SignalName::TokenEcho
                | SignalName::State
                | SignalName::FaultCode
        );
        if wants_integer && !value_type.is_integer() {
            p.push(
                format!("{key}.type"),
                format!("`{name}` must be an integer type"),
            );
        }
        if matches!(name, SignalName::JobToken | SignalName::TokenEcho)
            && value_type != ValueType::U32
        {
            p.push(format!("{key}.type"), format!("`{name}` must be u32"));
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
            SignalName::JobToken
                | SignalName::TokenEcho
                | SignalName::State
                | SignalName::FaultCode
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

    if name == SignalName::TokenEcho
        && let Some(kind) = raw.kind
        && !matches!(kind, RegisterKind::Input | RegisterKind::Holding)
    {
        p.push(
            format!("{key}.kind"),
            "`token_echo` is read from an input or holding register",
        );
    }

    let counts = raw.counts.unwrap_or_default();
    if raw.counts.is_some() {
        if !matches!(name, SignalName::GoodCount | SignalName::ScrapCount) {
            p.push(
                format!("{key}.counts"),
                "only allowed on `good_count` and `scrap_count`",
            );
        } else if counts == Counts::Cumulative
            && (!matches!(raw.value_type, Some(ValueType::U16 | ValueType::U32))
                || raw.scale.is_some())
        {
            p.push(
                format!("{key}.counts"),
                "a cumulative counter must be u16 or u32 without scale (it wraps at the register width)",
            );
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
                let state = RunState::from_name(state_name);
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
                RunState::Idle,
                RunState::Running,
                RunState::Done,
                RunState::Fault,
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
        counts,
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
    if raw.payload.is_some() {
        p.push(
            format!("{key}.payload"),
            "only allowed with `protocol = \"mqtt\"` (a Modbus command has steps)",
        );
    }
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

// ---- MQTT profiles ----

/// The placeholders a start payload must carry, each once at least.
const PLACEHOLDERS: [&str; 3] = ["job_token", "recipe", "quantity"];

/// Validates the MQTT parts of a profile: topics, report pointers and
/// command payloads. Returns the spec when nothing was wrong with them.
fn validate_mqtt(p: &mut Problems<'_>, raw: &RawProfile) -> Option<MqttSpec> {
    let before = p.list.len();
    if raw.unit_id.is_some() {
        p.push("unit_id", "only allowed with `protocol = \"modbus\"`");
    }
    let report_topic = mqtt_topic(p, "report_topic", raw.report_topic.as_deref());
    let command_topic = mqtt_topic(p, "command_topic", raw.command_topic.as_deref());
    if let (Some(report), Some(command)) = (&report_topic, &command_topic)
        && report == command
    {
        p.push(
            "command_topic",
            "must differ from `report_topic` (the machine would read its own reports)",
        );
    }
    let report_timeout_ms = match raw.report_timeout_ms {
        None => DEFAULT_REPORT_TIMEOUT_MS,
        Some(ms) => match u64::try_from(ms) {
            Ok(ms) if REPORT_TIMEOUT_RANGE_MS.contains(&ms) => ms,
            _ => {
                p.push(
                    "report_timeout_ms",
                    format!(
                        "must be {}..={} (milliseconds), got {ms}",
                        REPORT_TIMEOUT_RANGE_MS.start(),
                        REPORT_TIMEOUT_RANGE_MS.end()
                    ),
                );
                DEFAULT_REPORT_TIMEOUT_MS
            }
        },
    };

    const KNOWN: &str =
        "state, token_echo, good_count, scrap_count, fault_code, progress, sequence";
    let mut pointers: BTreeMap<&str, Pointer> = BTreeMap::new();
    let mut state_map = BTreeMap::new();
    for (name, signal) in &raw.signals {
        let key = format!("signals.{name}");
        if matches!(name.as_str(), "job_token" | "recipe" | "quantity") {
            p.push(
                key,
                format!(
                    "not a report signal on MQTT: `{name}` goes out in the start payload as `{{{name}}}`"
                ),
            );
            continue;
        }
        if !KNOWN.split(", ").any(|known| known == name) {
            p.push(key, format!("unknown signal (known on MQTT: {KNOWN})"));
            continue;
        }
        let errors = p.list.len();
        for (field, given) in [
            ("kind", signal.kind.is_some()),
            ("address", signal.address.is_some()),
            ("type", signal.value_type.is_some()),
            ("word_order", signal.word_order.is_some()),
        ] {
            if given {
                p.push(
                    format!("{key}.{field}"),
                    "only allowed with `protocol = \"modbus\"` (an MQTT signal has a `pointer`)",
                );
            }
        }
        match &signal.pointer {
            None => p.push(
                format!("{key}.pointer"),
                "required: a JSON pointer into the report (RFC 6901), like `/print/gcode_state`",
            ),
            Some(pointer) => {
                if let Some(problem) = pointer_problem(pointer) {
                    p.push(format!("{key}.pointer"), problem);
                }
            }
        }
        if let Some(scale) = signal.scale {
            if name != "progress" {
                p.push(format!("{key}.scale"), "only allowed on `progress`");
            } else if !scale.is_finite() || scale == 0.0 {
                p.push(
                    format!("{key}.scale"),
                    format!("must be finite and non-zero, got {scale}"),
                );
            }
        }
        if signal.counts.is_some() && !matches!(name.as_str(), "good_count" | "scrap_count") {
            p.push(
                format!("{key}.counts"),
                "only allowed on `good_count` and `scrap_count`",
            );
        }
        match (&signal.map, name == "state") {
            (None, true) => p.push(
                format!("{key}.map"),
                format!("required: reported value = state ({STATE_NAMES})"),
            ),
            (Some(_), false) => p.push(format!("{key}.map"), "only allowed on `state`"),
            (None, false) => {}
            (Some(raw_map), true) => {
                for (value, state_name) in raw_map {
                    match RunState::from_name(state_name) {
                        Some(state) => {
                            state_map.insert(value.clone(), state);
                        }
                        None => p.push(
                            format!("{key}.map.{value}"),
                            format!("unknown state `{state_name}` (known: {STATE_NAMES})"),
                        ),
                    }
                }
                for needed in [
                    RunState::Idle,
                    RunState::Running,
                    RunState::Done,
                    RunState::Fault,
                ] {
                    if raw_map.values().all(|v| v != needed.as_str()) {
                        p.push(format!("{key}.map"), format!("no value maps to `{needed}`"));
                    }
                }
            }
        }
        if p.list.len() == errors
            && let Some(pointer) = &signal.pointer
        {
            pointers.insert(
                KNOWN
                    .split(", ")
                    .find(|known| known == name)
                    .unwrap_or_default(),
                Pointer {
                    pointer: pointer.clone(),
                    scale: signal.scale,
                    counts: signal.counts.unwrap_or_default(),
                },
            );
        }
    }
    for required in ["state", "token_echo", "good_count", "scrap_count"] {
        if !raw.signals.contains_key(required) {
            let what = if required == "token_echo" {
                "required signal is missing (where the report shows the token of the job the machine took)"
            } else {
                "required signal is missing"
            };
            p.push(format!("signals.{required}"), what);
        }
    }

    let mut start = None;
    let mut acknowledge = None;
    for (name, command) in &raw.commands {
        let key = format!("commands.{name}");
        let is_start = match name.as_str() {
            "start" => true,
            "acknowledge" => false,
            _ => {
                p.push(key, "unknown command (known: start, acknowledge)");
                continue;
            }
        };
        if command.steps.is_some() {
            p.push(
                format!("{key}.steps"),
                "only allowed with `protocol = \"modbus\"` (an MQTT command has a `payload`)",
            );
        }
        let Some(payload) = &command.payload else {
            p.push(
                format!("{key}.payload"),
                "required: the JSON object published on `command_topic`",
            );
            continue;
        };
        let json = toml_to_json(payload);
        if !json.is_object() {
            p.push(format!("{key}.payload"), "must be a table (a JSON object)");
            continue;
        }
        let mut found = BTreeSet::new();
        let errors = p.list.len();
        check_placeholders(p, &format!("{key}.payload"), &json, &mut found);
        if p.list.len() != errors {
            continue;
        }
        if is_start {
            for needed in PLACEHOLDERS {
                if !found.contains(needed) {
                    p.push(
                        format!("{key}.payload"),
                        format!("must carry `{{{needed}}}` somewhere"),
                    );
                }
            }
            start = Some(json);
        } else {
            if let Some(used) = found.first() {
                p.push(
                    format!("{key}.payload"),
                    format!("`{{{used}}}`: only `start` carries job values"),
                );
            }
            acknowledge = Some(json);
        }
    }
    if !raw.commands.contains_key("start") {
        p.push("commands.start", "required command is missing");
    }

    if p.list.len() != before {
        return None;
    }
    let take = |pointers: &mut BTreeMap<&str, Pointer>, name: &str| pointers.remove(name);
    Some(MqttSpec {
        report_topic: report_topic?,
        command_topic: command_topic?,
        report_timeout_ms,
        state: take(&mut pointers, "state")?,
        state_map,
        token: take(&mut pointers, "token_echo")?,
        good_count: take(&mut pointers, "good_count")?,
        scrap_count: take(&mut pointers, "scrap_count")?,
        fault_code: take(&mut pointers, "fault_code"),
        progress: take(&mut pointers, "progress"),
        sequence: take(&mut pointers, "sequence"),
        start: start?,
        acknowledge,
    })
}

/// A topic template: levels without wildcards, `{serial}` somewhere.
fn mqtt_topic(p: &mut Problems<'_>, key: &str, topic: Option<&str>) -> Option<String> {
    let Some(topic) = topic else {
        p.push(
            key,
            "required, a topic with `{serial}` in it, like `device/{serial}/report`",
        );
        return None;
    };
    let before = p.list.len();
    if topic.is_empty() || topic.contains(['+', '#', '\0']) || topic.starts_with('$') {
        p.push(
            key,
            format!(
                "must be a topic name without wildcards (`+`, `#`) or a leading `$`, got `{topic}`"
            ),
        );
    }
    if !topic.contains("{serial}") {
        p.push(
            key,
            format!("must contain `{{serial}}` (each machine its own topic), got `{topic}`"),
        );
    }
    if topic.replace("{serial}", "").contains(['{', '}']) {
        p.push(
            key,
            format!("`{{serial}}` is the only placeholder of a topic, got `{topic}`"),
        );
    }
    (p.list.len() == before).then(|| topic.to_string())
}

/// Why `pointer` is not an RFC 6901 JSON pointer.
fn pointer_problem(pointer: &str) -> Option<String> {
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return Some(format!(
            "must be empty or start with `/` (RFC 6901), got `{pointer}`"
        ));
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Some(format!(
                "`~` must be followed by 0 or 1 (RFC 6901), got `{pointer}`"
            ));
        }
    }
    None
}

/// A TOML value as JSON (dates become their text).
fn toml_to_json(value: &toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(items) => J::Array(items.iter().map(toml_to_json).collect()),
        toml::Value::Table(table) => J::Object(
            table
                .iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

/// Every `{name}` placeholder in the strings of `value`; unknown names
/// and unclosed braces are problems.
fn check_placeholders(
    p: &mut Problems<'_>,
    key: &str,
    value: &serde_json::Value,
    found: &mut BTreeSet<&'static str>,
) {
    match value {
        serde_json::Value::String(text) => {
            let mut rest = text.as_str();
            while let Some(open) = rest.find('{') {
                let Some(close) = rest[open..].find('}') else {
                    p.push(key, format!("unclosed `{{` in `{text}`"));
                    return;
                };
                let name = &rest[open + 1..open + close];
                match PLACEHOLDERS.iter().find(|known| **known == name) {
                    Some(known) => {
                        found.insert(known);
                    }
                    None => p.push(
                        key,
                        format!(
                            "unknown placeholder `{{{name}}}` in `{text}` (known: {{job_token}}, {{recipe}}, {{quantity}})"
                        ),
                    ),
                }
                rest = &rest[open + close + 1..];
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                check_placeholders(p, key, item, found);
            }
        }
        serde_json::Value::Object(map) => {
            for item in map.values() {
                check_placeholders(p, key, item, found);
            }
        }
        _ => {}
    }
}
