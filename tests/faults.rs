//! Misbehaving machines never crash the daemon or lose an order: a machine
//! faults mid-job (the job fails and is made again elsewhere), one goes silent
//! (timeouts, reconnect), one drops its connections; every order still gets
//! made, and no job token is ever started twice.

mod support;

use fabflow::api::auth::Role;
use fabflow_adapters::RunState;
use fabflow_sim::SimMachineHandle;
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

    // 1. A machine faults in the middle of a job.
    let faulty = running_machine(&fleet, &[]).await;
    faulty.set_hold(true);
    let aborted = faulty.snapshot().job_token;
    faulty.inject_fault(42);
    let faulty_id = faulty.machine_id().to_string();
    wait_for(
        "the aborted job to fail and be replaced",
        Duration::from_secs(30),
        || {
            let admin = admin.clone();
            async move {
                let (_, jobs) = admin.get("/v1/jobs?state=failed&limit=500").await;
                let failed = jobs["items"]
                    .as_array()?
                    .iter()
                    .any(|j| j["token"] == aborted);
                let (_, all) = admin.get("/v1/jobs?limit=500").await;
                let replaced = all["items"]
                    .as_array()?
                    .iter()
                    .any(|j| j["replaces"] == aborted);
                (failed && replaced).then_some(())
            }
        },
    )
    .await;
    assert_eq!(machine_state(&admin, &faulty_id).await, "fault");
    faulty.set_hold(false);
    faulty.clear_fault();

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
