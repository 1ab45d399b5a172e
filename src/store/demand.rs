//! Daily demand per brand, SKU and factory, counted from the event log.

use super::write::{AuditEntry, record_audit};
use super::{Store, StoreError};
use crate::domain::Millis;
use sqlx::Row;

/// Units of one SKU a brand's customers ordered from one factory on one day.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DemandRow {
    pub brand: String,
    pub sku: String,
    pub factory: String,
    /// `YYYY-MM-DD` (UTC, domain clock).
    pub day: String,
    /// Units ordered.
    pub units: i64,
    /// Finished units made (good units of a line's last step).
    pub produced: i64,
    /// Units customers asked back (lines of `return.requested`).
    pub returned: i64,
}

impl Store {
    /// The last event seq counted into the demand.
    pub async fn demand_cursor(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT value FROM counters WHERE name = 'demand_cursor'")
            .fetch_one(self.reader())
            .await?;
        Ok(row.try_get("value")?)
    }

    /// Adds `rows` (units to add per key) and moves the cursor from `from`
    /// to `to`, in one transaction; a conflict if the cursor was moved
    /// meanwhile (another daemon counted those events).
    pub async fn count_demand(
        &self,
        from: i64,
        to: i64,
        rows: &[DemandRow],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let moved = sqlx::query(
            "UPDATE counters SET value = $1 WHERE name = 'demand_cursor' AND value = $2",
        )
        .bind(to)
        .bind(from)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!(
                "demand cursor is no longer at {from}"
            )));
        }
        for row in rows {
            let added = sqlx::query(
                "UPDATE demand_daily SET units = units + $1, produced = produced + $2, \
                 returned = returned + $7 \
                 WHERE brand = $3 AND sku = $4 AND factory = $5 AND day = $6",
            )
            .bind(row.units)
            .bind(row.produced)
            .bind(&row.brand)
            .bind(&row.sku)
            .bind(&row.factory)
            .bind(&row.day)
            .bind(row.returned)
            .execute(&mut *tx)
            .await?;
            if added.rows_affected() == 0 {
                sqlx::query(
                    "INSERT INTO demand_daily \
                     (brand, sku, factory, day, units, produced, returned) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&row.brand)
                .bind(&row.sku)
                .bind(&row.factory)
                .bind(&row.day)
                .bind(row.units)
                .bind(row.produced)
                .bind(row.returned)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Daily demand, by brand, SKU, factory and day; only `brand`'s, `sku`'s
    /// or `factory`'s when given.
    pub async fn demand(
        &self,
        brand: Option<&str>,
        sku: Option<&str>,
        factory: Option<&str>,
    ) -> Result<Vec<DemandRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT brand, sku, factory, day, units, produced, returned FROM demand_daily \
             WHERE ($1 IS NULL OR brand = $1) AND ($2 IS NULL OR sku = $2) \
             AND ($3 IS NULL OR factory = $3) ORDER BY brand, sku, factory, day",
        )
        .bind(brand)
        .bind(sku)
        .bind(factory)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DemandRow {
                    brand: row.try_get("brand")?,
                    sku: row.try_get("sku")?,
                    factory: row.try_get("factory")?,
                    day: row.try_get("day")?,
                    units: row.try_get("units")?,
                    produced: row.try_get("produced")?,
                    returned: row.try_get("returned")?,
                })
            })
            .collect()
    }
}

/// A brand's sales event: a pop-up or market it sells at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalesEventRecord {
    pub brand: String,
    pub id: String,
    pub name: String,
    /// `YYYY-MM-DD`: the first selling day.
    pub starts_on: String,
    /// Selling days.
    pub days: i64,
    /// Visitors counted, if known.
    pub footfall: Option<i64>,
    /// Units already sold per SKU (an event to come).
    pub pre_orders: std::collections::BTreeMap<String, u64>,
    pub updated_ms: i64,
}

impl Store {
    /// Creates or replaces a brand's sales event; true if it was new.
    pub async fn put_sales_event(
        &self,
        event: &SalesEventRecord,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let pre_orders = serde_json::to_string(&event.pre_orders)
            .map_err(|err| StoreError::Corrupt(format!("pre-orders: {err}")))?;
        let mut tx = self.begin().await?;
        let replaced = sqlx::query(
            "UPDATE sales_events SET name = $3, starts_on = $4, days = $5, footfall = $6, \
             updated_ms = $7, pre_orders = $8 WHERE brand = $1 AND id = $2",
        )
        .bind(&event.brand)
        .bind(&event.id)
        .bind(&event.name)
        .bind(&event.starts_on)
        .bind(event.days)
        .bind(event.footfall)
        .bind(event.updated_ms)
        .bind(&pre_orders)
        .execute(&mut *tx)
        .await?;
        let created = replaced.rows_affected() == 0;
        if created {
            sqlx::query(
                "INSERT INTO sales_events \
                 (brand, id, name, starts_on, days, footfall, updated_ms, pre_orders) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&event.brand)
            .bind(&event.id)
            .bind(&event.name)
            .bind(&event.starts_on)
            .bind(event.days)
            .bind(event.footfall)
            .bind(event.updated_ms)
            .bind(&pre_orders)
            .execute(&mut *tx)
            .await?;
        }
        let target = format!("{}/{}", event.brand, event.id);
        let detail = format!(
            "{} from {}, {} days",
            event.name, event.starts_on, event.days
        );
        record_audit(
            &mut tx,
            &AuditEntry::new(actor, "sales_event.put", &target, &detail),
            event.updated_ms,
        )
        .await?;
        tx.commit().await?;
        Ok(created)
    }

    /// A brand's sales events (every brand's with `None`), by first day.
    pub async fn sales_events(
        &self,
        brand: Option<&str>,
    ) -> Result<Vec<SalesEventRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT brand, id, name, starts_on, days, footfall, updated_ms, pre_orders \
             FROM sales_events \
             WHERE ($1 IS NULL OR brand = $1) ORDER BY brand, starts_on, id",
        )
        .bind(brand)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(SalesEventRecord {
                    brand: row.try_get("brand")?,
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    starts_on: row.try_get("starts_on")?,
                    days: row.try_get("days")?,
                    footfall: row.try_get("footfall")?,
                    pre_orders: {
                        let text: String = row.try_get("pre_orders")?;
                        serde_json::from_str(&text).map_err(|err| {
                            StoreError::Corrupt(format!("sales event pre-orders {text:?}: {err}"))
                        })?
                    },
                    updated_ms: row.try_get("updated_ms")?,
                })
            })
            .collect()
    }

    /// Deletes a brand's sales event; false if there was none.
    pub async fn delete_sales_event(
        &self,
        brand: &str,
        id: &str,
        actor: &str,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let deleted = sqlx::query("DELETE FROM sales_events WHERE brand = $1 AND id = $2")
            .bind(brand)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 1 {
            let target = format!("{brand}/{id}");
            record_audit(
                &mut tx,
                &AuditEntry::new(actor, "sales_event.delete", &target, ""),
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(deleted.rows_affected() == 1)
    }
}
