//! The outbox: events written with the state changes that caused them, read
//! by the publisher and stamped once the broker has them.

use super::{Store, StoreError};
use crate::domain::Millis;
use sqlx::{AssertSqlSafe, Row};

#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRecord {
    pub id: String,
    /// Its place in the event log.
    pub seq: i64,
    pub kind: String,
    /// The brand the event concerns, if any.
    pub brand: Option<String>,
    pub payload: String,
}

fn outbox_record(row: &sqlx::any::AnyRow) -> Result<OutboxRecord, StoreError> {
    Ok(OutboxRecord {
        id: row.try_get("id")?,
        seq: row.try_get("seq")?,
        kind: row.try_get("kind")?,
        brand: row.try_get("brand")?,
        payload: row.try_get("payload")?,
    })
}

impl Store {
    /// The oldest unpublished events, in the event log's order (`seq`).
    pub async fn unpublished(&self, limit: i64) -> Result<Vec<OutboxRecord>, StoreError> {
        self.unpublished_after(0, limit).await
    }

    /// The oldest unpublished events after `after` (a `seq`).
    async fn unpublished_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, seq, kind, brand, payload FROM outbox WHERE published_ms IS NULL AND seq > $1 \
             ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(outbox_record).collect()
    }

    /// The next events for `daemon`'s publisher to send, oldest first. On
    /// PostgreSQL, where several daemons drain one outbox, they are claimed
    /// ([`Store::claim_unpublished`]). On SQLite the file has one daemon
    /// (its lock refuses a second) and that daemon one publisher, so the
    /// oldest unpublished rows are read without a write transaction: a claim
    /// there would only take the writer from intake (about a sixth of its
    /// time in the intake benchmark). Only events after `after` (a `seq`):
    /// the publisher skips those the broker has and it has not stamped yet.
    pub async fn next_to_publish(
        &self,
        daemon: &str,
        after: i64,
        limit: i64,
        claim_ms: i64,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
        match self.backend {
            super::Backend::Postgres => {
                self.claim_unpublished_after(daemon, after, limit, claim_ms)
                    .await
            }
            super::Backend::Sqlite => self.unpublished_after(after, limit).await,
        }
    }

    /// Claims up to `limit` of the oldest unpublished events for `daemon`
    /// for `claim_ms` (database clock): rows nobody holds, whose claim
    /// expired, or that `daemon` claimed before (its own retries). On
    /// PostgreSQL the rows are picked `FOR UPDATE SKIP LOCKED`, so daemons
    /// draining at once take different rows without waiting on each other.
    /// A claim that runs out before the row is stamped lets another daemon
    /// send it again: at least once, each event with its unique id.
    pub async fn claim_unpublished(
        &self,
        daemon: &str,
        limit: i64,
        claim_ms: i64,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
        self.claim_unpublished_after(daemon, 0, limit, claim_ms)
            .await
    }

    /// [`Store::claim_unpublished`], of the events after `after` (a `seq`).
    async fn claim_unpublished_after(
        &self,
        daemon: &str,
        after: i64,
        limit: i64,
        claim_ms: i64,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
        let now = super::leases::db_now(self.backend);
        let skip_locked = match self.backend {
            super::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            super::Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE outbox SET claimed_by = $1, claimed_until_ms = {now} + $2 WHERE id IN (                SELECT id FROM outbox WHERE published_ms IS NULL AND (claimed_until_ms IS NULL                OR claimed_until_ms <= {now} OR claimed_by = $1) AND seq > $4 ORDER BY seq LIMIT $3{skip_locked})              RETURNING id, kind, brand, payload, seq"
        );
        let mut tx = self.begin().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(daemon)
            .bind(claim_ms)
            .bind(limit)
            .bind(after)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut claimed = rows
            .iter()
            .map(outbox_record)
            .collect::<Result<Vec<_>, StoreError>>()?;
        claimed.sort_by_key(|row| row.seq);
        Ok(claimed)
    }

    pub async fn mark_published(&self, ids: &[String], now: Millis) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        // One statement per chunk, not one round trip per event: the
        // writer connection is intake's too.
        for chunk in ids.chunks(super::write::ROWS_PER_STATEMENT) {
            let sql = format!(
                "UPDATE outbox SET published_ms = {} WHERE published_ms IS NULL AND id IN ({})",
                tx.params(1, 1),
                tx.params(2, chunk.len())
            );
            let mut query = sqlx::query(AssertSqlSafe(sql)).bind(now);
            for id in chunk {
                query = query.bind(id.as_str());
            }
            query.execute(&mut *tx).await?;
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

    /// Events after `after` (a `seq`), oldest first, with the payloads of
    /// those of `kinds` only (None for the others, which a reader that
    /// follows the log for a few kinds skips without parsing them).
    pub async fn events_of_kinds_after(
        &self,
        kinds: &[&str],
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Option<String>)>, StoreError> {
        // Positional on SQLite (`write::params`): the kinds first, as written.
        let n = kinds.len();
        let param = |first, count| super::write::params(self.backend, first, count);
        let in_kinds = match n {
            0 => "FALSE".to_string(),
            _ => format!("kind IN ({})", param(1, n)),
        };
        let sql = format!(
            "SELECT seq, CASE WHEN {in_kinds} THEN payload END AS payload FROM outbox \
             WHERE seq > {} ORDER BY seq LIMIT {}",
            param(n + 1, 1),
            param(n + 2, 1)
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for kind in kinds {
            query = query.bind(*kind);
        }
        let query = query.bind(after).bind(limit);
        let rows = query.fetch_all(self.reader()).await?;
        rows.iter()
            .map(|row| Ok((row.try_get("seq")?, row.try_get("payload")?)))
            .collect()
    }
}
