//! Shared set-up for end-to-end tests: a simulated fleet and a daemon on
//! loopback ports, looked at only through the API, MQTT and the database.

#![allow(dead_code)]

use fabflow::api::auth::{self, Role};
use fabflow::config::{Config, MqttConfig};
use fabflow::daemon::Daemon;
use fabflow::runtime::broker::access::MqttRole;
use fabflow::runtime::mqtt::BrokerAddress;
use fabflow_sim::{Fleet, FleetSpec};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet, Publish, QoS,
    SubscribeFilter, SubscribeReasonCode,
};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

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
    config.machines = fabflow::demo::machines(fleet, 40, 500);
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

/// Whether an order is past production (ready, handed off or delivered).
pub fn is_produced(order: &Value) -> bool {
    ["ready", "out_for_delivery", "delivered"]
        .contains(&order["state"].as_str().unwrap_or_default())
}

/// Waits until `count` orders visible to `api` are past production; returns them.
pub async fn wait_all_produced(api: &Api, count: usize, limit: Duration) -> Vec<Value> {
    wait_for(&format!("{count} orders produced"), limit, || async {
        let orders = api.all_orders().await;
        (orders.iter().filter(|o| is_produced(o)).count() == count).then_some(orders)
    })
    .await
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

    pub async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .put(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .delete(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Every event of the log this caller may read, oldest first,
    /// following the cursor.
    pub async fn all_events(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after = String::new();
        loop {
            let (status, body) = self.get(&format!("/v1/events?limit=500{after}")).await;
            assert_eq!(status, 200, "{body}");
            out.extend(body["items"].as_array().cloned().unwrap_or_default());
            match &body["next"] {
                Value::Null => return out,
                next => {
                    after = format!(
                        "&after={}",
                        next.as_str().map_or(next.to_string(), str::to_string)
                    )
                }
            }
        }
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

/// A daemon started for a test, with its stop switch.
pub struct Running {
    pub daemon: Daemon,
    pub shutdown: CancellationToken,
    pub base: String,
}

impl Running {
    pub async fn start(config: Config) -> Running {
        Running::start_with(config, fabflow_adapters::builtin_profiles()).await
    }

    /// Starts a daemon that knows the machine models `profiles`.
    pub async fn start_with(config: Config, profiles: Vec<fabflow_adapters::Profile>) -> Running {
        let shutdown = CancellationToken::new();
        let daemon = Daemon::start(config, profiles, listener().await, shutdown.clone())
            .await
            .expect("daemon starts");
        let base = format!("http://{}", daemon.http);
        Running {
            daemon,
            shutdown,
            base,
        }
    }

    /// A new token for `role` and `scope`.
    pub async fn token(&self, role: Role, scope: &str) -> String {
        auth::issue(
            &self.daemon.store,
            role,
            scope,
            "test",
            self.daemon.clock.now_ms(),
        )
        .await
        .expect("token")
    }

    pub async fn api(&self, role: Role, scope: &str) -> Api {
        Api::new(self.base.clone(), self.token(role, scope).await)
    }

    /// The embedded broker with the login of the user `name` created at
    /// start (the observer, or a configured courier).
    pub fn mqtt_login(&self, name: &str) -> BrokerAddress {
        let user = self
            .daemon
            .mqtt_users
            .iter()
            .find(|user| user.username == name)
            .unwrap_or_else(|| panic!("no MQTT user {name} made at start"));
        BrokerAddress {
            username: Some(user.username.clone()),
            password: Some(user.password.clone()),
            ..self.daemon.mqtt.clone()
        }
    }

    /// The embedded broker as the observer (reads everything).
    pub fn observer(&self) -> BrokerAddress {
        let name = self
            .daemon
            .mqtt_users
            .iter()
            .find(|user| user.role == MqttRole::Observer)
            .map(|user| user.username.clone())
            .expect("observer made at first start");
        self.mqtt_login(&name)
    }

    /// Graceful shutdown; panics if the daemon does not stop cleanly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.daemon.wait().await.expect("clean shutdown");
    }
}

/// Counts MQTT messages per last topic segment (the event kind), as a
/// consumer subscribed to `filter` sees them. `keep` picks the messages to count.
pub struct Watch {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
}

impl Watch {
    /// Subscribes to `filter` on `broker`, logging in with its user name and
    /// password if it has them.
    pub async fn start(
        broker: &BrokerAddress,
        filter: &str,
        keep: fn(&str, &Value) -> Option<String>,
    ) -> Watch {
        let id = format!("watch-{}", uuid::Uuid::new_v4().simple());
        let mut options = MqttOptions::new(id, broker.host.clone(), broker.port);
        options.set_max_packet_size(4 * 1024 * 1024, 4 * 1024 * 1024);
        if let (Some(user), Some(password)) = (&broker.username, &broker.password) {
            options.set_credentials(user.clone(), password.clone());
        }
        if let Some(tls) = &broker.tls {
            options.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls.clone()),
            ));
        }
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let counts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
        let seen = Arc::clone(&counts);
        let task = tokio::spawn(async move {
            let mut subscribed_tx = Some(subscribed_tx);
            while let Ok(event) = eventloop.poll().await {
                match event {
                    Event::Incoming(Packet::SubAck(_)) => {
                        if let Some(tx) = subscribed_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Event::Incoming(Packet::Publish(publish)) => {
                        let payload: Value =
                            serde_json::from_slice(&publish.payload).unwrap_or_default();
                        if let Some(key) = keep(&publish.topic, &payload) {
                            *seen.lock().expect("lock").entry(key).or_default() += 1;
                        }
                    }
                    _ => {}
                }
            }
        });
        client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        tokio::time::timeout(Duration::from_secs(10), subscribed)
            .await
            .expect("SUBACK within 10 s")
            .expect("subscribed");
        Watch {
            counts,
            client,
            task,
        }
    }

    pub fn count(&self, key: &str) -> usize {
        self.counts
            .lock()
            .expect("lock")
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    /// Waits until every `(key, at least)` pair is reached.
    pub async fn wait_for(&self, what: &str, wanted: &[(&str, usize)]) {
        wait_for(what, Duration::from_secs(30), || async {
            wanted
                .iter()
                .all(|(key, least)| self.count(key) >= *least)
                .then_some(())
        })
        .await
    }

    pub async fn stop(self) {
        let _ = self.client.disconnect().await;
        self.task.abort();
    }
}

/// The event kind of a message on `fabflow/v1/events/<kind>`, `schedule` for courier schedules.
pub fn kind_of(topic: &str, _payload: &Value) -> Option<String> {
    if topic.contains("/couriers/") {
        return Some("schedule".into());
    }
    topic.strip_prefix("fabflow/v1/events/").map(str::to_string)
}

const MQTT_LIMIT: Duration = Duration::from_secs(20);

/// A test MQTT client: what it receives, sorted by packet kind.
pub struct Client {
    pub client: AsyncClient,
    subacks: mpsc::UnboundedReceiver<Vec<SubscribeReasonCode>>,
    pubacks: mpsc::UnboundedReceiver<u16>,
    publishes: mpsc::UnboundedReceiver<Publish>,
    task: tokio::task::JoinHandle<()>,
}

/// Connects to `broker` with `login`; the broker's CONNACK code if it refuses.
pub async fn connect(
    broker: &BrokerAddress,
    login: Option<(&str, &str)>,
) -> Result<Client, ConnectReturnCode> {
    let id = format!("test-{}", uuid::Uuid::new_v4().simple());
    let mut options = MqttOptions::new(id, broker.host.clone(), broker.port);
    if let Some((user, password)) = login {
        options.set_credentials(user, password);
    }
    if let Some(tls) = &broker.tls {
        options.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls.clone()),
        ));
    }
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    match tokio::time::timeout(MQTT_LIMIT, eventloop.poll())
        .await
        .expect("an answer to CONNECT")
    {
        Ok(Event::Incoming(Packet::ConnAck(_))) => {}
        Err(ConnectionError::ConnectionRefused(code)) => return Err(code),
        other => panic!("expected a CONNACK, got {other:?}"),
    }
    let (subacks_tx, subacks) = mpsc::unbounded_channel();
    let (pubacks_tx, pubacks) = mpsc::unbounded_channel();
    let (publishes_tx, publishes) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            match event {
                Event::Incoming(Packet::SubAck(ack)) => {
                    let _ = subacks_tx.send(ack.return_codes);
                }
                Event::Incoming(Packet::PubAck(ack)) => {
                    let _ = pubacks_tx.send(ack.pkid);
                }
                Event::Incoming(Packet::Publish(publish)) => {
                    let _ = publishes_tx.send(publish);
                }
                _ => {}
            }
        }
    });
    Ok(Client {
        client,
        subacks,
        pubacks,
        publishes,
        task,
    })
}

impl Client {
    /// Subscribes to `filters` in one SUBSCRIBE; the SUBACK's codes.
    pub async fn subscribe(&mut self, filters: &[&str]) -> Vec<SubscribeReasonCode> {
        let filters: Vec<SubscribeFilter> = filters
            .iter()
            .map(|f| SubscribeFilter::new(f.to_string(), QoS::AtLeastOnce))
            .collect();
        self.client
            .subscribe_many(filters)
            .await
            .expect("subscribe");
        tokio::time::timeout(MQTT_LIMIT, self.subacks.recv())
            .await
            .expect("SUBACK in time")
            .expect("connection open")
    }

    /// Publishes QoS 1 and waits for the PUBACK (the gateway acknowledges a
    /// refused publish too, so the client does not hang).
    pub async fn publish(&mut self, topic: &str, retain: bool, payload: &Value) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload.to_string())
            .await
            .expect("publish");
        tokio::time::timeout(MQTT_LIMIT, self.pubacks.recv())
            .await
            .expect("PUBACK in time")
            .expect("connection open");
    }

    /// The next message received.
    pub async fn next(&mut self) -> (String, Value) {
        let publish = tokio::time::timeout(MQTT_LIMIT, self.publishes.recv())
            .await
            .expect("a message in time")
            .expect("connection open");
        let payload = serde_json::from_slice(&publish.payload).unwrap_or_default();
        (publish.topic, payload)
    }

    /// Messages until one satisfies `done`, that one included.
    pub async fn until(&mut self, done: impl Fn(&str, &Value) -> bool) -> Vec<(String, Value)> {
        let mut seen = Vec::new();
        loop {
            let (topic, payload) = self.next().await;
            let last = done(&topic, &payload);
            seen.push((topic, payload));
            if last {
                return seen;
            }
        }
    }

    /// Whether the connection ends (the event loop stops) within the limit.
    pub async fn closed(&mut self) -> bool {
        tokio::time::timeout(MQTT_LIMIT, &mut self.task)
            .await
            .is_ok()
    }

    pub async fn stop(self) {
        let _ = self.client.disconnect().await;
        self.task.abort();
    }
}

/// The user name and password `broker` carries.
pub fn login(broker: &BrokerAddress) -> (&str, &str) {
    (
        broker.username.as_deref().expect("user name"),
        broker.password.as_deref().expect("password"),
    )
}

/// Every event in the log that `api` may read (all of them for an admin)
/// validates against its kind's published JSON Schema (docs/events/schemas,
/// generated from `domain::event_schema`); returns the kinds seen.
#[allow(dead_code)]
pub async fn assert_events_match_schemas(api: &Api) -> std::collections::BTreeSet<String> {
    let schemas = fabflow::domain::event_schema::kind_schemas();
    let mut validators = HashMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for event in api.all_events().await {
        let kind = event["kind"].as_str().unwrap_or_default().to_string();
        let schema = schemas
            .get(kind.as_str())
            .unwrap_or_else(|| panic!("event kind {kind} has no published schema: {event}"));
        let validator = validators.entry(kind.clone()).or_insert_with(|| {
            jsonschema::draft202012::options()
                .should_validate_formats(true)
                .build(schema)
                .expect("schema compiles")
        });
        let errors: Vec<String> = validator
            .iter_errors(&event)
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "{kind} does not match its schema: {errors:?}\n{event}"
        );
        seen.insert(kind);
    }
    seen
}

/// The daemon's `/metrics` text (no token: the test configuration's).
pub async fn metrics_text(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .expect("scrape /metrics")
        .text()
        .await
        .expect("metrics text")
}

/// The sum of every sample of `name`, whatever its labels, in a
/// Prometheus text.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
