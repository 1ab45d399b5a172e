//! The daemon's MQTT clients: each event loop runs on its own task, with
//! reconnect backoff, and (for the outbox client) reports what became of
//! each QoS 1 publish.

use super::BrokerAddress;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, Request};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// A connected client whose event loop runs on its own task.
pub struct MqttClient {
    pub client: AsyncClient,
    /// Whether the broker connection is up (true after each CONNACK).
    pub connected: watch::Receiver<bool>,
}

/// A client whose event loop also reports what became of its publishes: the
/// outbox publisher's.
pub struct AcknowledgedClient {
    pub mqtt: MqttClient,
    /// Deliveries, from the event-loop task to the publisher, in the order
    /// they happened. Bounded: while it is full the event loop waits for the
    /// publisher (which reads it whenever it waits on MQTT or a timer) or
    /// for cancellation, never longer. Closed when the event-loop task ends
    /// (cancel).
    pub deliveries: mpsc::Receiver<Delivery>,
}

/// What the event loop saw happen to QoS 1 publishes, reported in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// A publish was written under this packet id: for the first time (then
    /// it is the oldest publish requested and not yet written), or again
    /// after a reconnect that resumed the session.
    Sent(u16),
    /// The broker acknowledged this packet id (PUBACK).
    Acked(u16),
    /// The connection is up (again). Unless the broker resumed the session,
    /// the publishes written before and not acknowledged are gone, and so
    /// are the oldest `unsent_dropped` publishes requested but never written.
    Connected {
        session_present: bool,
        unsent_dropped: usize,
    },
}

/// A client whose event loop reports nothing: for publishers that do not
/// track acknowledgements (courier schedules, which the API also serves).
pub fn connect(broker: &BrokerAddress, role: &str, cancel: CancellationToken) -> MqttClient {
    spawn(broker, role, None, cancel)
}

/// A client whose event loop reports [`Delivery`]s; its owner must keep
/// reading them.
pub fn connect_acknowledged(
    broker: &BrokerAddress,
    role: &str,
    cancel: CancellationToken,
) -> AcknowledgedClient {
    let (report_tx, deliveries) = mpsc::channel(1024);
    let mqtt = spawn(broker, role, Some(report_tx), cancel);
    AcknowledgedClient { mqtt, deliveries }
}

fn spawn(
    broker: &BrokerAddress,
    role: &str,
    reports: Option<mpsc::Sender<Delivery>>,
    cancel: CancellationToken,
) -> MqttClient {
    let id = format!(
        "fabflow-{role}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let mut options = MqttOptions::new(id, broker.host.clone(), broker.port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(4 * 1024 * 1024, 4 * 1024 * 1024);
    options.set_inflight(200);
    // A new session on every connection (rumqttc's default, stated because
    // `drive` and `Tracker` account for what a new session drops).
    options.set_clean_session(true);
    if let (Some(user), Some(password)) = (&broker.username, &broker.password) {
        options.set_credentials(user.clone(), password.clone());
    }
    if let Some(tls) = &broker.tls {
        options.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls.clone()),
        ));
    }
    let (client, eventloop) = AsyncClient::new(options, 256);
    let (connected_tx, connected) = watch::channel(false);
    tokio::spawn(drive(
        eventloop,
        reports,
        connected_tx,
        cancel,
        role.to_string(),
    ));
    MqttClient { client, connected }
}

async fn drive(
    mut eventloop: EventLoop,
    mut reports: Option<mpsc::Sender<Delivery>>,
    connected: watch::Sender<bool>,
    cancel: CancellationToken,
    role: String,
) {
    let mut backoff = Duration::from_millis(100);
    // QoS 1 publishes rumqttc took from its request channel but never wrote,
    // counted after the last connection loss. rumqttc then moves everything
    // unacknowledged to `pending`: those written (they carry their packet id)
    // and those drained from the request channel (packet id 0, none given
    // yet). A CONNACK without a session clears `pending`, dropping both.
    let mut unsent = 0;
    loop {
        let polled = tokio::select! {
            _ = cancel.cancelled() => break,
            polled = eventloop.poll() => polled,
        };
        let delivery = match polled {
            Ok(Event::Incoming(Packet::ConnAck(connack))) => {
                info!(mqtt.client = %role, "connected to MQTT broker");
                backoff = Duration::from_millis(100);
                let _ = connected.send(true);
                let mut unsent_dropped = 0;
                if !connack.session_present {
                    unsent_dropped = unsent;
                    // A publish parked on a packet-id collision was never
                    // written either, and is older than all of `pending`.
                    // rumqttc keeps it into the new session, where the
                    // PUBACK it waits for never comes and it would hold up
                    // every later request: it is dropped with the rest.
                    if eventloop.state.collision.take().is_some() {
                        unsent_dropped += 1;
                    }
                }
                unsent = 0;
                Some(Delivery::Connected {
                    session_present: connack.session_present,
                    unsent_dropped,
                })
            }
            Ok(event) => delivery_of(&event),
            Err(err) => {
                let _ = connected.send(false);
                metrics::counter!("fabflow_mqtt_disconnects_total").increment(1);
                warn!(mqtt.client = %role, error = %err, retry_ms = backoff.as_millis() as u64, "MQTT connection lost");
                // Events rumqttc buffered before the failure (a publish
                // whose write then failed, PUBACKs read in the same burst)
                // would be handed out after the next CONNACK, where they
                // would read as the new session's: report them now.
                let buffered: Vec<Event> = eventloop.state.events.drain(..).collect();
                let mut stopped = false;
                for delivery in buffered.iter().filter_map(delivery_of) {
                    if !report(&mut reports, delivery, &cancel).await {
                        stopped = true;
                        break;
                    }
                }
                if stopped {
                    break;
                }
                unsent = eventloop
                    .pending
                    .iter()
                    .filter(|request| {
                        matches!(request, Request::Publish(publish)
                            if publish.qos != QoS::AtMostOnce && publish.pkid == 0)
                    })
                    .count();
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                None
            }
        };
        if let Some(delivery) = delivery
            && !report(&mut reports, delivery, &cancel).await
        {
            break;
        }
    }
    debug!(mqtt.client = %role, "MQTT event loop stopped");
}

fn delivery_of(event: &Event) -> Option<Delivery> {
    match event {
        // QoS 0 publishes carry packet id 0 and get no PUBACK.
        Event::Outgoing(Outgoing::Publish(pkid)) if *pkid != 0 => Some(Delivery::Sent(*pkid)),
        Event::Incoming(Packet::PubAck(ack)) => Some(Delivery::Acked(ack.pkid)),
        _ => None,
    }
}

/// Hands `delivery` to the publisher, if this client has one, waiting while
/// its channel is full but never past cancellation; false once cancelled. If
/// the publisher is gone, reporting stops and the connection carries on.
async fn report(
    reports: &mut Option<mpsc::Sender<Delivery>>,
    delivery: Delivery,
    cancel: &CancellationToken,
) -> bool {
    let Some(tx) = reports.as_ref() else {
        return true;
    };
    let sent = tokio::select! {
        _ = cancel.cancelled() => return false,
        sent = tx.send(delivery) => sent,
    };
    if sent.is_err() {
        *reports = None;
    }
    true
}
