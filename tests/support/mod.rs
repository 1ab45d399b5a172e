//! Shared set-up for end-to-end tests: a simulated fleet and a daemon on
//! loopback ports, looked at only through the API, MQTT and the database.

#![allow(dead_code)]

use fabflow::config::{Config, MachineConfig, MqttConfig};
use fabflow_sim::{Fleet, FleetSpec};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

pub const SKUS: [&str; 6] = [
    "tee-black-m",
    "tee-black-m",
    "tote-natural",
    "mug-white",
    "phone-case",
    "tote-natural",
];
pub const BBOX: (f64, f64, f64, f64) = (52.45, 13.30, 52.57, 13.52);

/// The demo configuration pointed at `fleet`, a SQLite file in `dir`, an
/// embedded broker on a free port, and waves every 30 simulated minutes.
pub fn config(fleet: &Fleet, db: &Path, time_scale: f64) -> Config {
    let mut config = Config::demo().expect("demo config");
    config.time_scale = time_scale;
    config.database.url = format!("sqlite://{}", db.display());
    config.mqtt = MqttConfig::Embedded {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    for zone in &mut config.zones {
        zone.planning_cron = "0 */30 * * * *".into();
    }
    config.scheduler.interval_ms = 50;
    config.machines = fleet
        .machines()
        .into_iter()
        .map(|m| MachineConfig {
            id: m.machine_id,
            factory: m.factory_id,
            model: m.model,
            address: m.addr,
            materials: None,
            poll_interval_ms: 40,
            request_timeout_ms: 500,
        })
        .collect();
    config
}

pub async fn fleet(seed: u64, time_scale: f64) -> Fleet {
    let profiles = fabflow_adapters::builtin_profiles();
    Fleet::start(&FleetSpec::demo(seed, time_scale), &profiles)
        .await
        .expect("fleet starts")
}

pub async fn listener() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
}

/// Polls `check` until it returns Some, or panics with `what` after `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A small API client.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub token: String,
    client: reqwest::Client,
}

impl Api {
    pub fn new(base: impl Into<String>, token: impl Into<String>) -> Api {
        Api {
            base: base.into(),
            token: token.into(),
            client: reqwest::Client::new(),
        }
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: &Value, key: Option<&str>) -> (u16, Value) {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Every order, following the cursor.
    pub async fn all_orders(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after = String::new();
        loop {
            let path = if after.is_empty() {
                "/v1/orders?limit=500".to_string()
            } else {
                format!("/v1/orders?limit=500&after={after}")
            };
            let (status, body) = self.get(&path).await;
            assert_eq!(status, 200, "{body}");
            out.extend(body["items"].as_array().cloned().unwrap_or_default());
            match body["next"].as_str() {
                Some(next) => after = next.to_string(),
                None => return out,
            }
        }
    }
}
