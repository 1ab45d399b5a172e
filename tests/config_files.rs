//! Every file in config/ loads and validates; bad files name file, key and reason.

use fabflow::config::Config;
use fabflow::runtime::Network;

#[test]
fn every_config_file_is_valid() {
    let profiles = fabflow_adapters::builtin_profiles();
    let mut checked = 0;
    for entry in std::fs::read_dir("config").expect("config/") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let config = Config::load(&path).unwrap_or_else(|err| panic!("{err}"));
        Network::new(&config, &profiles, &path.display().to_string())
            .unwrap_or_else(|err| panic!("{err}"));
        checked += 1;
    }
    assert!(
        checked >= 2,
        "config/demo.toml and config/production.example.toml"
    );
}

#[test]
fn every_problem_is_reported_with_file_and_key() {
    let text = r#"
time_scale = 0.0
[scheduler]
interval_ms = 5
max_queue = 2
[[zones]]
id = "z"
corners = [[52.0, 13.0], [52.0, 14.0]]
planning_cron = "0 9 * * *"
[[factories]]
id = "f"
name = "F"
lat = 52.5
lon = 13.4
[[couriers]]
id = "c"
zone = "nowhere"
lat = 52.5
lon = 13.4
capacity = 0
"#;
    let err = Config::parse(text, "bad.toml").expect_err("invalid");
    let message = err.to_string();
    for expected in [
        "time_scale: must be 0.001..=100000, got 0 (bad.toml)",
        "scheduler.interval_ms: must be 10..=60000, got 5 (bad.toml)",
        "zones.z.corners: needs at least 3 corners, got 2 (bad.toml)",
        "zones.z.planning_cron:",
        "couriers.c.zone: unknown zone \"nowhere\" (bad.toml)",
        "couriers.c.capacity: must be 1..=500, got 0 (bad.toml)",
    ] {
        assert!(
            message.contains(expected),
            "missing {expected:?} in:\n{message}"
        );
    }
    let unknown =
        Config::parse("time_scale = 1.0\nspeed = 3\n", "typo.toml").expect_err("unknown key");
    assert!(unknown.to_string().contains("speed"), "{unknown}");
    assert!(unknown.to_string().contains("typo.toml"), "{unknown}");
}

#[test]
fn machines_must_use_known_models_and_their_materials() {
    let mut config = Config::demo().expect("demo");
    config.machines.push(fabflow::config::MachineConfig {
        id: "m1".into(),
        factory: "north".into(),
        model: "acme-dtg-9000".into(),
        address: Some("127.0.0.1:5020".parse().expect("addr")),
        serial: None,
        materials: None,
        poll_interval_ms: 200,
        request_timeout_ms: 1000,
        calendar: None,
        speed: 1.0,
        setup_minutes: 0.0,
    });
    config.machines.push(fabflow::config::MachineConfig {
        id: "m2".into(),
        factory: "north".into(),
        model: "acme-dtg-200".into(),
        address: Some("127.0.0.1:5021".parse().expect("addr")),
        serial: None,
        materials: Some(vec!["pla".into()]),
        poll_interval_ms: 200,
        request_timeout_ms: 1000,
        calendar: None,
        speed: 1.0,
        setup_minutes: 0.0,
    });
    let err = Network::new(&config, &fabflow_adapters::builtin_profiles(), "demo.toml")
        .expect_err("invalid");
    let message = err.to_string();
    assert!(
        message.contains("machines.m1.model: unknown machine model \"acme-dtg-9000\""),
        "{message}"
    );
    assert!(
        message.contains("machines.m2.materials: \"pla\" is not a material of acme-dtg-200"),
        "{message}"
    );
}

#[test]
fn recipes_must_fit_the_registers_of_the_machines_that_run_them() {
    let mut config = Config::demo().expect("demo");
    config.machines.push(fabflow::config::MachineConfig {
        id: "uv-1".into(),
        factory: "north".into(),
        model: "lumen-uv-6".into(),
        address: Some("127.0.0.1:5020".parse().expect("addr")),
        serial: None,
        materials: None,
        poll_interval_ms: 200,
        request_timeout_ms: 1000,
        calendar: None,
        speed: 1.0,
        setup_minutes: 0.0,
    });
    let mug = config
        .skus
        .iter_mut()
        .find(|s| s.code == "mug-white")
        .expect("mug");
    mug.route[0].recipe = 70_000;
    let err = Network::new(&config, &fabflow_adapters::builtin_profiles(), "demo.toml")
        .expect_err("invalid");
    let message = err.to_string();
    assert!(
        message.contains("skus.mug-white.route[0].recipe: 70000 does not fit the recipe register of lumen-uv-6 (machine uv-1, 0..=65535)"),
        "{message}"
    );
}

#[test]
fn a_power_budget_below_a_machines_own_start_up_draw_is_refused() {
    let mut config = Config::demo().expect("demo");
    config.machines.push(fabflow::config::MachineConfig {
        id: "press-1".into(),
        factory: "north".into(),
        model: "heatwave-hp-40".into(),
        address: Some("127.0.0.1:5020".parse().expect("addr")),
        serial: None,
        materials: None,
        poll_interval_ms: 200,
        request_timeout_ms: 1000,
        calendar: None,
        speed: 1.0,
        setup_minutes: 0.0,
    });
    for factory in &mut config.factories {
        if factory.id == "north" {
            factory.power_budget_w = Some(1000);
        }
    }
    let profiles = fabflow_adapters::builtin_profiles();
    let err = Network::new(&config, &profiles, "demo.toml").expect_err("invalid");
    let message = err.to_string();
    assert!(
        message.contains("factories.north.power_budget_w: 1000 W is less than machine press-1's start-up draw (1800 W, profile heatwave-hp-40)"),
        "{message}"
    );
    for factory in &mut config.factories {
        factory.power_budget_w = Some(2000);
    }
    let second = Network::new(&config, &profiles, "demo.toml").err();
    assert!(
        second
            .as_ref()
            .is_none_or(|err| !err.to_string().contains("power_budget_w")),
        "{second:?}"
    );
}

/// The Mosquitto files docs/mqtt-acl.md shows are the ones in
/// config/mosquitto/ (the Mosquitto suite runs the files): the fenced block
/// after each file's link holds the file's lines without comments.
#[test]
fn the_mosquitto_files_in_the_docs_are_the_shipped_ones() {
    let docs = std::fs::read_to_string("docs/mqtt-acl.md").expect("docs/mqtt-acl.md");
    for file in ["fabflow.acl", "fabflow.conf"] {
        let shipped = std::fs::read_to_string(format!("config/mosquitto/{file}"))
            .unwrap_or_else(|err| panic!("{file}: {err}"));
        let shipped: Vec<&str> = shipped
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let link = format!("(../config/mosquitto/{file})");
        let after = docs
            .split_once(&link)
            .unwrap_or_else(|| panic!("docs link {file}"))
            .1;
        let block = after
            .split("```")
            .nth(1)
            .unwrap_or_else(|| panic!("a fenced block after the {file} link"));
        let shown: Vec<&str> = block
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(shown, shipped, "docs/mqtt-acl.md shows another {file}");
    }
}
