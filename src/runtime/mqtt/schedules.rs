//! Courier schedules on MQTT: each courier's stops (planned and done, the
//! same stops `GET /v1/couriers/{id}/schedule` lists), published on
//! `fabflow/v1/couriers/<id>/schedule`, retained, QoS 1.
//!
//! Whoever changes a courier's stops (a wave, a missed pickup, a
//! confirmation, a failed attempt) marks the courier in [`ScheduleChanges`];
//! one task, [`run_schedules`], reads each marked courier's stops from the
//! store *after* the mark and publishes them. One task on one client
//! publishes in order, and every publish reads the store after the change
//! that caused it, so the last retained message is never older than the last
//! change. On every (re)connection every configured courier is published
//! again, since a clean session drops what was queued while disconnected.

use crate::domain::{HandoffKind, HandoffState};
use crate::runtime::clock::Clock;
use crate::runtime::mqtt::MqttClient;
use crate::store::{HandoffRecord, Store};
use chrono::{DateTime, Utc};
use rumqttc::{AsyncClient, ClientError, QoS};
use serde::Serialize;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// A courier's schedule as published on MQTT (the API renders its own view).
#[derive(Debug, Clone, Serialize)]
pub struct CourierSchedule {
    pub schema: u32,
    pub courier: String,
    pub generated_at: Option<DateTime<Utc>>,
    pub stops: Vec<ScheduleStop>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScheduleStop {
    /// Handoff id, to confirm the stop with.
    pub id: String,
    pub wave: String,
    pub order_id: String,
    pub kind: HandoffKind,
    pub seq: i64,
    /// Factory id for pickups, `customer` for drop-offs.
    pub place: String,
    pub lat: f64,
    pub lon: f64,
    pub eta: Option<DateTime<Utc>>,
    pub state: HandoffState,
}

impl CourierSchedule {
    pub fn new(courier: &str, records: &[HandoffRecord], now_ms: i64) -> CourierSchedule {
        CourierSchedule {
            schema: 1,
            courier: courier.to_string(),
            generated_at: DateTime::from_timestamp_millis(now_ms),
            stops: records
                .iter()
                .map(|r| ScheduleStop {
                    id: r.id.clone(),
                    wave: r.wave.clone(),
                    order_id: r.order_id.to_string(),
                    kind: r.kind,
                    seq: r.seq,
                    place: r.place.clone(),
                    lat: r.location.lat,
                    lon: r.location.lon,
                    eta: DateTime::from_timestamp_millis(r.eta_ms),
                    state: r.state,
                })
                .collect(),
        }
    }
}

/// Publishes `courier`'s schedule (retained, so a courier connecting later
/// gets the latest).
pub async fn publish(
    client: &AsyncClient,
    courier: &str,
    stops: &[HandoffRecord],
    now_ms: i64,
) -> Result<(), ClientError> {
    let (topic, payload) = message(courier, stops, now_ms);
    client.publish(topic, QoS::AtLeastOnce, true, payload).await
}

/// The topic and payload of `courier`'s schedule.
fn message(courier: &str, stops: &[HandoffRecord], now_ms: i64) -> (String, Vec<u8>) {
    let body = CourierSchedule::new(courier, stops, now_ms);
    // Plain data of strings and numbers: serialising it cannot fail.
    let payload = serde_json::to_vec(&body).unwrap_or_default();
    (format!("fabflow/v1/couriers/{courier}/schedule"), payload)
}

/// The couriers whose stops changed since their schedule was last
/// published; cheap to clone. Marking never blocks and never loses a mark:
/// the set keeps each courier once, and the `Notify` keeps a permit for a
/// publisher that is not waiting yet.
#[derive(Debug, Clone, Default)]
pub struct ScheduleChanges {
    inner: Arc<Changes>,
}

#[derive(Debug, Default)]
struct Changes {
    couriers: Mutex<BTreeSet<String>>,
    /// Wakes the publisher; lives as long as any clone, nothing to close.
    notify: Notify,
}

impl ScheduleChanges {
    /// `courier`'s stops changed.
    pub fn mark(&self, courier: &str) {
        self.mark_all([courier]);
    }

    /// Each of `couriers`' stops changed.
    pub fn mark_all<'a>(&self, couriers: impl IntoIterator<Item = &'a str>) {
        let mut set = self
            .inner
            .couriers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        set.extend(couriers.into_iter().map(str::to_string));
        drop(set);
        self.inner.notify.notify_one();
    }

    /// The couriers marked since the last call, emptied.
    fn take(&self) -> BTreeSet<String> {
        std::mem::take(
            &mut *self
                .inner
                .couriers
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        )
    }

    async fn notified(&self) {
        self.inner.notify.notified().await;
    }
}

/// Publishes the schedule of every courier marked in `changes`, and of
/// every courier in `couriers` at start and after each (re)connection, until
/// `cancel`; then queues what is still marked once more, without waiting,
/// and ends.
pub async fn run_schedules(
    store: Store,
    clock: Clock,
    mqtt: MqttClient,
    couriers: Vec<String>,
    changes: ScheduleChanges,
    cancel: CancellationToken,
) {
    let mut connected = mqtt.connected.clone();
    changes.mark_all(couriers.iter().map(String::as_str));
    while !cancel.is_cancelled() {
        publish_marked(&store, clock, &mqtt.client, &changes, Some(&cancel)).await;
        tokio::select! {
            _ = cancel.cancelled() => {}
            up = connected.changed() => {
                if up.is_ok() && *connected.borrow_and_update() {
                    changes.mark_all(couriers.iter().map(String::as_str));
                }
            }
            _ = changes.notified() => {}
        }
    }
    publish_marked(&store, clock, &mqtt.client, &changes, None).await;
}

/// Reads and publishes each marked courier's schedule. With `cancel`, waits
/// for room in the client's queue until cancelled (a courier not published
/// stays marked); without, only queues what fits (the last pass: a broker
/// that is away must not hold up shutdown).
async fn publish_marked(
    store: &Store,
    clock: Clock,
    client: &AsyncClient,
    changes: &ScheduleChanges,
    cancel: Option<&CancellationToken>,
) {
    let marked: Vec<String> = changes.take().into_iter().collect();
    for (index, courier) in marked.iter().enumerate() {
        let stops = match store.courier_schedule(courier).await {
            Ok(stops) => stops,
            Err(err) => {
                warn!(courier = %courier, error = %err, "schedule not read; trying again at the next change");
                continue;
            }
        };
        let records: Vec<HandoffRecord> = stops.into_iter().map(|s| s.handoff).collect();
        let (topic, payload) = message(courier, &records, clock.now_ms());
        let published = match cancel {
            Some(cancel) => tokio::select! {
                _ = cancel.cancelled() => {
                    // Left for the last pass.
                    changes.mark_all(marked[index..].iter().map(String::as_str));
                    return;
                }
                published = client.publish(topic, QoS::AtLeastOnce, true, payload) => published,
            },
            None => client.try_publish(topic, QoS::AtLeastOnce, true, payload),
        };
        match published {
            Ok(()) => {
                metrics::counter!("fabflow_courier_schedules_published_total").increment(1);
                debug!(courier = %courier, stops = records.len(), "schedule published");
            }
            Err(err) => {
                warn!(courier = %courier, error = %err, "schedule not published; the API serves it")
            }
        }
    }
}
