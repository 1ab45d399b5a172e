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
use sqlx::{AnyConnection, AssertSqlSafe, Connection, Executor, Row};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, OwnedMappedMutexGuard, OwnedMutexGuard};
use tracing::debug;

const TAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Most pages the WAL takes before a commit checkpoints it (SQLite's
/// default is 1,000). A checkpoint copies each page once however often it
/// was rewritten since the last one, and syncs twice: with intake
/// rewriting the same last pages of every table and index batch after
/// batch, fewer checkpoints write less (docs/benchmarks.md).
const WAL_PAGES_MOST: u64 = 4_000;
/// Fewest pages between checkpoints, however little room the disk has.
const WAL_PAGES_FEWEST: u64 = 100;
/// How often the writer looks at the free space of the database's disk.
const SPACE_LOOK_EVERY: Duration = Duration::from_secs(1);

/// Pages the WAL may take between checkpoints with `available` bytes free
/// on its disk: a quarter of the free space, within
/// [`WAL_PAGES_FEWEST`]..=[`WAL_PAGES_MOST`]. A WAL that outgrew the free
/// space would fill the disk before its checkpoint (which only a commit
/// runs), and every write would then fail even after room was made
/// elsewhere; a quarter leaves room for the checkpoint, which grows the
/// database file by up to as many pages.
pub(crate) fn wal_pages(available: u64, page_bytes: u64) -> u64 {
    (available / 4 / page_bytes.max(512)).clamp(WAL_PAGES_FEWEST, WAL_PAGES_MOST)
}

/// The writer connection, opened on first use and again after it was found
/// broken.
#[derive(Clone)]
pub(crate) struct SqliteWriter {
    slot: Arc<Mutex<Option<Slot>>>,
    options: AnyConnectOptions,
    /// The database file, whose disk's free space bounds the WAL (none: in
    /// memory).
    file: Option<PathBuf>,
}

pub(crate) struct Slot {
    pub(crate) conn: AnyConnection,
    /// A transaction was dropped without commit: rolled back before the
    /// connection is used again.
    dirty: bool,
    /// The database's page size in bytes.
    page_bytes: u64,
    /// `wal_autocheckpoint` as last set, and when the free space was
    /// looked at for it.
    wal_pages: u64,
    space_looked: Option<Instant>,
}

impl Slot {
    /// Fits the WAL's checkpoint interval to the free space of `file`'s
    /// disk (`wal_pages`), looking at most once every
    /// [`SPACE_LOOK_EVERY`]. A disk that cannot be looked at keeps the
    /// interval as it is.
    async fn fit_wal(&mut self, file: &std::path::Path) {
        let now = Instant::now();
        if self
            .space_looked
            .is_some_and(|at| now.duration_since(at) < SPACE_LOOK_EVERY)
        {
            return;
        }
        self.space_looked = Some(now);
        let Ok(stats) = fs4::statvfs(file) else {
            return;
        };
        let pages = wal_pages(stats.available_space(), self.page_bytes);
        if pages == self.wal_pages {
            return;
        }
        let set = format!("PRAGMA wal_autocheckpoint = {pages}");
        match self.conn.execute(AssertSqlSafe(set)).await {
            Ok(_) => {
                debug!(pages, "WAL checkpoint interval fitted to the free space");
                self.wal_pages = pages;
            }
            // Tried again at the next look.
            Err(err) => debug!(error = %err, "setting the WAL checkpoint interval failed"),
        }
    }
}

impl std::fmt::Debug for SqliteWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteWriter").finish_non_exhaustive()
    }
}

/// The writer connection while a caller holds it.
pub(crate) type Held = OwnedMappedMutexGuard<Option<Slot>, Slot>;

impl SqliteWriter {
    pub(crate) fn new(options: AnyConnectOptions, file: Option<PathBuf>) -> SqliteWriter {
        SqliteWriter {
            slot: Arc::new(Mutex::new(None)),
            options,
            file,
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
            let page_bytes: i64 = sqlx::query("PRAGMA page_size")
                .fetch_one(&mut conn)
                .await?
                .try_get(0)?;
            *slot = Some(Slot {
                conn,
                dirty: false,
                page_bytes: u64::try_from(page_bytes).unwrap_or(4096),
                // SQLite's default until fitted.
                wal_pages: 1_000,
                space_looked: None,
            });
        }
        if let (Some(file), Some(held)) = (&self.file, slot.as_mut()) {
            held.fit_wal(file).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The WAL takes at most a quarter of the disk's free space between
    /// checkpoints, within 100..=4,000 pages.
    #[test]
    fn the_wal_between_checkpoints_fits_a_quarter_of_the_free_space() {
        const MIB: u64 = 1024 * 1024;
        assert_eq!(wal_pages(100 * 1024 * MIB, 4096), 4_000, "a large disk");
        assert_eq!(wal_pages(64 * MIB, 4096), 4_000);
        assert_eq!(wal_pages(8 * MIB, 4096), 512, "an 8 MiB disk");
        assert_eq!(
            wal_pages(8 * MIB, 1024),
            2_048,
            "smaller pages, more of them"
        );
        assert_eq!(wal_pages(MIB, 4096), 100, "no fewer than 100");
        assert_eq!(wal_pages(0, 4096), 100, "a full disk");
        assert_eq!(
            wal_pages(8 * MIB, 0),
            4_000,
            "a page size of 0 counts as 512"
        );
    }
}
