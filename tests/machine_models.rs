//! Machine models described by their profile alone: the second walk-through
//! model of adapters/README.md (`threadline-x6`: no acknowledge step,
//! lifetime counters rolling over at 65535, the running job number echoed in
//! an input register apart from the mailbox the start writes), taken from
//! the README itself, run by the simulator against the daemon on loopback
//! ports, and checked through the API, MQTT and the machines' own logs.

mod support;

use fabflow::api::auth::Role;
use fabflow::config::Config;
use fabflow::domain::{ProcessStep, Sku};
use fabflow_adapters::Profile;
use fabflow_adapters::profile::RegisterKind;
use fabflow_sim::{FactorySpec, Fleet, FleetSpec, MachineSpec, SimMachineHandle};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{Api, BBOX, Running, Watch, wait_for};

const MODEL: &str = "threadline-x6";
const SKU: &str = "cap-embroidered";
const TIME_SCALE: f64 = 2000.0;

/// The `threadline-x6` profile exactly as adapters/README.md gives it.
fn readme_profile() -> String {
    let readme = include_str!("../adapters/README.md");
    let marker = format!("model = \"{MODEL}\"");
    let block = readme
        .split("```toml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .find(|block| block.contains(&marker))
        .expect("the README gives the threadline-x6 profile in a toml block");
    // The block is indented as part of a numbered step.
    block
        .lines()
        .map(|line| line.strip_prefix("   ").unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The README's profile, with its command timeout set to `timeout_ms`.
fn profile(timeout_ms: Option<u64>) -> Profile {
    let mut text = readme_profile();
    if let Some(ms) = timeout_ms {
        assert!(text.contains("command_timeout_ms = 5000"));
        text = text.replace(
            "command_timeout_ms = 5000",
            &format!("command_timeout_ms = {ms}"),
        );
    }
    Profile::from_toml_str(&text, "adapters/README.md").unwrap_or_else(|e| panic!("{e}"))
}

fn profiles(profile: &Profile) -> Vec<Profile> {
    let mut all = fabflow_adapters::builtin_profiles();
    all.push(profile.clone());
    all
}

/// Embroidery machines `ids` in the north factory, no scrap.
async fn fleet(ids: &[&str], profile: &Profile) -> Fleet {
    let spec = FleetSpec {
        seed: 3,
        time_scale: TIME_SCALE,
        factories: vec![FactorySpec {
            id: "north".to_string(),
            machines: ids
                .iter()
                .map(|id| MachineSpec {
                    id: id.to_string(),
                    model: MODEL.to_string(),
                    cycle_seconds: 60.0,
                    scrap_rate: 0.0,
                    faults: Default::default(),
                })
                .collect(),
        }],
    };
    Fleet::start(&spec, &profiles(profile))
        .await
        .expect("fleet starts")
}

/// The test configuration with one SKU, embroidered caps.
fn config(fleet: &Fleet, dir: &tempfile::TempDir) -> Config {
    let mut config = support::config(fleet, &dir.path().join("models.db"), TIME_SCALE);
    config.skus = vec![Sku {
        code: SKU.to_string(),
        name: "Cap, embroidered logo".to_string(),
        route: vec![ProcessStep {
            process: "embroider".to_string(),
            recipe: 51,
            material: "cap".to_string(),
            seconds_per_unit: 60.0,
        }],
        volume_l: None,
    }];
    config
}

async fn order(running: &Running, seed: u64, count: usize) {
    let brand = running.token(Role::Brand, "caps").await;
    let orders = fabflow_sim::generate_orders(seed, count, &[SKU], BBOX);
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

fn token(job: &Value) -> u32 {
    job["token"]
        .as_u64()
        .and_then(|t| u32::try_from(t).ok())
        .expect("token")
}

/// Every job of `machine` is done with good = quantity and no scrap, and
/// the machine started each of them once; returns their tokens.
fn check_exact(jobs: &[Value], machine: &SimMachineHandle) -> Vec<u32> {
    let mine: Vec<&Value> = jobs
        .iter()
        .filter(|j| j["machine"] == machine.machine_id())
        .collect();
    for job in &mine {
        assert_eq!(job["state"], "done", "{job}");
        assert_eq!(job["good"], job["quantity"], "good = quantity: {job}");
        assert_eq!(job["scrap"], 0, "{job}");
    }
    let mut done: Vec<u32> = mine.iter().map(|j| token(j)).collect();
    done.sort_unstable();
    let mut started = machine.started_tokens();
    started.sort_unstable();
    assert_eq!(started, done, "each job started once on the machine");
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_machine_without_acknowledge_and_with_lifetime_counters_makes_jobs_in_a_row() {
    let dir = tempfile::tempdir().expect("temp dir");
    let profile = profile(None);
    let fleet = fleet(&["north-emb-1"], &profile).await;
    let machine = fleet.machine("north-emb-1").expect("machine");
    // Three pieces short of the rollover of its u16 counters.
    machine.set_lifetime_counts(65_533, 65_535);
    let running = Running::start_with(config(&fleet, &dir), profiles(&profile)).await;
    let admin = running.api(Role::Admin, "*").await;
    order(&running, 41, 6).await;

    support::wait_all_produced(&admin, 6, Duration::from_secs(120)).await;
    let jobs = jobs(&admin).await;
    assert!(jobs.len() >= 3, "several jobs in a row: {jobs:?}");
    assert!(
        jobs.iter().all(|j| j["state"] == "done"),
        "no job failed: {jobs:?}"
    );
    let done = check_exact(&jobs, &machine);
    assert_eq!(done.len(), jobs.len());
    let made: u64 = jobs.iter().filter_map(|j| j["good"].as_u64()).sum();
    assert!(made >= 3, "the good counter rolled over ({made} pieces)");

    // Only the start's registers were ever written: the job number, design
    // and pieces mailbox, and the start command once per job. Nothing that
    // could be an acknowledge.
    let writes = machine.writes();
    let allowed: BTreeSet<(RegisterKind, u16)> = [200, 202, 203, 210]
        .into_iter()
        .map(|address| (RegisterKind::Holding, address))
        .collect();
    let written: BTreeSet<(RegisterKind, u16)> = writes.keys().copied().collect();
    assert!(written.is_subset(&allowed), "unexpected writes: {writes:?}");
    assert_eq!(
        writes.get(&(RegisterKind::Holding, 210)).copied(),
        Some(done.len() as u64),
        "{writes:?}"
    );
    // Waiting in "finished" for its next job, the machine is idle, not running.
    assert_eq!(machine_state(&admin, "north-emb-1").await, "idle");

    running.stop().await;
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unknown_start_outcome_is_decided_by_the_token_echo() {
    let dir = tempfile::tempdir().expect("temp dir");
    let profile = profile(None);
    let fleet = fleet(&["north-emb-1"], &profile).await;
    let machine = fleet.machine("north-emb-1").expect("machine");
    // The first two starts happen, but their replies are lost: the daemon
    // times out not knowing. The mailbox register it wrote reads 0 once the
    // machine took the job; only the echo tells.
    machine.drop_next_start_replies(2);
    let running = Running::start_with(config(&fleet, &dir), profiles(&profile)).await;
    let admin = running.api(Role::Admin, "*").await;
    order(&running, 43, 4).await;

    support::wait_all_produced(&admin, 4, Duration::from_secs(120)).await;
    assert_eq!(machine.dropped_start_replies(), 2);
    let jobs = jobs(&admin).await;
    assert!(
        jobs.iter().all(|j| j["state"] == "done"),
        "no job failed or was made again: {jobs:?}"
    );
    let done = check_exact(&jobs, &machine);
    assert_eq!(done.len(), jobs.len());
    assert_eq!(fleet.duplicate_starts(), Vec::<(String, u32)>::new());

    running.stop().await;
    fleet.shutdown().await;
}

/// `stuck` for a `machine.state_changed` event whose `to` is stuck, keyed
/// by the machine id.
fn stuck_events(topic: &str, payload: &Value) -> Option<String> {
    (topic.ends_with("/machine.state_changed") && payload["data"]["to"] == "stuck")
        .then(|| format!("stuck:{}", payload["subject"]["id"].as_str().unwrap_or("")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_machine_that_ignores_its_starts_is_shown_stuck_not_running() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A short command timeout keeps the test quick; the rule is the same.
    let profile = profile(Some(1000));
    let fleet = fleet(&["north-emb-1", "north-emb-2"], &profile).await;
    let deaf = fleet.machine("north-emb-1").expect("machine");
    let good = fleet.machine("north-emb-2").expect("machine");
    // It answers every start and does nothing: no job, no state change.
    deaf.set_ignore_starts(true);
    let running = Running::start_with(config(&fleet, &dir), profiles(&profile)).await;
    let admin = running.api(Role::Admin, "*").await;
    let watch = Watch::start(
        &running.observer(),
        "fabflow/v1/events/machine.state_changed",
        stuck_events,
    )
    .await;
    order(&running, 47, 8).await;

    // Every state the API showed for it while waiting.
    let seen: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    wait_for(
        "the deaf machine shown stuck",
        Duration::from_secs(60),
        || {
            let admin = admin.clone();
            let seen = Arc::clone(&seen);
            async move {
                let state = machine_state(&admin, "north-emb-1").await;
                seen.lock().expect("lock").insert(state.clone());
                (state == "stuck").then_some(())
            }
        },
    )
    .await;
    watch
        .wait_for("the stuck state on MQTT", &[("stuck:north-emb-1", 1)])
        .await;
    // Every order is made by the other machine; the deaf one stays stuck.
    support::wait_all_produced(&admin, 8, Duration::from_secs(120)).await;
    assert_eq!(machine_state(&admin, "north-emb-1").await, "stuck");
    let seen = seen.lock().expect("lock").clone();
    assert!(!seen.contains("running"), "seen: {seen:?}");
    assert!(deaf.started_tokens().is_empty());
    assert!(!good.started_tokens().is_empty());
    assert_eq!(fleet.duplicate_starts(), Vec::<(String, u32)>::new());

    // Mended and power-cycled, it leaves stuck and takes jobs again.
    deaf.set_ignore_starts(false);
    deaf.drop_connections().await;
    wait_for("the mended machine idle", Duration::from_secs(30), || {
        let admin = admin.clone();
        async move { (machine_state(&admin, "north-emb-1").await == "idle").then_some(()) }
    })
    .await;
    order(&running, 53, 8).await;
    support::wait_all_produced(&admin, 16, Duration::from_secs(120)).await;
    assert_eq!(fleet.duplicate_starts(), Vec::<(String, u32)>::new());

    watch.stop().await;
    running.stop().await;
    fleet.shutdown().await;
}
