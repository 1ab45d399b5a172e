//! Persistence with sqlx: SQLite by default, PostgreSQL for scale-out, one set
//! of migrations and queries for both (the `any` driver, `$n` placeholders;
//! `?` in the multi-row writes on SQLite, see `write::placeholders`; portable types).
//!
//! Invariants: every state change is a compare-and-set on the old state (zero
//! rows is a [`StoreError::Conflict`], never a silent success), and its outbox
//! events are written in the same transaction. On SQLite: WAL,
//! `synchronous=FULL`, one writer connection, `BEGIN IMMEDIATE` for every
//! read-then-write transaction, a busy timeout.

mod demand;
mod handoffs;
mod jobs;
mod leases;
mod machines;
mod maintenance;
mod mqtt_users;
mod orders;
mod outbox;
mod promise;
mod returns;
mod tokens;
mod webhooks;
mod write;
mod writer;

pub use demand::{DemandRow, SalesEventRecord};
pub use handoffs::{
    Confirmation, DutyChange, Escalation, FailedAttempt, HandoffDetail, HandoffRecord, LateDropoff,
    OpenStop, ScheduledStop, StopMove, WaveOrder,
};
pub use jobs::{CounterBaseline, JobFilter, JobRecord, JobTransition, SchedulableJob};
pub use leases::{Fence, Lease, SqliteLock};
pub use machines::{MachineRecord, MachineSpec, MaterialChange, ModeChange};
pub use maintenance::WindowRecord;
pub use mqtt_users::MqttUserRecord;
pub use orders::{
    AcceptOutcome, Accepted, Idempotency, NewOrder, OrderFilter, OrderRecord, Promise,
};
pub use outbox::{EventRecord, OutboxRecord};
pub use promise::{OpenJob, OrderInMaking, PromiseUpdate};
pub use returns::{CarriedReturn, NewReturn, ReturnFilter, ReturnRecord, StockRecord, WaveReturn};
pub use tokens::{AuditRecord, FoundToken, TOKEN_ID_LEN, TokenListing, TokenRecord};
pub use webhooks::{
    DueDelivery, MAX_ENDPOINTS_PER_BRAND, NewEndpoint, WebhookDelivery, WebhookEndpoint,
};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyConnection, AnyPool, AssertSqlSafe, Connection, Executor, Row, Transaction};
use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(sqlx::Error),
    /// The database refuses writes or cannot be reached for now (a full
    /// disk, a read-only file, the server down or out of connections):
    /// worth trying again later, not a fault of the request.
    #[error("the database refuses writes for now: {0}")]
    Unavailable(String),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A compare-and-set found the row in another state.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The thing is locked until someone releases it.
    #[error("locked: {0}")]
    Locked(String),
    /// A transition the domain refuses.
    #[error(transparent)]
    Transition(#[from] crate::domain::TransitionError),
    /// A stored value that does not parse: a broken invariant of ours.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A fenced write whose lease is no longer this daemon's (another owner,
    /// a newer epoch, or expired): nothing was written.
    #[error("fenced: {0}")]
    Fenced(String),
    /// The database file is another daemon's (SQLite serves one daemon).
    #[error("{0}")]
    InUse(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match refusal(&err) {
            Some(reason) => StoreError::Unavailable(reason),
            None => StoreError::Database(err),
        }
    }
}

impl StoreError {
    /// A transaction PostgreSQL aborted to break a deadlock or a
    /// serialization conflict with another daemon's (SQLSTATE 40P01, 40001):
    /// it did nothing, and running it again is the remedy.
    pub fn is_contention(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(db)) => {
                matches!(db.code().as_deref(), Some("40P01" | "40001"))
            }
            _ => false,
        }
    }

    /// Another daemon stored the same idempotency key between this
    /// transaction's look for it and its insert (PostgreSQL; SQLite has one
    /// writer): running it again finds the key and replays its answer.
    pub fn is_key_race(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(db)) => {
                db.is_unique_violation() && db.constraint() == Some("idempotency_pkey")
            }
            _ => false,
        }
    }
}

/// Why `err` is the database refusing work for now rather than refusing
/// this request: a full disk, a read-only or unopenable file, I/O errors,
/// a lock held past the busy timeout (SQLite result codes); insufficient
/// resources, a read-only server, a server shutting down or a broken
/// connection (PostgreSQL SQLSTATE classes 53, 25006, 57P, 08); the pool
/// out of connections or closed.
fn refusal(err: &sqlx::Error) -> Option<String> {
    match err {
        sqlx::Error::Database(db) => {
            let code = db.code()?;
            let refused = if code.len() == 5 {
                // A PostgreSQL SQLSTATE.
                code.starts_with("53")
                    || code == "25006"
                    || code.starts_with("57P")
                    || code.starts_with("08")
            } else {
                // A SQLite (extended) result code: its low byte is the primary.
                // BUSY 5, LOCKED 6, READONLY 8, IOERR 10, FULL 13, CANTOPEN 14.
                code.parse::<i64>()
                    .is_ok_and(|n| matches!(n & 0xff, 5 | 6 | 8 | 10 | 13 | 14))
            };
            refused.then(|| db.message().to_string())
        }
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed
        | sqlx::Error::InvalidSavePointStatement => Some(err.to_string()),
        _ => None,
    }
}

/// Whether the database took the last write: set by a write transaction
/// whose commit was refused ([`StoreError::Unavailable`]), cleared by the
/// next one that commits. `/healthz` reports it.
#[derive(Debug, Default)]
struct WriteHealth {
    refused: Mutex<Option<(Instant, String)>>,
}

impl WriteHealth {
    fn note<T>(&self, outcome: &Result<T, StoreError>) {
        let Ok(mut refused) = self.refused.lock() else {
            return;
        };
        match outcome {
            Ok(_) => *refused = None,
            Err(StoreError::Unavailable(reason)) => {
                let since = refused.as_ref().map_or_else(Instant::now, |(at, _)| *at);
                *refused = Some((since, reason.clone()));
            }
            Err(_) => {}
        }
    }
}

/// SQLite: when a write transaction last found no units on any shelf.
/// Intake then skips the stock lookup (one round trip to SQLite's thread
/// per batch) for a second; a transaction that puts units on a shelf
/// clears it. SQLite has one writer, so no write falls between the lookup
/// and the hint; a second process writing the file is seen within the
/// second. PostgreSQL always looks.
#[derive(Debug, Default)]
pub(crate) struct StockHint(Mutex<Option<Instant>>);

impl StockHint {
    const FOR: Duration = Duration::from_secs(1);

    pub(crate) fn empty_lately(&self) -> bool {
        self.0
            .lock()
            .map(|at| at.is_some_and(|at| at.elapsed() < Self::FOR))
            .unwrap_or(false)
    }

    pub(crate) fn set_empty(&self, empty: bool) {
        if let Ok(mut at) = self.0.lock() {
            *at = empty.then(Instant::now);
        }
    }
}

/// A write transaction. It reads and writes like sqlx's own (`&mut *tx`
/// is the connection), and its commit tells the store whether the
/// database took it.
pub(crate) struct WriteTx {
    tx: Held,
    health: Arc<WriteHealth>,
    backend: Backend,
    begun: std::time::Instant,
    /// Where it was begun (for the log of long transactions).
    at: &'static std::panic::Location<'static>,
    /// Events to write at commit (`write::insert_outbox`).
    events: Vec<write::OutboxRow>,
    pub(crate) stock: Arc<StockHint>,
}

/// The connection a write transaction runs on.
enum Held {
    /// PostgreSQL: a pooled connection.
    Pool(Transaction<'static, Any>),
    /// SQLite: the one writer connection.
    Sqlite(writer::SqliteTx),
}

/// A write transaction held this long is logged (debug) with where it was
/// begun: on SQLite every other writer waits that long.
const LONG_WRITE: Duration = Duration::from_millis(20);

impl WriteTx {
    /// Bind placeholders for `rows` rows of `columns` values (see
    /// [`write::placeholders`]).
    pub(crate) fn placeholders(&self, rows: usize, columns: usize) -> String {
        write::placeholders(self.backend, rows, columns)
    }

    /// `count` bind placeholders numbered from `first` (see [`write::params`]).
    pub(crate) fn params(&self, first: usize, count: usize) -> String {
        write::params(self.backend, first, count)
    }

    pub(crate) fn defer_events(&mut self, rows: Vec<write::OutboxRow>) {
        self.events.extend(rows);
    }

    /// Ends it, writing nothing (tests: a drop rolls back only when the
    /// connection is next used).
    #[cfg(test)]
    pub(crate) async fn rollback(self) -> Result<(), StoreError> {
        match self.tx {
            Held::Pool(tx) => tx.rollback().await?,
            Held::Sqlite(tx) => tx.rollback().await?,
        }
        Ok(())
    }

    /// Writes the events it was given, then commits.
    pub(crate) async fn commit(mut self) -> Result<(), StoreError> {
        let events = std::mem::take(&mut self.events);
        let outcome = match self.tx {
            // One round trip: the events and the COMMIT.
            Held::Sqlite(tx) => tx
                .commit_with(write::sqlite_commit_query(&events))
                .await
                .map_err(StoreError::from),
            Held::Pool(mut tx) => match write::write_outbox(&mut tx, self.backend, &events).await {
                Ok(()) => tx.commit().await.map_err(StoreError::from),
                Err(err) => Err(err),
            },
        };
        // How long the writer was held (SQLite's one connection).
        let held = self.begun.elapsed();
        metrics::histogram!("fabflow_db_write_seconds").record(held);
        if held >= LONG_WRITE {
            tracing::debug!(
                held_ms = held.as_millis() as u64,
                begun_at = %self.at,
                "long write transaction"
            );
        }
        self.health.note(&outcome);
        outcome
    }
}

impl Deref for WriteTx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        match &self.tx {
            Held::Pool(tx) => tx,
            Held::Sqlite(tx) => &tx.held.conn,
        }
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match &mut self.tx {
            Held::Pool(tx) => tx,
            Held::Sqlite(tx) => &mut tx.held.conn,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where write transactions get their connection.
#[derive(Debug, Clone)]
enum Writes {
    /// PostgreSQL: the pool (the same as `read`).
    Pool(AnyPool),
    /// SQLite: the one writer connection, so writers queue here rather than
    /// on the file lock.
    Sqlite(writer::SqliteWriter),
}

/// A handle on the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    /// Where write transactions get their connection.
    write: Writes,
    /// Readers; on PostgreSQL the same pool as `write`'s.
    read: AnyPool,
    backend: Backend,
    health: Arc<WriteHealth>,
    stock: Arc<StockHint>,
    /// SQLite: the exclusive lock on the file's sidecar `.lock`, held until
    /// [`Store::close`] (or the last clone is dropped, or the process ends).
    lock: Option<std::sync::Arc<std::sync::Mutex<Option<SqliteLock>>>>,
    /// Set on a fenced handle ([`Store::fenced`]): every write transaction
    /// first checks that this lease is still held at this epoch.
    fence: Option<std::sync::Arc<Fence>>,
}

/// PostgreSQL ends a session idle inside a transaction this long
/// (milliseconds), releasing its locks: our transactions never wait on
/// anything but the database inside, so only a daemon cut off or frozen
/// mid-transaction reaches it. Below the shortest `cluster.lease_ms` that
/// makes sense, so a take-over is never held up much longer than the lease.
pub const PG_IDLE_IN_TRANSACTION_MS: u64 = 5_000;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl Store {
    /// Opens (creating if needed) and migrates the database at `url`
    /// without claiming it: for the admin commands (`tokens`, `mqtt-users`)
    /// that work beside a running daemon, and for tests.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::open(url, None).await
    }

    /// Opens (creating if needed) and migrates the database at `url` for a
    /// daemon. A SQLite file is locked for it (`holder` names it in the
    /// message another daemon gets): a second daemon on the same file is
    /// refused with [`StoreError::InUse`].
    pub async fn connect_as(url: &str, holder: &str) -> Result<Store, StoreError> {
        Store::open(url, Some(holder)).await
    }

    async fn open(url: &str, holder: Option<&str>) -> Result<Store, StoreError> {
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
                let file = leases::sqlite_file(&url);
                let lock = match (&file, holder) {
                    (Some(path), Some(holder)) => Some(SqliteLock::acquire(path, holder)?),
                    _ => None,
                };
                let writer = writer::SqliteWriter::new(options.clone(), file);
                // Opened here, so that a file that cannot be opened is
                // refused at start.
                drop(writer.take().await?);
                let read = sqlite_pool(4).connect_with(options).await?;
                Store {
                    write: Writes::Sqlite(writer),
                    read,
                    backend,
                    health: Arc::default(),
                    stock: Arc::default(),
                    lock: lock.map(|lock| std::sync::Arc::new(std::sync::Mutex::new(Some(lock)))),
                    fence: None,
                }
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .after_release(|conn, _meta| Box::pin(release_clean(conn)))
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            // A daemon cut off mid-transaction (a silent
                            // network) would hold its row locks (the event
                            // counter, a lease row) until TCP gives up,
                            // hours later, and stall every other daemon:
                            // the server ends such a session instead.
                            conn.execute(AssertSqlSafe(format!(
                                "SET idle_in_transaction_session_timeout = {PG_IDLE_IN_TRANSACTION_MS}"
                            )))
                            .await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?;
                Store {
                    write: Writes::Pool(pool.clone()),
                    read: pool,
                    backend,
                    health: Arc::default(),
                    stock: Arc::default(),
                    lock: None,
                    fence: None,
                }
            }
        };
        match &store.write {
            Writes::Sqlite(writer) => MIGRATOR.run(&mut writer.take().await?.conn).await?,
            Writes::Pool(pool) => MIGRATOR.run(pool).await?,
        }
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A write transaction: `BEGIN IMMEDIATE` on SQLite, so a read-then-write
    /// never fails with "database is locked" on the upgrade.
    ///
    /// On a fenced handle the transaction starts by checking the lease
    /// (owner, epoch, not expired on the database clock; on PostgreSQL the
    /// lease row is locked `FOR KEY SHARE` until the end, so a take-over,
    /// which locks it `FOR UPDATE`, waits for it, and a renewal does not):
    /// a daemon that lost the lease commits nothing.
    #[track_caller]
    pub(crate) fn begin(
        &self,
    ) -> impl std::future::Future<Output = Result<WriteTx, StoreError>> + Send + '_ {
        let at = std::panic::Location::caller();
        self.begin_at(at)
    }

    async fn begin_at(
        &self,
        at: &'static std::panic::Location<'static>,
    ) -> Result<WriteTx, StoreError> {
        let started = std::time::Instant::now();
        let tx = match &self.write {
            Writes::Sqlite(writer) => {
                Held::Sqlite(writer::SqliteTx::begin(writer.take().await?).await?)
            }
            Writes::Pool(pool) => Held::Pool(pool.begin().await?),
        };
        // Mostly the wait for the writer connection (SQLite has one).
        metrics::histogram!("fabflow_db_begin_seconds").record(started.elapsed());
        let mut tx = WriteTx {
            tx,
            health: self.health.clone(),
            stock: self.stock.clone(),
            backend: self.backend,
            begun: std::time::Instant::now(),
            at,
            events: Vec::new(),
        };
        if let Some(fence) = &self.fence {
            leases::check_fence(&mut tx, self.backend, fence).await?;
        }
        Ok(tx)
    }

    /// Whether [`Store::sqlite_transaction_in_one_query`] runs here: on
    /// SQLite's writer connection, with no lease to check first.
    pub(crate) fn writes_in_one_query(&self) -> bool {
        matches!(self.write, Writes::Sqlite(_)) && self.fence.is_none()
    }

    /// SQLite, on a handle without a fence: runs `query`, a whole write
    /// transaction from `BEGIN IMMEDIATE` to `COMMIT`, as ONE round trip on
    /// the writer connection (see [`writer::SqliteTx::begun_by_query`]); a
    /// failure leaves the transaction to be rolled back before the
    /// connection's next use. `None` elsewhere: the caller takes
    /// [`Store::begin`].
    pub(crate) async fn sqlite_transaction_in_one_query(
        &self,
        query: sqlx::query::Query<'_, Any, sqlx::any::AnyArguments>,
    ) -> Option<Result<(), StoreError>> {
        let Writes::Sqlite(writer) = &self.write else {
            return None;
        };
        if !self.writes_in_one_query() {
            return None;
        }
        let started = Instant::now();
        let outcome = async {
            let held = writer.take().await?;
            metrics::histogram!("fabflow_db_begin_seconds").record(started.elapsed());
            let begun = Instant::now();
            let outcome = writer::SqliteTx::begun_by_query(held)
                .commit_with(query)
                .await
                .map_err(StoreError::from);
            metrics::histogram!("fabflow_db_write_seconds").record(begun.elapsed());
            outcome
        }
        .await;
        self.health.note(&outcome);
        Some(outcome)
    }

    /// Runs one writing statement on its own (autocommit): on SQLite on the
    /// writer connection, in turn with the write transactions.
    pub(crate) async fn write_statement(
        &self,
        query: sqlx::query::Query<'_, Any, sqlx::any::AnyArguments>,
    ) -> Result<sqlx::any::AnyQueryResult, StoreError> {
        Ok(match &self.write {
            Writes::Sqlite(writer) => query.execute(&mut writer.take().await?.conn).await?,
            Writes::Pool(pool) => query.execute(pool).await?,
        })
    }

    /// Since when, and why, the database refuses writes; `None` while the
    /// last write transaction committed.
    pub fn refusing_writes(&self) -> Option<(Duration, String)> {
        let refused = self.health.refused.lock().ok()?;
        refused
            .as_ref()
            .map(|(since, reason)| (since.elapsed(), reason.clone()))
    }

    /// Tests: SQLite's writer connection, for per-connection settings.
    #[cfg(test)]
    pub(crate) async fn sqlite_writer(&self) -> writer::Held {
        match &self.write {
            Writes::Sqlite(writer) => writer.take().await.expect("the writer connection"),
            Writes::Pool(_) => panic!("not a SQLite store"),
        }
    }

    pub(crate) fn reader(&self) -> &AnyPool {
        &self.read
    }

    pub async fn close(&self) {
        match &self.write {
            Writes::Sqlite(writer) => writer.close().await,
            Writes::Pool(pool) => pool.close().await,
        }
        self.read.close().await;
        if let Some(lock) = &self.lock
            && let Ok(mut held) = lock.lock()
        {
            // Dropping the file releases the lock for the next daemon.
            held.take();
        }
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

/// Whether a connection coming back to the pool may be used again: not when
/// it is still inside a transaction. A commit the database refused (a full
/// disk) can leave sqlx counting an open transaction that SQLite already
/// rolled back; the rollback on drop then fails too, and every later
/// `BEGIN` on that connection would fail ("begin_with at non-zero
/// transaction depth") long after the disk has room again. Such a
/// connection is closed and the pool opens a fresh one.
async fn release_clean(conn: &mut AnyConnection) -> Result<bool, sqlx::Error> {
    if !conn.is_in_transaction() {
        // The common case (a committed transaction, a read): no round trip.
        return Ok(true);
    }
    // A transaction dropped without commit queued its rollback; the ping
    // runs after it, so what is left open after that stays open.
    conn.ping().await?;
    Ok(!conn.is_in_transaction())
}

fn sqlite_pool(connections: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .after_release(|conn, _meta| Box::pin(release_clean(conn)))
        .max_connections(connections)
        // Each release already pings the connection and rolls back what it
        // left open (`release_clean`); a second ping on every acquire was
        // a round trip to SQLite's thread before each transaction.
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(|conn, _meta| Box::pin(sqlite_session(conn)))
}

/// Settings of every SQLite connection. sqlx sets none of these for us: WAL
/// for concurrent readers, FULL so a commit survives power loss, and a busy
/// timeout.
async fn sqlite_session(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    conn.execute("PRAGMA journal_mode = WAL").await?;
    conn.execute("PRAGMA synchronous = FULL").await?;
    conn.execute("PRAGMA busy_timeout = 5000").await?;
    conn.execute("PRAGMA foreign_keys = ON").await?;
    // Statement and savepoint journals (each intake batch runs in a
    // savepoint) in memory, not in a temporary file written page by page.
    conn.execute("PRAGMA temp_store = MEMORY").await?;
    Ok(())
}

/// A text id column read as its typed id.
pub(crate) fn text_id<T: From<String>>(
    row: &sqlx::any::AnyRow,
    column: &str,
) -> Result<T, StoreError> {
    Ok(T::from(row.try_get::<String, _>(column)?))
}

pub(crate) fn parse<T: FromStr<Err = String>>(text: &str) -> Result<T, StoreError> {
    text.parse().map_err(StoreError::Corrupt)
}

#[cfg(test)]
pub(crate) mod tests;
