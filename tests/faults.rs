//! Misbehaving machines never crash the daemon or lose an order: a machine
//! jams mid-job (the job is held, then goes on under its token when the jam
//! is cleared), one goes silent (timeouts, reconnect), one drops its
//! connections, one loses power (the job is held until an operator decides),
//! one loses power after the daemon died mid-start (the token is retired);
//! every order still gets made, and no job token is ever started twice.

mod support;

use fabflow::api::auth::Role;
use fabflow_adapters::RunState;
use fabflow_sim::SimMachineHandle;
use serde_json::Value;
use std::time::Duration;
use support::{Api, BBOX, Running, SKUS, wait_for};

/// A simulated machine that is running a job right now, other than `except`.
async fn running_machine(fleet: &fabflow_sim::Fleet, except: &[String]) -> SimMachineHandle {
    wait_for(
        "a machine running a job",
        Duration::from_secs(60),
        || async {
            fleet
                .machines()
                .iter()
                .filter(|m| !except.contains(&m.machine_id))
                .filter_map(|m| fleet.machine(&m.machine_id))
                .find(|m| m.snapshot().state == RunState::Running)
        },
    )
    .await
}

/// The job with `token`, as `api` sees it.
async fn job(api: &Api, token: u32) -> Option<Value> {
    let (_, page) = api
        .get(&format!("/v1/jobs?after={}&limit=1", token - 1))
        .await;
    page["items"]
        .as_array()?
        .iter()
        .find(|j| j["token"] == token)
        .cloned()
}

/// The jobs that remake units of `token`.
async fn replacements(api: &Api, token: u32) -> Vec<Value> {
    let (_, all) = api.get("/v1/jobs?limit=500").await;
    all["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|j| j["replaces"] == token)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the job `token` satisfies `wanted`; returns it.
async fn wait_job(api: &Api, token: u32, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, Duration::from_secs(60), || async {
        job(api, token).await.filter(|j| wanted(j))
    })
    .await
}

/// Every event in the log, as an admin reads it over the API.
async fn events_log(api: &Api) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let (_, page) = api
            .get(&format!("/v1/events?after={after}&limit=500"))
            .await;
        out.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next"].as_i64() {
            Some(next) => after = next,
            None => return out,
        }
    }
}

/// Whether an MQTT message (topic, payload) is the one looked for.
type Wanted<'a> = &'a dyn Fn(&str, &Value) -> bool;

/// Reads MQTT messages until every predicate has matched one.
async fn until_all(client: &mut support::Client, wanted: &[Wanted<'_>]) {
    let mut seen = vec![false; wanted.len()];
    while seen.contains(&false) {
        let (topic, payload) = client.next().await;
        for (index, check) in wanted.iter().enumerate() {
            seen[index] |= check(&topic, &payload);
        }
    }
}

async fn machine_view(api: &Api, id: &str) -> Value {
    let (_, machines) = api.get("/v1/machines").await;
    machines
        .as_array()
        .and_then(|all| all.iter().find(|m| m["id"] == id))
        .cloned()
        .unwrap_or_default()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_silence_and_dropped_connections_lose_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let scale = 600.0;
    let fleet = support::fleet(17, scale).await;
    let config = support::config(&fleet, &dir.path().join("faults.db"), scale);
    let running = Running::start(config).await;
    let brand = running.token(Role::Brand, "fault-brand").await;
    let admin = running.api(Role::Admin, "*").await;
    let orders = fabflow_sim::generate_orders(4, 40, &SKUS, BBOX);
    let report = fabflow_sim::fire(&running.base, &brand, orders, 8).await;
    assert_eq!(report.accepted, 40, "{:?}", report.rejected.first());

    let broker = running.observer();
    let mut watcher = support::connect(&broker, Some(support::login(&broker)))
        .await
        .expect("observer connects");
    watcher
        .subscribe(&[
            "fabflow/v1/machines/+/state",
            "fabflow/v1/events/job.held",
            "fabflow/v1/events/job.resumed",
            "fabflow/v1/events/machine.faulted",
        ])
        .await;

    // 1. A machine jams in the middle of a job: the job is held on it, with
    // the fault code, on the API and on MQTT; cleared, the machine goes on
    // with the same token and the job is made once, not remade.
    let faulty = running_machine(&fleet, &[]).await;
    faulty.set_hold(true);
    let jammed = faulty.snapshot().job_token;
    faulty.inject_fault(42);
    let faulty_id = faulty.machine_id().to_string();
    let held = wait_job(&admin, jammed, "the jammed job held", |j| {
        j["state"] == "held"
    })
    .await;
    assert_eq!(
        (held["hold_cause"].as_str(), held["fault_code"].as_u64()),
        (Some("fault"), Some(42))
    );
    let machine = machine_view(&admin, &faulty_id).await;
    assert_eq!(
        (machine["state"].as_str(), machine["fault_code"].as_i64()),
        (Some("fault"), Some(42))
    );
    let state_topic = format!("fabflow/v1/machines/{faulty_id}/state");
    let jammed_text = jammed.to_string();
    until_all(
        &mut watcher,
        &[
            &|topic, p| topic == state_topic && p["state"] == "fault" && p["fault_code"] == 42,
            &|topic, p| {
                topic == "fabflow/v1/events/job.held"
                    && p["subject"]["id"] == jammed_text.as_str()
                    && p["data"]["fault_code"] == 42
            },
            &|topic, p| {
                topic == "fabflow/v1/events/machine.faulted"
                    && p["subject"]["id"] == faulty_id.as_str()
                    && p["data"]["fault_code"] == 42
            },
        ],
    )
    .await;
    // A retained state: a client connecting now still sees the fault.
    let mut late = support::connect(&broker, Some(support::login(&broker)))
        .await
        .expect("late observer connects");
    late.subscribe(&[state_topic.as_str()]).await;
    late.until(|topic, p| topic == state_topic && p["state"] == "fault" && p["fault_code"] == 42)
        .await;
    late.stop().await;
    faulty.set_hold(false);
    faulty.clear_fault();
    wait_job(&admin, jammed, "the jammed job made", |j| {
        j["state"] == "done"
    })
    .await;
    // It went on by itself: `job.resumed` (not by an operator), or, when
    // the machine cleared the jam and finished between two polls, straight
    // to done with no resume seen. Either way never by an operator.
    let resumed: Vec<Value> = events_log(&admin)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "job.resumed" && e["subject"]["id"] == jammed_text.as_str())
        .collect();
    assert!(
        resumed.iter().all(|e| e["data"]["operator"] == false),
        "{resumed:?}"
    );
    if !resumed.is_empty() {
        until_all(
            &mut watcher,
            &[&|topic, p| {
                topic == "fabflow/v1/events/job.resumed"
                    && p["subject"]["id"] == jammed_text.as_str()
                    && p["data"]["operator"] == false
            }],
        )
        .await;
    }
    // Made, not given up: only units that came out scrap (the fleet has a
    // scrap rate) are made again, never the whole job.
    let made = job(&admin, jammed).await.expect("the jammed job");
    let not_good = made["quantity"].as_u64().unwrap_or(0) - made["good"].as_u64().unwrap_or(0);
    for remake in replacements(&admin, jammed).await {
        assert_eq!(
            remake["quantity"].as_u64(),
            Some(not_good),
            "{remake} for {made}"
        );
    }
    assert_eq!(
        fleet
            .started_tokens(&faulty_id)
            .iter()
            .filter(|t| **t == jammed)
            .count(),
        1,
        "the jammed job was started once"
    );
    watcher.stop().await;

    // 2. Another machine stops answering, then comes back.
    let silent = running_machine(&fleet, std::slice::from_ref(&faulty_id)).await;
    let silent_id = silent.machine_id().to_string();
    silent.set_silent(true);
    wait_for(
        "the silent machine to be seen offline",
        Duration::from_secs(30),
        || {
            let admin = admin.clone();
            let id = silent_id.clone();
            async move { (machine_state(&admin, &id).await == "offline").then_some(()) }
        },
    )
    .await;
    silent.set_silent(false);

    // 3. A third drops every connection.
    let dropper = running_machine(&fleet, &[faulty_id.clone(), silent_id.clone()]).await;
    dropper.drop_connections().await;

    // Every order is still made, once.
    support::wait_all_produced(&admin, 40, Duration::from_secs(300)).await;
    assert_ne!(
        machine_state(&admin, &silent_id).await,
        "offline",
        "the silent machine came back"
    );
    assert_eq!(fleet.duplicate_starts(), Vec::<(String, u32)>::new());
    let (status, health) = admin.get("/healthz").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let kinds = support::assert_events_match_schemas(&admin).await;
    assert!(kinds.contains("machine.faulted"), "{kinds:?}");

    running.stop().await;
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_machine_that_refuses_every_start_goes_into_maintenance() {
    let dir = tempfile::tempdir().expect("temp dir");
    let scale = 2000.0;
    let fleet = support::fleet(23, scale).await;
    let refuser = fleet.machine("north-dtg-1").expect("north-dtg-1");
    refuser.set_refuse_starts(true);
    let config = support::config(&fleet, &dir.path().join("refuse.db"), scale);
    let running = Running::start(config).await;
    let brand = running.token(Role::Brand, "refuse-brand").await;
    let admin = running.api(Role::Admin, "*").await;
    // Orders close to the north factory, so its printers get the work.
    let orders =
        fabflow_sim::generate_orders(6, 30, &["tee-black-m"], (52.535, 13.41, 52.545, 13.43));
    let report = fabflow_sim::fire(&running.base, &brand, orders, 4).await;
    assert_eq!(report.accepted, 30, "{:?}", report.rejected.first());

    wait_for("the refusing machine in maintenance", Duration::from_secs(60), || {
        let admin = admin.clone();
        async move { (machine_state(&admin, "north-dtg-1").await == "maintenance").then_some(()) }
    })
    .await;
    // Every order is made by the other machines.
    support::wait_all_produced(&admin, 30, Duration::from_secs(180)).await;
    assert!(
        fleet.started_tokens("north-dtg-1").is_empty(),
        "it never started anything"
    );
    assert_eq!(fleet.duplicate_starts(), Vec::<(String, u32)>::new());
    running.stop().await;
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_power_loss_holds_the_job_until_an_operator_abandons_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let scale = 600.0;
    let fleet = support::fleet(29, scale).await;
    let config = support::config(&fleet, &dir.path().join("power.db"), scale);
    let running = Running::start(config).await;
    let brand = running.token(Role::Brand, "power-brand").await;
    let admin = running.api(Role::Admin, "*").await;
    let orders = fabflow_sim::generate_orders(8, 20, &SKUS, BBOX);
    let report = fabflow_sim::fire(&running.base, &brand, orders, 4).await;
    assert_eq!(report.accepted, 20, "{:?}", report.rejected.first());

    // A machine loses power while a job runs on it (seen running).
    let victim = running_machine(&fleet, &[]).await;
    victim.set_hold(true);
    let token = victim.snapshot().job_token;
    let victim_id = victim.machine_id().to_string();
    wait_job(&admin, token, "the job seen running", |j| {
        j["state"] == "running"
    })
    .await;
    victim.power_cycle().await;
    let held = wait_job(&admin, token, "the lost job held", |j| j["state"] == "held").await;
    assert_eq!(held["hold_cause"], "lost");
    let factory = machine_view(&admin, &victim_id).await["factory"]
        .as_str()
        .expect("factory")
        .to_string();
    let operator = running.api(Role::Operator, &factory).await;
    let other_factory = if factory == "north" { "south" } else { "north" };
    let stranger = running.api(Role::Operator, other_factory).await;

    // Another factory's operator does not see it; an unknown job is a 404.
    let (status, problem) = stranger
        .post(&format!("/v1/jobs/{token}/abandon"), &Value::Null, None)
        .await;
    assert_eq!((status, problem["status"].as_u64()), (404, Some(404)));
    let (status, _) = operator
        .post("/v1/jobs/4000000000/abandon", &Value::Null, None)
        .await;
    assert_eq!(status, 404);
    // The machine forgot the job: it cannot go on with it.
    let (status, problem) = operator
        .post(&format!("/v1/jobs/{token}/resume"), &Value::Null, None)
        .await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("abandon"),
        "{problem}"
    );
    // A job that is not held takes no decision.
    let (_, jobs) = operator
        .get(&format!("/v1/jobs?factory={factory}&limit=500"))
        .await;
    let other = jobs["items"]
        .as_array()
        .and_then(|items| items.iter().find(|j| j["state"] != "held"))
        .and_then(|j| j["token"].as_u64())
        .expect("another job");
    let (status, _) = operator
        .post(&format!("/v1/jobs/{other}/abandon"), &Value::Null, None)
        .await;
    assert_eq!(status, 409);

    // Abandoned: failed, and its units made again under new tokens.
    let (status, abandoned) = operator
        .post(&format!("/v1/jobs/{token}/abandon"), &Value::Null, None)
        .await;
    assert_eq!(
        (status, abandoned["state"].as_str()),
        (200, Some("failed")),
        "{abandoned}"
    );
    let remade = replacements(&admin, token).await;
    assert!(!remade.is_empty(), "its units are made again");
    assert!(remade.iter().all(|j| j["token"] != token));
    let token_text = token.to_string();
    let (_, audit) = admin.get("/v1/audit?limit=500").await;
    let decided = audit["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|a| {
                    a["action"] == "job.abandon" && a["target"].as_str() == Some(&token_text)
                })
                .count()
        })
        .unwrap_or(0);
    assert_eq!(decided, 1, "the decision is audited once");
    let (status, _) = operator
        .post(&format!("/v1/jobs/{token}/abandon"), &Value::Null, None)
        .await;
    assert_eq!(status, 409, "decided once");

    support::wait_all_produced(&admin, 20, Duration::from_secs(300)).await;
    assert_eq!(fleet.duplicate_starts(), Vec::<(String, u32)>::new());
    let kinds = support::assert_events_match_schemas(&admin).await;
    for kind in ["job.held", "job.abandoned"] {
        assert!(kinds.contains(kind), "no {kind} in {kinds:?}");
    }
    running.stop().await;
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_start_of_unknown_outcome_whose_machine_lost_power_is_never_started_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("unknown.db");
    let scale = 600.0;
    let fleet = support::fleet(31, scale).await;
    let running = Running::start(support::config(&fleet, &db, scale)).await;
    let brand = running.token(Role::Brand, "unknown-brand").await;
    let orders = fabflow_sim::generate_orders(9, 12, &SKUS, BBOX);
    let report = fabflow_sim::fire(&running.base, &brand, orders, 4).await;
    assert_eq!(report.accepted, 12, "{:?}", report.rejected.first());
    let victim = running_machine(&fleet, &[]).await;
    victim.set_hold(true);
    let token = victim.snapshot().job_token;
    running.stop().await;

    // The daemon is gone with the job stored as dispatched: what a daemon
    // killed between its dispatch and the machine's first report leaves.
    // Then the machine loses power and forgets the job it had started.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open the database");
    let updated = sqlx::query("UPDATE jobs SET state = 'dispatched' WHERE token = $1")
        .bind(i64::from(token))
        .execute(&pool)
        .await
        .expect("update");
    assert_eq!(updated.rows_affected(), 1);
    pool.close().await;
    victim.power_cycle().await;

    let running = Running::start(support::config(&fleet, &db, scale)).await;
    let admin = running.api(Role::Admin, "*").await;
    // Its start outcome is unknown and the machine shows no token: it may
    // have been made, so its token is retired and its units remade.
    wait_job(&admin, token, "the unknown start given up", |j| {
        j["state"] == "failed"
    })
    .await;
    assert!(!replacements(&admin, token).await.is_empty());
    support::wait_all_produced(&admin, 12, Duration::from_secs(300)).await;
    let victim_id = victim.machine_id().to_string();
    assert_eq!(
        fleet
            .started_tokens(&victim_id)
            .iter()
            .filter(|t| **t == token)
            .count(),
        1,
        "token {token} was started once"
    );
    assert_eq!(fleet.duplicate_starts(), Vec::<(String, u32)>::new());
    running.stop().await;
    fleet.shutdown().await;
}
