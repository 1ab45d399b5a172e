//! Persistence with sqlx: SQLite by default, PostgreSQL for scale-out, one set
//! of migrations and queries for both (the `any` driver, `$n` placeholders,
//! portable types).
//!
//! Invariants: every state change is a compare-and-set on the old state (zero
//! rows is a [`StoreError::Conflict`], never a silent success), and its outbox
//! events are written in the same transaction. On SQLite: WAL,
//! `synchronous=FULL`, one writer connection, `BEGIN IMMEDIATE` for every
//! read-then-write transaction, a busy timeout.

mod handoffs;
mod jobs;
mod machines;
mod orders;
mod outbox;
mod tokens;

pub use handoffs::{HandoffRecord, WaveOrder};
pub use jobs::{JobFilter, JobRecord, JobTransition};
pub use machines::{MachineRecord, MachineSpec};
pub use orders::{AcceptOutcome, Idempotency, NewOrder, OrderFilter, OrderRecord};
pub use outbox::OutboxRecord;
pub use tokens::TokenRecord;

use crate::domain::{Event, Millis};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Executor, Row, Transaction};
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A compare-and-set found the row in another state.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// A transition the domain refuses.
    #[error(transparent)]
    Transition(#[from] crate::domain::TransitionError),
    /// A stored value that does not parse: a broken invariant of ours.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A handle on the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    /// SQLite: one connection, so writers queue here rather than on the file lock.
    write: AnyPool,
    /// Readers; on PostgreSQL the same pool as `write`.
    read: AnyPool,
    backend: Backend,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl Store {
    /// Opens (creating if needed) and migrates the database at `url`.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(rest) = url.strip_prefix("sqlite:") {
            let rest = rest.trim_start_matches("//");
            let sep = if rest.contains('?') { '&' } else { '?' };
            let with_mode = if rest.contains("mode=") {
                format!("sqlite://{rest}")
            } else {
                format!("sqlite://{rest}{sep}mode=rwc")
            };
            (Backend::Sqlite, with_mode)
        } else {
            (Backend::Postgres, url.to_string())
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let store = match backend {
            Backend::Sqlite => {
                let write = sqlite_pool(1).connect_with(options.clone()).await?;
                let read = sqlite_pool(4).connect_with(options).await?;
                Store {
                    write,
                    read,
                    backend,
                }
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await?;
                Store {
                    write: pool.clone(),
                    read: pool,
                    backend,
                }
            }
        };
        MIGRATOR.run(&store.write).await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A write transaction: `BEGIN IMMEDIATE` on SQLite, so a read-then-write
    /// never fails with "database is locked" on the upgrade.
    pub(crate) async fn begin(&self) -> Result<Transaction<'static, Any>, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.write.begin().await?,
        })
    }

    pub(crate) fn reader(&self) -> &AnyPool {
        &self.read
    }

    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }

    pub async fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(self.reader())
            .await?;
        Ok(match row {
            Some(row) => Some(row.try_get("value")?),
            None => None,
        })
    }

    pub async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM meta WHERE key = $1")
            .bind(key)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2)")
            .bind(key)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

fn sqlite_pool(connections: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                // sqlx sets none of these for us: WAL for concurrent readers,
                // FULL so a commit survives power loss, and a busy timeout.
                conn.execute("PRAGMA journal_mode = WAL").await?;
                conn.execute("PRAGMA synchronous = FULL").await?;
                conn.execute("PRAGMA busy_timeout = 5000").await?;
                conn.execute("PRAGMA foreign_keys = ON").await?;
                Ok(())
            })
        })
}

/// Locks an order's row until the transaction ends, on PostgreSQL (SQLite has
/// a single writer: every write transaction is already serialised).
pub(crate) async fn lock_order(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    id: &str,
) -> Result<(), StoreError> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT id FROM orders WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Allocates `count` consecutive values of a counter inside `tx`; returns the first.
pub(crate) async fn allocate(
    tx: &mut Transaction<'static, Any>,
    name: &str,
    count: i64,
) -> Result<i64, StoreError> {
    let row = sqlx::query("UPDATE counters SET value = value + $1 WHERE name = $2 RETURNING value")
        .bind(count)
        .bind(name)
        .fetch_one(&mut **tx)
        .await?;
    let last: i64 = row.try_get("value")?;
    Ok(last - count + 1)
}

/// Who an event is about, for its payload and routing.
#[derive(Debug, Clone)]
pub(crate) struct Subject<'a> {
    pub kind: &'static str,
    pub id: &'a str,
    pub order_id: Option<&'a str>,
    pub brand: Option<&'a str>,
}

/// One outbox row: an event with its envelope.
pub(crate) struct OutboxRow {
    pub id: String,
    pub kind: &'static str,
    pub brand: Option<String>,
    pub payload: String,
    pub created_ms: Millis,
}

impl OutboxRow {
    pub(crate) fn new(subject: &Subject<'_>, event: &Event, now: Millis) -> OutboxRow {
        let id = uuid::Uuid::now_v7().hyphenated().to_string();
        let payload = serde_json::json!({
            "schema": 1,
            "id": id,
            "kind": event.kind(),
            "at": chrono::DateTime::<chrono::Utc>::from_timestamp_millis(now).map(|t| t.to_rfc3339()),
            "subject": { "type": subject.kind, "id": subject.id },
            "order_id": subject.order_id,
            "brand": subject.brand,
            "data": event,
        });
        OutboxRow {
            id,
            kind: event.kind(),
            brand: subject.brand.map(str::to_string),
            payload: payload.to_string(),
            created_ms: now,
        }
    }
}

/// Writes one outbox row for `event` inside `tx`.
pub(crate) async fn emit(
    tx: &mut Transaction<'static, Any>,
    subject: &Subject<'_>,
    event: &Event,
    now: Millis,
) -> Result<(), StoreError> {
    insert_outbox(tx, &[OutboxRow::new(subject, event, now)]).await
}

pub(crate) async fn insert_outbox(
    tx: &mut Transaction<'static, Any>,
    rows: &[OutboxRow],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO outbox (id, kind, brand, payload, created_ms) VALUES {}",
            placeholders(chunk.len(), 5)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for row in chunk {
            query = query
                .bind(row.id.clone())
                .bind(row.kind)
                .bind(row.brand.clone())
                .bind(row.payload.clone())
                .bind(row.created_ms);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Rows per multi-row INSERT: well under SQLite's 32766 and PostgreSQL's
/// 65535 bind parameters for our widest table.
pub(crate) const ROWS_PER_STATEMENT: usize = 500;

/// `($1, $2), ($3, $4)` for `rows` rows of `columns` columns.
pub(crate) fn placeholders(rows: usize, columns: usize) -> String {
    let mut out = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        if row > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for column in 0..columns {
            if column > 0 {
                out.push_str(", ");
            }
            out.push('$');
            out.push_str(&(row * columns + column + 1).to_string());
        }
        out.push(')');
    }
    out
}

pub(crate) fn parse<T: FromStr<Err = String>>(text: &str) -> Result<T, StoreError> {
    text.parse().map_err(StoreError::Corrupt)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod placeholder_tests {
    #[test]
    fn placeholders_number_rows_then_columns() {
        assert_eq!(super::placeholders(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(super::placeholders(1, 1), "($1)");
    }
}
