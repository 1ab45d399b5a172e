//! Several daemons on one database: the live daemons, leases with a fencing
//! epoch, and the fence every write of a fenced handle checks; on SQLite,
//! the file lock that keeps it to one daemon.
//!
//! Invariants: lease times are wall milliseconds on the database's clock
//! (never a daemon's, never the scaled domain clock); a lease changes owner
//! only once it has expired there (or is released), and every new owner
//! gets a higher epoch. A fenced write commits only while its lease is held
//! at its epoch and unexpired, checked in its own transaction.

use super::{Backend, Store, StoreError};
use sqlx::{AssertSqlSafe, Row};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// A lease as held: what a fenced handle checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// `factory/<id>` or `zone/<id>`.
    pub lease: String,
    pub owner: String,
    pub epoch: i64,
}

/// A lease row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    pub owner: String,
    pub epoch: i64,
    /// Database clock, wall milliseconds.
    pub expires_ms: i64,
}

/// The database's clock, in wall milliseconds, as an SQL expression.
pub(crate) fn db_now(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "(CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT))",
        Backend::Sqlite => "(CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER))",
    }
}

/// Checks inside `tx` that `fence` still holds; on PostgreSQL the lease row
/// stays key-share-locked until `tx` ends, so a take-over (which locks the
/// row `FOR UPDATE` first) waits for this transaction and never interleaves
/// with it. The owner's own renewals (an update of `expires_ms` alone, a
/// no-key update) do not wait for it: a transaction slowed by a busy row
/// elsewhere never holds up the renewal that keeps its lease.
pub(crate) async fn check_fence(
    tx: &mut super::WriteTx,
    backend: Backend,
    fence: &Fence,
) -> Result<(), StoreError> {
    let lock = match backend {
        Backend::Postgres => " FOR KEY SHARE",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "SELECT epoch FROM leases WHERE name = $1 AND owner = $2 AND epoch = $3 AND expires_ms > {}{lock}",
        db_now(backend)
    );
    let held = sqlx::query(AssertSqlSafe(sql))
        .bind(fence.lease.as_str())
        .bind(fence.owner.as_str())
        .bind(fence.epoch)
        .fetch_optional(&mut **tx)
        .await?;
    match held {
        Some(_) => Ok(()),
        None => Err(StoreError::Fenced(format!(
            "lease {} at epoch {} is no longer held by {}",
            fence.lease, fence.epoch, fence.owner
        ))),
    }
}

impl Store {
    /// A handle whose every write transaction first checks `fence` (see
    /// [`Store::begin`]). Reads are not fenced.
    pub fn fenced(&self, fence: Fence) -> Store {
        Store {
            fence: Some(std::sync::Arc::new(fence)),
            ..self.clone()
        }
    }

    /// The database's clock, wall milliseconds.
    pub async fn db_now_ms(&self) -> Result<i64, StoreError> {
        let sql = format!("SELECT {} AS now", db_now(self.backend));
        let row = sqlx::query(AssertSqlSafe(sql))
            .fetch_one(self.reader())
            .await?;
        Ok(row.try_get("now")?)
    }

    /// Records `daemon` alive for `ttl_ms` from now (database clock).
    pub async fn heartbeat(&self, daemon: &str, ttl_ms: i64) -> Result<(), StoreError> {
        let now = db_now(self.backend);
        let sql = format!(
            "INSERT INTO daemons (id, started_ms, expires_ms) VALUES ($1, {now}, {now} + $2) \
             ON CONFLICT (id) DO UPDATE SET expires_ms = excluded.expires_ms"
        );
        self.write_statement(sqlx::query(AssertSqlSafe(sql)).bind(daemon).bind(ttl_ms))
            .await?;
        Ok(())
    }

    /// The daemons whose heartbeat has not expired, by id.
    pub async fn live_daemons(&self) -> Result<Vec<String>, StoreError> {
        let sql = format!(
            "SELECT id FROM daemons WHERE expires_ms > {} ORDER BY id",
            db_now(self.backend)
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(self.reader())
            .await?;
        rows.iter()
            .map(|row| Ok(row.try_get::<String, _>("id")?))
            .collect()
    }

    /// A daemon leaving on purpose: its row goes, so the others spread its
    /// leases at once rather than after its heartbeat expires.
    pub async fn leave(&self, daemon: &str) -> Result<(), StoreError> {
        self.write_statement(sqlx::query("DELETE FROM daemons WHERE id = $1").bind(daemon))
            .await?;
        Ok(())
    }

    /// Takes the lease `name` for `owner` for `ttl_ms` if nobody holds it
    /// (never held, expired, or released), or at once with `force` (SQLite:
    /// the file lock already proves there is no other daemon). Every take
    /// raises the epoch. None if another owner holds it.
    pub async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        ttl_ms: i64,
        force: bool,
    ) -> Result<Option<Fence>, StoreError> {
        let now = db_now(self.backend);
        let sql = format!(
            "INSERT INTO leases (name, owner, epoch, expires_ms) VALUES ($1, $2, 1, {now} + $3) \
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, epoch = leases.epoch + 1, \
             expires_ms = excluded.expires_ms WHERE leases.expires_ms <= {now} OR $4 = 1 \
             RETURNING epoch"
        );
        let mut tx = self.begin().await?;
        if self.backend == Backend::Postgres {
            // Waits for every fenced transaction of the last holder (they
            // key-share-lock the row) before the take is decided.
            sqlx::query("SELECT name FROM leases WHERE name = $1 FOR UPDATE")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        }
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(name)
            .bind(owner)
            .bind(ttl_ms)
            .bind(i64::from(force))
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(match row {
            Some(row) => Some(Fence {
                lease: name.to_string(),
                owner: owner.to_string(),
                epoch: row.try_get("epoch")?,
            }),
            None => None,
        })
    }

    /// Extends a held lease by `ttl_ms` from now; false if it is no longer
    /// held at this epoch or has expired (then only a new take, with a new
    /// epoch, gets it back).
    pub async fn renew_lease(&self, fence: &Fence, ttl_ms: i64) -> Result<bool, StoreError> {
        let now = db_now(self.backend);
        let sql = format!(
            "UPDATE leases SET expires_ms = {now} + $1 WHERE name = $2 AND owner = $3 AND epoch = $4 \
             AND expires_ms > {now}"
        );
        let done = self
            .write_statement(
                sqlx::query(AssertSqlSafe(sql))
                    .bind(ttl_ms)
                    .bind(fence.lease.as_str())
                    .bind(fence.owner.as_str())
                    .bind(fence.epoch),
            )
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives a held lease up at once (its holder has stopped everything it
    /// covers); false if it was no longer held at this epoch.
    pub async fn release_lease(&self, fence: &Fence) -> Result<bool, StoreError> {
        let done = self.write_statement(sqlx::query(
            "UPDATE leases SET expires_ms = 0 WHERE name = $1 AND owner = $2 AND epoch = $3",
        )
        .bind(fence.lease.as_str())
        .bind(fence.owner.as_str())
        .bind(fence.epoch))
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every lease row, by name.
    pub async fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        let rows = sqlx::query("SELECT name, owner, epoch, expires_ms FROM leases ORDER BY name")
            .fetch_all(self.reader())
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Lease {
                    name: row.try_get("name")?,
                    owner: row.try_get("owner")?,
                    epoch: row.try_get("epoch")?,
                    expires_ms: row.try_get("expires_ms")?,
                })
            })
            .collect()
    }
}

/// The file behind a `sqlite://PATH?...` URL; None for an in-memory database.
pub(crate) fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").unwrap_or(url);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || query.contains("mode=memory") {
        return None;
    }
    Some(PathBuf::from(path))
}

/// An exclusive lock on a SQLite database's sidecar `<file>.lock`, naming
/// the daemon that holds it. Released when dropped (or when the process
/// dies: the kernel drops the lock with the file descriptor).
#[derive(Debug)]
pub struct SqliteLock {
    _file: std::fs::File,
}

impl SqliteLock {
    pub fn acquire(database: &Path, holder: &str) -> Result<SqliteLock, StoreError> {
        let mut name = database.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let in_use = |reason: String| {
            StoreError::InUse(format!("SQLite database {} {reason}", database.display()))
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|err| in_use(format!("cannot be locked ({}: {err})", path.display())))?;
        match file.try_lock() {
            Ok(()) => {
                let note = format!(
                    "daemon {holder} (pid {}), since {}\n",
                    std::process::id(),
                    chrono::Utc::now().to_rfc3339()
                );
                // Who holds it, for the message another daemon gets; the
                // lock itself is what counts.
                let written = file
                    .set_len(0)
                    .and_then(|()| file.rewind())
                    .and_then(|()| file.write_all(note.as_bytes()))
                    .and_then(|()| file.flush());
                if let Err(err) = written {
                    tracing::warn!(error = %err, path = %path.display(), "could not note the lock's holder");
                }
                Ok(SqliteLock { _file: file })
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut other = String::new();
                // Best effort: the holder may be writing its note right now.
                let _ = file.read_to_string(&mut other);
                let other = other.trim();
                let other = if other.is_empty() {
                    "another daemon".to_string()
                } else {
                    other.to_string()
                };
                Err(in_use(format!(
                    "is in use by {other} (lock {}); SQLite serves one daemon: stop that one first, \
                     or run several daemons on PostgreSQL",
                    path.display()
                )))
            }
            Err(std::fs::TryLockError::Error(err)) => Err(in_use(format!(
                "cannot be locked ({}: {err})",
                path.display()
            ))),
        }
    }
}
