//! Handoffs: the stops of courier routes, saved per planning wave and
//! confirmed by couriers, which moves their orders.

use super::write::{Subject, emit, set_order_state_by_id};
use super::{Store, StoreError, parse, text_id};
use crate::domain::{
    CourierId, Event, FactoryId, HandoffInput, HandoffKind, HandoffState, Location, Millis,
    OrderId, OrderInput, OrderState,
};
use sqlx::AssertSqlSafe;
use sqlx::Row;
use sqlx::any::AnyRow;

/// A ready order waiting for a courier.
#[derive(Debug, Clone, PartialEq)]
pub struct WaveOrder {
    pub order_id: OrderId,
    pub factory: FactoryId,
    pub dropoff: Location,
    pub deadline_ms: Millis,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HandoffRecord {
    pub id: String,
    pub wave: String,
    pub courier: CourierId,
    pub order_id: OrderId,
    pub kind: HandoffKind,
    pub seq: i64,
    /// Factory id for a pickup, `customer` for a drop-off.
    pub place: String,
    pub location: Location,
    pub eta_ms: Millis,
    pub state: HandoffState,
    pub updated_ms: Millis,
}

/// A stop of a courier's schedule with what the courier needs of its order:
/// who to meet (the customer's name; the factory for a pickup) and the
/// order's deadline, which closes a drop-off's window.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledStop {
    pub handoff: HandoffRecord,
    pub customer_name: String,
    pub deadline_ms: Millis,
}

const HANDOFF_COLUMNS: &str =
    "id, wave, courier, order_id, kind, seq, place, lat, lon, eta_ms, state, updated_ms";

fn handoff_from_row(row: &AnyRow) -> Result<HandoffRecord, StoreError> {
    Ok(HandoffRecord {
        id: row.try_get("id")?,
        wave: row.try_get("wave")?,
        courier: text_id(row, "courier")?,
        order_id: text_id(row, "order_id")?,
        kind: parse(&row.try_get::<String, _>("kind")?)?,
        seq: row.try_get("seq")?,
        place: row.try_get("place")?,
        location: Location::new(row.try_get("lat")?, row.try_get("lon")?),
        eta_ms: row.try_get("eta_ms")?,
        state: parse(&row.try_get::<String, _>("state")?)?,
        updated_ms: row.try_get("updated_ms")?,
    })
}

impl Store {
    /// Ready orders of a zone that no courier is planned to pick up yet.
    pub async fn wave_orders(&self, zone: &str) -> Result<Vec<WaveOrder>, StoreError> {
        let rows = sqlx::query(
            "SELECT o.id, o.factory, o.lat, o.lon, o.deadline_ms FROM orders o \
             WHERE o.state = 'ready' AND o.zone = $1 AND NOT EXISTS \
             (SELECT 1 FROM handoffs h WHERE h.order_id = o.id AND h.state IN ('planned', 'done')) \
             ORDER BY o.deadline_ms, o.id",
        )
        .bind(zone)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(WaveOrder {
                    order_id: text_id(row, "id")?,
                    factory: text_id(row, "factory")?,
                    dropoff: Location::new(row.try_get("lat")?, row.try_get("lon")?),
                    deadline_ms: row.try_get("deadline_ms")?,
                })
            })
            .collect()
    }

    /// Pickups of a zone still planned although their ETA is before
    /// `overdue_before` are missed: the pickup and the drop-off planned with it
    /// become `missed`, and the order (still ready) goes into the next wave.
    /// Returns how many orders were handed back.
    pub async fn miss_overdue_pickups(
        &self,
        zone: &str,
        overdue_before: Millis,
        now: Millis,
    ) -> Result<usize, StoreError> {
        let rows = sqlx::query(
            "SELECT h.id, h.wave, h.order_id, o.brand FROM handoffs h JOIN orders o ON o.id = h.order_id \
             WHERE o.zone = $1 AND h.kind = 'pickup' AND h.state = 'planned' AND h.eta_ms < $2",
        )
        .bind(zone)
        .bind(overdue_before)
        .fetch_all(self.reader())
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin().await?;
        let mut missed = 0;
        for row in rows {
            let pickup: String = row.try_get("id")?;
            let wave: String = row.try_get("wave")?;
            let order_id: String = row.try_get("order_id")?;
            let brand: String = row.try_get("brand")?;
            let stops = sqlx::query(
                "SELECT id FROM handoffs WHERE order_id = $1 AND wave = $2 AND state = 'planned' AND (id = $3 OR kind = 'dropoff')",
            )
            .bind(&order_id)
            .bind(&wave)
            .bind(&pickup)
            .fetch_all(&mut *tx)
            .await?;
            for stop in stops {
                let id: String = stop.try_get("id")?;
                let (next, events) = HandoffState::Planned.handle(HandoffInput::Miss)?;
                let done = sqlx::query("UPDATE handoffs SET state = $1, updated_ms = $2 WHERE id = $3 AND state = 'planned'")
                    .bind(next.as_str())
                    .bind(now)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() != 1 {
                    continue;
                }
                let subject = Subject {
                    kind: "handoff",
                    id: &id,
                    order_id: Some(&order_id),
                    brand: Some(&brand),
                };
                for event in &events {
                    emit(&mut tx, &subject, event, now).await?;
                }
            }
            missed += 1;
        }
        tx.commit().await?;
        Ok(missed)
    }

    /// Saves a wave's stops in one transaction, with a `handoff.planned` event each.
    pub async fn save_wave(&self, stops: &[HandoffRecord], now: Millis) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for stop in stops {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO handoffs ({HANDOFF_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            )))
            .bind(&stop.id)
            .bind(&stop.wave)
            .bind(stop.courier.as_str())
            .bind(stop.order_id.as_str())
            .bind(stop.kind.as_str())
            .bind(stop.seq)
            .bind(&stop.place)
            .bind(stop.location.lat)
            .bind(stop.location.lon)
            .bind(stop.eta_ms)
            .bind(stop.state.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let brand: String = sqlx::query("SELECT brand FROM orders WHERE id = $1")
                .bind(stop.order_id.as_str())
                .fetch_one(&mut *tx)
                .await?
                .try_get("brand")?;
            let subject = Subject {
                kind: "handoff",
                id: &stop.id,
                order_id: Some(&stop.order_id),
                brand: Some(&brand),
            };
            emit(&mut tx, &subject, &Event::HandoffPlanned, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A courier's stops that are planned or done, in route order, with
    /// their orders' customer name and deadline.
    pub async fn courier_schedule(&self, courier: &str) -> Result<Vec<ScheduledStop>, StoreError> {
        let columns: Vec<String> = HANDOFF_COLUMNS
            .split(", ")
            .map(|column| format!("h.{column}"))
            .collect();
        let sql = format!(
            "SELECT {}, o.customer_name, o.deadline_ms FROM handoffs h JOIN orders o ON o.id = h.order_id \
             WHERE h.courier = $1 AND h.state IN ('planned', 'done') ORDER BY h.wave, h.seq",
            columns.join(", ")
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(courier)
            .fetch_all(self.reader())
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ScheduledStop {
                    handoff: handoff_from_row(row)?,
                    customer_name: row.try_get("customer_name")?,
                    deadline_ms: row.try_get("deadline_ms")?,
                })
            })
            .collect()
    }

    /// Every handoff of an order.
    pub async fn order_handoffs(&self, order_id: &str) -> Result<Vec<HandoffRecord>, StoreError> {
        let sql = format!(
            "SELECT {HANDOFF_COLUMNS} FROM handoffs WHERE order_id = $1 ORDER BY wave, seq"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(order_id)
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(handoff_from_row).collect()
    }

    /// A courier confirms a stop: the handoff is done and its order moves
    /// (pickup: out for delivery; drop-off: delivered). `courier` scopes the
    /// lookup (None for admins).
    pub async fn confirm_handoff(
        &self,
        id: &str,
        courier: Option<&str>,
        now: Millis,
    ) -> Result<HandoffRecord, StoreError> {
        let mut tx = self.begin().await?;
        let sql = format!(
            "SELECT {HANDOFF_COLUMNS} FROM handoffs WHERE id = $1 AND ($2 IS NULL OR courier = $2)"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .bind(courier)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(handoff) = row.as_ref().map(handoff_from_row).transpose()? else {
            return Err(StoreError::NotFound(format!("handoff {id}")));
        };
        let (next, events) = handoff.state.handle(HandoffInput::Confirm)?;
        let done = sqlx::query(
            "UPDATE handoffs SET state = $1, updated_ms = $2 WHERE id = $3 AND state = $4",
        )
        .bind(next.as_str())
        .bind(now)
        .bind(id)
        .bind(handoff.state.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!("handoff {id} changed")));
        }
        let order = sqlx::query("SELECT brand, state FROM orders WHERE id = $1")
            .bind(handoff.order_id.as_str())
            .fetch_one(&mut *tx)
            .await?;
        let brand: String = order.try_get("brand")?;
        let order_state: OrderState = parse(&order.try_get::<String, _>("state")?)?;
        let subject = Subject {
            kind: "handoff",
            id,
            order_id: Some(&handoff.order_id),
            brand: Some(&brand),
        };
        for event in &events {
            emit(&mut tx, &subject, event, now).await?;
        }
        let input = match handoff.kind {
            HandoffKind::Pickup => OrderInput::PickedUp,
            HandoffKind::Dropoff => OrderInput::DroppedOff,
        };
        let (order_next, order_events) = order_state.handle(input)?;
        set_order_state_by_id(
            &mut tx,
            &handoff.order_id,
            &brand,
            order_state,
            order_next,
            &order_events,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(HandoffRecord {
            state: next,
            updated_ms: now,
            ..handoff
        })
    }
}
