//! The outbox publisher: sends unpublished outbox rows on
//! `fabflow/v1/events/<kind>` (QoS 1), and a row that concerns a brand also
//! on `fabflow/v1/brands/<brand>/events/<kind>` (the topic only that brand may
//! read); it stamps a row only once the broker acknowledged all its messages.
//! A `machine.*` row also publishes the machine's state as it stands then,
//! retained, on `fabflow/v1/machines/<id>/state` (so a client connecting
//! later sees every machine's last state, its fault code, offline machines).

use super::client::{AcknowledgedClient, Delivery};
use crate::runtime::broker::access::invalid_id;
use crate::runtime::clock::Clock;
use crate::runtime::wake::Wakers;
use crate::store::{OutboxRecord, Store, StoreError};
use rumqttc::{ClientError, QoS};
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

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
    wakers: Wakers,
) {
    let claim = OutboxClaim {
        daemon: format!("pid {}", std::process::id()),
        claim_ms: 10_000,
    };
    run_outbox_as(store, clock, mqtt, cancel, wakers, claim).await
}

/// Whose the publisher's claims on outbox rows are, and for how long: with
/// several daemons, each drains the rows it claimed (`FOR UPDATE SKIP
/// LOCKED` on PostgreSQL); rows a daemon claimed and did not stamp go to
/// another once the claim runs out (at least once).
#[derive(Debug, Clone)]
pub struct OutboxClaim {
    pub daemon: String,
    pub claim_ms: i64,
}

/// Acknowledged rows stamped at once while draining a backlog: each stamp
/// is a commit on the writer that intake shares. In the intake benchmark
/// (20,000 orders, 40,400 events) a stamp per 100-row batch was 404 of the
/// run's 474 commits besides intake's, about 0.3 s of the writer's 2 s. A
/// daemon killed mid-drain sends at most this many rows again (at least
/// once, as always); a drain that catches up stamps what it has at once.
const STAMP_ROWS: usize = 1_000;

/// Nor for longer than this.
const STAMP_AFTER: Duration = Duration::from_secs(1);

/// [`run_outbox`], claiming rows as `claim` says.
pub async fn run_outbox_as(
    store: Store,
    clock: Clock,
    mqtt: AcknowledgedClient,
    cancel: CancellationToken,
    wakers: Wakers,
    claim: OutboxClaim,
) {
    let mut publisher = Publisher {
        store,
        clock,
        claim,
        mqtt,
        reports_open: true,
        tracker: Tracker::default(),
        acked: HashSet::new(),
        sent_up_to: None,
        unstamped_since: None,
        outstanding: HashMap::new(),
    };
    // Rows per batch: a brand's row is two messages, so a batch is at most
    // 200 messages, all to be acknowledged within the batch's 5 s. Batches
    // of 250-500 rows were tried against the embedded broker (2026-12-04):
    // part of each batch went unacknowledged for the whole 5 s, with the
    // client's in-flight limit and rumqttd's raised too, so publishing
    // crawled; 100 rows drained a 40,000-event backlog in about 12 s.
    let batch_size = 100;
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
        publisher.idle(&cancel, &wakers).await;
    }
    info!("outbox publisher stopped");
}

struct Publisher {
    store: Store,
    clock: Clock,
    /// Whose claims this publisher takes on outbox rows.
    claim: OutboxClaim,
    mqtt: AcknowledgedClient,
    /// False once the event-loop task has ended and closed `deliveries`.
    reports_open: bool,
    tracker: Tracker,
    /// Rows the broker acknowledged, not yet stamped.
    acked: HashSet<String>,
    /// While a drain defers its stamps (`STAMP_ROWS`): the last `seq` of its
    /// batches so far, all acknowledged; the next batch starts after it.
    sent_up_to: Option<i64>,
    /// When the drain's first unstamped batch was acknowledged.
    unstamped_since: Option<tokio::time::Instant>,
    /// For each row requested, its messages (keys, see [`message_key`]) not
    /// yet acknowledged; set afresh each time the row is requested.
    outstanding: HashMap<String, HashSet<String>>,
}

/// The tracker key of one of a row's messages: the row id for the message on
/// `fabflow/v1/events/`, the row id and a NUL-prefixed suffix for its brand copy.
fn message_key(row: &str, brand_copy: bool) -> String {
    if brand_copy {
        format!("{row}\0brand")
    } else {
        row.to_string()
    }
}

/// The tracker key of a row's retained machine state message.
fn state_key(row: &str) -> String {
    format!("{row}\0state")
}

/// The machine a `machine.*` row is about.
fn machine_of(row: &OutboxRecord) -> Option<String> {
    if !row.kind.starts_with("machine.") {
        return None;
    }
    let envelope: serde_json::Value = serde_json::from_str(&row.payload).ok()?;
    let id = envelope["subject"]["id"].as_str()?;
    invalid_id(id).is_none().then(|| id.to_string())
}

/// A machine's retained state document (schema 1).
pub fn machine_state_payload(machine: &crate::store::MachineRecord) -> String {
    serde_json::json!({
        "schema": 1,
        "machine": machine.id.as_str(),
        "factory": machine.factory.as_str(),
        "state": machine.state.effective(machine.mode),
        "observed": machine.state,
        "mode": machine.mode,
        "fault_code": machine.fault_code,
        "job_token": machine.job_token,
        "at": chrono::DateTime::<chrono::Utc>::from_timestamp_millis(machine.updated_ms)
            .map(|t| t.to_rfc3339()),
    })
    .to_string()
}

fn row_of(key: &str) -> &str {
    key.split_once('\0').map_or(key, |(row, _)| row)
}

/// The topics of `row`'s messages, with their keys.
fn messages(row: &OutboxRecord) -> Vec<(String, String)> {
    let mut out = vec![(
        message_key(&row.id, false),
        format!("fabflow/v1/events/{}", row.kind),
    )];
    match row.brand.as_deref() {
        Some(brand) if invalid_id(brand).is_none() => out.push((
            message_key(&row.id, true),
            format!("fabflow/v1/brands/{brand}/events/{}", row.kind),
        )),
        Some(brand) => {
            warn!(event.id = %row.id, brand, "brand id cannot sit in a topic level: event published on fabflow/v1/events/ only");
        }
        None => {}
    }
    out
}

impl Publisher {
    /// Publishes up to `batch_size` of the oldest unpublished rows and stamps
    /// those the broker acknowledged within 5 s; the number published if all
    /// of them were.
    async fn publish_batch(&mut self, batch_size: i64) -> Result<usize, PublishError> {
        while let Ok(delivery) = self.mqtt.deliveries.try_recv() {
            self.note(Some(delivery));
        }
        // Outside a drain (acknowledgements that came late), stamp first:
        // the batch below would send their rows again.
        if self.sent_up_to.is_none() || self.stamp_due() {
            self.stamp().await?;
        }
        if !*self.mqtt.mqtt.connected.borrow() {
            self.stamp().await?;
            return Ok(0);
        }
        let rows = self
            .store
            .next_to_publish(
                &self.claim.daemon,
                self.sent_up_to.unwrap_or(0),
                batch_size,
                self.claim.claim_ms,
            )
            .await?;
        if rows.is_empty() {
            self.stamp().await?;
            return Ok(0);
        }
        let client = self.mqtt.mqtt.client.clone();
        let mut requests = Vec::new();
        for row in &rows {
            let mut messages: Vec<(String, String, String, bool)> = messages(row)
                .into_iter()
                .map(|(key, topic)| (key, topic, row.payload.clone(), false))
                .collect();
            // Read now, so it is never older than the event it follows.
            if let Some(id) = machine_of(row)
                && let Some(machine) = self.store.get_machine(&id).await?
            {
                messages.push((
                    state_key(&row.id),
                    format!("fabflow/v1/machines/{id}/state"),
                    machine_state_payload(&machine),
                    true,
                ));
            }
            self.outstanding.insert(
                row.id.clone(),
                messages.iter().map(|(key, ..)| key.clone()).collect(),
            );
            requests.extend(messages);
        }
        for (key, topic, payload, retain) in requests {
            self.tracker.requested(key);
            let request = client.publish(topic, QoS::AtLeastOnce, retain, payload.into_bytes());
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
        match outcome {
            // A whole batch, all acknowledged: the drain goes on after it,
            // stamping every `STAMP_ROWS` rows.
            Ok(count) if count as i64 == batch_size => {
                self.sent_up_to = rows.iter().map(|row| row.seq).max();
                self.unstamped_since
                    .get_or_insert_with(tokio::time::Instant::now);
                if self.stamp_due() {
                    self.stamp().await?;
                }
            }
            // Caught up, or a partial batch (stamped too; the rest goes out
            // again next round, from the oldest unstamped row).
            _ => self.stamp().await?,
        }
        outcome
    }

    /// Waits for a wake-up, the retry interval or cancellation, reading the
    /// event loop's reports meanwhile.
    async fn idle(&mut self, cancel: &CancellationToken, wakers: &Wakers) {
        let retry = tokio::time::sleep(Duration::from_millis(250));
        tokio::pin!(retry);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = wakers.outbox_woken() => return,
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
        let key = self.tracker.handle(delivery)?;
        let row = row_of(&key).to_string();
        let outstanding = self.outstanding.get_mut(&row)?;
        outstanding.remove(&key);
        if !outstanding.is_empty() {
            return None;
        }
        self.outstanding.remove(&row);
        self.acked.insert(row.clone());
        Some(row)
    }

    /// Whether a drain's deferred stamps are due: `STAMP_ROWS` rows, or
    /// `STAMP_AFTER` since the first (a slow broker does not hold a claim
    /// on acknowledged rows until it runs out).
    fn stamp_due(&self) -> bool {
        self.acked.len() >= STAMP_ROWS
            || self
                .unstamped_since
                .is_some_and(|since| since.elapsed() >= STAMP_AFTER)
    }

    /// Stamps the acknowledged rows published; the next batch starts from
    /// the oldest unstamped row.
    async fn stamp(&mut self) -> Result<(), PublishError> {
        if !self.acked.is_empty() {
            let ids: Vec<String> = self.acked.iter().cloned().collect();
            self.store.mark_published(&ids, self.clock.now_ms()).await?;
            self.acked.clear();
            metrics::counter!("fabflow_events_published_total").increment(ids.len() as u64);
        }
        self.sent_up_to = None;
        self.unstamped_since = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
