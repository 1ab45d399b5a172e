//! The promise as planned: estimated ready and delivery times of orders in
//! the making, and the at-risk flag with its `order.at_risk` event.

use super::write::{OutboxRow, Subject, emit, insert_outbox};
use super::{Store, StoreError, parse, text_id};
use crate::domain::{AtRiskReason, BrandId, Event, FactoryId, JobState, Location, Millis, OrderId};
use sqlx::{AssertSqlSafe, Row};
use std::collections::HashMap;

/// A job not yet finished, as the promise estimate needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenJob {
    pub token: i64,
    pub order_id: OrderId,
    pub line: i64,
    pub step: i64,
    pub factory: FactoryId,
    pub process: String,
    /// Machine time it takes: quantity times seconds per unit.
    pub seconds: f64,
    pub due_ms: Millis,
    pub state: JobState,
}

/// An order whose production is not finished, with what was last estimated.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderInMaking {
    pub id: OrderId,
    pub brand: BrandId,
    pub factory: FactoryId,
    pub location: Location,
    pub deadline_ms: Millis,
    pub eta_ready_ms: Option<Millis>,
    pub eta_delivery_ms: Option<Millis>,
    pub at_risk: Option<String>,
}

/// A new estimate for one order.
#[derive(Debug, Clone, PartialEq)]
pub struct PromiseUpdate {
    pub order_id: OrderId,
    pub brand: BrandId,
    pub deadline_ms: Millis,
    pub eta_ready_ms: Option<Millis>,
    pub eta_delivery_ms: Option<Millis>,
    /// Set: flag the order (once; an order already flagged keeps its first reason).
    pub at_risk: Option<AtRiskReason>,
}

fn float(text: &str) -> Result<f64, StoreError> {
    text.parse()
        .map_err(|err| StoreError::Corrupt(format!("a float column read {text:?}: {err}")))
}

impl Store {
    /// Every job of the network that is not finished (pending to running, or
    /// held on its machine waiting for a decision).
    pub async fn open_jobs(&self) -> Result<Vec<OpenJob>, StoreError> {
        // token, order, line, step, factory, process, quantity, seconds per unit, due, state
        type Fields = (
            i64,
            String,
            i64,
            i64,
            String,
            String,
            i64,
            String,
            i64,
            String,
        );
        let per_unit = self.float_text("seconds_per_unit");
        let rows: Vec<Fields> = self
            .json_rows(
                "jobs WHERE state IN ('pending', 'scheduled', 'dispatched', 'running', 'held')",
                &[
                    "token",
                    "order_id",
                    "line_index",
                    "step_index",
                    "factory",
                    "process",
                    "quantity",
                    &per_unit,
                    "due_ms",
                    "state",
                ],
            )
            .await?;
        rows.into_iter()
            .map(
                |(
                    token,
                    order_id,
                    line,
                    step,
                    factory,
                    process,
                    quantity,
                    per_unit,
                    due_ms,
                    state,
                )| {
                    let per_unit = float(&per_unit)?;
                    Ok(OpenJob {
                        token,
                        order_id: order_id.into(),
                        line,
                        step,
                        factory: factory.into(),
                        process,
                        seconds: quantity.max(0) as f64 * per_unit.max(0.0),
                        due_ms,
                        state: parse(&state)?,
                    })
                },
            )
            .collect()
    }

    /// Orders accepted or in production (not yet ready).
    pub async fn orders_in_making(&self) -> Result<Vec<OrderInMaking>, StoreError> {
        // id, brand, factory, lat, lon, deadline, ready, delivery, at risk
        type Fields = (
            String,
            String,
            String,
            String,
            String,
            i64,
            Option<i64>,
            Option<i64>,
            Option<String>,
        );
        let (lat, lon) = (self.float_text("lat"), self.float_text("lon"));
        let rows: Vec<Fields> = self
            .json_rows(
                "orders WHERE state IN ('accepted', 'in_production')",
                &[
                    "id",
                    "brand",
                    "factory",
                    &lat,
                    &lon,
                    "deadline_ms",
                    "eta_ready_ms",
                    "eta_delivery_ms",
                    "at_risk",
                ],
            )
            .await?;
        rows.into_iter()
            .map(
                |(
                    id,
                    brand,
                    factory,
                    lat,
                    lon,
                    deadline_ms,
                    eta_ready_ms,
                    eta_delivery_ms,
                    at_risk,
                )| {
                    Ok(OrderInMaking {
                        id: id.into(),
                        brand: brand.into(),
                        factory: factory.into(),
                        location: Location::new(float(&lat)?, float(&lon)?),
                        deadline_ms,
                        eta_ready_ms,
                        eta_delivery_ms,
                        at_risk,
                    })
                },
            )
            .collect()
    }

    /// The rows `from` (a table and its condition) selects, each as a JSON
    /// array of `columns`, all in ONE row of JSON text aggregated by the
    /// database: the watch reads every order in the making and every open
    /// job each round, and a row at a time through sqlx cost about 13 µs a
    /// row (a round of 36,000 rows took 0.4 s of CPU from intake).
    async fn json_rows<T: serde::de::DeserializeOwned>(
        &self,
        from: &str,
        columns: &[&str],
    ) -> Result<Vec<T>, StoreError> {
        let columns = columns.join(", ");
        let sql = match self.backend {
            super::Backend::Sqlite => {
                format!("SELECT json_group_array(json_array({columns})) AS list FROM {from}")
            }
            super::Backend::Postgres => format!(
                "SELECT COALESCE(json_agg(json_build_array({columns}))::text, '[]') AS list FROM {from}"
            ),
        };
        let row = sqlx::query(AssertSqlSafe(sql))
            .fetch_one(self.reader())
            .await?;
        let list: String = row.try_get("list")?;
        serde_json::from_str(&list).map_err(|err| StoreError::Corrupt(format!("{from}: {err}")))
    }

    /// A float column as text that reads back to the same value, for
    /// [`Store::json_rows`] (SQLite's JSON numbers keep 15 digits; `!`
    /// lets its printf go past 16).
    fn float_text(&self, column: &str) -> String {
        match self.backend {
            super::Backend::Sqlite => format!("printf('%!.17g', {column})"),
            super::Backend::Postgres => format!("{column}::text"),
        }
    }

    /// Stores estimates and flags, in one transaction; an order newly at risk
    /// gets its `order.at_risk` event in the same transaction. Returns how
    /// many orders were newly flagged.
    pub async fn record_promises(
        &self,
        updates: &[PromiseUpdate],
        now: Millis,
    ) -> Result<usize, StoreError> {
        if updates.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin().await?;
        // PostgreSQL: rows another transaction holds (a supervisor's step,
        // a wave, another daemon's watch) are skipped, not waited for: an
        // estimate is advice, given again next round, and a watch that
        // waited while holding the rows it had updated closed cycles of
        // waits (deadlocks) with steps that lock two orders.
        let skip_locked = self.backend == super::Backend::Postgres;
        // A few statements per chunk, not one round trip per order: a
        // backlog of tens of thousands of orders would hold the writer
        // connection (intake's too) for seconds.
        // One row per order (the last estimate given wins, as it did one
        // statement at a time): an order joined twice would take either.
        let mut seen = std::collections::HashSet::new();
        let mut latest: Vec<&PromiseUpdate> = updates
            .iter()
            .rev()
            .filter(|u| seen.insert(u.order_id.as_str()))
            .collect();
        latest.reverse();
        for chunk in latest.chunks(super::write::ROWS_PER_STATEMENT) {
            // An estimate left out keeps the last one; a ready order never
            // estimated was ready by now.
            let (free, only_free) = match skip_locked {
                true => (
                    ", free AS (SELECT orders.id FROM orders JOIN v ON orders.id = v.id \
                     FOR UPDATE OF orders SKIP LOCKED)",
                    " AND orders.id IN (SELECT id FROM free)",
                ),
                false => ("", ""),
            };
            let sql = format!(
                "WITH v (id, ready_ms, delivery_ms) AS (VALUES {}){free} \
                 UPDATE orders SET eta_ready_ms = COALESCE(v.ready_ms, orders.eta_ready_ms, {}), \
                 eta_delivery_ms = COALESCE(v.delivery_ms, orders.eta_delivery_ms) \
                 FROM v WHERE orders.id = v.id{only_free}",
                tx.placeholders(chunk.len(), 3),
                tx.params(3 * chunk.len() + 1, 1)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for update in chunk {
                query = query
                    .bind(update.order_id.as_str())
                    .bind(update.eta_ready_ms)
                    .bind(update.eta_delivery_ms);
            }
            query.bind(now).execute(&mut *tx).await?;
        }
        // Flagged once: an order already flagged keeps its first reason
        // (and one given twice here, the first given).
        let mut flagging = std::collections::HashSet::new();
        let risky: Vec<(&PromiseUpdate, AtRiskReason)> = updates
            .iter()
            .filter_map(|u| u.at_risk.map(|reason| (u, reason)))
            .filter(|(u, _)| flagging.insert(u.order_id.as_str()))
            .collect();
        let mut newly: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut reasons: Vec<AtRiskReason> = risky.iter().map(|&(_, reason)| reason).collect();
        reasons.sort_by_key(|reason| reason.as_str());
        reasons.dedup();
        for reason in reasons {
            let ids: Vec<&str> = risky
                .iter()
                .filter(|&&(_, given)| given == reason)
                .map(|(u, _)| u.order_id.as_str())
                .collect();
            for chunk in ids.chunks(super::write::ROWS_PER_STATEMENT) {
                let unflagged =
                    format!("at_risk IS NULL AND id IN ({})", tx.params(3, chunk.len()));
                let rows = match skip_locked {
                    true => format!(
                        "id IN (SELECT id FROM orders WHERE {unflagged} FOR UPDATE SKIP LOCKED)"
                    ),
                    false => unflagged,
                };
                let sql = format!(
                    "UPDATE orders SET at_risk = {}, at_risk_ms = {} WHERE {rows} RETURNING id",
                    tx.params(1, 1),
                    tx.params(2, 1),
                );
                let mut query = sqlx::query(AssertSqlSafe(sql))
                    .bind(reason.as_str())
                    .bind(now);
                for id in chunk {
                    query = query.bind(*id);
                }
                for row in query.fetch_all(&mut *tx).await? {
                    newly.insert(row.try_get("id")?);
                }
            }
        }
        // Written at commit with the transaction's other events (one
        // counter update and multi-row INSERTs, however many are flagged).
        let events: Vec<OutboxRow> = risky
            .into_iter()
            .filter(|(update, _)| newly.remove(update.order_id.as_str()))
            .map(|(update, reason)| {
                let subject = Subject {
                    kind: "order",
                    id: update.order_id.as_str(),
                    order_id: Some(update.order_id.as_str()),
                    brand: Some(update.brand.as_str()),
                };
                let event = Event::OrderAtRisk {
                    reason,
                    estimated_delivery_ms: update.eta_delivery_ms,
                    deadline_ms: update.deadline_ms,
                };
                OutboxRow::new(&subject, &event, now)
            })
            .collect();
        let flagged = events.len();
        insert_outbox(&mut tx, events).await?;
        tx.commit().await?;
        Ok(flagged)
    }

    /// Flags every order not yet delivered (nor cancelled) whose deadline is
    /// at or before `deadline_by` and that is not flagged yet, with
    /// `reason` and its `order.at_risk` event, in one transaction. Returns
    /// how many were flagged.
    pub async fn flag_undelivered_by(
        &self,
        deadline_by: Millis,
        reason: AtRiskReason,
        now: Millis,
    ) -> Result<usize, StoreError> {
        let rows = sqlx::query(
            "SELECT id, brand, deadline_ms, eta_delivery_ms FROM orders \
             WHERE state IN ('accepted', 'in_production', 'ready', 'out_for_delivery') \
             AND at_risk IS NULL AND deadline_ms <= $1",
        )
        .bind(deadline_by)
        .fetch_all(self.reader())
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin().await?;
        let mut flagged = 0;
        for row in &rows {
            let id: OrderId = text_id(row, "id")?;
            let brand: BrandId = text_id(row, "brand")?;
            let newly = sqlx::query(
                "UPDATE orders SET at_risk = $2, at_risk_ms = $3 WHERE id = $1 AND at_risk IS NULL \
                 AND state IN ('accepted', 'in_production', 'ready', 'out_for_delivery')",
            )
            .bind(id.as_str())
            .bind(reason.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if newly != 1 {
                continue;
            }
            flagged += 1;
            let subject = Subject {
                kind: "order",
                id: id.as_str(),
                order_id: Some(id.as_str()),
                brand: Some(brand.as_str()),
            };
            let event = Event::OrderAtRisk {
                reason,
                estimated_delivery_ms: row.try_get("eta_delivery_ms")?,
                deadline_ms: row.try_get("deadline_ms")?,
            };
            emit(&mut tx, &subject, &event, now).await?;
        }
        tx.commit().await?;
        Ok(flagged)
    }

    /// Where and when each courier is free: the location and ETA of its last
    /// stop still to do (planned or locked), by courier id. Couriers with
    /// nothing to do are absent.
    pub async fn courier_tails(&self) -> Result<HashMap<String, (Location, Millis)>, StoreError> {
        let rows = sqlx::query(
            "SELECT courier, lat, lon, eta_ms FROM handoffs WHERE state IN ('planned', 'locked')",
        )
        .fetch_all(self.reader())
        .await?;
        let mut tails: HashMap<String, (Location, Millis)> = HashMap::new();
        for row in rows {
            let courier: String = row.try_get("courier")?;
            let eta: Millis = row.try_get("eta_ms")?;
            let location = Location::new(row.try_get("lat")?, row.try_get("lon")?);
            let entry = tails.entry(courier).or_insert((location, eta));
            if eta > entry.1 {
                *entry = (location, eta);
            }
        }
        Ok(tails)
    }
}
