//! End to end: a simulated fleet of real Modbus TCP machines, the daemon with
//! its embedded broker and a SQLite file, 200 orders over HTTP; checked only
//! through the API, MQTT and the simulated machines' own logs.

mod support;

use fabflow::api::auth::{self, Role};
use fabflow::daemon::Daemon;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use support::{Api, BBOX, Running, SKUS, Watch, wait_for};
use tokio_util::sync::CancellationToken;

/// Simulated seconds per real second. The deadline check below holds the
/// plan to the 48-hour promise on the simulated clock, so a second of CPU
/// starvation on a shared machine costs the fleet scale-seconds of work: at
/// 2000 a loaded machine (load 6 and more, two cores) made orders hours
/// late. At 600 a stall costs a sixth of that; the test takes longer.
const TIME_SCALE: f64 = 600.0;

/// Orders whose pickup and drop-off are in some courier's schedule, with the drop-off ETA.
async fn scheduled_orders(
    api: &Api,
    couriers: &[String],
) -> HashMap<String, (bool, Option<String>)> {
    let mut seen: HashMap<String, (bool, Option<String>)> = HashMap::new();
    for courier in couriers {
        let (status, body) = api.get(&format!("/v1/couriers/{courier}/schedule")).await;
        assert_eq!(status, 200, "{body}");
        for stop in body["stops"].as_array().cloned().unwrap_or_default() {
            let order = stop["order_id"].as_str().unwrap_or_default().to_string();
            let entry = seen.entry(order).or_insert((false, None));
            match stop["kind"].as_str() {
                Some("pickup") => entry.0 = true,
                Some("dropoff") => entry.1 = stop["eta"].as_str().map(str::to_string),
                _ => {}
            }
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_orders_are_produced_once_and_scheduled_before_their_deadline() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet = support::fleet(11, TIME_SCALE).await;
    let mut config = support::config(&fleet, &dir.path().join("e2e.db"), TIME_SCALE);
    // The queue rule here; the shop planner (the default) in the next test.
    config.scheduler.planner = fabflow::config::Planner::Queue;
    let db_url = config.database.url.clone();
    let couriers: Vec<String> = config.couriers.iter().map(|c| c.id.clone()).collect();
    let running = Running::start(config).await;
    let brand = running.token(Role::Brand, "e2e-brand").await;
    let api = running.api(Role::Admin, "*").await;
    // Watch the event stream as a consumer would.
    let watch = Watch::start(&running.observer(), "fabflow/v1/#", support::kind_of).await;

    let orders = fabflow_sim::generate_orders(2026, 200, &SKUS, BBOX);
    let report = fabflow_sim::fire(&running.base, &brand, orders, 16).await;
    assert_eq!(
        report.accepted,
        200,
        "rejected: {:?}",
        report.rejected.first()
    );

    let scheduled = wait_for(
        "every order in a courier schedule",
        Duration::from_secs(900),
        || {
            let api = api.clone();
            let couriers = couriers.clone();
            async move {
                let seen = scheduled_orders(&api, &couriers).await;
                let complete = seen
                    .values()
                    .filter(|(pickup, drop)| *pickup && drop.is_some())
                    .count();
                (complete == 200).then_some(seen)
            }
        },
    )
    .await;

    let orders = api.all_orders().await;
    assert_eq!(orders.len(), 200);
    let mut late = 0;
    for order in &orders {
        let id = order["id"].as_str().expect("id");
        assert!(
            support::is_produced(order),
            "order {id} is {}",
            order["state"]
        );
        let deadline = order["deadline"].as_str().expect("deadline");
        let dropoff = scheduled[id].1.as_deref().expect("drop-off eta");
        let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).expect("RFC 3339");
        // On time, or flagged at risk before its deadline (a starved
        // machine can slow the scaled clock's world down; the promise is
        // that nobody learns of a late order only when it is late).
        if parse(dropoff) > parse(deadline) {
            late += 1;
            let since = order["at_risk"]["since"].as_str().unwrap_or_else(|| {
                panic!("order {id}: drop-off {dropoff} after deadline {deadline}, never flagged")
            });
            assert!(
                parse(since) < parse(deadline),
                "order {id} flagged at {since}"
            );
        }
        // Every job of the order is done on a machine of the order's factory.
        let (_, detail) = api.get(&format!("/v1/orders/{id}")).await;
        let jobs = detail["jobs"].as_array().cloned().unwrap_or_default();
        assert!(!jobs.is_empty());
        for job in &jobs {
            assert!(
                ["done", "failed"].contains(&job["state"].as_str().unwrap_or_default()),
                "{job}"
            );
            assert_eq!(job["factory"], order["factory"]);
        }
    }
    eprintln!("{late} of 200 drop-offs planned after their deadline, each flagged before it");

    // No job token was ever started twice, on any machine.
    assert_eq!(fleet.duplicate_starts(), Vec::<(String, u32)>::new());
    let started: usize = fleet
        .machines()
        .iter()
        .map(|m| fleet.started_tokens(&m.machine_id).len())
        .sum();
    let (_, done_jobs) = api.get("/v1/jobs?state=done&limit=500").await;
    assert!(started >= done_jobs["items"].as_array().map_or(0, Vec::len));

    // The outbox reached MQTT: every order's acceptance and the courier schedules.
    watch
        .wait_for(
            "events on MQTT",
            &[
                ("order.accepted", 200),
                ("order.ready", 200),
                ("schedule", 1),
            ],
        )
        .await;

    // Orders accepted just before shutdown still have their events published.
    let late = fabflow_sim::generate_orders(7, 20, &SKUS, BBOX);
    assert_eq!(
        fabflow_sim::fire(&running.base, &brand, late, 4)
            .await
            .accepted,
        20
    );
    running.stop().await;
    watch.stop().await;
    fleet.shutdown().await;
    // Shutdown flushed the outbox: every event reached the broker.
    let store = fabflow::store::Store::connect(&db_url)
        .await
        .expect("reopen");
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 0);
}

/// The `shop` planner (`plan::shop::plan_floor`, the default) in charge of the queues:
/// every order produced, no token started twice, every job done on a
/// capable machine of its order's factory, and the jobs were queued by the
/// shop planner (its own metric), never by the fallback to the queue rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_orders_are_produced_once_on_capable_machines_by_the_shop_planner() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet = support::fleet(13, TIME_SCALE).await;
    let mut config = support::config(&fleet, &dir.path().join("shop.db"), TIME_SCALE);
    config.scheduler.planner = fabflow::config::Planner::Shop;
    config.scheduler.plan_budget_ms = 50;
    let running = Running::start(config).await;
    let brand = running.token(Role::Brand, "shop-brand").await;
    let api = running.api(Role::Admin, "*").await;

    let orders = fabflow_sim::generate_orders(2027, 60, &SKUS, BBOX);
    let report = fabflow_sim::fire(&running.base, &brand, orders, 8).await;
    assert_eq!(
        report.accepted,
        60,
        "rejected: {:?}",
        report.rejected.first()
    );
    let orders = support::wait_all_produced(&api, 60, Duration::from_secs(900)).await;

    let (status, machines) = api.get("/v1/machines").await;
    assert_eq!(status, 200, "{machines}");
    let machines: HashMap<String, serde_json::Value> = machines
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| Some((m["id"].as_str()?.to_string(), m)))
        .collect();
    assert!(!machines.is_empty());
    let mut done = 0;
    for order in &orders {
        let id = order["id"].as_str().expect("id");
        let (_, detail) = api.get(&format!("/v1/orders/{id}")).await;
        let jobs = detail["jobs"].as_array().cloned().unwrap_or_default();
        assert!(!jobs.is_empty(), "order {id} has no jobs");
        for job in &jobs {
            let state = job["state"].as_str().unwrap_or_default();
            assert!(["done", "failed"].contains(&state), "{job}");
            assert_eq!(job["factory"], order["factory"], "{job}");
            if state == "failed" {
                continue;
            }
            done += 1;
            let machine_id = job["machine"].as_str().unwrap_or_else(|| panic!("{job}"));
            let machine = &machines[machine_id];
            assert_eq!(machine["factory"], job["factory"], "{job} on {machine}");
            let has = |list: &str, item: &serde_json::Value| {
                machine[list]
                    .as_array()
                    .is_some_and(|items| items.contains(item))
            };
            assert!(has("capabilities", &job["process"]), "{job} on {machine}");
            assert!(has("materials", &job["material"]), "{job} on {machine}");
        }
    }
    assert!(done >= 60, "{done} jobs done");
    assert_eq!(fleet.duplicate_starts(), Vec::<(String, u32)>::new());

    // The shop planner queued them; it never fell back to the queue rule.
    let metrics = support::metrics_text(&running.base).await;
    let shop_scheduled: f64 = metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix("fabflow_jobs_scheduled_total{planner=\"shop\"} ")
                .and_then(|value| value.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no shop-scheduled jobs in {metrics}"));
    assert!(
        shop_scheduled >= f64::from(done),
        "{shop_scheduled} < {done}"
    );
    assert!(
        !metrics.contains("fabflow_floor_plan_fallbacks_total"),
        "{metrics}"
    );
    // Rounds that ran the floor planner (its timing is recorded per plan).
    let plans: f64 = metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix("fabflow_floor_plan_seconds_count ")
                .and_then(|value| value.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no floor plans in {metrics}"));
    assert!(plans >= 1.0, "{plans} floor plans");

    running.stop().await;
    fleet.shutdown().await;
}

/// Runs a daemon on its own runtime in its own thread, so the test can kill
/// it the hard way: drop the runtime, keep the SQLite file.
struct Doomed {
    kill: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
    base: String,
    brand: String,
}

fn start_doomed(config: fabflow::config::Config) -> Doomed {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (kill, kill_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let daemon = Daemon::start(
                config,
                fabflow_adapters::builtin_profiles(),
                listener,
                CancellationToken::new(),
            )
            .await
            .expect("daemon starts");
            let brand = auth::issue(
                &daemon.store,
                Role::Brand,
                "crash-brand",
                "crash",
                daemon.clock.now_ms(),
            )
            .await
            .expect("token");
            ready_tx
                .send((format!("http://{}", daemon.http), brand))
                .expect("report");
            // Not stopped: dropped with the runtime below, mid-flight. Its
            // store handles (and the SQLite file lock) go with its tasks, as
            // a killed process's go with it.
            drop(daemon);
        });
        // Block until told to die, then drop every task mid-flight.
        let _ = kill_rx.recv();
        runtime.shutdown_background();
    });
    let (base, brand) = ready_rx.recv().expect("daemon started");
    Doomed {
        kill,
        thread,
        base,
        brand,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_daemon_restarts_without_losing_orders_or_starting_a_job_twice() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("crash.db");
    // Slower time, so the kills land while machines are busy.
    let scale = 600.0;
    let fleet = support::fleet(5, scale).await;
    let orders = fabflow_sim::generate_orders(99, 80, &SKUS, BBOX);
    let mut brand = String::new();
    let mut produced_at_kill = 0;
    // Kill twice: once soon after intake, once deeper into production.
    for round in 0..2 {
        let doomed = start_doomed(support::config(&fleet, &db, scale));
        if round == 0 {
            brand = doomed.brand.clone();
            let report = fabflow_sim::fire(&doomed.base, &brand, orders.clone(), 8).await;
            assert_eq!(
                report.accepted,
                80,
                "rejected: {:?}",
                report.rejected.first()
            );
        }
        let api = Api::new(doomed.base.clone(), brand.clone());
        let floor = produced_at_kill;
        produced_at_kill = wait_for("production under way", Duration::from_secs(120), || {
            let api = api.clone();
            async move {
                let orders = api.all_orders().await;
                let started = orders.iter().filter(|o| o["state"] != "accepted").count();
                let done = orders.iter().filter(|o| support::is_produced(o)).count();
                (started >= 5 && done >= floor + 5 && done < 80).then_some(done)
            }
        })
        .await;
        let busy = fleet
            .machines()
            .iter()
            .filter_map(|m| fleet.machine(&m.machine_id))
            .filter(|m| m.snapshot().state != fabflow_adapters::RunState::Idle)
            .count();
        doomed.kill.send(()).expect("kill");
        doomed.thread.join().expect("killed");
        // The runtime's threads drop the dead daemon's tasks in the
        // background: wait until its file lock is gone with them.
        let lock_free = || fabflow::store::SqliteLock::acquire(&db, "crash test").is_ok();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !lock_free() {
            assert!(
                std::time::Instant::now() < deadline,
                "the dead daemon's file lock is never released"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("kill {round}: {produced_at_kill} orders produced, {busy} machines busy");
    }

    // Restart on the same database and the same (still running) machines.
    let running = Running::start(support::config(&fleet, &db, scale)).await;
    let api = running.api(Role::Admin, "*").await;

    // Every accepted order is still there, and each is finished exactly once.
    let finished = support::wait_all_produced(&api, 80, Duration::from_secs(300)).await;
    let refs: HashSet<&str> = finished
        .iter()
        .filter_map(|o| o["external_ref"].as_str())
        .collect();
    let sent: HashSet<&str> = orders
        .iter()
        .filter_map(|o| o["external_ref"].as_str())
        .collect();
    assert_eq!(refs, sent, "no accepted order is lost");
    assert_eq!(
        fleet.duplicate_starts(),
        Vec::<(String, u32)>::new(),
        "no job token started twice"
    );

    // Resubmitting the same burst (same idempotency keys) creates nothing new.
    let report = fabflow_sim::fire(&api.base, &brand, orders, 8).await;
    assert_eq!(report.accepted, 80);
    assert_eq!(api.all_orders().await.len(), 80);

    running.stop().await;
    fleet.shutdown().await;
}

/// An idle machine starts a job queued for it at once: the scheduler rings
/// its driver, which reads it without waiting for its next poll (a minute
/// here, far longer than the test waits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_queued_on_an_idle_machine_starts_without_waiting_for_its_next_poll() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet = support::fleet(5, TIME_SCALE).await;
    let mut config = support::config(&fleet, &dir.path().join("bell.db"), TIME_SCALE);
    for machine in &mut config.machines {
        machine.poll_interval_ms = 60_000;
    }
    let running = Running::start(config).await;
    let brand = running.api(Role::Brand, "bell-brand").await;
    let operator = running.api(Role::Operator, "*").await;
    // Every machine read once (on connecting): idle, not unknown.
    wait_for("every machine read", Duration::from_secs(20), || async {
        let (status, machines) = operator.get("/v1/machines").await;
        assert_eq!(status, 200, "{machines}");
        let all = machines.as_array()?;
        (!all.is_empty() && all.iter().all(|m| m["state"] == "idle")).then_some(())
    })
    .await;
    let order = serde_json::json!({
        "external_ref": "bell-1",
        "customer": {"name": "Bell", "lat": 52.52, "lon": 13.40},
        "lines": [{"sku": "mug-white", "quantity": 1}],
    });
    let (status, body) = brand.post("/v1/orders", &order, Some("bell-1")).await;
    assert!(status == 201 || status == 200, "{status} {body}");
    wait_for(
        "the job dispatched to its machine",
        Duration::from_secs(30),
        || async {
            let (_, jobs) = operator.get("/v1/jobs?limit=50").await;
            jobs["items"]
                .as_array()?
                .iter()
                .any(|j| {
                    ["dispatched", "running", "done"]
                        .contains(&j["state"].as_str().unwrap_or_default())
                })
                .then_some(())
        },
    )
    .await;
    running.stop().await;
    drop(fleet);
}
