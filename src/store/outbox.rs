//! The outbox: events written with the state changes that caused them, read
//! by the publisher and stamped once the broker has them.

use super::{Store, StoreError};
use crate::domain::Millis;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRecord {
    pub id: String,
    pub kind: String,
    /// The brand the event concerns, if any.
    pub brand: Option<String>,
    pub payload: String,
}

impl Store {
    /// The oldest unpublished events.
    pub async fn unpublished(&self, limit: i64) -> Result<Vec<OutboxRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, kind, brand, payload FROM outbox WHERE published_ms IS NULL ORDER BY id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(OutboxRecord {
                    id: row.try_get("id")?,
                    kind: row.try_get("kind")?,
                    brand: row.try_get("brand")?,
                    payload: row.try_get("payload")?,
                })
            })
            .collect()
    }

    pub async fn mark_published(&self, ids: &[String], now: Millis) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for id in ids {
            sqlx::query(
                "UPDATE outbox SET published_ms = $1 WHERE id = $2 AND published_ms IS NULL",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn outbox_backlog(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE published_ms IS NULL")
            .fetch_one(self.reader())
            .await?;
        Ok(row.try_get("n")?)
    }

    /// When the oldest unpublished event was written (domain ms), if any.
    pub async fn outbox_oldest_unpublished(&self) -> Result<Option<i64>, StoreError> {
        let row =
            sqlx::query("SELECT MIN(created_ms) AS oldest FROM outbox WHERE published_ms IS NULL")
                .fetch_one(self.reader())
                .await?;
        Ok(row.try_get("oldest")?)
    }
}

/// An event as a consumer reads it from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub seq: i64,
    /// The event envelope (JSON text): schema, id, seq, kind, at, subject, data.
    pub payload: String,
}

impl Store {
    /// Events after `after` (a `seq`), oldest first; only `brand`'s when given.
    pub async fn events_after(
        &self,
        brand: Option<&str>,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, payload FROM outbox WHERE ($1 IS NULL OR brand = $1) \
             AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(brand)
        .bind(after.unwrap_or(0))
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(EventRecord {
                    seq: row.try_get("seq")?,
                    payload: row.try_get("payload")?,
                })
            })
            .collect()
    }
}
