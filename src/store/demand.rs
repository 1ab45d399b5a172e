//! Daily demand per brand, SKU and factory, counted from the event log.

use super::{Store, StoreError};
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
                "UPDATE demand_daily SET units = units + $1, produced = produced + $2 \
                 WHERE brand = $3 AND sku = $4 AND factory = $5 AND day = $6",
            )
            .bind(row.units)
            .bind(row.produced)
            .bind(&row.brand)
            .bind(&row.sku)
            .bind(&row.factory)
            .bind(&row.day)
            .execute(&mut *tx)
            .await?;
            if added.rows_affected() == 0 {
                sqlx::query(
                    "INSERT INTO demand_daily (brand, sku, factory, day, units, produced) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&row.brand)
                .bind(&row.sku)
                .bind(&row.factory)
                .bind(&row.day)
                .bind(row.units)
                .bind(row.produced)
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
            "SELECT brand, sku, factory, day, units, produced FROM demand_daily \
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
                })
            })
            .collect()
    }
}
