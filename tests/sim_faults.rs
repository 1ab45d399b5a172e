//! Simulator faults end to end (issue 6, item 8): each fault is set on one
//! machine of a small fleet (a DTG printer and a heat press in the north
//! factory, one of them speaking MQTT where the fault is an MQTT one), in
//! the fleet spec or over the simulator's control API while it runs. For
//! each: every order is still made, no token is started twice (the machines'
//! own start logs), and the fault shows where an operator would look: the
//! daemon's API (machines, jobs, the event log) and MQTT.

mod support;

use fabflow::api::auth::Role;
use fabflow_sim::{FactorySpec, FaultSpec, Fleet, FleetSpec, JamSpec, MachineSpec, PowerLossSpec};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use support::{Api, Running, Watch, wait_for};

const TIME_SCALE: f64 = 2000.0;
const LIMIT: Duration = Duration::from_secs(180);
/// Close to the north factory.
const NORTH: (f64, f64, f64, f64) = (52.535, 13.41, 52.545, 13.43);

/// The printer and the press of the test fleet.
const DTG: &str = "north-dtg-1";
const PRESS: &str = "north-press-1";

/// A running scenario: the fleet, the daemon and an MQTT watch of machine
/// events and retained machine states.
struct Scenario {
    fleet: Arc<Fleet>,
    running: Running,
    admin: Api,
    watch: Watch,
    _dir: tempfile::TempDir,
}

/// What the watch counts: `<kind>:<machine>` for machine events (with
/// `:<code>` for `machine.faulted`), `state:<machine>` and
/// `fault:<machine>:<code>` for retained states (`state:<machine>` when
/// not in fault), `<kind>` for job events.
fn key(topic: &str, payload: &Value) -> Option<String> {
    if let Some(kind) = topic.strip_prefix("fabflow/v1/events/") {
        let subject = payload["subject"]["id"].as_str().unwrap_or_default();
        return Some(match kind {
            "machine.faulted" => format!("{kind}:{subject}:{}", payload["data"]["fault_code"]),
            "machine.state_changed" => {
                format!("{kind}:{subject}:{}", payload["data"]["to"].as_str()?)
            }
            _ => kind.to_string(),
        });
    }
    let machine = topic
        .strip_prefix("fabflow/v1/machines/")?
        .strip_suffix("/state")?;
    Some(match payload["fault_code"].as_i64() {
        Some(code) if payload["observed"] == "fault" => format!("fault:{machine}:{code}"),
        _ => format!("state:{machine}"),
    })
}

/// Starts a fleet of a DTG printer (`dtg_model`) and a heat press
/// (`press_model`: `heatwave-hp-40` on Modbus or `generic-json` on MQTT)
/// with `faults` per machine id, and a daemon driving it.
async fn start(press_model: &str, faults: &[(&str, FaultSpec)]) -> Scenario {
    let dir = tempfile::tempdir().expect("tempdir");
    let fault = |id: &str| {
        faults
            .iter()
            .find(|(m, _)| *m == id)
            .map(|(_, f)| f.clone())
            .unwrap_or_default()
    };
    let machine = |id: &str, model: &str| MachineSpec {
        id: id.to_string(),
        model: model.to_string(),
        cycle_seconds: 60.0,
        scrap_rate: 0.0,
        faults: fault(id),
    };
    let spec = FleetSpec {
        seed: 11,
        time_scale: TIME_SCALE,
        factories: vec![FactorySpec {
            id: "north".to_string(),
            machines: vec![machine(DTG, "acme-dtg-200"), machine(PRESS, press_model)],
        }],
    };
    let profiles = fabflow_adapters::builtin_profiles();
    let mut fleet = Fleet::start(&spec, &profiles).await.expect("fleet");
    let mut config = support::config(&fleet, &dir.path().join("faults.db"), TIME_SCALE);
    config
        .machines
        .extend(fabflow::demo::mqtt_machines(&spec, &profiles, 40, 1_000));
    // Only what a printer and a press make.
    config.skus.retain(|sku| sku.code == "tee-black-m");
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
            Duration::from_millis(200),
        )
        .await
        .expect("MQTT machines start");
    let observer = running.observer();
    let watch = Watch::start(&observer, "fabflow/v1/#", key).await;
    let admin = running.api(Role::Admin, "*").await;
    Scenario {
        fleet: Arc::new(fleet),
        running,
        admin,
        watch,
        _dir: dir,
    }
}

impl Scenario {
    /// Fires `count` orders of black tees (printed, then pressed).
    async fn order(&self, seed: u64, count: usize) {
        let brand = self.running.token(Role::Brand, "fault-brand").await;
        let orders = fabflow_sim::generate_orders(seed, count, &["tee-black-m"], NORTH);
        let report = fabflow_sim::fire(&self.running.base, &brand, orders, 4).await;
        assert_eq!(report.accepted, count, "{:?}", report.rejected.first());
    }

    /// Every order made, no token started twice anywhere.
    async fn all_made_once(&self, count: usize) {
        support::wait_all_produced(&self.admin, count, LIMIT).await;
        assert_eq!(self.fleet.duplicate_starts(), Vec::<(String, u32)>::new());
    }

    async fn jobs(&self) -> Vec<Value> {
        let (_, page) = self.admin.get("/v1/jobs?limit=500").await;
        page["items"].as_array().cloned().unwrap_or_default()
    }

    /// Every event in the log (as an admin reads it over the API).
    async fn events(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let (_, page) = self
                .admin
                .get(&format!("/v1/events?after={after}&limit=500"))
                .await;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            out.extend(items);
            match page["next"].as_i64() {
                Some(next) => after = next,
                None => return out,
            }
        }
    }

    async fn events_of(&self, kind: &str, subject: &str) -> Vec<Value> {
        self.events()
            .await
            .into_iter()
            .filter(|e| e["kind"] == kind && e["subject"]["id"] == subject)
            .collect()
    }

    async fn stop(self) {
        self.watch.stop().await;
        self.running.stop().await;
        self.fleet.shutdown().await;
    }
}

/// Waits until `id` runs a job and holds it there (its clock stopped);
/// returns the job's token.
async fn hold_running(fleet: &Fleet, id: &str) -> u32 {
    let hold = |on: bool| match (fleet.machine(id), fleet.mqtt_machine(id)) {
        (Some(m), _) => m.set_hold(on),
        (None, Some(m)) => m.set_hold(on),
        (None, None) => panic!("no machine {id}"),
    };
    wait_for(&format!("{id} running a job"), LIMIT, || async {
        let status = fleet.status(id)?;
        if status.state != "running" {
            return None;
        }
        hold(true);
        // Still the same job, now held? Otherwise let it go and look again.
        let status = fleet.status(id)?;
        if status.state == "running" {
            return Some(status.job_token);
        }
        hold(false);
        None
    })
    .await
}

fn jam(code: u32, times: u32) -> FaultSpec {
    FaultSpec {
        jam: Some(JamSpec {
            code,
            after_units: 0,
            clear_after_ms: 300,
            times,
        }),
        ..FaultSpec::default()
    }
}

/// A jam set in the fleet spec: the job is held with the fault code (API
/// and MQTT), the machine resumes the same token by itself, nothing is
/// remade and nothing is started twice.
async fn check_jam(press_model: &str, machine: &str) {
    let scenario = start(press_model, &[(machine, jam(7, 2))]).await;
    scenario.order(21, 6).await;
    scenario.all_made_once(6).await;
    let faulted = scenario.events_of("machine.faulted", machine).await;
    assert!(
        faulted.iter().any(|e| e["data"]["fault_code"] == 7),
        "machine.faulted with code 7 in the log: {faulted:?}"
    );
    let jobs = scenario.jobs().await;
    let held: Vec<&Value> = jobs.iter().filter(|j| j["hold_cause"] == "fault").collect();
    // Resumed by the machine, held jobs keep no hold (running clears it):
    // the log says what happened.
    let events = scenario.events().await;
    let held_events: Vec<&Value> = events.iter().filter(|e| e["kind"] == "job.held").collect();
    assert!(!held_events.is_empty(), "a job was held");
    assert!(held_events.iter().all(|e| e["data"]["fault_code"] == 7));
    // Each held job went on by itself under its token: resumed, or (when
    // the machine cleared the jam and finished between two polls) straight
    // to done; never by an operator.
    for held_event in &held_events {
        let token = held_event["subject"]["id"].as_str().unwrap_or_default();
        let job = jobs
            .iter()
            .find(|j| j["token"].as_u64().map(|t| t.to_string()).as_deref() == Some(token))
            .unwrap_or_else(|| panic!("held job {token} is listed"));
        assert_eq!(job["state"], "done", "held job {token}: {job}");
    }
    assert!(
        !events
            .iter()
            .any(|e| e["kind"] == "job.resumed" && e["data"]["operator"] == true),
        "no operator decided"
    );
    assert!(held.is_empty(), "no job is left held: {held:?}");
    assert!(
        jobs.iter()
            .all(|j| j["state"] != "failed" && j["replaces"].is_null()),
        "nothing given up or remade"
    );
    scenario
        .watch
        .wait_for(
            "the fault on MQTT",
            &[
                (&format!("machine.faulted:{machine}:7"), 1),
                (&format!("fault:{machine}:7"), 1),
                ("job.held", 1),
                ("job.resumed", 1),
            ],
        )
        .await;
    scenario.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_jam_holds_the_job_until_the_machine_resumes_it_modbus() {
    check_jam("heatwave-hp-40", DTG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_jam_holds_the_job_until_the_machine_resumes_it_mqtt() {
    check_jam("generic-json", PRESS).await;
}

/// A power loss set in the fleet spec, half way through a job's second
/// unit (units slowed to 0.6 s, so the job is seen running with its first
/// unit made): the machine comes back idle without the job. The daemon
/// holds the job as `lost` with the unit it saw made, shows it on MQTT,
/// and waits for an operator: abandoned, only the units not reported good
/// are made again, under new tokens; no token is started twice.
async fn check_power_loss(press_model: &str, machine: &str) {
    let loss = FaultSpec {
        slow_factor: Some(20.0),
        power_loss: Some(PowerLossSpec {
            after_units: 1,
            times: 1,
        }),
        ..FaultSpec::default()
    };
    let scenario = start(press_model, &[(machine, loss)]).await;
    scenario.order(24, 6).await;
    let held = wait_for("a job held as lost", LIMIT, || async {
        scenario
            .jobs()
            .await
            .into_iter()
            .find(|j| j["machine"] == machine && j["state"] == "held")
    })
    .await;
    assert_eq!(held["hold_cause"], "lost", "{held}");
    assert_eq!(held["good"], 1, "the unit seen made is kept: {held}");
    let token = held["token"].as_u64().expect("token");
    let quantity = held["quantity"].as_u64().expect("quantity");
    assert!(
        scenario.fleet.status(machine).map(|s| s.job_token) != Some(token as u32),
        "the machine forgot the job"
    );
    // It waits for a decision: nothing goes on with it by itself.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let still = scenario
        .jobs()
        .await
        .into_iter()
        .find(|j| j["token"] == token)
        .expect("listed");
    assert_eq!(still["state"], "held", "{still}");
    let factory = "north";
    let operator = scenario.running.api(Role::Operator, factory).await;
    let (status, abandoned) = operator
        .post(&format!("/v1/jobs/{token}/abandon"), &Value::Null, None)
        .await;
    assert_eq!(
        (status, abandoned["state"].as_str()),
        (200, Some("failed")),
        "{abandoned}"
    );
    scenario.all_made_once(6).await;
    let jobs = scenario.jobs().await;
    // Units remade at the lost job's step (a later step's units are made
    // again from the line's first step, each step a job of its own).
    let remade: u64 = jobs
        .iter()
        .filter(|j| j["replaces"] == token && j["process"] == held["process"])
        .filter_map(|j| j["quantity"].as_u64())
        .sum();
    assert_eq!(
        remade,
        quantity - 1,
        "only the units not reported good are made again: {jobs:#?}"
    );
    scenario
        .watch
        .wait_for("the hold on MQTT", &[("job.held", 1), ("job.abandoned", 1)])
        .await;
    scenario.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_power_loss_in_the_fleet_spec_holds_the_job_for_an_operator_modbus() {
    check_power_loss("heatwave-hp-40", DTG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_power_loss_in_the_fleet_spec_holds_the_job_for_an_operator_mqtt() {
    check_power_loss("generic-json", PRESS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_cycles_are_waited_for_never_given_up() {
    let slow = FaultSpec {
        slow_factor: Some(20.0),
        ..FaultSpec::default()
    };
    let scenario = start("heatwave-hp-40", &[(DTG, slow)]).await;
    scenario.order(22, 4).await;
    scenario.all_made_once(4).await;
    let jobs = scenario.jobs().await;
    assert!(jobs.iter().all(|j| j["state"] == "done"), "{jobs:#?}");
    // Slow is not stuck, faulted or offline: the machine is shown running.
    let events = scenario.events().await;
    assert!(
        !events.iter().any(|e| e["kind"] == "machine.state_changed"
            && e["subject"]["id"] == DTG
            && ["stuck", "fault", "offline"].contains(&e["data"]["to"].as_str().unwrap_or(""))),
        "the slow machine was never shown stuck, faulted or offline"
    );
    scenario
        .watch
        .wait_for("its state on MQTT", &[(&format!("state:{DTG}"), 1)])
        .await;
    scenario.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scrap_burst_is_remade_and_counted() {
    let burst = FaultSpec {
        scrap_burst: 3,
        ..FaultSpec::default()
    };
    let scenario = start("heatwave-hp-40", &[(DTG, burst)]).await;
    scenario.order(23, 4).await;
    scenario.all_made_once(4).await;
    let jobs = scenario.jobs().await;
    let scrapped: u64 = jobs
        .iter()
        .filter(|j| j["machine"] == DTG)
        .filter_map(|j| j["scrap"].as_u64())
        .sum();
    assert_eq!(scrapped, 3, "the burst shows in the jobs' scrap counts");
    assert!(
        jobs.iter().any(|j| !j["replaces"].is_null()),
        "the scrapped units were made again"
    );
    scenario
        .watch
        .wait_for("job.done on MQTT", &[("job.done", 1)])
        .await;
    scenario.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_status_reads_move_no_job() {
    let garbage = FaultSpec {
        garbage_reads: 40,
        ..FaultSpec::default()
    };
    let scenario = start("heatwave-hp-40", &[(DTG, garbage)]).await;
    scenario.order(24, 4).await;
    scenario.all_made_once(4).await;
    // The garbage was read (the machine used its reads up) ...
    let used = scenario
        .fleet
        .status(DTG)
        .expect("dtg")
        .faults
        .garbage_reads;
    assert!(used < 40, "garbage reads left: {used}");
    // ... and nothing came of it: no job held, given up or remade.
    let jobs = scenario.jobs().await;
    assert!(
        jobs.iter()
            .all(|j| j["state"] == "done" && j["replaces"].is_null()),
        "{jobs:#?}"
    );
    scenario
        .watch
        .wait_for("its state on MQTT", &[(&format!("state:{DTG}"), 1)])
        .await;
    scenario.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flapping_network_shows_the_machine_offline_and_loses_nothing() {
    let flap = FaultSpec {
        flap_every_ms: 250,
        ..FaultSpec::default()
    };
    let scenario = start("heatwave-hp-40", &[(DTG, flap)]).await;
    scenario.order(25, 6).await;
    // Offline while the network is down: on the API and on MQTT.
    wait_for("the flapping machine seen offline", LIMIT, || async {
        let offline = scenario
            .events_of("machine.state_changed", DTG)
            .await
            .iter()
            .any(|e| e["data"]["to"] == "offline");
        offline.then_some(())
    })
    .await;
    scenario
        .watch
        .wait_for(
            "offline on MQTT",
            &[(&format!("machine.state_changed:{DTG}:offline"), 1)],
        )
        .await;
    scenario.all_made_once(6).await;
    scenario.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_reordered_and_lost_mqtt_reports_make_each_job_once() {
    let chatter = FaultSpec {
        duplicate_reports: true,
        reorder_reports: true,
        lose_every: 3,
        ..FaultSpec::default()
    };
    let scenario = start("generic-json", &[(PRESS, chatter)]).await;
    scenario.order(26, 6).await;
    scenario.all_made_once(6).await;
    let jobs = scenario.jobs().await;
    let pressed: Vec<&Value> = jobs.iter().filter(|j| j["machine"] == PRESS).collect();
    assert!(!pressed.is_empty());
    for job in &pressed {
        assert_eq!(job["state"], "done", "{job}");
        assert_eq!(job["good"], job["quantity"], "exact counts: {job}");
    }
    // Every job of the press moved forward only: done once, never held.
    let events = scenario.events().await;
    for job in &pressed {
        let token = job["token"].to_string();
        let done = events
            .iter()
            .filter(|e| e["kind"] == "job.done" && e["subject"]["id"] == token.as_str())
            .count();
        assert_eq!(done, 1, "job {token} done once");
    }
    assert!(!events.iter().any(|e| e["kind"] == "job.held"));
    // The faults did happen: reports sent twice, older ones after newer
    // ones, and reports never sent.
    let press = scenario
        .fleet
        .mqtt_machine(PRESS)
        .expect("press")
        .snapshot();
    assert!(press.reports > 0, "{press:?}");
    assert!(press.duplicated > 0, "{press:?}");
    assert!(press.reordered > 0, "{press:?}");
    assert!(press.lost > 0, "{press:?}");
    scenario
        .watch
        .wait_for("its state on MQTT", &[(&format!("state:{PRESS}"), 1)])
        .await;
    scenario.stop().await;
}

/// The control API: look at machines and their start logs, and inject a
/// jam, a clear, a power loss and faults while the fleet runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_control_api_injects_faults_at_run_time() {
    let scenario = start("generic-json", &[]).await;
    let listener = support::listener().await;
    let control = format!("http://{}", listener.local_addr().expect("addr"));
    let cancel = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(fabflow_sim::control::serve(
        listener,
        Arc::clone(&scenario.fleet),
        cancel.clone(),
    ));
    let http = reqwest::Client::new();
    let get = |path: String| {
        let http = http.clone();
        async move {
            let response = http.get(path).send().await.expect("request");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let send = |method: reqwest::Method, path: String, body: Value| {
        let http = http.clone();
        async move {
            let response = http
                .request(method, path)
                .json(&body)
                .send()
                .await
                .expect("request");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, machines) = get(format!("{control}/machines")).await;
    assert_eq!(status, 200);
    assert_eq!(machines.as_array().map(Vec::len), Some(2), "{machines}");
    let (status, _) = get(format!("{control}/machines/nope")).await;
    assert_eq!(status, 404);
    let (status, refused) = send(
        reqwest::Method::PUT,
        format!("{control}/machines/{DTG}/faults"),
        serde_json::json!({ "slow_factor": -1.0 }),
    )
    .await;
    assert_eq!(status, 422, "{refused}");

    // The press holds the first job it gets until its power loss below:
    // left free, it could finish every press job while the printer's jam
    // is handled (it did once in CI, on a loaded machine).
    let press = scenario.fleet.mqtt_machine(PRESS).expect("press");
    press.set_hold(true);
    scenario.order(27, 8).await;
    // The printer runs a job: hold it there, jam it.
    let dtg = scenario.fleet.machine(DTG).expect("dtg");
    let token = hold_running(&scenario.fleet, DTG).await;
    let (status, jammed) = send(
        reqwest::Method::POST,
        format!("{control}/machines/{DTG}/jam"),
        serde_json::json!({ "code": 42 }),
    )
    .await;
    assert_eq!((status, jammed["fault_code"].as_u64()), (200, Some(42)));
    wait_for("the jammed job held", LIMIT, || async {
        let held = scenario
            .jobs()
            .await
            .into_iter()
            .any(|j| j["token"] == token && j["state"] == "held" && j["fault_code"] == 42);
        held.then_some(())
    })
    .await;
    scenario
        .watch
        .wait_for("the jam on MQTT", &[(&format!("fault:{DTG}:42"), 1)])
        .await;
    dtg.set_hold(false);
    let (status, _) = send(
        reqwest::Method::POST,
        format!("{control}/machines/{DTG}/clear"),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    wait_for("the jammed job made", LIMIT, || async {
        let done = scenario
            .jobs()
            .await
            .into_iter()
            .any(|j| j["token"] == token && j["state"] == "done");
        done.then_some(())
    })
    .await;

    // The press (MQTT) loses power in the middle of a job seen running.
    let lost = hold_running(&scenario.fleet, PRESS).await;
    wait_for("the press job seen running", LIMIT, || async {
        let running = scenario
            .jobs()
            .await
            .into_iter()
            .any(|j| j["token"] == lost && j["state"] == "running");
        running.then_some(())
    })
    .await;
    let (status, after) = send(
        reqwest::Method::POST,
        format!("{control}/machines/{PRESS}/power-loss"),
        Value::Null,
    )
    .await;
    assert_eq!((status, after["job_token"].as_u64()), (200, Some(0)));
    press.set_hold(false);
    wait_for("the lost job held", LIMIT, || async {
        let held = scenario
            .jobs()
            .await
            .into_iter()
            .any(|j| j["token"] == lost && j["state"] == "held" && j["hold_cause"] == "lost");
        held.then_some(())
    })
    .await;
    let operator = scenario.running.api(Role::Operator, "north").await;
    let (status, abandoned) = operator
        .post(&format!("/v1/jobs/{lost}/abandon"), &Value::Null, None)
        .await;
    assert_eq!((status, abandoned["state"].as_str()), (200, Some("failed")));
    scenario.all_made_once(8).await;
    let (_, log) = get(format!("{control}/machines/{PRESS}")).await;
    let started: Vec<u64> = log["started"]
        .as_array()
        .map(|all| all.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    assert_eq!(
        started.iter().filter(|t| **t == u64::from(lost)).count(),
        1,
        "the lost token was started once: {started:?}"
    );
    cancel.cancel();
    server.await.expect("joined").expect("served");
    scenario.stop().await;
}
