//! Machine models described by their profile alone, taken from
//! adapters/README.md itself: its first walk-through (`stitchco-em-12`,
//! followed step by step: a profile file, `profile_dirs`, `check-config`,
//! a running job) and its second model (`threadline-x6`: no acknowledge
//! step, lifetime counters rolling over at 65535, the running job number
//! echoed in an input register apart from the mailbox the start writes), run
//! by the simulator against the daemon on loopback ports, and checked
//! through the API, MQTT and the machines' own logs.

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

/// The profile of `model` exactly as adapters/README.md gives it.
fn readme_profile(model: &str) -> String {
    let readme = include_str!("../adapters/README.md");
    let marker = format!("model = \"{model}\"\n   protocol");
    let block = readme
        .split("```toml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .find(|block| block.contains(&marker))
        .unwrap_or_else(|| panic!("the README gives the {model} profile in a toml block"));
    // The block is indented as part of a numbered step.
    block
        .lines()
        .map(|line| line.strip_prefix("   ").unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The README's profile, with its command timeout set to `timeout_ms`.
fn profile(timeout_ms: Option<u64>) -> Profile {
    let mut text = readme_profile(MODEL);
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
                    model: profile.model.clone(),
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

/// adapters/README.md's first walk-through, as a newcomer follows it: the
/// `stitchco-em-12` profile written to `profiles/` next to the
/// configuration file, `profile_dirs = ["profiles"]`, the machine and an
/// SKU routed to `embroider` added; `fabflow check-config` accepts the file;
/// the daemon loads the model from it (it is not built in) and embroiders
/// the orders on the simulated machine: exact counts, each job started once,
/// and acknowledged (the clear-finished coil) once per job.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_readme_walk_through_adds_a_model_by_file_and_runs_jobs_on_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = readme_profile("stitchco-em-12");
    let profile =
        Profile::from_toml_str(&text, "adapters/README.md").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !fabflow_adapters::builtin_profiles()
            .iter()
            .any(|p| p.model == profile.model),
        "stitchco-em-12 is not built in"
    );
    std::fs::create_dir(dir.path().join("profiles")).expect("profiles dir");
    std::fs::write(dir.path().join("profiles/stitchco-em-12.toml"), &text).expect("profile");
    let fleet = fleet(&["embroidery-1"], &profile).await;
    let machine = fleet.machine("embroidery-1").expect("machine");
    // Step 2: the configuration names the directory and the machine.
    // The demo's configuration without its SKUs (their machines are not
    // configured here; check-config would rightly refuse them).
    let demo = include_str!("../config/demo.toml")
        .split("[[skus]]")
        .next()
        .expect("the demo configuration");
    let config_text = format!(
        "profile_dirs = [\"profiles\"]\n{demo}\n\
         [[skus]]\ncode = \"{SKU}\"\nname = \"Cap\"\n\
         route = [{{ process = \"embroider\", recipe = 51, material = \"cap\", seconds_per_unit = 60.0 }}]\n\n\
         [[machines]]\nid = \"embroidery-1\"\nfactory = \"north\"\nmodel = \"stitchco-em-12\"\naddress = \"{}\"\n\
         poll_interval_ms = 40\n",
        machine.addr()
    );
    let path = dir.path().join("fabflow.toml");
    std::fs::write(&path, &config_text).expect("config");
    // Step 3: check-config reads the profile file and accepts it all.
    let checked = std::process::Command::new(env!("CARGO_BIN_EXE_fabflow"))
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("check-config runs");
    assert!(
        checked.status.success(),
        "check-config: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    // Step 4: the daemon on that file, with the profiles it names.
    let mut config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let profiles =
        fabflow::runtime::profiles::load_profiles(&config).unwrap_or_else(|e| panic!("{e}"));
    assert!(profiles.iter().any(|p| p.model == "stitchco-em-12"));
    let test = support::config(&fleet, &dir.path().join("walk.db"), TIME_SCALE);
    config.time_scale = test.time_scale;
    config.database = test.database;
    config.mqtt = test.mqtt;
    config.zones = test.zones;
    config.scheduler.interval_ms = test.scheduler.interval_ms;
    let running = Running::start_with(config, profiles).await;
    let admin = running.api(Role::Admin, "*").await;
    assert_eq!(
        wait_for(
            "the machine shown idle",
            Duration::from_secs(30),
            || async {
                let state = machine_state(&admin, "embroidery-1").await;
                (state == "idle").then_some(state)
            }
        )
        .await,
        "idle"
    );
    order(&running, 43, 4).await;
    support::wait_all_produced(&admin, 4, Duration::from_secs(120)).await;
    let jobs = jobs(&admin).await;
    assert!(!jobs.is_empty());
    assert!(jobs.iter().all(|j| j["state"] == "done"), "{jobs:?}");
    let done = check_exact(&jobs, &machine);
    assert_eq!(done.len(), jobs.len());
    // Written as the profile says: token, design and count, the start coil
    // once per job, the clear-finished coil once per job.
    let writes = machine.writes();
    assert_eq!(
        writes.get(&(RegisterKind::Coil, 0)).copied(),
        Some(done.len() as u64),
        "{writes:?}"
    );
    assert_eq!(
        writes.get(&(RegisterKind::Coil, 1)).copied(),
        Some(done.len() as u64),
        "{writes:?}"
    );
    running.stop().await;
    fleet.shutdown().await;
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

/// Waits until the API shows `id` stuck; returns every state it showed
/// meanwhile.
async fn shown_stuck(admin: &Api, id: &str) -> BTreeSet<String> {
    let seen: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    wait_for(
        &format!("{id} shown stuck"),
        Duration::from_secs(60),
        || {
            let seen = Arc::clone(&seen);
            async move {
                let state = machine_state(admin, id).await;
                seen.lock().expect("lock").insert(state.clone());
                (state == "stuck").then_some(())
            }
        },
    )
    .await;
    seen.lock().map(|states| states.clone()).expect("lock")
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
    let seen = shown_stuck(&admin, "north-emb-1").await;
    watch
        .wait_for("the stuck state on MQTT", &[("stuck:north-emb-1", 1)])
        .await;
    // Every order is made by the other machine; the deaf one stays stuck.
    support::wait_all_produced(&admin, 8, Duration::from_secs(120)).await;
    assert_eq!(machine_state(&admin, "north-emb-1").await, "stuck");
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

/// A machine that ignores its acknowledge (a finished job stays `done`, so
/// it takes no next job) is shown stuck, never running, and warned about on
/// MQTT; the acknowledge is sent again once per command timeout, not every
/// poll; its job is recorded done, and the other machine makes the rest.
/// Mended, it takes the next acknowledge and jobs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_machine_that_ignores_its_acknowledge_is_shown_stuck_and_asked_once_per_timeout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = readme_profile("stitchco-em-12");
    let mut profile =
        Profile::from_toml_str(&text, "adapters/README.md").unwrap_or_else(|e| panic!("{e}"));
    // A short command timeout keeps the test quick; the rule is the same.
    profile.command_timeout_ms = 1000;
    let fleet = fleet(&["north-emb-1", "north-emb-2"], &profile).await;
    let deaf = fleet.machine("north-emb-1").expect("machine");
    let good = fleet.machine("north-emb-2").expect("machine");
    deaf.set_ignore_acks(true);
    let running = Running::start_with(config(&fleet, &dir), profiles(&profile)).await;
    let admin = running.api(Role::Admin, "*").await;
    let watch = Watch::start(
        &running.observer(),
        "fabflow/v1/events/machine.state_changed",
        stuck_events,
    )
    .await;
    order(&running, 59, 8).await;

    shown_stuck(&admin, "north-emb-1").await;
    let stuck_since = std::time::Instant::now();
    let acks_then = deaf
        .writes()
        .get(&(RegisterKind::Coil, 1))
        .copied()
        .unwrap_or(0);
    watch
        .wait_for("the stuck state on MQTT", &[("stuck:north-emb-1", 1)])
        .await;
    support::wait_all_produced(&admin, 8, Duration::from_secs(120)).await;
    assert_eq!(machine_state(&admin, "north-emb-1").await, "stuck");
    assert_eq!(
        deaf.started_tokens().len(),
        1,
        "its one job, nothing after it"
    );
    assert!(!good.started_tokens().is_empty());
    let jobs = jobs(&admin).await;
    let deaf_jobs: Vec<&Value> = jobs
        .iter()
        .filter(|j| j["machine"] == "north-emb-1")
        .collect();
    assert!(
        deaf_jobs.iter().all(|j| j["state"] == "done"),
        "its finished job is recorded done: {deaf_jobs:?}"
    );
    // Asked again once per command timeout (1 s), not on every 40 ms poll.
    let acks = deaf
        .writes()
        .get(&(RegisterKind::Coil, 1))
        .copied()
        .unwrap_or(0);
    let allowed = acks_then + stuck_since.elapsed().as_secs() + 2;
    assert!(
        acks <= allowed,
        "{acks} acknowledges ({acks_then} when shown stuck), at most {allowed}"
    );
    assert_eq!(fleet.duplicate_starts(), Vec::<(String, u32)>::new());

    // Mended: the next acknowledge takes, and it makes jobs again.
    deaf.set_ignore_acks(false);
    wait_for("the mended machine idle", Duration::from_secs(30), || {
        let admin = admin.clone();
        async move { (machine_state(&admin, "north-emb-1").await == "idle").then_some(()) }
    })
    .await;
    order(&running, 61, 8).await;
    support::wait_all_produced(&admin, 16, Duration::from_secs(120)).await;
    assert_eq!(fleet.duplicate_starts(), Vec::<(String, u32)>::new());

    watch.stop().await;
    running.stop().await;
    fleet.shutdown().await;
}
