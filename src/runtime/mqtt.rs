//! MQTT out: the outbox publisher and courier schedules.
//!
//! rumqttc rules kept here: the event loop is polled by its own task and never
//! publishes; reconnect backoff is ours; in-flight messages live only in
//! memory, so an outbox row is stamped published only after the broker
//! acknowledged it (QoS 1 PUBACK). Delivery is at least once; every event
//! carries a unique `id` for consumers to drop duplicates.

use crate::config::MqttConfig;
use crate::runtime::clock::Clock;
use crate::store::Store;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Where the daemon's MQTT clients connect.
#[derive(Debug, Clone)]
pub struct BrokerAddress {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl BrokerAddress {
    pub fn from_config(config: &MqttConfig, embedded: Option<SocketAddr>) -> BrokerAddress {
        match (config, embedded) {
            (
                MqttConfig::External {
                    host,
                    port,
                    username,
                    password,
                },
                _,
            ) => BrokerAddress {
                host: host.clone(),
                port: *port,
                username: username.clone(),
                password: password.clone(),
            },
            (MqttConfig::Embedded { listen }, addr) => {
                let addr = addr.unwrap_or(*listen);
                BrokerAddress {
                    host: addr.ip().to_string(),
                    port: addr.port(),
                    username: None,
                    password: None,
                }
            }
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://{}:{}", self.host, self.port)
    }
}

/// A connected client whose event loop runs on its own task.
pub struct MqttClient {
    pub client: AsyncClient,
    /// Packet ids of PUBACKs, from the event-loop task to the publisher.
    /// Bounded; if the publisher lags, the event loop waits. Closed when the
    /// event-loop task ends (cancel).
    pub acks: mpsc::Receiver<u16>,
    /// Whether the broker connection is up (true after each CONNACK).
    pub connected: watch::Receiver<bool>,
}

pub fn connect(broker: &BrokerAddress, role: &str, cancel: CancellationToken) -> MqttClient {
    let id = format!(
        "fabflow-{role}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let mut options = MqttOptions::new(id, broker.host.clone(), broker.port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(4 * 1024 * 1024, 4 * 1024 * 1024);
    options.set_inflight(200);
    if let (Some(user), Some(password)) = (&broker.username, &broker.password) {
        options.set_credentials(user.clone(), password.clone());
    }
    let (client, eventloop) = AsyncClient::new(options, 256);
    let (ack_tx, acks) = mpsc::channel(1024);
    let (connected_tx, connected) = watch::channel(false);
    tokio::spawn(drive(
        eventloop,
        ack_tx,
        connected_tx,
        cancel,
        role.to_string(),
    ));
    MqttClient {
        client,
        acks,
        connected,
    }
}

async fn drive(
    mut eventloop: EventLoop,
    acks: mpsc::Sender<u16>,
    connected: watch::Sender<bool>,
    cancel: CancellationToken,
    role: String,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let polled = tokio::select! {
            _ = cancel.cancelled() => break,
            polled = eventloop.poll() => polled,
        };
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                info!(mqtt.client = %role, "connected to MQTT broker");
                backoff = Duration::from_millis(100);
                let _ = connected.send(true);
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                if acks.send(ack.pkid).await.is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(err) => {
                let _ = connected.send(false);
                metrics::counter!("fabflow_mqtt_disconnects_total").increment(1);
                warn!(mqtt.client = %role, error = %err, retry_ms = backoff.as_millis() as u64, "MQTT connection lost");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    debug!(mqtt.client = %role, "MQTT event loop stopped");
}

/// Publishes outbox rows on `fabflow/v1/events/<kind>` until cancelled, then
/// makes one last pass to flush what is left.
pub async fn run_outbox(
    store: Store,
    clock: Clock,
    mut mqtt: MqttClient,
    cancel: CancellationToken,
    wake: std::sync::Arc<tokio::sync::Notify>,
) {
    let batch_size = 200;
    loop {
        let flushing = cancel.is_cancelled();
        match publish_batch(&store, &clock, &mut mqtt, batch_size).await {
            Ok(count) if count == batch_size as usize => continue,
            Ok(_) if flushing => break,
            Ok(_) => {}
            Err(err) => {
                warn!(error = %err, "outbox publish failed; will retry");
                if flushing {
                    break;
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
    info!("outbox publisher stopped");
}

async fn publish_batch(
    store: &Store,
    clock: &Clock,
    mqtt: &mut MqttClient,
    batch_size: i64,
) -> Result<usize, String> {
    if !*mqtt.connected.borrow() {
        return Ok(0);
    }
    let rows = store
        .unpublished(batch_size)
        .await
        .map_err(|e| e.to_string())?;
    if rows.is_empty() {
        return Ok(0);
    }
    // Acks left over from an earlier, timed-out batch say nothing about this one.
    while mqtt.acks.try_recv().is_ok() {}
    for row in &rows {
        let topic = format!("fabflow/v1/events/{}", row.kind);
        mqtt.client
            .publish(
                topic,
                QoS::AtLeastOnce,
                false,
                row.payload.clone().into_bytes(),
            )
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut acked = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while acked < rows.len() {
        match tokio::time::timeout_at(deadline, mqtt.acks.recv()).await {
            Ok(Some(_)) => acked += 1,
            Ok(None) => return Err("MQTT event loop stopped".into()),
            Err(_) => {
                return Err(format!(
                    "broker acknowledged {acked} of {} events in 5 s",
                    rows.len()
                ));
            }
        }
    }
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    store
        .mark_published(&ids, clock.now_ms())
        .await
        .map_err(|e| e.to_string())?;
    metrics::counter!("fabflow_events_published_total").increment(rows.len() as u64);
    Ok(rows.len())
}
