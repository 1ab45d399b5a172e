//! The whole loop against external peers, when their URL variables are set
//! (`.ci/run` starts them): an external Mosquitto broker
//! (FABFLOW_TEST_MQTT_URL=mqtt://host:port), PostgreSQL
//! (FABFLOW_TEST_POSTGRES_URL=postgres://...), and a Mosquitto with the
//! password and ACL files of docs/mqtt-acl.md
//! (FABFLOW_TEST_MQTT_ACL_URL=mqtt://host:port; each user's password is
//! `test-<user>`, see .ci/run; MQTT machines run through it too), also over TLS
//! (FABFLOW_TEST_MQTT_TLS_URL=mqtts://localhost:port, its CA in the PEM file
//! FABFLOW_TEST_MQTT_TLS_CA).

mod support;

use fabflow::api::auth::Role;
use fabflow::config::MqttConfig;
use fabflow::runtime::mqtt::BrokerAddress;
use rumqttc::ConnectReturnCode;
use serde_json::json;
use std::time::Duration;
use support::{Api, BBOX, Running, SKUS, Watch, connect, login};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A fresh database on the PostgreSQL server at `base`.
async fn fresh_postgres_url(base: &str) -> String {
    sqlx::any::install_default_drivers();
    let name = format!("fabflow_e2e_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::AnyPool::connect(base)
        .await
        .expect("connect to PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("create database");
    admin.close().await;
    let (prefix, _) = base.rsplit_once('/').expect("URL with a database name");
    format!("{prefix}/{name}")
}

async fn run_loop(database_url: Option<String>, broker: Option<(String, u16)>) {
    run_loop_as(database_url, broker, None, None).await
}

/// Host and port of an `mqtt://host:port` URL.
fn host_port(url: &str) -> (String, u16) {
    let rest = url.trim_start_matches("mqtt://");
    let (host, port) = rest.rsplit_once(':').expect("mqtt://host:port");
    (host.to_string(), port.parse().expect("port"))
}

/// The ACL Mosquitto as `user` (password `test-<user>`, as .ci/run makes them).
fn acl_login(host: &str, port: u16, user: &str) -> BrokerAddress {
    BrokerAddress {
        host: host.to_string(),
        port,
        username: Some(user.to_string()),
        password: Some(format!("test-{user}")),
        tls: None,
    }
}

async fn run_loop_as(
    database_url: Option<String>,
    broker: Option<(String, u16)>,
    login: Option<(String, String)>,
    ca_file: Option<std::path::PathBuf>,
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let scale = 2000.0;
    let fleet = support::fleet(21, scale).await;
    let mut config = support::config(&fleet, &dir.path().join("peers.db"), scale);
    if let Some(url) = database_url {
        config.database.url = url;
    }
    if let Some((host, port)) = &broker {
        config.mqtt = MqttConfig::External {
            host: host.clone(),
            port: *port,
            username: login.as_ref().map(|(user, _)| user.clone()),
            password: login.as_ref().map(|(_, password)| password.clone()),
            ca_file,
        };
    }
    let running = Running::start(config).await;
    let brand = running.token(Role::Brand, "peer-brand").await;
    let mqtt = &running.daemon.mqtt;
    // Only this test's events: an external broker may carry others'.
    let watch = Watch::start(mqtt, "fabflow/v1/events/#", |topic, payload| {
        (payload["brand"] == "peer-brand")
            .then(|| support::kind_of(topic, payload))
            .flatten()
    })
    .await;

    let orders = fabflow_sim::generate_orders(8, 20, &SKUS, BBOX);
    let report = fabflow_sim::fire(&running.base, &brand, orders, 4).await;
    assert_eq!(report.accepted, 20, "{:?}", report.rejected.first());
    let api = Api::new(running.base.clone(), brand);
    support::wait_all_produced(&api, 20, Duration::from_secs(180)).await;
    // The gauges are read from this database at the scrape.
    let machines = running
        .daemon
        .store
        .list_machines(None)
        .await
        .expect("machines")
        .len();
    let metrics = support::metrics_text(&running.base).await;
    let total = |name: &str| support::metric_sum(&metrics, name);
    assert_eq!(total("fabflow_orders"), 20.0, "{metrics}");
    assert_eq!(total("fabflow_machines"), machines as f64, "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("fabflow_outbox_backlog ")),
        "{metrics}"
    );
    watch
        .wait_for(
            "events through the broker",
            &[("order.accepted", 20), ("order.ready", 20)],
        )
        .await;
    assert_eq!(fleet.duplicate_starts(), Vec::<(String, u32)>::new());
    running.stop().await;
    watch.stop().await;
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_loop_runs_on_an_external_mosquitto() {
    let Some(url) = env("FABFLOW_TEST_MQTT_URL") else {
        eprintln!(
            "peers: external Mosquitto test skipped (set FABFLOW_TEST_MQTT_URL=mqtt://127.0.0.1:PORT to run it)"
        );
        return;
    };
    run_loop(None, Some(host_port(&url))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mosquitto_with_the_documented_acl_holds_clients_to_their_topics() {
    let Some(url) = env("FABFLOW_TEST_MQTT_ACL_URL") else {
        eprintln!(
            "peers: Mosquitto ACL test skipped (set FABFLOW_TEST_MQTT_ACL_URL=mqtt://127.0.0.1:PORT to run it)"
        );
        return;
    };
    let (host, port) = host_port(&url);
    let as_user = |user: &str| acl_login(&host, port, user);
    // Logins.
    let anonymous = connect(&as_user("nobody"), None).await.err();
    assert_eq!(anonymous, Some(ConnectReturnCode::NotAuthorized));
    let wrong = connect(&as_user("van-1"), Some(("van-1", "wrong")))
        .await
        .err();
    assert!(
        matches!(
            wrong,
            Some(ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadUserNamePassword)
        ),
        "wrong password: {wrong:?}"
    );

    // A courier gets only its own schedule; forgeries are dropped. Topics
    // carry a run id so earlier runs' retained messages do not count.
    let run = uuid::Uuid::new_v4().simple().to_string();
    let van_user = as_user("van-1");
    let mut van = connect(&van_user, Some(login(&van_user)))
        .await
        .expect("van-1");
    // Mosquitto may grant a wildcard filter and then deliver only what the ACL allows.
    van.subscribe(&[
        "fabflow/v1/couriers/+/schedule",
        "fabflow/v1/couriers/van-1/#",
    ])
    .await;
    let bike_user = as_user("bike-1");
    let mut bike = connect(&bike_user, Some(login(&bike_user)))
        .await
        .expect("bike-1");
    let forged = json!({"run": run, "courier": "van-1", "forged": true});
    bike.publish("fabflow/v1/couriers/van-1/schedule", true, &forged)
        .await;
    bike.publish("fabflow/v1/events/order.delivered", false, &forged)
        .await;
    let daemon_user = as_user("fabflow");
    let mut daemon = connect(&daemon_user, Some(login(&daemon_user)))
        .await
        .expect("fabflow");
    let schedule = |courier: &str| json!({"run": run, "courier": courier, "stops": []});
    daemon
        .publish(
            "fabflow/v1/couriers/bike-1/schedule",
            true,
            &schedule("bike-1"),
        )
        .await;
    daemon
        .publish(
            "fabflow/v1/couriers/van-1/schedule",
            true,
            &schedule("van-1"),
        )
        .await;
    let seen = van.until(|_, payload| payload == &schedule("van-1")).await;
    assert!(
        seen.iter().all(
            |(topic, payload)| topic.starts_with("fabflow/v1/couriers/van-1/")
                && payload.get("forged").is_none()
        ),
        "van-1 received {seen:?}"
    );
    let mut later = connect(&van_user, Some(login(&van_user)))
        .await
        .expect("van-1 again");
    later
        .subscribe(&["fabflow/v1/couriers/van-1/schedule"])
        .await;
    let (_, retained) = later.next().await;
    assert_eq!(retained, schedule("van-1"), "retained");
    for client in [van, bike, daemon, later] {
        client.stop().await;
    }

    // The daemon logs in as `fabflow`; a brand reads only its own events.
    let brand_user = as_user("brand-a");
    let mut brand = connect(&brand_user, Some(login(&brand_user)))
        .await
        .expect("brand-a");
    brand
        .subscribe(&[
            "fabflow/v1/events/#",
            "fabflow/v1/brands/+/events/#",
            "fabflow/v1/brands/brand-a/events/#",
        ])
        .await;
    // The whole loop, ordering as `peer-brand`: brand-a must see none of it.
    run_loop_as(
        None,
        Some((host.clone(), port)),
        Some(("fabflow".into(), "test-fabflow".into())),
        None,
    )
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet = support::fleet(22, 600.0).await;
    let mut config = support::config(&fleet, &dir.path().join("acl.db"), 600.0);
    config.mqtt = MqttConfig::External {
        host: host.clone(),
        port,
        username: Some("fabflow".into()),
        password: Some("test-fabflow".into()),
        ca_file: None,
    };
    let running = Running::start(config).await;
    let token = running.token(Role::Brand, "brand-a").await;
    let orders = fabflow_sim::generate_orders(3, 1, &SKUS, BBOX);
    let report = fabflow_sim::fire(&running.base, &token, orders, 1).await;
    assert_eq!(report.accepted, 1, "{:?}", report.rejected.first());
    let seen = brand
        .until(|_, payload| payload["kind"] == "order.accepted" && payload["brand"] == "brand-a")
        .await;
    assert!(
        seen.iter()
            .all(|(topic, payload)| payload["brand"] == "brand-a"
                && topic.starts_with("fabflow/v1/brands/brand-a/events/")),
        "brand-a received {seen:?}"
    );
    brand.stop().await;
    running.stop().await;
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_loop_runs_on_postgresql() {
    let Some(base) = env("FABFLOW_TEST_POSTGRES_URL") else {
        eprintln!(
            "peers: PostgreSQL daemon test skipped (set FABFLOW_TEST_POSTGRES_URL to run it)"
        );
        return;
    };
    run_loop(Some(fresh_postgres_url(&base).await), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_loop_runs_on_mosquitto_over_tls() {
    let (Some(url), Some(ca)) = (
        env("FABFLOW_TEST_MQTT_TLS_URL"),
        env("FABFLOW_TEST_MQTT_TLS_CA"),
    ) else {
        eprintln!(
            "peers: MQTT over TLS test skipped (set FABFLOW_TEST_MQTT_TLS_URL=mqtts://localhost:PORT and FABFLOW_TEST_MQTT_TLS_CA=FILE to run it)"
        );
        return;
    };
    let (host, port) = host_port(url.trim_start_matches("mqtts://"));
    // A CA file that does not hold a certificate is refused at start.
    let empty = tempfile::NamedTempFile::new().expect("temp file");
    assert!(fabflow::runtime::mqtt::tls_config(empty.path()).is_err());
    run_loop_as(
        None,
        Some((host, port)),
        Some(("fabflow".into(), "test-fabflow".into())),
        Some(ca.into()),
    )
    .await;
}

/// MQTT machines through the ACL Mosquitto: the daemon logs in as `fabflow`,
/// each simulated machine as its serial (the ACL ties its topics to its user
/// name); a machine cannot forge another's reports, and orders complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mqtt_machines_run_through_mosquitto_with_the_documented_acl() {
    use fabflow::domain::{ProcessStep, Sku};
    use fabflow_sim::{FactorySpec, Fleet, FleetSpec, MachineSpec};
    use std::collections::HashMap;

    let Some(url) = env("FABFLOW_TEST_MQTT_ACL_URL") else {
        eprintln!(
            "peers: MQTT machines on Mosquitto skipped (set FABFLOW_TEST_MQTT_ACL_URL=mqtt://127.0.0.1:PORT to run it)"
        );
        return;
    };
    let (host, port) = host_port(&url);
    // The ACL's rules first: a machine publishes only its own reports.
    let run = uuid::Uuid::new_v4().simple().to_string();
    let press_user = acl_login(&host, port, "mqtt-press-1");
    let mut press = connect(&press_user, Some(login(&press_user)))
        .await
        .expect("mqtt-press-1");
    let daemon_user = acl_login(&host, port, "fabflow");
    let mut reader = connect(&daemon_user, Some(login(&daemon_user)))
        .await
        .expect("fabflow");
    reader
        .subscribe(&["device/+/report", "fabflow/v1/machines/+/report"])
        .await;
    let forged = json!({"run": run, "forged": true});
    press
        .publish("device/mqtt-printer-1/report", false, &forged)
        .await;
    let own = json!({"run": run, "own": true});
    press
        .publish("fabflow/v1/machines/mqtt-press-1/report", false, &own)
        .await;
    let seen = reader.until(|_, payload| payload == &own).await;
    assert!(
        seen.iter()
            .all(|(_, payload)| payload.get("forged").is_none()),
        "a forged report got through: {seen:?}"
    );

    // Then the loop, with one machine of each shipped MQTT profile.
    let dir = tempfile::tempdir().expect("temp dir");
    let scale = 2000.0;
    let spec = FleetSpec {
        seed: 9,
        time_scale: scale,
        factories: vec![FactorySpec {
            id: "north".to_string(),
            machines: [
                ("mqtt-press-1", "generic-json"),
                ("mqtt-printer-1", "strata-p1"),
            ]
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
    };
    let profiles = fabflow_adapters::builtin_profiles();
    let mut fleet = Fleet::start(&spec, &profiles).await.expect("fleet");
    let mut config = support::config(&fleet, &dir.path().join("peers-mqtt.db"), scale);
    config.mqtt = MqttConfig::External {
        host: host.clone(),
        port,
        username: Some("fabflow".into()),
        password: Some("test-fabflow".into()),
        ca_file: None,
    };
    config.machines = fabflow::demo::mqtt_machines(&spec, &profiles, 40, 1_000);
    let step = |process: &str, recipe: u32, material: &str| ProcessStep {
        process: process.to_string(),
        recipe,
        material: material.to_string(),
        seconds_per_unit: 60.0,
    };
    config.skus = vec![
        Sku {
            code: "tee-pressed".into(),
            name: "Tee, pressed".into(),
            route: vec![step("heat_press", 21, "cotton_tee")],
            volume_l: None,
        },
        Sku {
            code: "keychain".into(),
            name: "Keychain".into(),
            route: vec![step("print_3d", 41, "pla")],
            volume_l: None,
        },
    ];
    let running = Running::start(config).await;
    let passwords: HashMap<String, String> = ["mqtt-press-1", "mqtt-printer-1"]
        .iter()
        .map(|user| (user.to_string(), format!("test-{user}")))
        .collect();
    fleet
        .start_mqtt(
            &spec,
            &profiles,
            &host,
            port,
            &passwords,
            Duration::from_millis(500),
        )
        .await
        .expect("MQTT machines start");
    let brand = running.token(Role::Brand, "peer-mqtt-brand").await;
    let orders = fabflow_sim::generate_orders(31, 6, &["tee-pressed", "keychain"], BBOX);
    let report = fabflow_sim::fire(&running.base, &brand, orders, 4).await;
    assert_eq!(report.accepted, 6, "{:?}", report.rejected.first());
    let api = Api::new(running.base.clone(), brand);
    support::wait_all_produced(&api, 6, Duration::from_secs(180)).await;
    assert!(!fleet.started_tokens("mqtt-press-1").is_empty());
    assert!(!fleet.started_tokens("mqtt-printer-1").is_empty());
    assert_eq!(fleet.duplicate_starts(), Vec::<(String, u32)>::new());
    fleet.shutdown().await;
    running.stop().await;
}
