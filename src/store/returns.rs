//! Returns and the stock they refill: requested (checked by
//! `domain::returns::check_request` on what this transaction reads),
//! moved by their handoffs (see `handoffs`), inspected into per-factory
//! stock, cancelled. Every change is a compare-and-set with its `return.*`
//! event in the same transaction.

use super::write::{AuditEntry, Subject, emit, lock_order, record_audit};
use super::{Store, StoreError, WriteTx, parse, text_id};
use crate::domain::intake::FieldError;
use crate::domain::returns::{
    InspectionLine, RequestedLine, check_inspection, check_request, fill_from_stock,
};
use crate::domain::{
    BrandId, CourierId, Event, FactoryId, HandoffInput, HandoffState, InspectedLine, Location,
    Millis, OrderId, OrderState, ReturnInput, ReturnLine, ReturnState,
};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq)]
pub struct ReturnRecord {
    pub id: String,
    pub order_id: OrderId,
    pub brand: BrandId,
    /// Where the units go back: the order's factory.
    pub factory: FactoryId,
    pub zone: String,
    pub state: ReturnState,
    pub reason: String,
    pub lines: Vec<ReturnLine>,
    /// What the operator made of each line, once inspected.
    pub inspection: Option<Vec<InspectedLine>>,
    pub requested_ms: Millis,
    pub updated_ms: Millis,
}

/// A brand's request for a return, as the runtime passes it on.
#[derive(Debug, Clone)]
pub struct NewReturn {
    /// The new return's id (minted by the runtime).
    pub id: String,
    pub order_id: String,
    /// Only this brand's order (None: an admin's request).
    pub brand: Option<String>,
    pub lines: Vec<RequestedLine>,
    pub reason: String,
    /// How long after delivery the order's brand may ask.
    pub window_ms: Millis,
}

/// A return waiting for a courier: picked up at the customer, dropped at
/// its factory.
#[derive(Debug, Clone, PartialEq)]
pub struct WaveReturn {
    pub return_id: String,
    pub order_id: OrderId,
    pub factory: FactoryId,
    pub pickup: Location,
    pub requested_ms: Millis,
}

/// A return picked up whose drop-off at its factory was never confirmed:
/// its courier has the parcel and needs a new drop-off
/// (`Store::carried_returns`).
#[derive(Debug, Clone, PartialEq)]
pub struct CarriedReturn {
    pub return_id: String,
    pub order_id: OrderId,
    pub brand: BrandId,
    /// Where the parcel goes: the order's factory.
    pub factory: FactoryId,
    /// The courier who picked it up.
    pub courier: CourierId,
    pub requested_ms: Millis,
    /// The missed drop-off's code (the factory's operators have it), kept
    /// for the new one.
    pub code: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ReturnFilter {
    /// Only this brand's returns (None: every brand).
    pub brand: Option<String>,
    /// Only returns to these factories (None: every factory).
    pub factories: Option<Vec<String>>,
    pub state: Option<ReturnState>,
    /// Returns with an id greater than this (ids are time-ordered UUIDv7).
    pub after: Option<String>,
    pub limit: i64,
}

/// Units of a SKU on a factory's shelf.
#[derive(Debug, Clone, PartialEq)]
pub struct StockRecord {
    pub factory: FactoryId,
    pub sku: String,
    pub units: i64,
    pub updated_ms: Millis,
}

const RETURN_COLUMNS: &str = "id, order_id, brand, factory, zone, state, reason, lines, inspection, requested_ms, updated_ms";

fn json_column<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|err| StoreError::Corrupt(format!("{what}: {err}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|err| StoreError::Corrupt(err.to_string()))
}

fn return_from_row(row: &AnyRow) -> Result<ReturnRecord, StoreError> {
    Ok(ReturnRecord {
        id: row.try_get("id")?,
        order_id: text_id(row, "order_id")?,
        brand: text_id(row, "brand")?,
        factory: text_id(row, "factory")?,
        zone: row.try_get("zone")?,
        state: parse(&row.try_get::<String, _>("state")?)?,
        reason: row.try_get("reason")?,
        lines: json_column(&row.try_get::<String, _>("lines")?, "return lines")?,
        inspection: row
            .try_get::<Option<String>, _>("inspection")?
            .map(|text| json_column(&text, "return inspection"))
            .transpose()?,
        requested_ms: row.try_get("requested_ms")?,
        updated_ms: row.try_get("updated_ms")?,
    })
}

/// Reads a return in `tx`.
pub(crate) async fn return_in(tx: &mut WriteTx, id: &str) -> Result<ReturnRecord, StoreError> {
    let sql = format!("SELECT {RETURN_COLUMNS} FROM returns WHERE id = $1");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref()
        .map(return_from_row)
        .transpose()?
        .ok_or_else(|| StoreError::NotFound(format!("return {id}")))
}

/// Moves a return by `input` (compare-and-set on its state) and writes its
/// events; returns the new state.
pub(crate) async fn move_return(
    tx: &mut WriteTx,
    record: &ReturnRecord,
    input: ReturnInput,
    now: Millis,
) -> Result<ReturnState, StoreError> {
    let (next, events) = record.state.handle(input)?;
    let done =
        sqlx::query("UPDATE returns SET state = $1, updated_ms = $2 WHERE id = $3 AND state = $4")
            .bind(next.as_str())
            .bind(now)
            .bind(&record.id)
            .bind(record.state.as_str())
            .execute(&mut **tx)
            .await?;
    if done.rows_affected() != 1 {
        return Err(StoreError::Conflict(format!(
            "return {} is no longer {}",
            record.id, record.state
        )));
    }
    let subject = return_subject(record);
    for event in &events {
        emit(tx, &subject, event, now).await?;
    }
    Ok(next)
}

fn return_subject(record: &ReturnRecord) -> Subject<'_> {
    Subject {
        kind: "return",
        id: &record.id,
        order_id: Some(&record.order_id),
        brand: Some(&record.brand),
    }
}

/// Marks a return's planned (or locked) stops missed, with their events.
pub(crate) async fn miss_return_stops(
    tx: &mut WriteTx,
    record: &ReturnRecord,
    now: Millis,
) -> Result<(), StoreError> {
    let stops = sqlx::query(
        "SELECT id, state FROM handoffs WHERE return_id = $1 AND state IN ('planned', 'locked')",
    )
    .bind(&record.id)
    .fetch_all(&mut **tx)
    .await?;
    for stop in stops {
        let stop_id: String = stop.try_get("id")?;
        let state: HandoffState = parse(&stop.try_get::<String, _>("state")?)?;
        // A locked stop is released first: its parcel never moved.
        let from = if state == HandoffState::Locked {
            state.handle(HandoffInput::Release)?.0
        } else {
            state
        };
        let (missed, events) = from.handle(HandoffInput::Miss)?;
        let done = sqlx::query(
            "UPDATE handoffs SET state = $1, updated_ms = $2 WHERE id = $3 AND state = $4",
        )
        .bind(missed.as_str())
        .bind(now)
        .bind(&stop_id)
        .bind(state.as_str())
        .execute(&mut **tx)
        .await?;
        if done.rows_affected() == 1 {
            let subject = Subject {
                kind: "handoff",
                id: &stop_id,
                order_id: Some(&record.order_id),
                brand: Some(&record.brand),
            };
            for event in &events {
                emit(tx, &subject, event, now).await?;
            }
        }
    }
    Ok(())
}

/// A line of a new order filled from stock, to apply in its transaction.
#[derive(Debug, Clone)]
pub(crate) struct StockTake {
    pub order: usize,
    pub line: usize,
    pub factory: String,
    pub sku: String,
    pub units: u32,
}

/// Which lines of `orders` (factory, lines) restocked units fill, by the
/// domain's whole-line rule, reading the stock in `tx` (locked on
/// PostgreSQL). Nothing is written: see [`apply_stock_takes`].
pub(crate) async fn plan_stock_takes(
    tx: &mut WriteTx,
    postgres: bool,
    orders: &[(&str, &[crate::domain::intake::LineRequest])],
) -> Result<Vec<StockTake>, StoreError> {
    let sql = if postgres {
        "SELECT factory, sku, units FROM stock WHERE units > 0 FOR UPDATE"
    } else {
        "SELECT factory, sku, units FROM stock WHERE units > 0"
    };
    if !postgres && tx.stock.empty_lately() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(sql).fetch_all(&mut **tx).await?;
    if !postgres {
        tx.stock.set_empty(rows.is_empty());
    }
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut shelves: HashMap<String, HashMap<String, u32>> = HashMap::new();
    for row in rows {
        let units: i64 = row.try_get("units")?;
        shelves.entry(row.try_get("factory")?).or_default().insert(
            row.try_get("sku")?,
            u32::try_from(units).unwrap_or(u32::MAX),
        );
    }
    let mut takes = Vec::new();
    for (index, (factory, lines)) in orders.iter().enumerate() {
        let Some(shelf) = shelves.get_mut(*factory) else {
            continue;
        };
        for (line, filled) in fill_from_stock(lines, shelf).into_iter().enumerate() {
            if filled {
                takes.push(StockTake {
                    order: index,
                    line,
                    factory: factory.to_string(),
                    sku: lines[line].sku.clone(),
                    units: lines[line].quantity,
                });
            }
        }
    }
    Ok(takes)
}

/// Takes the units of `take` off the shelf (compare-and-set: never below
/// zero), with its `stock.taken` event on the order.
pub(crate) async fn apply_stock_take(
    tx: &mut WriteTx,
    take: &StockTake,
    order_id: &str,
    brand: &str,
    now: Millis,
) -> Result<(), StoreError> {
    let done = sqlx::query(
        "UPDATE stock SET units = units - $1, updated_ms = $2 WHERE factory = $3 AND sku = $4 AND units >= $1",
    )
    .bind(i64::from(take.units))
    .bind(now)
    .bind(&take.factory)
    .bind(&take.sku)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() != 1 {
        return Err(StoreError::Conflict(format!(
            "stock of {} at {} changed",
            take.sku, take.factory
        )));
    }
    let subject = Subject {
        kind: "order",
        id: order_id,
        order_id: Some(order_id),
        brand: Some(brand),
    };
    let event = Event::StockTaken {
        factory: FactoryId::new(take.factory.clone()),
        line: take.line,
        sku: take.sku.clone(),
        units: take.units,
    };
    emit(tx, &subject, &event, now).await
}

impl Store {
    /// A brand asks for units of a delivered order back. What the request
    /// may take is read in this transaction (the order locked): the order's
    /// state, when it was delivered, and what earlier returns took. A
    /// request the domain refuses is `Ok(Err(problems))`, and nothing is
    /// written.
    pub async fn request_return(
        &self,
        request: &NewReturn,
        now: Millis,
    ) -> Result<Result<ReturnRecord, Vec<FieldError>>, StoreError> {
        let mut tx = self.begin().await?;
        lock_order(&mut tx, self.backend(), &request.order_id).await?;
        let order = sqlx::query(
            "SELECT brand, state, factory, zone, lines, updated_ms FROM orders \
             WHERE id = $1 AND ($2 IS NULL OR brand = $2)",
        )
        .bind(&request.order_id)
        .bind(request.brand.as_deref())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("order {}", request.order_id)))?;
        let brand: String = order.try_get("brand")?;
        let state: OrderState = parse(&order.try_get::<String, _>("state")?)?;
        let order_lines: Vec<crate::domain::intake::LineRequest> =
            json_column(&order.try_get::<String, _>("lines")?, "order lines")?;
        // Delivered when its drop-off was confirmed (the order's last change
        // for orders delivered without one).
        let delivered: Option<i64> = sqlx::query(
            "SELECT MAX(updated_ms) AS at_ms FROM handoffs \
             WHERE order_id = $1 AND kind = 'dropoff' AND state = 'done' AND return_id IS NULL",
        )
        .bind(&request.order_id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("at_ms")?;
        let delivered_ms = delivered.unwrap_or(order.try_get("updated_ms")?);
        let mut returned = vec![0u32; order_lines.len()];
        let earlier =
            sqlx::query("SELECT lines FROM returns WHERE order_id = $1 AND state <> 'cancelled'")
                .bind(&request.order_id)
                .fetch_all(&mut *tx)
                .await?;
        for row in earlier {
            let lines: Vec<ReturnLine> =
                json_column(&row.try_get::<String, _>("lines")?, "return lines")?;
            for line in lines {
                if let Some(slot) = returned.get_mut(line.line) {
                    *slot = slot.saturating_add(line.quantity);
                }
            }
        }
        let lines = match check_request(
            state,
            delivered_ms,
            request.window_ms,
            now,
            &order_lines,
            &returned,
            &request.lines,
            &request.reason,
        ) {
            Ok(lines) => lines,
            Err(problems) => return Ok(Err(problems)),
        };
        let record = ReturnRecord {
            id: request.id.clone(),
            order_id: OrderId::new(request.order_id.clone()),
            brand: BrandId::new(brand),
            factory: text_id(&order, "factory")?,
            zone: order.try_get("zone")?,
            state: ReturnState::Requested,
            reason: request.reason.trim().to_string(),
            lines,
            inspection: None,
            requested_ms: now,
            updated_ms: now,
        };
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO returns ({RETURN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9, $10)"
        )))
        .bind(&record.id)
        .bind(record.order_id.as_str())
        .bind(record.brand.as_str())
        .bind(record.factory.as_str())
        .bind(&record.zone)
        .bind(record.state.as_str())
        .bind(&record.reason)
        .bind(to_json(&record.lines)?)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let event = Event::ReturnRequested {
            factory: record.factory.clone(),
            reason: record.reason.clone(),
            lines: record.lines.clone(),
        };
        emit(&mut tx, &return_subject(&record), &event, now).await?;
        tx.commit().await?;
        Ok(Ok(record))
    }

    /// One return (`brand`: only that brand's).
    pub async fn get_return(
        &self,
        id: &str,
        brand: Option<&str>,
    ) -> Result<Option<ReturnRecord>, StoreError> {
        let sql = format!(
            "SELECT {RETURN_COLUMNS} FROM returns WHERE id = $1 AND ($2 IS NULL OR brand = $2)"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .bind(brand)
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(return_from_row).transpose()
    }

    /// Returns, oldest first, filtered by brand, factories and state.
    pub async fn list_returns(
        &self,
        filter: &ReturnFilter,
    ) -> Result<Vec<ReturnRecord>, StoreError> {
        let factories = filter.factories.as_ref().map(to_json).transpose()?;
        // The factory list travels as one JSON text so the statement stays
        // the same on both backends; `instr`/`strpos` find `"id"` in it.
        let contains = match self.backend() {
            super::Backend::Sqlite => "instr($2, '\"' || factory || '\"') > 0",
            super::Backend::Postgres => "strpos($2, '\"' || factory || '\"') > 0",
        };
        let sql = format!(
            "SELECT {RETURN_COLUMNS} FROM returns \
             WHERE ($1 IS NULL OR brand = $1) AND ($2 IS NULL OR {contains}) \
             AND ($3 IS NULL OR state = $3) AND ($4 IS NULL OR id > $4) ORDER BY id LIMIT $5"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(filter.brand.as_deref())
            .bind(factories)
            .bind(filter.state.map(ReturnState::as_str))
            .bind(filter.after.as_deref())
            .bind(filter.limit)
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(return_from_row).collect()
    }

    /// An order's returns, oldest first.
    pub async fn order_returns(&self, order_id: &str) -> Result<Vec<ReturnRecord>, StoreError> {
        let sql = format!("SELECT {RETURN_COLUMNS} FROM returns WHERE order_id = $1 ORDER BY id");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(order_id)
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(return_from_row).collect()
    }

    /// Returns of a zone waiting for a wave (requested, no pickup planned),
    /// oldest first.
    pub async fn wave_returns(&self, zone: &str) -> Result<Vec<WaveReturn>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.id, r.order_id, r.factory, r.requested_ms, o.lat, o.lon FROM returns r \
             JOIN orders o ON o.id = r.order_id \
             WHERE r.state = 'requested' AND r.zone = $1 ORDER BY r.requested_ms, r.id",
        )
        .bind(zone)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(WaveReturn {
                    return_id: row.try_get("id")?,
                    order_id: text_id(row, "order_id")?,
                    factory: text_id(row, "factory")?,
                    pickup: Location::new(row.try_get("lat")?, row.try_get("lon")?),
                    requested_ms: row.try_get("requested_ms")?,
                })
            })
            .collect()
    }

    /// Returns of a zone picked up with no drop-off planned (theirs was
    /// never confirmed, see `miss_overdue_dropoffs`): the courier that
    /// picked each up has it, and the code of its last missed drop-off
    /// (the factory's operators have it). Oldest first.
    pub async fn carried_returns(&self, zone: &str) -> Result<Vec<CarriedReturn>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.id, r.order_id, r.brand, r.factory, r.requested_ms, p.courier, \
             (SELECT m.code FROM handoffs m WHERE m.return_id = r.id AND m.kind = 'dropoff' \
              AND m.state = 'missed' ORDER BY m.updated_ms DESC, m.id DESC LIMIT 1) AS code \
             FROM returns r JOIN handoffs p ON p.return_id = r.id AND p.kind = 'pickup' AND p.state = 'done' \
             WHERE r.zone = $1 AND r.state = 'picked_up' AND NOT EXISTS \
             (SELECT 1 FROM handoffs h WHERE h.return_id = r.id AND h.kind = 'dropoff' \
              AND h.state IN ('planned', 'locked')) \
             ORDER BY r.requested_ms, r.id",
        )
        .bind(zone)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(CarriedReturn {
                    return_id: row.try_get("id")?,
                    order_id: text_id(row, "order_id")?,
                    brand: text_id(row, "brand")?,
                    factory: text_id(row, "factory")?,
                    courier: text_id(row, "courier")?,
                    requested_ms: row.try_get("requested_ms")?,
                    code: row.try_get("code")?,
                })
            })
            .collect()
    }

    /// The operator records what became of each unit: restocked units go
    /// on the factory's shelf (per SKU), in the transaction that marks the
    /// return inspected; audited as `actor`'s. An inspection that does not
    /// account for every unit is `Ok(Err(problems))`; a return not yet
    /// received is a conflict.
    pub async fn inspect_return(
        &self,
        id: &str,
        lines: &[InspectionLine],
        actor: &str,
        now: Millis,
    ) -> Result<Result<ReturnRecord, Vec<FieldError>>, StoreError> {
        let mut tx = self.begin().await?;
        let record = return_in(&mut tx, id).await?;
        if record.state != ReturnState::Received {
            return Err(StoreError::Conflict(format!(
                "return {id} is {}; only a received return can be inspected",
                record.state
            )));
        }
        let inspected = match check_inspection(&record.lines, lines) {
            Ok(inspected) => inspected,
            Err(problems) => return Ok(Err(problems)),
        };
        let next = move_return(
            &mut tx,
            &record,
            ReturnInput::Inspect(inspected.clone()),
            now,
        )
        .await?;
        sqlx::query("UPDATE returns SET inspection = $1 WHERE id = $2")
            .bind(to_json(&inspected)?)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let mut per_sku: Vec<(String, u32)> = Vec::new();
        for line in &inspected {
            match per_sku.iter_mut().find(|(sku, _)| *sku == line.sku) {
                Some((_, units)) => *units += line.restocked,
                None => per_sku.push((line.sku.clone(), line.restocked)),
            }
        }
        tx.stock.set_empty(false);
        for (sku, units) in per_sku.into_iter().filter(|(_, units)| *units > 0) {
            sqlx::query(
                "INSERT INTO stock (factory, sku, units, updated_ms) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (factory, sku) DO UPDATE SET units = stock.units + excluded.units, \
                 updated_ms = excluded.updated_ms",
            )
            .bind(record.factory.as_str())
            .bind(&sku)
            .bind(i64::from(units))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let detail: Vec<String> = inspected
            .iter()
            .map(|l| {
                format!(
                    "line {} {}: {} restocked, {} scrapped",
                    l.line, l.sku, l.restocked, l.scrapped
                )
            })
            .collect();
        record_audit(
            &mut tx,
            &AuditEntry::new(actor, "return.inspect", id, &detail.join("; ")),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(Ok(ReturnRecord {
            state: next,
            inspection: Some(inspected),
            updated_ms: now,
            ..record
        }))
    }

    /// Cancels a return whose parcel has not left the customer (`brand`:
    /// only that brand's): its planned stops are missed; audited.
    pub async fn cancel_return(
        &self,
        id: &str,
        brand: Option<&str>,
        actor: &str,
        now: Millis,
    ) -> Result<ReturnRecord, StoreError> {
        let mut tx = self.begin().await?;
        let record = return_in(&mut tx, id).await?;
        if brand.is_some_and(|brand| brand != record.brand.as_str()) {
            return Err(StoreError::NotFound(format!("return {id}")));
        }
        let next = move_return(&mut tx, &record, ReturnInput::Cancel, now).await?;
        miss_return_stops(&mut tx, &record, now).await?;
        record_audit(
            &mut tx,
            &AuditEntry::new(actor, "return.cancel", id, ""),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(ReturnRecord {
            state: next,
            updated_ms: now,
            ..record
        })
    }

    /// Units on the shelves, per factory and SKU (`factory`: only that one).
    pub async fn list_stock(&self, factory: Option<&str>) -> Result<Vec<StockRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT factory, sku, units, updated_ms FROM stock \
             WHERE ($1 IS NULL OR factory = $1) ORDER BY factory, sku",
        )
        .bind(factory)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StockRecord {
                    factory: text_id(row, "factory")?,
                    sku: row.try_get("sku")?,
                    units: row.try_get("units")?,
                    updated_ms: row.try_get("updated_ms")?,
                })
            })
            .collect()
    }
}
