//! MQTT machines end to end: simulated machines log in to the daemon's
//! embedded broker as their own users and speak the shipped MQTT profiles
//! (`generic-json`, `strata-p1`); the daemon drives them through the same
//! driver and supervisor as Modbus machines. Checked through the API and the
//! machines' own start logs.

mod support;

use fabflow::api::auth::Role;
use fabflow::config::{Config, MachineConfig};
use fabflow::domain::{ProcessStep, Sku};
use fabflow_adapters::Profile;
use fabflow_sim::{FactorySpec, Fleet, FleetSpec, MachineSpec};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use support::{Api, BBOX, Running, wait_for};

const TIME_SCALE: f64 = 2000.0;
const PRESS_SKU: &str = "tee-pressed";
const PRINT_SKU: &str = "keychain";
const LIMIT: Duration = Duration::from_secs(120);

/// The built-in profiles, with `generic-json`'s command timeout set to
/// `timeout_ms` when given.
fn profiles(timeout_ms: Option<u64>) -> Vec<Profile> {
    let mut all = fabflow_adapters::builtin_profiles();
    if let Some(ms) = timeout_ms {
        let text = include_str!("../adapters/profiles/generic-json.toml").replace(
            "command_timeout_ms = 10000",
            &format!("command_timeout_ms = {ms}"),
        );
        let profile =
            Profile::from_toml_str(&text, "generic-json (test)").unwrap_or_else(|e| panic!("{e}"));
        all.retain(|p| p.model != "generic-json");
        all.push(profile);
    }
    all
}

/// `machines` as (id, model) in the north factory, no scrap.
fn spec(machines: &[(&str, &str)]) -> FleetSpec {
    FleetSpec {
        seed: 5,
        time_scale: TIME_SCALE,
        factories: vec![FactorySpec {
            id: "north".to_string(),
            machines: machines
                .iter()
                .map(|(id, model)| MachineSpec {
                    id: id.to_string(),
                    model: model.to_string(),
                    cycle_seconds: 60.0,
                    scrap_rate: 0.0,
                    faults: Default::default(),
                })
                .collect(),
        }],
    }
}

/// The test configuration: the MQTT machines of `spec`, and one SKU per
/// process they can do.
fn config(
    fleet: &Fleet,
    spec: &FleetSpec,
    profiles: &[Profile],
    dir: &tempfile::TempDir,
    poll_interval_ms: u64,
) -> Config {
    let mut config = support::config(fleet, &dir.path().join("mqtt.db"), TIME_SCALE);
    config.machines = Fleet::mqtt_machines_of(spec, profiles)
        .into_iter()
        .map(|m| MachineConfig {
            id: m.machine_id,
            factory: m.factory_id,
            model: m.model,
            address: None,
            serial: Some(m.serial),
            materials: None,
            poll_interval_ms,
            request_timeout_ms: 1_000,
            calendar: None,
            speed: 1.0,
            setup_minutes: 0.0,
        })
        .collect();
    let has = |model: &str| spec.factories[0].machines.iter().any(|m| m.model == model);
    let mut skus = Vec::new();
    if has("generic-json") {
        skus.push(Sku {
            code: PRESS_SKU.to_string(),
            name: "Tee, pressed transfer".to_string(),
            route: vec![ProcessStep {
                process: "heat_press".to_string(),
                recipe: 21,
                material: "cotton_tee".to_string(),
                seconds_per_unit: 60.0,
            }],
            volume_l: None,
        });
    }
    if has("strata-p1") {
        skus.push(Sku {
            code: PRINT_SKU.to_string(),
            name: "Keychain, printed".to_string(),
            route: vec![ProcessStep {
                process: "print_3d".to_string(),
                recipe: 41,
                material: "pla".to_string(),
                seconds_per_unit: 60.0,
            }],
            volume_l: None,
        });
    }
    config.skus = skus;
    config
}

/// Starts the daemon, then the MQTT machines with the passwords it made.
async fn start(
    machines: &[(&str, &str)],
    timeout_ms: Option<u64>,
) -> (Running, Fleet, FleetSpec, tempfile::TempDir) {
    start_polling(machines, timeout_ms, 40).await
}

/// [`start`], with the daemon reading each machine every `poll_interval_ms`.
async fn start_polling(
    machines: &[(&str, &str)],
    timeout_ms: Option<u64>,
    poll_interval_ms: u64,
) -> (Running, Fleet, FleetSpec, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = spec(machines);
    let profiles = profiles(timeout_ms);
    let mut fleet = Fleet::start(&spec, &profiles).await.expect("fleet");
    let config = config(&fleet, &spec, &profiles, &dir, poll_interval_ms);
    let running = Running::start_with(config, profiles.clone()).await;
    let passwords: HashMap<String, String> = running
        .daemon
        .mqtt_users
        .iter()
        .map(|u| (u.username.clone(), u.password.clone()))
        .collect();
    fleet
        .start_mqtt(
            &spec,
            &profiles,
            &running.daemon.mqtt.host,
            running.daemon.mqtt.port,
            &passwords,
            Duration::from_millis(500),
        )
        .await
        .expect("MQTT machines start");
    (running, fleet, spec, dir)
}

async fn order(running: &Running, seed: u64, skus: &[&str], count: usize) {
    let brand = running.token(Role::Brand, "mqtt-brand").await;
    let orders = fabflow_sim::generate_orders(seed, count, skus, BBOX);
    let report = fabflow_sim::fire(&running.base, &brand, orders, 4).await;
    assert_eq!(report.accepted, count, "{:?}", report.rejected.first());
}

async fn jobs(api: &Api) -> Vec<Value> {
    let (status, body) = api.get("/v1/jobs?limit=500").await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().cloned().unwrap_or_default()
}

async fn machine_state(api: &Api, id: &str) -> String {
    let (_, machines) = api.get("/v1/machines").await;
    machines
        .as_array()
        .and_then(|all| all.iter().find(|m| m["id"] == id))
        .and_then(|m| m["state"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn on(jobs: &[Value], machine: &str, state: &str) -> Vec<u32> {
    jobs.iter()
        .filter(|j| j["machine"] == machine && j["state"] == state)
        .filter_map(|j| j["token"].as_u64().and_then(|t| u32::try_from(t).ok()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_complete_on_mqtt_machines_with_exact_good_counts() {
    let (running, fleet, _spec, _dir) = start(
        &[
            ("press-a", "generic-json"),
            ("press-b", "generic-json"),
            ("printer-1", "strata-p1"),
        ],
        None,
    )
    .await;
    order(&running, 11, &[PRESS_SKU, PRINT_SKU], 8).await;
    let ops = running.api(Role::Operator, "*").await;
    let orders = support::wait_all_produced(&ops, 8, LIMIT).await;
    assert_eq!(orders.len(), 8);
    let jobs = jobs(&ops).await;
    assert!(!jobs.is_empty());
    for job in &jobs {
        assert_eq!(job["state"], "done", "{job}");
        // No scrap in this fleet: every job made exactly its quantity.
        assert_eq!(job["good"], job["quantity"], "{job}");
        assert_eq!(job["scrap"], 0, "{job}");
    }
    // Both protocols' shapes were used: the printer (no acknowledge) and
    // the presses (acknowledged), each job started once on its machine.
    for machine in ["press-a", "press-b", "printer-1"] {
        let done = on(&jobs, machine, "done");
        let mut started = fleet.started_tokens(machine);
        started.sort_unstable();
        let mut expected = done.clone();
        expected.sort_unstable();
        assert_eq!(started, expected, "{machine}");
    }
    assert!(!fleet.started_tokens("printer-1").is_empty());
    assert_eq!(fleet.duplicate_starts(), Vec::new());
    fleet.shutdown().await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_report_is_taken_when_it_arrives_not_at_the_next_poll() {
    // Polled once an hour: after the first read at connect, only the
    // machine's own report can tell the daemon about the jam.
    let (running, fleet, _spec, _dir) =
        start_polling(&[("press-a", "generic-json")], None, 3_600_000).await;
    let ops = running.api(Role::Operator, "*").await;
    wait_for("press-a read at connect", LIMIT, || async {
        (machine_state(&ops, "press-a").await == "idle").then_some(())
    })
    .await;
    fleet.jam("press-a", 42).expect("jam");
    wait_for(
        "the jam recorded from the machine's report",
        LIMIT,
        || async { (machine_state(&ops, "press-a").await == "fault").then_some(()) },
    )
    .await;
    fleet.shutdown().await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_older_report_does_not_move_a_running_job_back() {
    // A command timeout of 1 s: past it, a report showing another token
    // than the running job's would mean the machine lost the job.
    let (running, fleet, _spec, _dir) = start(&[("press-a", "generic-json")], Some(1_000)).await;
    let machine = fleet.mqtt_machine("press-a").expect("machine");
    machine.set_hold(true);
    order(&running, 12, &[PRESS_SKU], 1).await;
    let ops = running.api(Role::Operator, "*").await;
    let token = wait_for("the job running on press-a", LIMIT, || async {
        on(&jobs(&ops).await, "press-a", "running").first().copied()
    })
    .await;
    // Three periodic reports (every 500 ms) later, the start is long settled.
    let settled = machine.snapshot().reports + 3;
    wait_for("three more reports", LIMIT, || async {
        (machine.snapshot().reports >= settled).then_some(())
    })
    .await;
    // The machine sends its running report again, then the idle report
    // from before the job (an older sequence number): read as current, it
    // would show another token and fail the job.
    let before = machine.snapshot().reports;
    machine.publish_late_duplicate();
    wait_for("the late reports sent", LIMIT, || async {
        (machine.snapshot().reports > before).then_some(())
    })
    .await;
    // The sim holds back its next periodic report for a whole interval
    // after the late ones: many polls read the machine meanwhile.
    let polls_before = machine.snapshot().reports;
    wait_for("the next periodic report", LIMIT, || async {
        (machine.snapshot().reports > polls_before).then_some(())
    })
    .await;
    machine.set_hold(false);
    support::wait_all_produced(&ops, 1, LIMIT).await;
    let jobs = jobs(&ops).await;
    assert_eq!(jobs.len(), 1, "no job failed and was made again: {jobs:#?}");
    assert_eq!(jobs[0]["state"], "done");
    assert_eq!(jobs[0]["token"], token);
    assert_eq!(jobs[0]["good"], jobs[0]["quantity"]);
    assert_eq!(fleet.started_tokens("press-a"), vec![token]);
    fleet.shutdown().await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_machine_goes_offline_and_its_queue_is_handed_back() {
    let (running, fleet, _spec, _dir) = start(
        &[("press-a", "generic-json"), ("press-b", "generic-json")],
        None,
    )
    .await;
    let a = fleet.mqtt_machine("press-a").expect("machine a");
    let b = fleet.mqtt_machine("press-b").expect("machine b");
    a.set_hold(true);
    b.set_hold(true);
    order(&running, 13, &[PRESS_SKU], 6).await;
    let ops = running.api(Role::Operator, "*").await;
    // press-a runs one job and has more queued.
    wait_for("a running job and a queue on press-a", LIMIT, || async {
        let jobs = jobs(&ops).await;
        (!on(&jobs, "press-a", "running").is_empty()
            && !on(&jobs, "press-a", "scheduled").is_empty())
        .then_some(())
    })
    .await;
    a.set_silent(true);
    wait_for("press-a offline", LIMIT, || async {
        (machine_state(&ops, "press-a").await == "offline").then_some(())
    })
    .await;
    // Retained on MQTT: a client connecting now sees press-a offline.
    let broker = running.observer();
    let mut late = support::connect(&broker, Some(support::login(&broker)))
        .await
        .expect("late observer connects");
    let topic = "fabflow/v1/machines/press-a/state";
    late.subscribe(&[topic]).await;
    late.until(|t, p| t == topic && p["observed"] == "offline")
        .await;
    late.stop().await;
    wait_for("press-a's queue handed back", LIMIT, || async {
        on(&jobs(&ops).await, "press-a", "scheduled")
            .is_empty()
            .then_some(())
    })
    .await;
    b.set_hold(false);
    // Every job but the one press-a holds is made on press-b.
    wait_for("press-b made the rest", LIMIT, || async {
        let jobs = jobs(&ops).await;
        let open = jobs
            .iter()
            .filter(|j| j["state"] != "done" && j["machine"] != "press-a")
            .count();
        (open == 0).then_some(())
    })
    .await;
    assert_eq!(
        on(&jobs(&ops).await, "press-a", "scheduled"),
        Vec::<u32>::new()
    );
    // Back on the network, press-a finishes its job; nothing ran twice.
    a.set_silent(false);
    a.set_hold(false);
    support::wait_all_produced(&ops, 6, LIMIT).await;
    assert_eq!(fleet.duplicate_starts(), Vec::new());
    fleet.shutdown().await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_start_the_machine_never_shows_is_given_up_and_its_token_never_started() {
    let (running, fleet, _spec, _dir) = start(&[("press-a", "generic-json")], Some(1_000)).await;
    let machine = fleet.mqtt_machine("press-a").expect("machine");
    // The start reaches the broker (PUBACK) but the machine never takes it:
    // its reports keep showing no token, and they decide.
    machine.set_ignore_starts(true);
    order(&running, 14, &[PRESS_SKU], 1).await;
    let ops = running.api(Role::Operator, "*").await;
    let lost = wait_for("the first job given up", LIMIT, || async {
        let jobs = jobs(&ops).await;
        jobs.iter()
            .find(|j| j["state"] == "failed")
            .and_then(|j| j["token"].as_u64())
    })
    .await;
    // The machine, shown stuck, gets nothing until it shows a reaction: a
    // fault cleared by hand (as after a power cycle).
    machine.set_ignore_starts(false);
    machine.inject_fault(7);
    wait_for("press-a in fault", LIMIT, || async {
        (machine_state(&ops, "press-a").await == "fault").then_some(())
    })
    .await;
    machine.clear_fault();
    support::wait_all_produced(&ops, 1, LIMIT).await;
    let started = fleet.started_tokens("press-a");
    assert!(!started.is_empty());
    assert!(
        !started.iter().any(|t| u64::from(*t) == lost),
        "the given-up token {lost} was never started: {started:?}"
    );
    let jobs = jobs(&ops).await;
    let done: Vec<&Value> = jobs.iter().filter(|j| j["state"] == "done").collect();
    assert_eq!(done.len(), 1, "{jobs:#?}");
    assert_eq!(done[0]["replaces"], lost);
    assert_eq!(fleet.duplicate_starts(), Vec::new());
    fleet.shutdown().await;
    running.stop().await;
}

/// A fault on the only machine that can make its orders flags them at risk
/// (no capable machine), where the brand sees it, without waiting for the
/// deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fault_on_the_only_capable_machine_flags_its_orders_at_risk() {
    let (running, fleet, _spec, _dir) = start(&[("press-a", "generic-json")], None).await;
    let a = fleet.mqtt_machine("press-a").expect("machine a");
    a.set_hold(true);
    order(&running, 14, &[PRESS_SKU], 2).await;
    let ops = running.api(Role::Operator, "*").await;
    wait_for("a running job on press-a", LIMIT, || async {
        (!on(&jobs(&ops).await, "press-a", "running").is_empty()).then_some(())
    })
    .await;
    let brand = running.api(Role::Brand, "mqtt-brand").await;
    let flagged = |orders: &[Value]| {
        orders
            .iter()
            .filter(|o| o["at_risk"]["reason"] == "no_capable_machine")
            .count()
    };
    assert_eq!(flagged(&brand.all_orders().await), 0);
    fleet.jam("press-a", 42).expect("jam");
    wait_for("both orders flagged: no capable machine", LIMIT, || async {
        (flagged(&brand.all_orders().await) == 2).then_some(())
    })
    .await;
    fleet.shutdown().await;
    running.stop().await;
}
