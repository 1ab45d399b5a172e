//! Courier schedules on MQTT: each courier's planned stops, published on
//! `fabflow/v1/couriers/<id>/schedule`, retained, QoS 1, whenever a wave
//! changes them (the API serves the same stops).

use crate::domain::{HandoffKind, HandoffState};
use crate::store::HandoffRecord;
use chrono::{DateTime, Utc};
use rumqttc::{AsyncClient, ClientError, QoS};
use serde::Serialize;

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
    let body = CourierSchedule::new(courier, stops, now_ms);
    // Plain data of strings and numbers: serialising it cannot fail.
    let payload = serde_json::to_vec(&body).unwrap_or_default();
    let topic = format!("fabflow/v1/couriers/{courier}/schedule");
    client.publish(topic, QoS::AtLeastOnce, true, payload).await
}
