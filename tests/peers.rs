//! The whole loop against external peers, when their URL variables are set
//! (`.ci/run` starts both): an external Mosquitto broker
//! (FABFLOW_TEST_MQTT_URL=mqtt://host:port) and PostgreSQL
//! (FABFLOW_TEST_POSTGRES_URL=postgres://...).

mod support;

use fabflow::api::auth::Role;
use fabflow::config::MqttConfig;
use std::time::Duration;
use support::{Api, BBOX, Running, SKUS, Watch};

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
            username: None,
            password: None,
        };
    }
    let running = Running::start(config).await;
    let brand = running.token(Role::Brand, "peer-brand").await;
    let mqtt = &running.daemon.mqtt;
    // Only this test's events: an external broker may carry others'.
    let watch = Watch::start(
        &mqtt.host,
        mqtt.port,
        "fabflow/v1/events/#",
        |topic, payload| {
            (payload["brand"] == "peer-brand")
                .then(|| support::kind_of(topic, payload))
                .flatten()
        },
    )
    .await;

    let orders = fabflow_sim::generate_orders(8, 20, &SKUS, BBOX);
    let report = fabflow_sim::fire(&running.base, &brand, orders, 4).await;
    assert_eq!(report.accepted, 20, "{:?}", report.rejected.first());
    let api = Api::new(running.base.clone(), brand);
    support::wait_all_produced(&api, 20, Duration::from_secs(180)).await;
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
    let rest = url.trim_start_matches("mqtt://");
    let (host, port) = rest.rsplit_once(':').expect("mqtt://host:port");
    run_loop(None, Some((host.to_string(), port.parse().expect("port")))).await;
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
