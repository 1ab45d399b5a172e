//! SQLite's one writer connection, handed from one write transaction to the
//! next through a fair (first come, first served) async mutex.
//!
//! A pool of one connection did the same job, but sqlx returns a pooled
//! connection by spawning a task on every release: with the runtime busy
//! serving HTTP, each hand-over waited for that task and then for the
//! waiter's wake-up, and the writer stood idle for about a fifth of an
//! intake run. Here the next transaction takes the connection as the last
//! one lets go of it.

use super::StoreError;
use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, Connection, Executor};
use std::sync::Arc;
use tokio::sync::{Mutex, OwnedMappedMutexGuard, OwnedMutexGuard};

const TAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The writer connection, opened on first use and again after it was found
/// broken.
#[derive(Clone)]
pub(crate) struct SqliteWriter {
    slot: Arc<Mutex<Option<Slot>>>,
    options: AnyConnectOptions,
}

pub(crate) struct Slot {
    pub(crate) conn: AnyConnection,
    /// A transaction was dropped without commit: rolled back before the
    /// connection is used again.
    dirty: bool,
}

impl std::fmt::Debug for SqliteWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteWriter").finish_non_exhaustive()
    }
}

/// The writer connection while a caller holds it.
pub(crate) type Held = OwnedMappedMutexGuard<Option<Slot>, Slot>;

impl SqliteWriter {
    pub(crate) fn new(options: AnyConnectOptions) -> SqliteWriter {
        SqliteWriter {
            slot: Arc::new(Mutex::new(None)),
            options,
        }
    }

    /// Waits for the connection (callers are served in the order they
    /// asked), opening it if there is none.
    pub(crate) async fn take(&self) -> Result<Held, StoreError> {
        // As long as the pool it replaces would wait: then the write fails
        // as "unavailable" rather than hanging behind a stuck transaction.
        let mut slot = tokio::time::timeout(TAKE_TIMEOUT, Arc::clone(&self.slot).lock_owned())
            .await
            .map_err(|_| StoreError::from(sqlx::Error::PoolTimedOut))?;
        if let Some(held) = slot.as_mut()
            && held.dirty
        {
            // A refused commit (a full disk) leaves SQLite's transaction
            // open, a dropped one never ended it: either way it ends here.
            // "No transaction is active" is fine too; anything else and
            // the connection is closed and a fresh one opened.
            let rolled_back = match held.conn.execute("ROLLBACK").await {
                Ok(_) => true,
                Err(err) => err.to_string().contains("no transaction is active"),
            };
            if rolled_back {
                held.dirty = false;
            } else {
                *slot = None;
            }
        }
        if slot.is_none() {
            let mut conn = AnyConnection::connect_with(&self.options).await?;
            super::sqlite_session(&mut conn).await?;
            *slot = Some(Slot { conn, dirty: false });
        }
        OwnedMutexGuard::try_map(slot, Option::as_mut)
            .map_err(|_| StoreError::Unavailable("the writer connection is closed".into()))
    }

    /// Closes the connection (at shutdown); a later write opens it again.
    pub(crate) async fn close(&self) {
        let slot = self.slot.lock().await.take();
        if let Some(slot) = slot {
            let _ = slot.conn.close().await;
        }
    }
}

/// A transaction on the writer connection: rolled back when dropped
/// uncommitted (before the connection's next use).
pub(crate) struct SqliteTx {
    pub(crate) held: Held,
    open: bool,
}

impl SqliteTx {
    pub(crate) async fn begin(mut held: Held) -> Result<SqliteTx, StoreError> {
        held.conn.execute("BEGIN IMMEDIATE").await?;
        Ok(SqliteTx { held, open: true })
    }

    /// A transaction that the first query run on it begins (its first
    /// statement `BEGIN IMMEDIATE`): one round trip fewer. Until that
    /// query commits, it counts as open (a failure is rolled back before
    /// the connection's next use).
    pub(crate) fn begun_by_query(held: Held) -> SqliteTx {
        SqliteTx { held, open: true }
    }

    /// Runs `query`, whose last statement is COMMIT (see
    /// [`super::write::sqlite_commit_query`]).
    pub(crate) async fn commit_with(
        mut self,
        query: sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> Result<(), sqlx::Error> {
        query.execute(&mut self.held.conn).await?;
        self.open = false;
        Ok(())
    }

    #[cfg(test)]
    pub(crate) async fn rollback(mut self) -> Result<(), sqlx::Error> {
        self.held.conn.execute("ROLLBACK").await?;
        self.open = false;
        Ok(())
    }
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        if self.open {
            self.held.dirty = true;
        }
    }
}
