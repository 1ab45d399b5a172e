//! The whole loop against external peers, when their URL variables are set
//! (`.ci/run` starts both): an external Mosquitto broker
//! (FABFLOW_TEST_MQTT_URL=mqtt://host:port) and PostgreSQL
//! (FABFLOW_TEST_POSTGRES_URL=postgres://...).

mod support;

use fabflow::api::auth::{self, Role};
use fabflow::config::MqttConfig;
use fabflow::runtime::Daemon;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{Api, BBOX, SKUS, wait_for};
use tokio_util::sync::CancellationToken;

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
    let shutdown = CancellationToken::new();
    let daemon = Daemon::start(
        config,
        fabflow_adapters::builtin_profiles(),
        support::listener().await,
        shutdown.clone(),
    )
    .await
    .expect("daemon starts");
    let base = format!("http://{}", daemon.http);
    let brand = auth::issue(
        &daemon.store,
        Role::Brand,
        "peer-brand",
        "peers",
        daemon.clock.now_ms(),
    )
    .await
    .expect("token");

    let mut options = MqttOptions::new(
        format!("peers-{}", uuid::Uuid::new_v4().simple()),
        daemon.mqtt.host.clone(),
        daemon.mqtt.port,
    );
    options.set_max_packet_size(4 * 1024 * 1024, 4 * 1024 * 1024);
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    client
        .subscribe("fabflow/v1/events/#", QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let kinds: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let seen = Arc::clone(&kinds);
    let watcher = tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(Packet::Publish(publish)) = event {
                let payload: serde_json::Value =
                    serde_json::from_slice(&publish.payload).unwrap_or_default();
                if payload["brand"] == "peer-brand" {
                    let kind = publish
                        .topic
                        .rsplit('/')
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    *seen.lock().expect("lock").entry(kind).or_default() += 1;
                }
            }
        }
    });
    // Subscribed before the orders go in.
    wait_for("MQTT subscription", Duration::from_secs(10), || {
        let client = client.clone();
        async move {
            client
                .publish("fabflow/v1/test", QoS::AtLeastOnce, false, "x")
                .await
                .ok()
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let orders = fabflow_sim::generate_orders(8, 20, &SKUS, BBOX);
    let report = fabflow_sim::fire(&base, &brand, orders, 4).await;
    assert_eq!(report.accepted, 20, "{:?}", report.rejected.first());
    let api = Api::new(base, brand);
    wait_for("all 20 orders ready", Duration::from_secs(180), || {
        let api = api.clone();
        async move {
            let orders = api.all_orders().await;
            (orders
                .iter()
                .filter(|o| o["state"] != "accepted" && o["state"] != "in_production")
                .count()
                == 20)
                .then_some(())
        }
    })
    .await;
    wait_for("events through the broker", Duration::from_secs(30), || {
        let kinds = Arc::clone(&kinds);
        async move {
            let kinds = kinds.lock().expect("lock").clone();
            (kinds.get("order.accepted").copied().unwrap_or(0) >= 20
                && kinds.get("order.ready").copied().unwrap_or(0) >= 20)
                .then_some(())
        }
    })
    .await;
    assert_eq!(fleet.duplicate_starts(), Vec::<(String, u32)>::new());
    shutdown.cancel();
    daemon.wait().await.expect("clean shutdown");
    watcher.abort();
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
