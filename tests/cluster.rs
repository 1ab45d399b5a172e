//! Several daemons, one database: SQLite refuses a second daemon on its
//! file; on PostgreSQL (when FABFLOW_TEST_POSTGRES_URL is set) two daemons
//! share the factories, one is killed mid-production, the other takes its
//! factories over, and every order is still delivered with no job token
//! started twice on any machine (the simulator logs every start).

mod support;

use fabflow::api::auth::{self, Role};
use fabflow::daemon::Daemon;
use fabflow_sim::CodeSource;
use fabflow_sim::couriers::{self, CourierConfig, CourierSpec};
use serde_json::Value;
use std::time::{Duration, Instant};
use support::{Api, BBOX, Running, SKUS, wait_for};
use tokio_util::sync::CancellationToken;

/// The two PostgreSQL scenarios each run two daemons and a fleet on
/// timing-sensitive leases: one at a time, so they do not starve each other
/// on a two-core machine.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_sqlite_file_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("one.db");
    let fleet = support::fleet(3, 100.0).await;
    let mut first = support::config(&fleet, &db, 100.0);
    first.cluster.daemon_id = Some("first-daemon".into());
    let running = Running::start(first).await;

    let mut second = support::config(&fleet, &db, 100.0);
    second.cluster.daemon_id = Some("second-daemon".into());
    let refused = Daemon::start(
        second,
        fabflow_adapters::builtin_profiles(),
        support::listener().await,
        CancellationToken::new(),
    )
    .await;
    let Err(err) = refused else {
        panic!("a second daemon on the same SQLite file must be refused");
    };
    let message = format!("{err:#}");
    eprintln!("second daemon refused: {message}");
    assert!(message.contains(&db.display().to_string()), "{message}");
    assert!(message.contains("first-daemon"), "{message}");

    // The first one is unharmed, and once it stops the file is free.
    let api = running.api(Role::Admin, "*").await;
    assert_eq!(api.get("/healthz").await.0, 200);
    running.stop().await;
    let mut third = support::config(&fleet, &db, 100.0);
    third.cluster.daemon_id = Some("third-daemon".into());
    let again = Running::start(third).await;
    again.stop().await;
    fleet.shutdown().await;
}

/// A daemon on its own tokio runtime in its own thread, so the test can
/// kill it the hard way (every task dropped mid-flight, as with SIGKILL).
struct Doomed {
    kill: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
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
            let daemon = Daemon::start(
                config,
                fabflow_adapters::builtin_profiles(),
                support::listener().await,
                CancellationToken::new(),
            )
            .await
            .expect("daemon starts");
            ready_tx.send(()).expect("report");
            drop(daemon);
        });
        let _ = kill_rx.recv();
        runtime.shutdown_background();
    });
    ready_rx.recv().expect("daemon started");
    Doomed { kill, thread }
}

/// A fresh database on the PostgreSQL server at `base`; its URL.
async fn fresh_database(base: &str) -> String {
    sqlx::any::install_default_drivers();
    let name = format!("fabflow_cluster_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::AnyPool::connect(base)
        .await
        .expect("connect to PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("create database");
    admin.close().await;
    let (prefix, _) = base
        .rsplit_once('/')
        .expect("postgres URL with a database name");
    format!("{prefix}/{name}")
}

/// Lease length of the PostgreSQL scenarios: a take-over within seconds.
const LEASE_MS: u64 = 5_000;

/// The configuration of daemon `id` of a cluster on `url` with `fleet`.
fn member(
    fleet: &fabflow_sim::Fleet,
    dir: &tempfile::TempDir,
    url: &str,
    id: &str,
    scale: f64,
) -> fabflow::config::Config {
    let mut config = support::config(fleet, &dir.path().join("unused.db"), scale);
    config.database.url = url.to_string();
    config.cluster.daemon_id = Some(id.into());
    config.cluster.lease_ms = LEASE_MS;
    config.cluster.renew_interval_ms = 1_000;
    config.cluster.renew_margin_ms = 1_500;
    config
}

/// The PostgreSQL server to test against, or None (saying which test is
/// skipped) when FABFLOW_TEST_POSTGRES_URL is not set.
fn postgres_base(test: &str) -> Option<String> {
    match std::env::var("FABFLOW_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!(
                "cluster: PostgreSQL {test} skipped (set FABFLOW_TEST_POSTGRES_URL to run it)"
            );
            None
        }
    }
}

/// The leases not yet expired, as (name, owner), by the database's clock.
async fn live_leases(store: &fabflow::store::Store) -> Vec<(String, String)> {
    let now = store.db_now_ms().await.expect("db clock");
    store
        .leases()
        .await
        .expect("leases")
        .into_iter()
        .filter(|lease| lease.expires_ms > now)
        .map(|lease| (lease.name, lease.owner))
        .collect()
}

/// Whether every one of `count` orders is delivered.
async fn all_delivered(api: &Api, count: usize) -> Option<Vec<Value>> {
    let orders = api.all_orders().await;
    (orders.len() == count && orders.iter().all(|o| o["state"] == "delivered")).then_some(orders)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_daemons_factories_are_taken_over_and_every_order_delivered() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let Some(base) = postgres_base("failover") else {
        return;
    };
    let url = fresh_database(&base).await;
    let scale = 600.0;
    let n_orders = 60;
    let lease_ms = LEASE_MS;
    let fleet = support::fleet(7, scale).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = |id: &str| member(&fleet, &dir, &url, id, scale);
    // "alpha" sorts first, so it gets the first and third of the four
    // leases (factory/centre, factory/north, factory/south, zone/berlin).
    let alpha = start_doomed(config("alpha"));
    let beta = Running::start(config("beta")).await;
    let store = beta.daemon.store.clone();
    let owners = || live_leases(&store);
    let spread = wait_for(
        "leases spread over both daemons",
        Duration::from_secs(60),
        || async {
            let owners = owners().await;
            // Settled: two each (alpha, alone at first, may hold more for a moment).
            (owners.len() == 4
                && owners.iter().filter(|(_, o)| o == "alpha").count() == 2
                && owners.iter().filter(|(_, o)| o == "beta").count() == 2)
                .then_some(owners)
        },
    )
    .await;
    eprintln!("leases: {spread:?}");
    let alphas: Vec<String> = spread
        .iter()
        .filter(|(_, owner)| owner == "alpha")
        .map(|(name, _)| name.clone())
        .collect();
    assert_eq!(alphas.len(), 2, "{spread:?}");

    // Orders in through beta; couriers on beta's API.
    let brand_token = beta.token(Role::Brand, "cluster-brand").await;
    let brand = Api::new(beta.base.clone(), brand_token.clone());
    let operator = beta.api(Role::Operator, "*").await;
    let mut specs = Vec::new();
    for courier in &config("beta").couriers {
        specs.push(CourierSpec {
            id: courier.id.clone(),
            token: auth::issue(
                &store,
                Role::Courier,
                &courier.id,
                "test",
                beta.daemon.clock.now_ms(),
            )
            .await
            .expect("courier token"),
        });
    }
    let sim = CourierConfig {
        poll_interval: Duration::from_millis(200),
        codes: Some(CodeSource::one_brand(
            operator.token.clone(),
            brand_token.clone(),
        )),
        ..CourierConfig::new(beta.base.clone(), specs)
    };
    let stop_couriers = CancellationToken::new();
    let street = tokio::spawn(couriers::run(sim, stop_couriers.clone()));
    let orders = fabflow_sim::generate_orders(17, n_orders, &SKUS, BBOX);
    let report = fabflow_sim::fire(&beta.base, &brand_token, orders, 8).await;
    assert_eq!(
        report.accepted,
        n_orders,
        "rejected: {:?}",
        report.rejected.first()
    );

    // Production under way on both daemons' factories, then alpha dies.
    wait_for("production under way", Duration::from_secs(120), || async {
        let orders = brand.all_orders().await;
        let done = orders.iter().filter(|o| support::is_produced(o)).count();
        (done >= 5 && done < n_orders).then_some(())
    })
    .await;
    alpha.kill.send(()).expect("kill");
    alpha.thread.join().expect("killed");
    let killed = Instant::now();
    eprintln!("alpha killed");

    // Beta takes alpha's leases over, at a higher epoch.
    let taken = wait_for(
        "alpha's leases taken over",
        Duration::from_secs(60),
        || async {
            let owners = owners().await;
            (owners.len() == 4 && owners.iter().all(|(_, o)| o == "beta")).then_some(())
        },
    )
    .await;
    let take_over = killed.elapsed();
    let _: () = taken;
    eprintln!(
        "take-over of {alphas:?} after the kill: {:.1} s (lease_ms {lease_ms})",
        take_over.as_secs_f64()
    );
    for lease in store.leases().await.expect("leases") {
        if alphas.contains(&lease.name) {
            assert!(lease.epoch >= 2, "{lease:?}");
        }
    }

    // Every order delivered, no token started twice on any machine.
    let delivered = wait_for("every order delivered", Duration::from_secs(600), || {
        all_delivered(&brand, n_orders)
    })
    .await;
    assert_eq!(delivered.len(), n_orders);
    assert_eq!(
        fleet.duplicate_starts(),
        Vec::<(String, u32)>::new(),
        "no job token started twice"
    );
    stop_couriers.cancel();
    street.await.expect("couriers stop");
    beta.stop().await;
    fleet.shutdown().await;
}

/// A TCP proxy in front of PostgreSQL whose link can be cut: while cut,
/// bytes either way are swallowed (a silent network, no reset); once
/// restored, the connections that lived through the cut are closed.
struct Proxy {
    addr: std::net::SocketAddr,
    /// (cut now, generation): every cut and restore is a new generation.
    state: tokio::sync::watch::Sender<(bool, u64)>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = support::listener().await;
        let addr = listener.local_addr().expect("proxy address");
        let (state, _) = tokio::sync::watch::channel((false, 0u64));
        let watch = state.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                    continue;
                };
                tokio::spawn(pipe(client, server, watch.subscribe()));
            }
        });
        Proxy { addr, state }
    }

    fn set(&self, cut: bool) {
        self.state.send_modify(|(now, generation)| {
            *now = cut;
            *generation += 1;
        });
    }
}

async fn pipe(
    mut client: tokio::net::TcpStream,
    mut server: tokio::net::TcpStream,
    state: tokio::sync::watch::Receiver<(bool, u64)>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let born = state.borrow().1;
    let (mut up, mut down) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    loop {
        let (cut, generation) = *state.borrow();
        if !cut && generation != born {
            return; // lived through a cut: closed, as a real outage would
        }
        tokio::select! {
            read = client.read(&mut up) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => if !state.borrow().0 && server.write_all(&up[..n]).await.is_err() { return },
            },
            read = server.read(&mut down) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => if !state.borrow().0 && client.write_all(&down[..n]).await.is_err() { return },
            },
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_daemon_cut_off_from_the_database_stops_driving_before_its_factories_are_taken_over() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let Some(base) = postgres_base("link-cut test") else {
        return;
    };
    let url = fresh_database(&base).await;
    // postgres://user@host:port/db: the proxy stands in for host:port.
    let (scheme_user, rest) = url.split_once('@').expect("user@host in the URL");
    let (target, database) = rest.split_once('/').expect("host:port/database");
    let proxy = Proxy::start(target.to_string()).await;
    let proxied = format!("{scheme_user}@{}/{database}", proxy.addr);

    let scale = 600.0;
    let n_orders = 30;
    let (lease_ms, margin_ms) = (6_000, 2_500);
    let fleet = support::fleet(11, scale).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = |id: &str, url: &str| {
        let mut config = support::config(&fleet, &dir.path().join("unused.db"), scale);
        config.database.url = url.to_string();
        config.cluster.daemon_id = Some(id.into());
        config.cluster.lease_ms = lease_ms;
        config.cluster.renew_interval_ms = 1_000;
        config.cluster.renew_margin_ms = margin_ms;
        config
    };
    let alpha = Running::start(config("alpha", &proxied)).await;
    let beta = Running::start(config("beta", &url)).await;
    let store = beta.daemon.store.clone();
    let owners = || live_leases(&store);
    let spread = |owners: &[(String, String)]| {
        owners.len() == 4
            && owners.iter().filter(|(_, o)| o == "alpha").count() == 2
            && owners.iter().filter(|(_, o)| o == "beta").count() == 2
    };
    // Spread on the database, and alpha's own view agrees.
    wait_for(
        "leases spread over both daemons",
        Duration::from_secs(60),
        || async {
            (spread(&owners().await) && alpha.daemon.leases.names().len() == 2).then_some(())
        },
    )
    .await;

    let brand_token = beta.token(Role::Brand, "cluster-brand").await;
    let brand = Api::new(beta.base.clone(), brand_token.clone());
    let orders = fabflow_sim::generate_orders(23, n_orders, &SKUS, BBOX);
    let report = fabflow_sim::fire(&beta.base, &brand_token, orders, 8).await;
    assert_eq!(
        report.accepted,
        n_orders,
        "rejected: {:?}",
        report.rejected.first()
    );
    wait_for("production under way", Duration::from_secs(120), || async {
        let orders = brand.all_orders().await;
        let done = orders.iter().filter(|o| support::is_produced(o)).count();
        (done >= 3 && done < n_orders).then_some(())
    })
    .await;

    // Cut alpha off. It must stop driving (no lease valid on its side)
    // before beta holds alpha's leases on the database.
    proxy.set(true);
    let cut = Instant::now();
    let mut stopped = None;
    let taken = loop {
        if stopped.is_none() && alpha.daemon.leases.names().is_empty() {
            stopped = Some(cut.elapsed());
        }
        let owners = owners().await;
        if owners.len() == 4 && owners.iter().all(|(_, o)| o == "beta") {
            break cut.elapsed();
        }
        assert!(
            cut.elapsed() < Duration::from_secs(60),
            "no take-over: {owners:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let stopped = stopped.expect("the cut-off daemon stopped driving before the take-over");
    eprintln!(
        "link cut: alpha stopped driving after {:.2} s, beta took over after {:.2} s (lease_ms {lease_ms}, renew_margin_ms {margin_ms})",
        stopped.as_secs_f64(),
        taken.as_secs_f64()
    );
    assert!(stopped < taken);

    // The link back: alpha returns, and its share of the leases moves back.
    proxy.set(false);
    let restored = Instant::now();
    wait_for(
        "leases moved back to alpha",
        Duration::from_secs(60),
        || async { spread(&owners().await).then_some(()) },
    )
    .await;
    eprintln!(
        "link restored: leases spread again after {:.1} s",
        restored.elapsed().as_secs_f64()
    );

    let admin = beta.api(Role::Admin, "*").await;
    let limit = Instant::now() + Duration::from_secs(600);
    let mut said = Instant::now();
    loop {
        let orders = brand.all_orders().await;
        let produced = orders.iter().filter(|o| support::is_produced(o)).count();
        if produced == n_orders {
            break;
        }
        if said.elapsed() > Duration::from_secs(30) || Instant::now() > limit {
            said = Instant::now();
            let (_, held) = admin.get("/v1/jobs?state=held").await;
            let (_, dispatched) = admin.get("/v1/jobs?state=dispatched").await;
            eprintln!(
                "produced {produced}/{n_orders}; leases {:?}; held {held}; dispatched {dispatched}",
                owners().await
            );
        }
        assert!(Instant::now() < limit, "not every order produced");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        fleet.duplicate_starts(),
        Vec::<(String, u32)>::new(),
        "no job token started twice"
    );
    alpha.stop().await;
    beta.stop().await;
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rush_order_made_ready_on_one_daemon_is_planned_by_the_daemon_holding_its_zone() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let Some(base) = postgres_base("rush across daemons") else {
        return;
    };
    let url = fresh_database(&base).await;
    let scale = 600.0;
    let fleet = support::fleet(9, scale).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = |id: &str| {
        let mut config = member(&fleet, &dir, &url, id, scale);
        // The zone's cron wave once a year: every ready order is a rush
        // order, planned only because it is one.
        for zone in &mut config.zones {
            zone.planning_cron = "0 0 0 1 1 *".into();
        }
        config
    };
    let alpha = Running::start(config("alpha")).await;
    let beta = Running::start(config("beta")).await;
    let store = beta.daemon.store.clone();
    // alpha sorts first: factory/centre and factory/south; beta:
    // factory/north and zone/berlin.
    let spread = wait_for(
        "leases spread over both daemons",
        Duration::from_secs(60),
        || async {
            let owners = live_leases(&store).await;
            (owners.len() == 4 && owners.iter().filter(|(_, o)| o == "alpha").count() == 2)
                .then_some(owners)
        },
    )
    .await;
    let owner = |name: &str| {
        spread
            .iter()
            .find(|(lease, _)| lease == name)
            .map(|(_, owner)| owner.clone())
    };
    assert_eq!(owner("zone/berlin").as_deref(), Some("beta"), "{spread:?}");
    assert_eq!(
        owner("factory/centre").as_deref(),
        Some("alpha"),
        "{spread:?}"
    );

    // An order next to centre, made there by alpha's supervisors: alpha's
    // waves hear it is ready, but the zone's waves run on beta.
    let brand = alpha.api(Role::Brand, "rush-brand").await;
    let (status, order) = brand
        .post(
            "/v1/orders",
            &serde_json::json!({
                "customer": {"name": "Ada", "lat": 52.521, "lon": 13.406},
                "lines": [{"sku": "mug-white", "quantity": 1}],
            }),
            None,
        )
        .await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["factory"], "centre", "{order}");
    let id = order["id"].as_str().expect("id").to_string();
    let planned = wait_for(
        "the order's pickup planned by beta's rush wave",
        Duration::from_secs(120),
        || async {
            let (_, order) = brand.get(&format!("/v1/orders/{id}")).await;
            order["handoffs"]
                .as_array()?
                .iter()
                .any(|h| h["kind"] == "pickup")
                .then_some(order)
        },
    )
    .await;
    assert_eq!(planned["state"], "ready", "{planned}");
    alpha.stop().await;
    beta.stop().await;
    fleet.shutdown().await;
}
