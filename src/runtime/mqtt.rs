//! MQTT out: the outbox publisher and courier schedules.
//!
//! rumqttc rules kept here: the event loop is polled by its own task, never
//! publishes, and never waits on anything past cancellation; reconnect backoff
//! is ours; in-flight messages live only in memory, so an outbox row is stamped
//! published only after the broker acknowledged that row's message (QoS 1
//! PUBACK, matched by packet id: see `Tracker`). Delivery is at least once;
//! every event carries a unique `id` for consumers to drop duplicates. Only the
//! outbox client reports deliveries; the schedules client's reports nothing.

use crate::config::MqttConfig;
use crate::runtime::clock::Clock;
use crate::store::{Store, StoreError};
use rumqttc::{
    AsyncClient, ClientError, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, Request,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};
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

/// Which outbox rows the broker acknowledged, worked out from the event
/// loop's reports.
///
/// rumqttc writes publishes in the order they were requested (a request
/// whose packet id is still unacknowledged waits for that PUBACK and holds
/// up the ones behind it), so a first-time `Sent` is for the oldest request
/// not yet written. Requests wait in `unsent` in that order, across batches,
/// so one left over from an abandoned batch and written late is matched to
/// its own row, never to the next batch's; once written, a row waits in
/// `in_flight` under its packet id. A PUBACK acknowledges the row in flight
/// under its id and nothing else: a late one for an abandoned batch stamps
/// that batch's row, one for an id not in flight stamps nothing.
///
/// Reconnects. After a connection loss rumqttc moves every unacknowledged
/// publish to its `pending` queue, written ones first (with their ids), then
/// those still in its request channel (in order). Our clients ask for a
/// clean session, so the CONNACK normally says no session is present, and
/// rumqttc then drops `pending`: rows in flight are lost (their PUBACK will
/// never come, and their ids are free for reuse), and so are the oldest
/// `unsent_dropped` requests (`drive` counted them); requests made after
/// the loss are still in the channel and written in the new session. If a
/// broker does resume the session, rumqttc resends `pending`, emitting
/// `Outgoing::Publish` again: a `Sent` for an id already in flight is such a
/// resend (rumqttc reuses an id only once it is acknowledged, or after the
/// session is dropped, which clears `in_flight` first), and the requests
/// never written follow in order. Whatever is lost is simply not stamped
/// and goes out again in a later batch: duplicates, never gaps.
#[derive(Debug, Default)]
struct Tracker {
    /// Rows whose publish was requested and not yet written, oldest first.
    unsent: VecDeque<String>,
    /// Rows written and awaiting their PUBACK, by packet id.
    in_flight: HashMap<u16, String>,
}

impl Tracker {
    /// `row`'s publish is being requested: its `Sent` may come at any moment.
    fn requested(&mut self, row: String) {
        self.unsent.push_back(row);
    }

    /// The last request never reached rumqttc.
    fn withdraw(&mut self) {
        self.unsent.pop_back();
    }

    /// The row `delivery` shows acknowledged, if any.
    fn handle(&mut self, delivery: Delivery) -> Option<String> {
        match delivery {
            Delivery::Sent(pkid) if self.in_flight.contains_key(&pkid) => None,
            Delivery::Sent(pkid) => {
                match self.unsent.pop_front() {
                    Some(row) => {
                        self.in_flight.insert(pkid, row);
                    }
                    None => debug!(pkid, "written publish matches no outbox row"),
                }
                None
            }
            Delivery::Acked(pkid) => self.in_flight.remove(&pkid),
            Delivery::Connected {
                session_present: true,
                ..
            } => None,
            Delivery::Connected {
                session_present: false,
                unsent_dropped,
            } => {
                self.in_flight.clear();
                let dropped = unsent_dropped.min(self.unsent.len());
                self.unsent.drain(..dropped);
                None
            }
        }
    }
}

/// Why a round of the outbox publisher ended early; the next round retries.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("outbox store: {0}")]
    Store(#[from] StoreError),
    #[error("MQTT publish not requested: {0}")]
    Client(#[from] ClientError),
    #[error("MQTT event loop stopped")]
    EventLoopStopped,
    #[error("broker acknowledged {acked} of {total} events in 5 s")]
    Unacknowledged { acked: usize, total: usize },
}

/// Publishes outbox rows on `fabflow/v1/events/<kind>` until cancelled, then
/// makes one last pass to flush what is left.
pub async fn run_outbox(
    store: Store,
    clock: Clock,
    mqtt: AcknowledgedClient,
    cancel: CancellationToken,
    wake: Arc<Notify>,
) {
    let mut publisher = Publisher {
        store,
        clock,
        mqtt,
        reports_open: true,
        tracker: Tracker::default(),
        acked: HashSet::new(),
    };
    let batch_size = 200;
    loop {
        let flushing = cancel.is_cancelled();
        match publisher.publish_batch(batch_size).await {
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
        publisher.idle(&cancel, &wake).await;
    }
    info!("outbox publisher stopped");
}

struct Publisher {
    store: Store,
    clock: Clock,
    mqtt: AcknowledgedClient,
    /// False once the event-loop task has ended and closed `deliveries`.
    reports_open: bool,
    tracker: Tracker,
    /// Rows the broker acknowledged, not yet stamped.
    acked: HashSet<String>,
}

impl Publisher {
    /// Publishes up to `batch_size` of the oldest unpublished rows and stamps
    /// those the broker acknowledged within 5 s; the number published if all
    /// of them were.
    async fn publish_batch(&mut self, batch_size: i64) -> Result<usize, PublishError> {
        while let Ok(delivery) = self.mqtt.deliveries.try_recv() {
            self.note(Some(delivery));
        }
        self.stamp().await?;
        if !*self.mqtt.mqtt.connected.borrow() {
            return Ok(0);
        }
        let rows = self.store.unpublished(batch_size).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let client = self.mqtt.mqtt.client.clone();
        for row in &rows {
            self.tracker.requested(row.id.clone());
            let request = client.publish(
                format!("fabflow/v1/events/{}", row.kind),
                QoS::AtLeastOnce,
                false,
                row.payload.clone().into_bytes(),
            );
            tokio::pin!(request);
            // Reports are read while rumqttc's request channel is full, so
            // its event loop never waits on us while we wait on it. Biased:
            // a request that went through is seen before its reports.
            let requested = loop {
                tokio::select! {
                    biased;
                    requested = &mut request => break requested,
                    delivery = self.mqtt.deliveries.recv(), if self.reports_open => {
                        self.note(delivery);
                    }
                }
            };
            if let Err(err) = requested {
                self.tracker.withdraw();
                self.stamp().await?;
                return Err(err.into());
            }
        }
        let mut waiting: HashSet<&str> = rows.iter().map(|row| row.id.as_str()).collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let outcome = loop {
            if waiting.is_empty() {
                break Ok(rows.len());
            }
            if !self.reports_open {
                break Err(PublishError::EventLoopStopped);
            }
            match tokio::time::timeout_at(deadline, self.mqtt.deliveries.recv()).await {
                Ok(delivery) => {
                    if let Some(row) = self.note(delivery) {
                        waiting.remove(row.as_str());
                    }
                }
                Err(_) => {
                    break Err(PublishError::Unacknowledged {
                        acked: rows.len() - waiting.len(),
                        total: rows.len(),
                    });
                }
            }
        };
        // A partial batch is stamped too; the rest goes out again next round.
        self.stamp().await?;
        outcome
    }

    /// Waits for a wake-up, the retry interval or cancellation, reading the
    /// event loop's reports meanwhile.
    async fn idle(&mut self, cancel: &CancellationToken, wake: &Notify) {
        let retry = tokio::time::sleep(Duration::from_millis(250));
        tokio::pin!(retry);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = wake.notified() => return,
                _ = &mut retry => return,
                delivery = self.mqtt.deliveries.recv(), if self.reports_open => {
                    self.note(delivery);
                }
            }
        }
    }

    /// Takes in one report (None: the event loop has stopped); returns the
    /// row it shows acknowledged, if any.
    fn note(&mut self, delivery: Option<Delivery>) -> Option<String> {
        let Some(delivery) = delivery else {
            self.reports_open = false;
            return None;
        };
        let row = self.tracker.handle(delivery)?;
        self.acked.insert(row.clone());
        Some(row)
    }

    /// Stamps the acknowledged rows published.
    async fn stamp(&mut self) -> Result<(), PublishError> {
        if self.acked.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = self.acked.iter().cloned().collect();
        self.store.mark_published(&ids, self.clock.now_ms()).await?;
        self.acked.clear();
        metrics::counter!("fabflow_events_published_total").increment(ids.len() as u64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Location;
    use crate::domain::intake::{JobPlan, LineRequest};
    use crate::store::NewOrder;
    use Delivery::{Acked, Connected, Sent};

    #[derive(Debug, Clone, Copy)]
    enum Step {
        /// The publisher requests this row's publish.
        Ask(&'static str),
        /// The event loop reports this.
        Saw(Delivery),
    }
    use Step::{Ask, Saw};

    /// Runs `script` through a `Tracker`; `expected` are the rows it shows
    /// acknowledged, in order.
    fn check(script: &[Step], expected: &[&str]) {
        let mut tracker = Tracker::default();
        let mut acked = Vec::new();
        for step in script {
            match *step {
                Ask(row) => tracker.requested(row.to_string()),
                Saw(delivery) => acked.extend(tracker.handle(delivery)),
            }
        }
        assert_eq!(acked, expected, "script: {script:?}");
    }

    const NEW_SESSION: fn(usize) -> Delivery = |unsent_dropped| Connected {
        session_present: false,
        unsent_dropped,
    };
    const RESUMED: Delivery = Connected {
        session_present: true,
        unsent_dropped: 0,
    };

    #[test]
    fn acknowledgements_are_matched_to_rows_by_packet_id() {
        // In order, acknowledged out of order.
        check(
            &[
                Ask("a"),
                Ask("b"),
                Saw(Sent(1)),
                Saw(Sent(2)),
                Saw(Acked(2)),
                Saw(Acked(1)),
            ],
            &["b", "a"],
        );
        // A late PUBACK from an abandoned batch stamps its own row, not the next batch's.
        check(
            &[
                Ask("a"),
                Saw(Sent(1)),
                Ask("b"),
                Saw(Sent(2)),
                Saw(Acked(1)),
            ],
            &["a"],
        );
        // A request of an abandoned batch written late takes its own row.
        check(&[Ask("a"), Ask("b"), Saw(Sent(7)), Saw(Acked(7))], &["a"]);
        // A PUBACK for an id not in flight stamps nothing.
        check(&[Ask("a"), Saw(Acked(1)), Saw(Sent(2)), Saw(Acked(1))], &[]);
        // A write that matches no request stamps nothing.
        check(&[Saw(Sent(1)), Saw(Acked(1))], &[]);
        // Packet ids come back once acknowledged.
        check(
            &[
                Ask("a"),
                Saw(Sent(1)),
                Saw(Acked(1)),
                Ask("b"),
                Saw(Sent(1)),
                Saw(Acked(1)),
            ],
            &["a", "b"],
        );
        // A new session: the row in flight is lost, the oldest unsent request
        // was dropped, the next write is the next request.
        check(
            &[
                Ask("a"),
                Ask("b"),
                Ask("c"),
                Saw(Sent(1)),
                Saw(NEW_SESSION(1)),
                Saw(Acked(1)),
                Saw(Sent(1)),
                Saw(Acked(1)),
            ],
            &["c"],
        );
        // A resumed session resends under the same ids, then writes the rest.
        check(
            &[
                Ask("a"),
                Ask("b"),
                Saw(Sent(1)),
                Saw(RESUMED),
                Saw(Sent(1)),
                Saw(Sent(2)),
                Saw(Acked(2)),
                Saw(Acked(1)),
            ],
            &["b", "a"],
        );
    }

    fn test_broker() -> BrokerAddress {
        let addr = crate::runtime::broker::start("127.0.0.1:0".parse().expect("address"))
            .expect("embedded broker");
        BrokerAddress::from_config(&MqttConfig::Embedded { listen: addr }, Some(addr))
    }

    /// Collects what arrives on `filter`, keyed by `key`.
    struct Subscriber {
        seen: watch::Receiver<HashSet<String>>,
        _client: AsyncClient,
        task: tokio::task::JoinHandle<()>,
    }

    impl Subscriber {
        async fn start(broker: &BrokerAddress, filter: &str, key: fn(&[u8]) -> String) -> Self {
            let id = format!("test-{}", uuid::Uuid::new_v4().simple());
            let options = MqttOptions::new(id, broker.host.clone(), broker.port);
            let (client, mut eventloop) = AsyncClient::new(options, 64);
            let (seen_tx, seen) = watch::channel(HashSet::new());
            let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
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
                            seen_tx.send_modify(|seen| {
                                seen.insert(key(&publish.payload));
                            });
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
            Subscriber {
                seen,
                _client: client,
                task,
            }
        }

        async fn wait_for(&mut self, what: &str, done: impl FnMut(&HashSet<String>) -> bool) {
            tokio::time::timeout(Duration::from_secs(60), self.seen.wait_for(done))
                .await
                .unwrap_or_else(|_| panic!("{what} within 60 s"))
                .expect("subscriber running");
        }
    }

    impl Drop for Subscriber {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    fn order(n: usize, now: i64) -> NewOrder {
        NewOrder {
            id: format!("order-{n:04}"),
            brand: "acme".into(),
            external_ref: None,
            customer_name: "Ada".into(),
            location: Location::new(52.5, 13.4),
            zone: "berlin".into(),
            factory: "north".into(),
            lines: vec![LineRequest {
                sku: "tee".into(),
                quantity: 1,
            }],
            deadline_ms: now + 48 * 3_600_000,
            accepted_ms: now,
            jobs: vec![JobPlan {
                line_index: 0,
                step_index: 0,
                process: "dtg_print".into(),
                recipe: 11,
                material: "cotton_tee".into(),
                quantity: 1,
                seconds_per_unit: 60.0,
                due_ms: now + 3_600_000,
            }],
            idempotency: None,
            follows: false,
        }
    }

    #[tokio::test]
    async fn every_outbox_row_is_published_and_stamped_once_acknowledged() {
        let broker = test_broker();
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("outbox.db").display());
        let store = Store::connect(&url).await.expect("sqlite store");
        let now = 1_800_000_000_000;
        // More than two batches, so packet ids are reused.
        let orders: Vec<NewOrder> = (0..450).map(|n| order(n, now)).collect();
        store.accept_orders(&orders).await.expect("accept orders");
        let events = store.unpublished(10_000).await.expect("outbox");
        assert!(events.len() >= orders.len(), "one event per order at least");
        let mut subscriber = Subscriber::start(&broker, "fabflow/v1/events/#", |payload| {
            serde_json::from_slice::<serde_json::Value>(payload)
                .ok()
                .and_then(|event| event["id"].as_str().map(str::to_string))
                .unwrap_or_default()
        })
        .await;

        let stop = CancellationToken::new();
        let mut client = connect_acknowledged(&broker, "outbox-test", stop.clone());
        tokio::time::timeout(
            Duration::from_secs(10),
            client.mqtt.connected.wait_for(|up| *up),
        )
        .await
        .expect("connected within 10 s")
        .expect("event loop running");
        // Cancelled from the start: one flushing pass, as at shutdown.
        let flush = CancellationToken::new();
        flush.cancel();
        tokio::time::timeout(
            Duration::from_secs(60),
            run_outbox(
                store.clone(),
                Clock::new(1.0),
                client,
                flush,
                Arc::new(Notify::new()),
            ),
        )
        .await
        .expect("outbox flushed within 60 s");

        assert_eq!(store.outbox_backlog().await.expect("backlog"), 0);
        let ids: HashSet<String> = events.into_iter().map(|event| event.id).collect();
        subscriber
            .wait_for("every event on MQTT", |seen| ids.is_subset(seen))
            .await;
        stop.cancel();
        store.close().await;
    }

    #[tokio::test]
    async fn a_client_nobody_reads_acknowledgements_from_keeps_publishing() {
        let broker = test_broker();
        let mut subscriber = Subscriber::start(&broker, "test/schedules/#", |payload| {
            String::from_utf8_lossy(payload).into_owned()
        })
        .await;
        let stop = CancellationToken::new();
        let schedules = connect(&broker, "schedules-test", stop.clone());
        // Well past the 1024 unread PUBACKs plus 256 queued requests after
        // which the event loop used to stall.
        let count = 3_000;
        let publishing = async {
            for n in 0..count {
                schedules
                    .client
                    .publish(
                        format!("test/schedules/courier-{}", n % 10),
                        QoS::AtLeastOnce,
                        true,
                        n.to_string(),
                    )
                    .await
                    .expect("publish requested");
            }
        };
        tokio::time::timeout(Duration::from_secs(60), publishing)
            .await
            .expect("3000 publishes requested within 60 s");
        subscriber
            .wait_for("every schedule on MQTT", |seen| seen.len() == count)
            .await;
        stop.cancel();
    }
}
