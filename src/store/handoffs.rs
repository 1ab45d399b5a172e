//! Handoffs: the stops of courier routes, saved per planning wave and
//! confirmed by couriers, which moves their orders.

use super::orders::{ORDER_COLUMNS, OrderRecord, order_from_row};
use super::returns::{miss_return_stops, move_return, return_in};
use super::write::{AuditEntry, Subject, emit, lock_order, record_audit, set_order_state_by_id};
use super::{Store, StoreError, parse, text_id};
use crate::domain::escalation::{EscalationDecision, Refusal, check_decision};
use crate::domain::{
    AfterFailure, BrandId, CourierId, Event, FactoryId, FailureReason, HandoffInput, HandoffKind,
    HandoffState, Location, Millis, OrderId, OrderInput, OrderState, ReturnInput, ReturnState,
    after_failed_attempt, locks_after,
};
use sqlx::AssertSqlSafe;
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::HashSet;

/// A ready order waiting for a courier.
#[derive(Debug, Clone, PartialEq)]
pub struct WaveOrder {
    pub order_id: OrderId,
    pub brand: BrandId,
    pub factory: FactoryId,
    pub dropoff: Location,
    pub deadline_ms: Millis,
}

/// A stop not yet made, with its order's facts (see `Store::open_stops`).
#[derive(Debug, Clone, PartialEq)]
pub struct OpenStop {
    pub handoff: HandoffRecord,
    pub brand: BrandId,
    /// The order's delivery deadline.
    pub deadline_ms: Millis,
    /// When its return was requested, for a return's stop.
    pub return_requested_ms: Option<Millis>,
}

/// An order out for delivery whose drop-off was never confirmed: its
/// courier has the parcel and needs a new drop-off (`Store::carried_orders`).
#[derive(Debug, Clone, PartialEq)]
pub struct CarriedOrder {
    pub order_id: OrderId,
    pub brand: BrandId,
    pub courier: CourierId,
    pub dropoff: Location,
    pub deadline_ms: Millis,
    /// The missed drop-off's code, kept for the new one.
    pub code: Option<String>,
}

/// A planned stop given a new place by a rebuilding wave.
#[derive(Debug, Clone, PartialEq)]
pub struct StopMove {
    pub id: String,
    pub order_id: OrderId,
    pub brand: BrandId,
    /// Where it was: compare-and-set on these.
    pub from_courier: CourierId,
    pub from_wave: String,
    pub to_courier: CourierId,
    pub wave: String,
    pub seq: i64,
    pub eta_ms: Millis,
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
    /// The proof-of-handoff code (None for stops planned before codes).
    /// Shown to the operator (pickup) or the brand (drop-off), never to
    /// the courier.
    pub code: Option<String>,
    /// Wrong codes tried since the stop was planned or last released.
    pub wrong_codes: i64,
    /// Why the attempt failed, for a failed stop.
    pub failure: Option<FailureReason>,
    /// The return this stop moves (a pickup at the customer, a drop-off at
    /// the factory); None for the order's own delivery.
    pub return_id: Option<String>,
}

/// A handoff with what scopes it: its order's factory and brand.
#[derive(Debug, Clone, PartialEq)]
pub struct HandoffDetail {
    pub handoff: HandoffRecord,
    pub factory: String,
    pub brand: String,
}

/// What became of a confirmation.
#[derive(Debug, Clone, PartialEq)]
pub enum Confirmation {
    Confirmed(Box<HandoffRecord>),
    /// The code was wrong; counted (and, at the limit, the stop is locked).
    WrongCode {
        wrong_codes: u32,
        locked: bool,
    },
}

/// A failed attempt, stored.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedAttempt {
    pub handoff: HandoffRecord,
    /// The order's failed attempts so far, this one included.
    pub attempts: u32,
    /// Whether the attempts ran out and the order was escalated.
    pub escalated: bool,
}

/// Why an order is no longer planned: its attempts ran out.
#[derive(Debug, Clone, PartialEq)]
pub struct Escalation {
    pub reason: FailureReason,
    pub attempts: i64,
    pub at_ms: Millis,
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

const HANDOFF_COLUMNS: &str = "id, wave, courier, order_id, kind, seq, place, lat, lon, eta_ms, state, updated_ms, code, wrong_codes, failure, return_id";

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
        code: row.try_get("code")?,
        wrong_codes: row.try_get("wrong_codes")?,
        failure: row
            .try_get::<Option<String>, _>("failure")?
            .map(|text| parse(&text))
            .transpose()?,
        return_id: row.try_get("return_id")?,
    })
}

impl Store {
    /// Ready orders of a zone that no courier is planned to pick up yet.
    /// The lines of each order of `ids` (for what their parcels take).
    pub async fn order_lines(
        &self,
        ids: &[&str],
    ) -> Result<
        std::collections::HashMap<String, Vec<crate::domain::intake::LineRequest>>,
        StoreError,
    > {
        let mut out = std::collections::HashMap::new();
        for chunk in ids.chunks(500) {
            let marks: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
            let sql = format!(
                "SELECT id, lines FROM orders WHERE id IN ({})",
                marks.join(", ")
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(self.reader()).await? {
                let id: String = row.try_get("id")?;
                let text: String = row.try_get("lines")?;
                let lines = serde_json::from_str(&text)
                    .map_err(|err| StoreError::Corrupt(format!("order {id} lines: {err}")))?;
                out.insert(id, lines);
            }
        }
        Ok(out)
    }

    pub async fn wave_orders(&self, zone: &str) -> Result<Vec<WaveOrder>, StoreError> {
        self.wave_orders_since(zone, None).await
    }

    /// As [`Store::wave_orders`], only those whose row changed at or after
    /// `since_ms` (all of them for `None`): what became ready lately.
    pub async fn wave_orders_since(
        &self,
        zone: &str,
        since_ms: Option<Millis>,
    ) -> Result<Vec<WaveOrder>, StoreError> {
        let rows = sqlx::query(
            "SELECT o.id, o.brand, o.factory, o.lat, o.lon, o.deadline_ms FROM orders o \
             WHERE o.state = 'ready' AND o.zone = $1 AND ($2 IS NULL OR o.updated_ms >= $2) AND NOT EXISTS \
             (SELECT 1 FROM handoffs h WHERE h.order_id = o.id AND h.return_id IS NULL AND h.state IN ('planned', 'locked')) \
             AND NOT EXISTS (SELECT 1 FROM order_escalations e WHERE e.order_id = o.id) \
             ORDER BY o.deadline_ms, o.id",
        )
        .bind(zone)
        .bind(since_ms)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(WaveOrder {
                    order_id: text_id(row, "id")?,
                    brand: text_id(row, "brand")?,
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
            "SELECT h.id, h.wave, h.order_id, h.return_id, o.brand FROM handoffs h JOIN orders o ON o.id = h.order_id \
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
        let missed = miss_pickups(&mut tx, &rows, now).await?;
        tx.commit().await?;
        Ok(missed)
    }

    /// An operator's decision on an escalated order (`brand`/`factories`
    /// scoping is the caller's): checked by `domain::escalation` on the
    /// order as it stands in the transaction; the escalation removed
    /// (compare-and-set: an order not escalated is refused), the decision
    /// recorded, the order moved (a new deadline, or cancelled, with its
    /// units back on its factory's shelf for `return_to_factory`), one
    /// `order.escalation_decided` event and an audit row, in one transaction.
    /// A refusal is `Ok(Err(_))`.
    pub async fn decide_escalation(
        &self,
        order_id: &str,
        decision: EscalationDecision,
        deliver_by_ms: Option<Millis>,
        actor: &str,
        now: Millis,
    ) -> Result<Result<OrderRecord, Refusal>, StoreError> {
        let mut tx = self.begin().await?;
        lock_order(&mut tx, self.backend(), order_id).await?;
        let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1");
        let Some(row) = sqlx::query(AssertSqlSafe(sql))
            .bind(order_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Err(StoreError::NotFound(format!("order {order_id}")));
        };
        let order = order_from_row(&row)?;
        let escalated = sqlx::query("SELECT order_id FROM order_escalations WHERE order_id = $1")
            .bind(order_id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if let Err(refusal) = check_decision(decision, deliver_by_ms, escalated, order.state, now) {
            return Ok(Err(refusal));
        }
        let removed = sqlx::query("DELETE FROM order_escalations WHERE order_id = $1")
            .bind(order_id)
            .execute(&mut *tx)
            .await?;
        if removed.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!(
                "order {order_id} was decided meanwhile"
            )));
        }
        sqlx::query(
            "INSERT INTO escalation_decisions (id, order_id, decision, deliver_by_ms, actor, at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(uuid::Uuid::now_v7().hyphenated().to_string())
        .bind(order_id)
        .bind(decision.as_str())
        .bind(deliver_by_ms)
        .bind(actor)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let mut record = order.clone();
        if let Some(deliver_by) = deliver_by_ms {
            let moved = sqlx::query(
                "UPDATE orders SET deadline_ms = $1, updated_ms = $2 WHERE id = $3 AND state = 'ready'",
            )
            .bind(deliver_by)
            .bind(now)
            .bind(order_id)
            .execute(&mut *tx)
            .await?;
            if moved.rows_affected() != 1 {
                return Err(StoreError::Conflict(format!("order {order_id} changed")));
            }
            record.deadline_ms = deliver_by;
        }
        if let Some(input) = decision.order_input() {
            let (next, events) = order.state.handle(input)?;
            set_order_state_by_id(
                &mut tx,
                order_id,
                order.brand.as_str(),
                order.state,
                next,
                &events,
                now,
            )
            .await?;
            record.state = next;
        }
        if decision.restocks() {
            tx.stock.set_empty(false);
            for line in &order.lines {
                sqlx::query(
                    "INSERT INTO stock (factory, sku, units, updated_ms) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (factory, sku) DO UPDATE SET units = stock.units + excluded.units, \
                     updated_ms = excluded.updated_ms",
                )
                .bind(order.factory.as_str())
                .bind(&line.sku)
                .bind(i64::from(line.quantity))
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        let subject = Subject {
            kind: "order",
            id: order_id,
            order_id: Some(order_id),
            brand: Some(order.brand.as_str()),
        };
        let event = Event::OrderEscalationDecided {
            decision,
            deliver_by_ms,
        };
        emit(&mut tx, &subject, &event, now).await?;
        let detail = match deliver_by_ms {
            Some(deliver_by) => format!("{} (deliver by {deliver_by} ms)", decision.as_str()),
            None => decision.as_str().to_string(),
        };
        record_audit(
            &mut tx,
            &AuditEntry::new(actor, "order.escalation", order_id, &detail),
            now,
        )
        .await?;
        tx.commit().await?;
        record.updated_ms = now;
        Ok(Ok(record))
    }

    /// Drop-offs of a zone still planned although their ETA is before
    /// `overdue_before`, their parcel picked up (a delivery's order out for
    /// delivery, a return `picked_up`): each becomes `missed`
    /// (compare-and-set, `handoff.missed`), and the order (or the return),
    /// still with its courier, waits for the next wave to plan a new
    /// drop-off for that courier (`carried_orders`, `carried_returns`). The
    /// return keeps its state. Not a failed attempt. Returns how many.
    pub async fn miss_overdue_dropoffs(
        &self,
        zone: &str,
        overdue_before: Millis,
        now: Millis,
    ) -> Result<usize, StoreError> {
        let rows = sqlx::query(
            "SELECT h.id, h.order_id, o.brand FROM handoffs h JOIN orders o ON o.id = h.order_id \
             LEFT JOIN returns r ON r.id = h.return_id \
             WHERE o.zone = $1 AND h.kind = 'dropoff' AND h.state = 'planned' AND h.eta_ms < $2 \
             AND ((h.return_id IS NULL AND o.state = 'out_for_delivery') OR r.state = 'picked_up')",
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
        let (next, events) = HandoffState::Planned.handle(HandoffInput::Miss)?;
        for row in &rows {
            let id: String = row.try_get("id")?;
            let order_id: String = row.try_get("order_id")?;
            let brand: String = row.try_get("brand")?;
            // Confirmed (or failed) since the read: not missed.
            let taken = sqlx::query(
                "UPDATE handoffs SET state = $1, updated_ms = $2 WHERE id = $3 AND state = 'planned'",
            )
            .bind(next.as_str())
            .bind(now)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
            if taken.rows_affected() != 1 {
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
            missed += 1;
        }
        tx.commit().await?;
        Ok(missed)
    }

    /// Orders of a zone out for delivery with no drop-off planned (theirs
    /// was never confirmed) and not escalated: the courier that picked each
    /// up last has it (a parcel brought back after a failed drop-off is
    /// picked up again, maybe by another courier), and the code of its last
    /// missed drop-off (the customer has it).
    pub async fn carried_orders(&self, zone: &str) -> Result<Vec<CarriedOrder>, StoreError> {
        let rows = sqlx::query(
            "SELECT o.id, o.brand, o.lat, o.lon, o.deadline_ms, p.courier, \
             (SELECT m.code FROM handoffs m WHERE m.order_id = o.id AND m.kind = 'dropoff' \
              AND m.state = 'missed' AND m.return_id IS NULL ORDER BY m.updated_ms DESC, m.id DESC LIMIT 1) AS code \
             FROM orders o JOIN handoffs p ON p.order_id = o.id AND p.kind = 'pickup' AND p.state = 'done' \
             AND p.return_id IS NULL \
             WHERE o.zone = $1 AND o.state = 'out_for_delivery' \
             AND NOT EXISTS (SELECT 1 FROM handoffs q WHERE q.order_id = o.id AND q.return_id IS NULL \
              AND q.kind = 'pickup' AND q.state = 'done' \
              AND (q.updated_ms > p.updated_ms OR (q.updated_ms = p.updated_ms AND q.id > p.id))) \
             AND NOT EXISTS \
             (SELECT 1 FROM handoffs h WHERE h.order_id = o.id AND h.return_id IS NULL AND h.kind = 'dropoff' \
              AND h.state IN ('planned', 'locked')) \
             AND NOT EXISTS (SELECT 1 FROM order_escalations e WHERE e.order_id = o.id) \
             ORDER BY o.deadline_ms, o.id",
        )
        .bind(zone)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(CarriedOrder {
                    order_id: text_id(row, "id")?,
                    brand: text_id(row, "brand")?,
                    courier: text_id(row, "courier")?,
                    dropoff: Location::new(row.try_get("lat")?, row.try_get("lon")?),
                    deadline_ms: row.try_get("deadline_ms")?,
                    code: row.try_get("code")?,
                })
            })
            .collect()
    }

    /// A courier goes off duty (or back on): stored with who decided, audited,
    /// one `courier.duty_changed` event. Going off duty hands back every
    /// pickup it has not made (with the drop-off planned with it) for the
    /// next wave to plan with other couriers, and brings the deliveries it
    /// has on board back to their factory (`bring_back_parcels`): ready
    /// again, for another courier. Returns it carries stay with it (no
    /// promise hangs on them). Returns how many pickups were handed back
    /// and how many parcels brought back.
    pub async fn set_courier_duty(
        &self,
        courier: &str,
        on_duty: bool,
        actor: &str,
        now: Millis,
    ) -> Result<DutyChange, StoreError> {
        let mut tx = self.begin().await?;
        let flag = i64::from(on_duty);
        let updated = sqlx::query(
            "UPDATE courier_duty SET on_duty = $2, updated_ms = $3, actor = $4 WHERE courier = $1",
        )
        .bind(courier)
        .bind(flag)
        .bind(now)
        .bind(actor)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            sqlx::query(
                "INSERT INTO courier_duty (courier, on_duty, updated_ms, actor) VALUES ($1, $2, $3, $4)",
            )
            .bind(courier)
            .bind(flag)
            .bind(now)
            .bind(actor)
            .execute(&mut *tx)
            .await?;
        }
        let released = if on_duty {
            0
        } else {
            let rows = sqlx::query(
                "SELECT h.id, h.wave, h.order_id, h.return_id, o.brand FROM handoffs h JOIN orders o ON o.id = h.order_id \
                 WHERE h.courier = $1 AND h.kind = 'pickup' AND h.state = 'planned'",
            )
            .bind(courier)
            .fetch_all(&mut *tx)
            .await?;
            miss_pickups(&mut tx, &rows, now).await?
        };
        let brought_back = if on_duty {
            0
        } else {
            bring_back_parcels(&mut tx, courier, now).await?
        };
        let detail = format!(
            "{} ({released} pickups handed back, {brought_back} parcels brought back)",
            if on_duty { "on duty" } else { "off duty" }
        );
        record_audit(
            &mut tx,
            &AuditEntry::new(actor, "courier.duty", courier, &detail),
            now,
        )
        .await?;
        let subject = Subject {
            kind: "courier",
            id: courier,
            order_id: None,
            brand: None,
        };
        let event = Event::CourierDutyChanged {
            on_duty,
            released: u32::try_from(released).unwrap_or(u32::MAX),
            brought_back: u32::try_from(brought_back).unwrap_or(u32::MAX),
        };
        emit(&mut tx, &subject, &event, now).await?;
        tx.commit().await?;
        Ok(DutyChange {
            released,
            brought_back,
        })
    }

    /// Couriers an operator or the courier took off duty.
    pub async fn couriers_off_duty(&self) -> Result<HashSet<String>, StoreError> {
        let rows = sqlx::query("SELECT courier FROM courier_duty WHERE on_duty = 0")
            .fetch_all(self.reader())
            .await?;
        rows.iter()
            .map(|row| Ok(row.try_get::<String, _>("courier")?))
            .collect()
    }

    /// A courier confirmed a stop `delay` after its ETA: its stops still to
    /// do are expected that much later. Returns the drop-offs of deliveries
    /// that now arrive after their order's deadline, with what the promise
    /// needs to flag them.
    pub async fn delay_courier(
        &self,
        courier: &str,
        delay: Millis,
    ) -> Result<Vec<LateDropoff>, StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE handoffs SET eta_ms = eta_ms + $2 WHERE courier = $1 AND state IN ('planned', 'locked')",
        )
        .bind(courier)
        .bind(delay)
        .execute(&mut *tx)
        .await?;
        let rows = sqlx::query(
            "SELECT o.id, o.brand, o.deadline_ms, h.eta_ms FROM handoffs h JOIN orders o ON o.id = h.order_id \
             WHERE h.courier = $1 AND h.kind = 'dropoff' AND h.return_id IS NULL \
             AND h.state IN ('planned', 'locked') AND h.eta_ms > o.deadline_ms",
        )
        .bind(courier)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|row| {
                Ok(LateDropoff {
                    order_id: text_id(row, "id")?,
                    brand: text_id(row, "brand")?,
                    deadline_ms: row.try_get("deadline_ms")?,
                    eta_ms: row.try_get("eta_ms")?,
                })
            })
            .collect()
    }

    /// Saves a wave's stops in one transaction, with a `handoff.planned` event each.
    pub async fn save_wave(&self, stops: &[HandoffRecord], now: Millis) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        insert_stops(&mut tx, stops, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether `courier` has a stop not yet made (planned or locked).
    pub async fn courier_has_open_stops(&self, courier: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM handoffs WHERE courier = $1 AND state IN ('planned', 'locked') LIMIT 1",
        )
        .bind(courier)
        .fetch_optional(self.reader())
        .await?;
        Ok(row.is_some())
    }

    /// The stops not yet made (planned or locked), in each courier's route
    /// order, with their order's brand and deadline (and a return's request
    /// time): what a wave needs to rebuild the routes.
    pub async fn open_stops(&self) -> Result<Vec<OpenStop>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {HANDOFF_COLUMNS} FROM handoffs WHERE state IN ('planned', 'locked') \
             ORDER BY courier, wave, seq"
        )))
        .fetch_all(self.reader())
        .await?;
        let mut stops = rows
            .iter()
            .map(handoff_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let rows = sqlx::query(
            "SELECT h.id, o.brand, o.deadline_ms, r.requested_ms FROM handoffs h \
             JOIN orders o ON o.id = h.order_id LEFT JOIN returns r ON r.id = h.return_id \
             WHERE h.state IN ('planned', 'locked')",
        )
        .fetch_all(self.reader())
        .await?;
        let mut facts = std::collections::HashMap::new();
        for row in &rows {
            let id: String = row.try_get("id")?;
            let brand: BrandId = text_id(row, "brand")?;
            let deadline_ms: Millis = row.try_get("deadline_ms")?;
            let requested_ms: Option<Millis> = row.try_get("requested_ms")?;
            facts.insert(id, (brand, deadline_ms, requested_ms));
        }
        let mut out = Vec::with_capacity(stops.len());
        for handoff in stops.drain(..) {
            // A stop whose row changed between the two reads waits for the
            // next wave.
            let Some((brand, deadline_ms, return_requested_ms)) = facts.remove(&handoff.id) else {
                continue;
            };
            out.push(OpenStop {
                handoff,
                brand,
                deadline_ms,
                return_requested_ms,
            });
        }
        Ok(out)
    }

    /// Saves a wave that rebuilt the routes: each stop in `moves` (still
    /// planned, on the courier and in the wave it had: compare-and-set, else
    /// the whole wave is a conflict) takes its new courier, wave, place and
    /// ETA with a `handoff.replanned` event; `stops` are the new orders'
    /// stops. One transaction.
    pub async fn save_rebuilt_wave(
        &self,
        moves: &[StopMove],
        stops: &[HandoffRecord],
        now: Millis,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for stop in moves {
            let moved = sqlx::query(
                "UPDATE handoffs SET courier = $1, wave = $2, seq = $3, eta_ms = $4, updated_ms = $5 \
                 WHERE id = $6 AND courier = $7 AND wave = $8 AND state = 'planned'",
            )
            .bind(stop.to_courier.as_str())
            .bind(&stop.wave)
            .bind(stop.seq)
            .bind(stop.eta_ms)
            .bind(now)
            .bind(&stop.id)
            .bind(stop.from_courier.as_str())
            .bind(&stop.from_wave)
            .execute(&mut *tx)
            .await?;
            if moved.rows_affected() != 1 {
                return Err(StoreError::Conflict(format!(
                    "handoff {} changed while the wave planned it",
                    stop.id
                )));
            }
            let subject = Subject {
                kind: "handoff",
                id: &stop.id,
                order_id: Some(&stop.order_id),
                brand: Some(&stop.brand),
            };
            let event = Event::HandoffReplanned {
                from_courier: stop.from_courier.to_string(),
                to_courier: stop.to_courier.to_string(),
            };
            emit(&mut tx, &subject, &event, now).await?;
        }
        insert_stops(&mut tx, stops, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A courier's stops that are planned, done, locked or failed (not
    /// missed), in route order, with
    /// their orders' customer name and deadline.
    /// Per courier, the stops still planned and, of those, the drop-offs
    /// planned to arrive after their order's deadline (metrics).
    pub async fn courier_plan_counts(
        &self,
    ) -> Result<std::collections::HashMap<String, (i64, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT h.courier, COUNT(*) AS planned, \
             CAST(SUM(CASE WHEN h.kind = 'dropoff' AND h.eta_ms > o.deadline_ms THEN 1 ELSE 0 END) AS BIGINT) AS late \
             FROM handoffs h JOIN orders o ON o.id = h.order_id \
             WHERE h.state = 'planned' GROUP BY h.courier",
        )
        .fetch_all(self.reader())
        .await?;
        let mut counts = std::collections::HashMap::new();
        for row in rows {
            counts.insert(
                row.try_get::<String, _>("courier")?,
                (
                    row.try_get::<i64, _>("planned")?,
                    row.try_get::<Option<i64>, _>("late")?.unwrap_or(0),
                ),
            );
        }
        Ok(counts)
    }

    pub async fn courier_schedule(&self, courier: &str) -> Result<Vec<ScheduledStop>, StoreError> {
        let columns: Vec<String> = HANDOFF_COLUMNS
            .split(", ")
            .map(|column| format!("h.{column}"))
            .collect();
        let sql = format!(
            "SELECT {}, o.customer_name, o.deadline_ms FROM handoffs h JOIN orders o ON o.id = h.order_id \
             WHERE h.courier = $1 AND h.state IN ('planned', 'done', 'locked', 'failed') ORDER BY h.wave, h.seq",
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

    /// A handoff with its order's factory and brand.
    pub async fn get_handoff(&self, id: &str) -> Result<Option<HandoffDetail>, StoreError> {
        let columns: Vec<String> = HANDOFF_COLUMNS
            .split(", ")
            .map(|column| format!("h.{column}"))
            .collect();
        let sql = format!(
            "SELECT {}, o.factory AS order_factory, o.brand AS order_brand FROM handoffs h \
             JOIN orders o ON o.id = h.order_id WHERE h.id = $1",
            columns.join(", ")
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.reader())
            .await?;
        row.map(|row| {
            Ok(HandoffDetail {
                handoff: handoff_from_row(&row)?,
                factory: row.try_get("order_factory")?,
                brand: row.try_get("order_brand")?,
            })
        })
        .transpose()
    }

    /// How many orders wait for an operator's decision (their attempts ran
    /// out; `decide_escalation` ends the wait).
    pub async fn escalated_count(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM order_escalations")
            .fetch_one(self.reader())
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Why an order is no longer planned, if its attempts ran out.
    pub async fn order_escalation(&self, order_id: &str) -> Result<Option<Escalation>, StoreError> {
        let row = sqlx::query(
            "SELECT reason, attempts, at_ms FROM order_escalations WHERE order_id = $1",
        )
        .bind(order_id)
        .fetch_optional(self.reader())
        .await?;
        row.map(|row| {
            Ok(Escalation {
                reason: parse(&row.try_get::<String, _>("reason")?)?,
                attempts: row.try_get("attempts")?,
                at_ms: row.try_get("at_ms")?,
            })
        })
        .transpose()
    }

    /// Reads a handoff in `tx`, scoped to `courier` (None for admins).
    async fn handoff_in(
        tx: &mut super::WriteTx,
        id: &str,
        courier: Option<&str>,
    ) -> Result<HandoffRecord, StoreError> {
        let sql = format!(
            "SELECT {HANDOFF_COLUMNS} FROM handoffs WHERE id = $1 AND ($2 IS NULL OR courier = $2)"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .bind(courier)
            .fetch_optional(&mut **tx)
            .await?;
        row.as_ref()
            .map(handoff_from_row)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("handoff {id}")))
    }

    /// A courier confirms a stop with its code: the handoff is done and its
    /// order moves (pickup: out for delivery; drop-off: delivered). `code`
    /// None skips the check (an admin's confirmation); a stop without a
    /// stored code takes any. A wrong code is counted in the same
    /// transaction and, at `max_wrong_codes`, locks the stop. `courier`
    /// scopes the lookup (None for admins).
    pub async fn confirm_handoff(
        &self,
        id: &str,
        courier: Option<&str>,
        code: Option<&str>,
        max_wrong_codes: u32,
        now: Millis,
    ) -> Result<Confirmation, StoreError> {
        let mut tx = self.begin().await?;
        let handoff = Self::handoff_in(&mut tx, id, courier).await?;
        if handoff.state == HandoffState::Locked {
            return Err(StoreError::Locked(format!(
                "handoff {id} is locked after {} wrong codes; an operator must release it",
                handoff.wrong_codes
            )));
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
        let wrong = match (code, handoff.code.as_deref()) {
            (Some(given), Some(stored)) => !codes_match(given, stored),
            _ => false,
        };
        if wrong {
            // Counted only while the stop can still be confirmed.
            handoff.state.handle(HandoffInput::Confirm)?;
            let wrong_codes = u32::try_from(handoff.wrong_codes + 1).unwrap_or(u32::MAX);
            let locked = locks_after(wrong_codes, max_wrong_codes);
            let next = if locked {
                let (next, events) = handoff.state.handle(HandoffInput::Lock { wrong_codes })?;
                for event in &events {
                    emit(&mut tx, &subject, event, now).await?;
                }
                next
            } else {
                handoff.state
            };
            let done = sqlx::query(
                "UPDATE handoffs SET wrong_codes = $1, state = $2, updated_ms = $3 \
                 WHERE id = $4 AND state = $5 AND wrong_codes = $6",
            )
            .bind(i64::from(wrong_codes))
            .bind(next.as_str())
            .bind(now)
            .bind(id)
            .bind(handoff.state.as_str())
            .bind(handoff.wrong_codes)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Conflict(format!("handoff {id} changed")));
            }
            tx.commit().await?;
            return Ok(Confirmation::WrongCode {
                wrong_codes,
                locked,
            });
        }
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
        for event in &events {
            emit(&mut tx, &subject, event, now).await?;
        }
        if let Some(return_id) = &handoff.return_id {
            // A return's stop moves the return, never its (delivered) order.
            let record = return_in(&mut tx, return_id).await?;
            let input = match handoff.kind {
                HandoffKind::Pickup => ReturnInput::PickedUp,
                HandoffKind::Dropoff => ReturnInput::Received,
            };
            move_return(&mut tx, &record, input, now).await?;
        } else {
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
        }
        tx.commit().await?;
        Ok(Confirmation::Confirmed(Box::new(HandoffRecord {
            state: next,
            updated_ms: now,
            ..handoff
        })))
    }

    /// A courier reports a failed attempt, in one transaction: the stop is
    /// failed with its reason; a failed pickup's drop-off is missed (the
    /// order is still ready), a failed drop-off's order goes back to ready
    /// (the parcel back at its factory); after the order's
    /// `max_attempts`-th failure the order is escalated and no wave plans it
    /// again.
    pub async fn fail_handoff(
        &self,
        id: &str,
        courier: Option<&str>,
        reason: FailureReason,
        max_attempts: u32,
        now: Millis,
    ) -> Result<FailedAttempt, StoreError> {
        let mut tx = self.begin().await?;
        let handoff = Self::handoff_in(&mut tx, id, courier).await?;
        if handoff.return_id.is_some() && handoff.kind == HandoffKind::Dropoff {
            return Err(StoreError::Conflict(format!(
                "handoff {id} is a return's drop-off at its factory: confirm it with the code the factory's operator gives"
            )));
        }
        lock_order(&mut tx, self.backend(), &handoff.order_id).await?;
        let (next, events) = handoff.state.handle(HandoffInput::Fail(reason))?;
        let done = sqlx::query(
            "UPDATE handoffs SET state = $1, failure = $2, updated_ms = $3 WHERE id = $4 AND state = $5",
        )
        .bind(next.as_str())
        .bind(reason.as_str())
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
        if let Some(return_id) = &handoff.return_id {
            // A failed return pickup: its drop-off is missed and the return
            // waits for the next wave; no escalation (the brand may cancel).
            let record = return_in(&mut tx, return_id).await?;
            miss_return_stops(&mut tx, &record, now).await?;
            move_return(&mut tx, &record, ReturnInput::PickupMissed, now).await?;
            let attempts: i64 = sqlx::query(
                "SELECT COUNT(*) AS attempts FROM handoffs WHERE return_id = $1 AND state = 'failed'",
            )
            .bind(return_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("attempts")?;
            tx.commit().await?;
            return Ok(FailedAttempt {
                handoff: HandoffRecord {
                    state: next,
                    failure: Some(reason),
                    updated_ms: now,
                    ..handoff
                },
                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                escalated: false,
            });
        }
        match handoff.kind {
            HandoffKind::Pickup => {
                // The drop-off planned with it cannot happen. (Paired by
                // order, not by wave: a rebuilt wave may have moved the
                // drop-off into a later wave than its pickup.)
                let stops = sqlx::query(
                    "SELECT id FROM handoffs WHERE order_id = $1 AND kind = 'dropoff' AND state = 'planned' AND return_id IS NULL",
                )
                .bind(handoff.order_id.as_str())
                .fetch_all(&mut *tx)
                .await?;
                for stop in stops {
                    let stop_id: String = stop.try_get("id")?;
                    let (missed, events) = HandoffState::Planned.handle(HandoffInput::Miss)?;
                    let done = sqlx::query(
                        "UPDATE handoffs SET state = $1, updated_ms = $2 WHERE id = $3 AND state = 'planned'",
                    )
                    .bind(missed.as_str())
                    .bind(now)
                    .bind(&stop_id)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() == 1 {
                        let subject = Subject {
                            id: &stop_id,
                            ..subject.clone()
                        };
                        for event in &events {
                            emit(&mut tx, &subject, event, now).await?;
                        }
                    }
                }
            }
            HandoffKind::Dropoff => {
                let (order_next, order_events) = order_state.handle(OrderInput::DeliveryFailed)?;
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
            }
        }
        let attempts: i64 = sqlx::query(
            "SELECT COUNT(*) AS attempts FROM handoffs WHERE order_id = $1 AND state = 'failed' AND return_id IS NULL \
             AND updated_ms > COALESCE((SELECT MAX(d.at_ms) FROM escalation_decisions d WHERE d.order_id = $1), -1)",
        )
        .bind(handoff.order_id.as_str())
        .fetch_one(&mut *tx)
        .await?
        .try_get("attempts")?;
        let attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
        let escalated = after_failed_attempt(attempts, max_attempts) == AfterFailure::Escalate;
        if escalated {
            sqlx::query(
                "INSERT INTO order_escalations (order_id, reason, attempts, at_ms) VALUES ($1, $2, $3, $4)",
            )
            .bind(handoff.order_id.as_str())
            .bind(reason.as_str())
            .bind(i64::from(attempts))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let order_subject = Subject {
                kind: "order",
                id: &handoff.order_id,
                order_id: Some(&handoff.order_id),
                brand: Some(&brand),
            };
            emit(
                &mut tx,
                &order_subject,
                &Event::OrderEscalated { reason, attempts },
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(FailedAttempt {
            handoff: HandoffRecord {
                state: next,
                failure: Some(reason),
                updated_ms: now,
                ..handoff
            },
            attempts,
            escalated,
        })
    }

    /// An operator releases a locked stop: planned again, its wrong codes
    /// forgotten; the decision is audited as `actor`'s.
    pub async fn release_handoff(
        &self,
        id: &str,
        actor: &str,
        now: Millis,
    ) -> Result<HandoffRecord, StoreError> {
        let mut tx = self.begin().await?;
        let handoff = Self::handoff_in(&mut tx, id, None).await?;
        let (next, events) = handoff.state.handle(HandoffInput::Release)?;
        let done = sqlx::query(
            "UPDATE handoffs SET state = $1, wrong_codes = 0, updated_ms = $2 WHERE id = $3 AND state = $4",
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
        let brand: String = sqlx::query("SELECT brand FROM orders WHERE id = $1")
            .bind(handoff.order_id.as_str())
            .fetch_one(&mut *tx)
            .await?
            .try_get("brand")?;
        let subject = Subject {
            kind: "handoff",
            id,
            order_id: Some(&handoff.order_id),
            brand: Some(&brand),
        };
        for event in &events {
            emit(&mut tx, &subject, event, now).await?;
        }
        let detail = format!("released after {} wrong codes", handoff.wrong_codes);
        record_audit(
            &mut tx,
            &AuditEntry::new(actor, "handoff.release", id, &detail),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(HandoffRecord {
            state: next,
            wrong_codes: 0,
            updated_ms: now,
            ..handoff
        })
    }
}

/// Whether a code given matches the stored one, comparing every byte (no
/// early exit on the first difference).
fn codes_match(given: &str, stored: &str) -> bool {
    let (given, stored) = (given.trim().as_bytes(), stored.as_bytes());
    given.len() == stored.len()
        && given
            .iter()
            .zip(stored)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

/// A delivery's drop-off now planned after its order's deadline.
#[derive(Debug, Clone, PartialEq)]
pub struct LateDropoff {
    pub order_id: OrderId,
    pub brand: BrandId,
    pub deadline_ms: Millis,
    pub eta_ms: Millis,
}

/// The deliveries `courier` has on board as it goes off duty (orders out
/// for delivery whose last pickup it made, no drop-off of them under way),
/// brought back to their factory: their planned drop-offs are missed
/// (`handoff.missed`) and each order is ready again (`order.state_changed`
/// out_for_delivery to ready, `OrderInput::BroughtBack`), for the next wave
/// to plan with a courier on duty. Not a failed attempt. Returns how many.
async fn bring_back_parcels(
    tx: &mut super::WriteTx,
    courier: &str,
    now: Millis,
) -> Result<usize, StoreError> {
    let rows = sqlx::query(
        "SELECT o.id, o.brand FROM orders o JOIN handoffs p ON p.order_id = o.id AND p.kind = 'pickup' \
         AND p.state = 'done' AND p.return_id IS NULL \
         WHERE p.courier = $1 AND o.state = 'out_for_delivery' \
         AND NOT EXISTS (SELECT 1 FROM handoffs q WHERE q.order_id = o.id AND q.return_id IS NULL \
          AND q.kind = 'pickup' AND q.state = 'done' \
          AND (q.updated_ms > p.updated_ms OR (q.updated_ms = p.updated_ms AND q.id > p.id))) \
         AND NOT EXISTS (SELECT 1 FROM handoffs h WHERE h.order_id = o.id AND h.return_id IS NULL \
          AND h.kind = 'dropoff' AND h.state = 'locked') \
         ORDER BY o.id",
    )
    .bind(courier)
    .fetch_all(&mut **tx)
    .await?;
    let (ready, order_events) = OrderState::OutForDelivery.handle(OrderInput::BroughtBack)?;
    let mut brought = 0;
    for row in &rows {
        let order_id: String = row.try_get("id")?;
        let brand: String = row.try_get("brand")?;
        // The order first, by compare-and-set: delivered since the read
        // (another daemon's confirmation), it stays delivered.
        match set_order_state_by_id(
            tx,
            &order_id,
            &brand,
            OrderState::OutForDelivery,
            ready,
            &order_events,
            now,
        )
        .await
        {
            Ok(()) => brought += 1,
            Err(StoreError::Conflict(_)) => continue,
            Err(err) => return Err(err),
        }
        let stops = sqlx::query(
            "SELECT id FROM handoffs WHERE order_id = $1 AND return_id IS NULL AND kind = 'dropoff' \
             AND state = 'planned'",
        )
        .bind(&order_id)
        .fetch_all(&mut **tx)
        .await?;
        for stop in stops {
            let id: String = stop.try_get("id")?;
            miss_planned_stop(tx, &id, &order_id, &brand, now).await?;
        }
    }
    Ok(brought)
}

/// What a change of duty did (`Store::set_courier_duty`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DutyChange {
    /// Pickups not yet made, handed back for other couriers.
    pub released: usize,
    /// Deliveries on board, brought back to their factory.
    pub brought_back: usize,
}

/// Marks the stop `id` of `order_id` (of `brand`) missed if it is still
/// planned (compare-and-set), with its `handoff.missed` event; false if a
/// courier confirmed, failed or locked it meanwhile.
async fn miss_planned_stop(
    tx: &mut super::WriteTx,
    id: &str,
    order_id: &str,
    brand: &str,
    now: Millis,
) -> Result<bool, StoreError> {
    let (missed, events) = HandoffState::Planned.handle(HandoffInput::Miss)?;
    let done = sqlx::query(
        "UPDATE handoffs SET state = $1, updated_ms = $2 WHERE id = $3 AND state = 'planned'",
    )
    .bind(missed.as_str())
    .bind(now)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    let subject = Subject {
        kind: "handoff",
        id,
        order_id: Some(order_id),
        brand: Some(brand),
    };
    for event in &events {
        emit(tx, &subject, event, now).await?;
    }
    Ok(true)
}

/// Misses each pickup in `rows` (id, wave, order_id, return_id, brand) and
/// the drop-off planned with it; a return's pickup sends the return back to
/// waiting. Returns how many pickups were handed back.
pub(super) async fn miss_pickups(
    tx: &mut super::WriteTx,
    rows: &[AnyRow],
    now: Millis,
) -> Result<usize, StoreError> {
    let mut missed = 0;
    for row in rows {
        let pickup: String = row.try_get("id")?;
        let order_id: String = row.try_get("order_id")?;
        let brand: String = row.try_get("brand")?;
        let return_id: Option<String> = row.try_get("return_id")?;
        // The pickup first, by compare-and-set: the rows were read before
        // this transaction, and a courier who confirmed (or failed) the
        // pickup since has the parcel, so neither it nor the drop-off
        // planned with it is missed. (Missing the drop-off alone left the
        // order out for delivery with no stop to deliver it.)
        if !miss_planned_stop(tx, &pickup, &order_id, &brand, now).await? {
            continue;
        }
        // Then the drop-off planned with it (of the same return, or of the
        // order's delivery).
        // (Paired by order and return, not by wave: a rebuilt wave may have
        // moved the drop-off into a later wave than its pickup.)
        let stops = sqlx::query(
            "SELECT id FROM handoffs WHERE order_id = $1 AND state = 'planned' AND kind = 'dropoff' \
             AND COALESCE(return_id, '') = $2",
        )
        .bind(&order_id)
        .bind(return_id.clone().unwrap_or_default())
        .fetch_all(&mut **tx)
        .await?;
        for stop in stops {
            let id: String = stop.try_get("id")?;
            miss_planned_stop(tx, &id, &order_id, &brand, now).await?;
        }
        if let Some(return_id) = &return_id {
            // The return waits for the next wave.
            let record = return_in(tx, return_id).await?;
            if record.state == ReturnState::PickupPlanned {
                move_return(tx, &record, ReturnInput::PickupMissed, now).await?;
            }
        }
        missed += 1;
    }
    Ok(missed)
}

/// Inserts a wave's new stops with their `handoff.planned` events (and a
/// return's move to `pickup_planned`).
async fn insert_stops(
    tx: &mut super::WriteTx,
    stops: &[HandoffRecord],
    now: Millis,
) -> Result<(), StoreError> {
    for stop in stops {
        sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO handoffs ({HANDOFF_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
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
            .bind(stop.code.as_deref())
            .bind(stop.wrong_codes)
            .bind(stop.failure.map(FailureReason::as_str))
            .bind(stop.return_id.as_deref())
            .execute(&mut **tx)
            .await?;
        if let (Some(return_id), HandoffKind::Pickup) = (&stop.return_id, stop.kind) {
            let record = return_in(tx, return_id).await?;
            move_return(tx, &record, ReturnInput::PlanPickup, now).await?;
        }
        let brand: String = sqlx::query("SELECT brand FROM orders WHERE id = $1")
            .bind(stop.order_id.as_str())
            .fetch_one(&mut **tx)
            .await?
            .try_get("brand")?;
        let subject = Subject {
            kind: "handoff",
            id: &stop.id,
            order_id: Some(&stop.order_id),
            brand: Some(&brand),
        };
        emit(tx, &subject, &Event::HandoffPlanned, now).await?;
    }
    Ok(())
}
