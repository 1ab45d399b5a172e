//! Profile files: every file in adapters/profiles loads, the embedded set
//! matches the directory, and validation reports every problem with its key.

use std::path::Path;

use fabflow_adapters::profile::{
    BUILTIN_SOURCES, Counts, DEFAULT_COMMAND_TIMEOUT_MS, Profile, RegisterKind, SignalName, Step,
    ValueType, WordOrder,
};
use fabflow_adapters::{RunState, builtin_profiles, load_dir};

fn profiles_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles")
}

#[test]
fn every_profile_file_loads_and_builtins_match_the_directory() {
    let from_dir = load_dir(profiles_dir()).unwrap_or_else(|e| panic!("{e}"));
    let builtin = builtin_profiles();
    assert_eq!(
        from_dir.len(),
        builtin.len(),
        "BUILTIN_SOURCES must list every file"
    );
    for profile in &from_dir {
        let embedded = builtin
            .iter()
            .find(|b| b.model == profile.model)
            .unwrap_or_else(|| panic!("{} is not embedded", profile.origin));
        let file_name = Path::new(&profile.origin).file_name().expect("file name");
        assert!(embedded.origin.ends_with(&*file_name.to_string_lossy()));
        assert_eq!(embedded.signals, profile.signals);
        assert_eq!(embedded.start, profile.start);
        assert_eq!(embedded.acknowledge, profile.acknowledge);
    }
    // The embedded text is the file's text, byte for byte.
    for (origin, text) in BUILTIN_SOURCES {
        let name = origin.trim_start_matches("adapters/profiles/");
        let on_disk = std::fs::read_to_string(profiles_dir().join(name)).expect("file exists");
        assert_eq!(&on_disk, text, "{origin}");
    }
    let models: Vec<&str> = builtin.iter().map(|p| p.model.as_str()).collect();
    for model in [
        "acme-dtg-200",
        "heatwave-hp-40",
        "lumen-uv-6",
        "forge-fdm-3",
        "strata-p1",
        "generic-json",
    ] {
        assert!(models.contains(&model), "{model} missing from {models:?}");
    }
}

const GOOD: &str = r#"
model = "test-1"
protocol = "modbus"
capabilities = ["dtg_print"]
materials = ["cotton_tee"]
unit_id = 2
[signals.job_token]
kind = "holding"
address = 100
type = "u32"
word_order = "little"
[signals.recipe]
kind = "holding"
address = 102
type = "u16"
[signals.quantity]
kind = "holding"
address = 103
type = "u16"
[signals.state]
kind = "input"
address = 0
type = "u16"
map = { 0 = "idle", 1 = "running", 2 = "done", 3 = "fault" }
[signals.good_count]
kind = "input"
address = 1
type = "u16"
[signals.scrap_count]
kind = "input"
address = 2
type = "u16"
[signals.progress]
kind = "input"
address = 3
type = "u16"
scale = 0.1
[commands.start]
steps = [{ write = "job_token" }, { write = "recipe" }, { write = "quantity" }, { write_register = 9, value = 1 }]
[commands.acknowledge]
steps = [{ write_coil = 1, value = true }]
"#;

#[test]
fn a_good_profile_parses_into_typed_signals_and_steps() {
    let profile = Profile::from_toml_str(GOOD, "good.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(profile.unit_id, 2);
    let token = profile.required(SignalName::JobToken);
    assert_eq!(
        (
            token.kind,
            token.address,
            token.value_type,
            token.word_order
        ),
        (
            RegisterKind::Holding,
            100,
            ValueType::U32,
            WordOrder::Little
        )
    );
    assert_eq!(
        profile.required(SignalName::State).map.get(&2),
        Some(&RunState::Done)
    );
    assert_eq!(
        profile.signal(SignalName::Progress).and_then(|s| s.scale),
        Some(0.1)
    );
    assert!(profile.signal(SignalName::FaultCode).is_none());
    assert_eq!(
        profile.start.steps.last(),
        Some(&Step::WriteRegister {
            address: 9,
            value: 1
        })
    );
    assert_eq!(
        profile.acknowledge.clone().map(|ack| ack.steps),
        Some(vec![Step::WriteCoil {
            address: 1,
            value: true
        }])
    );
    assert_eq!(profile.command_timeout_ms, DEFAULT_COMMAND_TIMEOUT_MS);
    assert!(!profile.echoes_token());
    assert_eq!(
        profile.required(SignalName::GoodCount).counts,
        Counts::PerJob
    );
}

/// GOOD as a machine without an acknowledge step that echoes its token in
/// an input register and counts lifetime totals.
fn no_ack_cumulative_echo() -> String {
    GOOD.replacen(
        "[commands.acknowledge]\nsteps = [{ write_coil = 1, value = true }]\n",
        "",
        1,
    )
    .replacen(
        "address = 1\ntype = \"u16\"\n",
        "address = 1\ntype = \"u16\"\ncounts = \"cumulative\"\n",
        1,
    )
    .replacen(
        "address = 2\ntype = \"u16\"\n",
        "address = 2\ntype = \"u16\"\ncounts = \"cumulative\"\n",
        1,
    )
    .replacen(
        "[signals.progress]",
        "[signals.token_echo]\nkind = \"input\"\naddress = 10\ntype = \"u32\"\nword_order = \"big\"\n[signals.progress]",
        1,
    )
    .replacen("unit_id = 2", "unit_id = 2\ncommand_timeout_ms = 2500", 1)
}

#[test]
fn a_machine_without_acknowledge_with_cumulative_counters_and_a_token_echo() {
    let text = no_ack_cumulative_echo();
    let profile = Profile::from_toml_str(&text, "x.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(profile.acknowledge, None);
    assert!(profile.echoes_token());
    let echo = profile.signal(SignalName::TokenEcho).expect("echo");
    assert_eq!((echo.kind, echo.address), (RegisterKind::Input, 10));
    let good = profile.required(SignalName::GoodCount);
    assert_eq!(
        (good.counts, good.modulus()),
        (Counts::Cumulative, Some(65_536))
    );
    assert_eq!(
        profile.required(SignalName::ScrapCount).counts,
        Counts::Cumulative
    );
    assert_eq!(profile.command_timeout_ms, 2500);

    // Each new key is checked with its place.
    let p = "x.toml";
    let errors = |from: &str, to: &str| -> Vec<String> {
        assert!(text.contains(from), "test setup: {from:?} not in the text");
        match Profile::from_toml_str(&text.replacen(from, to, 1), p) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    };
    let cases = [
        (
            "[signals.token_echo]",
            "[signals.token_echo_gone]",
            "x.toml: commands.acknowledge: may be left out only when the machine echoes the job token it runs (`signals.token_echo`): without an echo a finished job and a start not yet taken look alike",
        ),
        (
            "address = 10\ntype = \"u32\"\nword_order = \"big\"",
            "address = 10\ntype = \"u16\"",
            "x.toml: signals.token_echo.type: `token_echo` must be u32",
        ),
        (
            "kind = \"input\"\naddress = 10",
            "kind = \"coil\"\naddress = 10",
            "x.toml: signals.token_echo.kind: `token_echo` is read from an input or holding register",
        ),
        (
            "address = 10\ntype = \"u32\"\nword_order = \"big\"",
            "address = 10\ntype = \"u32\"\nword_order = \"big\"\nscale = 2.0",
            "x.toml: signals.token_echo.scale: not allowed on `token_echo` (it must be exact)",
        ),
        (
            "address = 10\n",
            "address = 0\n",
            "x.toml: signals.token_echo.address: input 0..2 overlaps signal `state` (0..1)",
        ),
        (
            "address = 1\ntype = \"u16\"\ncounts = \"cumulative\"",
            "address = 1\ntype = \"f32\"\nword_order = \"big\"\ncounts = \"cumulative\"",
            "x.toml: signals.good_count.counts: a cumulative counter must be u16 or u32 without scale (it wraps at the register width)",
        ),
        (
            "address = 2\ntype = \"u16\"\ncounts = \"cumulative\"",
            "address = 2\ntype = \"u16\"\nscale = 0.5\ncounts = \"cumulative\"",
            "x.toml: signals.scrap_count.counts: a cumulative counter must be u16 or u32 without scale (it wraps at the register width)",
        ),
        (
            "address = 103\ntype = \"u16\"",
            "address = 103\ntype = \"u16\"\ncounts = \"cumulative\"",
            "x.toml: signals.quantity.counts: only allowed on `good_count` and `scrap_count`",
        ),
        (
            "command_timeout_ms = 2500",
            "command_timeout_ms = 5",
            "x.toml: command_timeout_ms: must be 100..=3600000 (milliseconds), got 5",
        ),
    ];
    for (from, to, expected) in cases {
        let found = errors(from, to);
        assert!(
            found.iter().any(|e| e == expected),
            "expected {expected:?} in {found:#?}"
        );
    }
    // An unknown choice is refused with its position.
    let found = errors("counts = \"cumulative\"", "counts = \"since_power_on\"");
    assert!(
        found
            .iter()
            .any(|e| e.contains("x.toml: line ") && e.contains("per_job")),
        "{found:#?}"
    );
}

/// Replaces `from` by `to` in GOOD and returns the displayed errors.
fn errors_after(from: &str, to: &str) -> Vec<String> {
    assert!(GOOD.contains(from), "test setup: {from:?} not in GOOD");
    let text = GOOD.replacen(from, to, 1);
    match Profile::from_toml_str(&text, "adapters/profiles/x.toml") {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn check(from: &str, to: &str, expected: &str) {
    let errors = errors_after(from, to);
    assert!(
        errors.iter().any(|e| e == expected),
        "expected {expected:?} in {errors:#?}"
    );
}

#[test]
fn each_kind_of_problem_is_reported_with_its_key() {
    let p = "adapters/profiles/x.toml";
    check(
        "type = \"u32\"\nword_order = \"little\"",
        "type = \"u32\"",
        &format!("{p}: signals.job_token.word_order: required for 32-bit types (big | little)"),
    );
    check(
        "address = 103\ntype = \"u16\"",
        "address = 103\ntype = \"u16\"\nword_order = \"big\"",
        &format!("{p}: signals.quantity.word_order: only allowed for 32-bit types"),
    );
    check(
        "unit_id = 2",
        "unit_id = 0",
        &format!("{p}: unit_id: must be 1..=247, got 0"),
    );
    check(
        "protocol = \"modbus\"",
        "protocol = \"opcua\"",
        &format!("{p}: protocol: unsupported protocol `opcua` (supported: modbus, mqtt)"),
    );
    check(
        "2 = \"done\"",
        "2 = \"finished\"",
        &format!(
            "{p}: signals.state.map.2: unknown state `finished` (known: idle, running, done, fault, paused)"
        ),
    );
    check(
        "2 = \"done\"",
        "2 = \"idle\"",
        &format!("{p}: signals.state.map: no code maps to `done`"),
    );
    check(
        "[signals.good_count]",
        "[signals.good_cnt]",
        &format!(
            "{p}: signals.good_cnt: unknown signal (known: job_token, recipe, quantity, state, good_count, scrap_count, fault_code, progress, token_echo)"
        ),
    );
    check(
        "[signals.good_count]",
        "[signals.good_cnt]",
        &format!("{p}: signals.good_count: required signal is missing"),
    );
    check(
        "address = 2\n",
        "address = 1\n",
        &format!(
            "{p}: signals.scrap_count.address: input 1..2 overlaps signal `good_count` (1..2)"
        ),
    );
    check(
        "{ write = \"quantity\" }, ",
        "",
        &format!("{p}: commands.start.steps: must write signal `quantity`"),
    );
    check(
        "{ write_register = 9, value = 1 }",
        "{ write_register = 9 }",
        &format!("{p}: commands.start.steps[3].value: required (0..=65535)"),
    );
    check(
        "{ write_coil = 1, value = true }",
        "{ write_coil = 1, value = 3 }",
        &format!("{p}: commands.acknowledge.steps[0].value: must be true or false for a coil"),
    );
    check(
        "{ write_coil = 1, value = true }",
        "{ write = \"recipe\" }",
        &format!(
            "{p}: commands.acknowledge.steps[0].write: only `start` carries job values; this command has none"
        ),
    );
    check(
        "[commands.acknowledge]\nsteps",
        "[commands.ack]\nsteps",
        &format!("{p}: commands.ack: unknown command (known: start, acknowledge)"),
    );
    check(
        "[commands.acknowledge]\nsteps",
        "[commands.ack]\nsteps",
        &format!(
            "{p}: commands.acknowledge: may be left out only when the machine echoes the job token it runs (`signals.token_echo`): without an echo a finished job and a start not yet taken look alike"
        ),
    );
    check(
        "{ write = \"quantity\" }, { write_register = 9, value = 1 }",
        "{ write_register = 9, value = 1 }, { write = \"quantity\" }",
        &format!(
            "{p}: commands.start.steps: must end with a trigger step (`write_coil` or `write_register`)"
        ),
    );
    check(
        "scale = 0.1",
        "scale = 0.0",
        &format!("{p}: signals.progress.scale: must be finite and non-zero, got 0"),
    );
    check(
        "kind = \"input\"\naddress = 0\n",
        "kind = \"coil\"\naddress = 0\n",
        &format!("{p}: signals.state.type: `coil` signals must be bool, got U16"),
    );
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = GOOD
        .replacen("unit_id = 2", "unit_id = 300", 1)
        .replacen(
            "type = \"u32\"\nword_order = \"little\"",
            "type = \"u32\"",
            1,
        )
        .replacen("2 = \"done\"", "2 = \"finished\"", 1);
    let errors = Profile::from_toml_str(&text, "x.toml").expect_err("three problems");
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert!(keys.contains(&"unit_id"), "{keys:?}");
    assert!(keys.contains(&"signals.job_token.word_order"), "{keys:?}");
    assert!(keys.contains(&"signals.state.map.2"), "{keys:?}");
}

#[test]
fn unknown_fields_are_refused_with_their_position() {
    let errors = errors_after("unit_id = 2", "unit_id = 2\nunit = 3");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("adapters/profiles/x.toml: line "),
        "{errors:?}"
    );
    assert!(errors[0].contains("unknown field `unit`"), "{errors:?}");
}

#[test]
fn load_dir_reports_every_bad_file_and_duplicate_models() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("a.toml"), GOOD).expect("write");
    std::fs::write(dir.path().join("b.toml"), GOOD).expect("write");
    std::fs::write(
        dir.path().join("c.toml"),
        GOOD.replacen("unit_id = 2", "unit_id = 0", 1),
    )
    .expect("write");
    std::fs::write(dir.path().join("notes.txt"), "not a profile").expect("write");
    let errors = load_dir(dir.path()).expect_err("duplicate and bad unit id");
    let text = errors.to_string();
    assert!(
        text.contains("b.toml: model: model `test-1` is already defined in"),
        "{text}"
    );
    assert!(
        text.contains("c.toml: unit_id: must be 1..=247, got 0"),
        "{text}"
    );
}

/// The generic JSON machine profile, as shipped.
fn generic_json() -> String {
    std::fs::read_to_string(profiles_dir().join("generic-json.toml")).expect("shipped profile")
}

fn mqtt_errors(from: &str, to: &str) -> Vec<String> {
    let good = generic_json();
    assert!(
        good.contains(from),
        "test setup: {from:?} not in generic-json.toml"
    );
    let text = good.replacen(from, to, 1);
    match Profile::from_toml_str(&text, "profiles/m.toml") {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn check_mqtt(from: &str, to: &str, expected: &str) {
    let errors = mqtt_errors(from, to);
    assert!(
        errors.iter().any(|e| e == expected),
        "expected {expected:?} in {errors:#?}"
    );
}

#[test]
fn mqtt_profiles_parse_into_topics_pointers_and_payloads() {
    use fabflow_adapters::profile::Protocol;
    let profile = Profile::from_toml_str(&generic_json(), "generic-json.toml")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(profile.protocol, Protocol::Mqtt);
    assert!(profile.echoes_token() && profile.acknowledges());
    let mqtt = profile.mqtt.as_ref().expect("mqtt spec");
    assert_eq!(
        mqtt.report_topic_for("hp-7"),
        "fabflow/v1/machines/hp-7/report"
    );
    assert_eq!(
        mqtt.command_topic_for("hp-7"),
        "fabflow/v1/machines/hp-7/command"
    );
    assert_eq!(mqtt.report_timeout_ms, 5000);
    assert_eq!(mqtt.state.pointer, "/state");
    assert_eq!(mqtt.state_map.get("done"), Some(&RunState::Done));
    assert_eq!(mqtt.token.pointer, "/job/token");
    assert_eq!(
        mqtt.sequence.as_ref().map(|p| p.pointer.as_str()),
        Some("/seq")
    );
    assert_eq!(mqtt.start["job"]["token"], "{job_token}");
    assert!(profile.signals.is_empty());

    let printer = builtin_profiles()
        .into_iter()
        .find(|p| p.model == "strata-p1")
        .expect("builtin printer");
    assert!(
        !printer.acknowledges(),
        "a print starts straight from FINISH"
    );
    let spec = printer.mqtt.as_ref().expect("mqtt spec");
    assert_eq!(spec.report_topic_for("01P00A"), "device/01P00A/report");
    assert_eq!(spec.command_topic_for("01P00A"), "device/01P00A/request");
    assert_eq!(spec.state.pointer, "/print/gcode_state");
}

#[test]
fn mqtt_profile_problems_are_reported_with_file_and_key() {
    let p = "profiles/m.toml";
    check_mqtt(
        "report_topic = \"fabflow/v1/machines/{serial}/report\"",
        "report_topic = \"fabflow/v1/machines/+/report\"",
        &format!(
            "{p}: report_topic: must be a topic name without wildcards (`+`, `#`) or a leading `$`, got `fabflow/v1/machines/+/report`"
        ),
    );
    check_mqtt(
        "command_topic = \"fabflow/v1/machines/{serial}/command\"",
        "command_topic = \"fabflow/v1/machines/all/command\"",
        &format!(
            "{p}: command_topic: must contain `{{serial}}` (each machine its own topic), got `fabflow/v1/machines/all/command`"
        ),
    );
    check_mqtt(
        "report_timeout_ms = 5000",
        "report_timeout_ms = 5",
        &format!("{p}: report_timeout_ms: must be 200..=3600000 (milliseconds), got 5"),
    );
    check_mqtt(
        "pointer = \"/state\"",
        "pointer = \"state\"",
        &format!(
            "{p}: signals.state.pointer: must be empty or start with `/` (RFC 6901), got `state`"
        ),
    );
    check_mqtt(
        "pointer = \"/job/token\"",
        "kind = \"input\"",
        &format!(
            "{p}: signals.token_echo.pointer: required: a JSON pointer into the report (RFC 6901), like `/print/gcode_state`"
        ),
    );
    check_mqtt(
        "pointer = \"/job/token\"",
        "kind = \"input\"",
        &format!(
            "{p}: signals.token_echo.kind: only allowed with `protocol = \"modbus\"` (an MQTT signal has a `pointer`)"
        ),
    );
    check_mqtt(
        "done = \"done\"",
        "done = \"finished\"",
        &format!(
            "{p}: signals.state.map.done: unknown state `finished` (known: idle, running, done, fault, paused)"
        ),
    );
    check_mqtt(
        "[signals.sequence]",
        "[signals.seqno]",
        &format!(
            "{p}: signals.seqno: unknown signal (known on MQTT: state, token_echo, good_count, scrap_count, fault_code, progress, sequence)"
        ),
    );
    check_mqtt(
        "[signals.good_count]",
        "[signals.job_token]",
        &format!(
            "{p}: signals.job_token: not a report signal on MQTT: `job_token` goes out in the start payload as `{{job_token}}`"
        ),
    );
    check_mqtt(
        "quantity = \"{quantity}\"",
        "quantity = 1",
        &format!("{p}: commands.start.payload: must carry `{{quantity}}` somewhere"),
    );
    check_mqtt(
        "recipe = \"{recipe}\"",
        "recipe = \"{recipe}\", design = \"{design}\"",
        &format!(
            "{p}: commands.start.payload: unknown placeholder `{{design}}` in `{{design}}` (known: {{job_token}}, {{recipe}}, {{quantity}})"
        ),
    );
    check_mqtt(
        "payload = { schema = 1, command = \"acknowledge\" }",
        "payload = { schema = 1, command = \"acknowledge\", job = \"{job_token}\" }",
        &format!(
            "{p}: commands.acknowledge.payload: `{{job_token}}`: only `start` carries job values"
        ),
    );
    check_mqtt(
        "payload = { schema = 1, command = \"acknowledge\" }",
        "steps = [{ write_coil = 1, value = true }]",
        &format!("{p}: commands.acknowledge.steps: only allowed with `protocol = \"mqtt\"` (an MQTT command has a `payload`)").replace("\"mqtt\"", "\"modbus\""),
    );
    check_mqtt(
        "protocol = \"mqtt\"",
        "protocol = \"mqtt\"\nunit_id = 1",
        &format!("{p}: unit_id: only allowed with `protocol = \"modbus\"`"),
    );
    // A Modbus profile refuses the MQTT keys.
    check(
        "unit_id = 2",
        "unit_id = 2\nreport_topic = \"x/{serial}\"",
        "adapters/profiles/x.toml: report_topic: only allowed with `protocol = \"mqtt\"`",
    );
}

#[test]
fn a_start_up_draw_is_both_keys_in_range() {
    let with = |extra: &str| GOOD.replacen("unit_id = 2", &format!("unit_id = 2\n{extra}"), 1);
    let profile = Profile::from_toml_str(
        &with("startup_power_w = 1800\nstartup_ms = 300000"),
        "x.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        profile.startup,
        Some(fabflow_adapters::profile::Startup {
            power_w: 1800,
            duration_ms: 300_000
        })
    );
    assert_eq!(
        Profile::from_toml_str(GOOD, "x.toml").map(|p| p.startup),
        Ok(None)
    );
    for (extra, key) in [
        ("startup_power_w = 1800", "startup_ms"),
        ("startup_ms = 1000", "startup_power_w"),
        ("startup_power_w = 0\nstartup_ms = 1000", "startup_power_w"),
        ("startup_power_w = 10\nstartup_ms = -1", "startup_ms"),
    ] {
        let errors = Profile::from_toml_str(&with(extra), "x.toml").expect_err(extra);
        assert!(errors.iter().any(|e| e.key == key), "{extra}: {errors}");
    }
}
