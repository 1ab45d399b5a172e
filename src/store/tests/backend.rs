//! Store scenarios: The backend itself: SQLite pragmas.

use super::*;

/// The value of `PRAGMA name` on the writer connection.
async fn pragma<T>(writer: &mut writer::Held, name: &str) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    sqlx::query(AssertSqlSafe(format!("PRAGMA {name}")))
        .fetch_one(&mut writer.conn)
        .await
        .expect("pragma")
        .get(0)
}

#[tokio::test]
async fn sqlite_runs_with_wal_full_sync_and_journals_in_memory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("p.db").display()))
        .await
        .expect("store");
    // The writer connection's settings.
    let mut writer = store.sqlite_writer().await;
    let mode: String = pragma(&mut writer, "journal_mode").await;
    let sync: i64 = pragma(&mut writer, "synchronous").await;
    // Savepoint and statement journals in memory (2), not in temporary
    // files written page by page on every intake batch.
    let temp: i64 = pragma(&mut writer, "temp_store").await;
    assert_eq!((mode.as_str(), sync, temp), ("wal", 2, 2));
}

/// The writer checkpoints the WAL every 4,000 pages on a disk with room
/// (SQLite's default is 1,000), fewer on a small one (`writer::wal_pages`).
#[tokio::test]
async fn the_writer_checkpoints_the_wal_by_the_free_space() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("w.db").display()))
        .await
        .expect("store");
    let pages: i64 = pragma(&mut store.sqlite_writer().await, "wal_autocheckpoint").await;
    let free = fs4::statvfs(dir.path()).expect("statvfs").available_space();
    if free >= 256 * 1024 * 1024 {
        assert_eq!(pages, 4_000);
    } else {
        assert!((100..=4_000).contains(&pages), "{pages} pages");
    }
}

/// A database that refuses writes (its disk full) is survived: after the
/// first "database or disk is full", every write keeps failing only while
/// the disk is full, says so as `StoreError::Unavailable`, and works again
/// by itself once there is room, on the same `Store`.
#[tokio::test]
async fn a_full_disk_refuses_writes_until_there_is_room_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::connect(&format!(
        "sqlite://{}",
        dir.path().join("full.db").display()
    ))
    .await
    .expect("store");
    // The writer connection's file may grow by a few pages only: the disk
    // is "full".
    let mut writer = store.sqlite_writer().await;
    let pages: i64 = sqlx::query("PRAGMA page_count")
        .fetch_one(&mut writer.conn)
        .await
        .expect("pragma")
        .get(0);
    sqlx::query(AssertSqlSafe(format!(
        "PRAGMA max_page_count = {}",
        pages + 4
    )))
    .execute(&mut writer.conn)
    .await
    .expect("limit");
    drop(writer);
    let mut accepted = Vec::new();
    let mut refused = None;
    for n in 0..10_000 {
        let id = format!("o{n}");
        match store.accept_orders(&[new_order(&id, "acme", None)]).await {
            Ok(_) => accepted.push(id),
            Err(err) => {
                refused = Some(err);
                break;
            }
        }
    }
    let refused = refused.expect("the disk filled up");
    assert!(
        matches!(refused, StoreError::Unavailable(_)),
        "a full disk is Unavailable: {refused:?}"
    );
    // Still full: refused again, with the same clear error, not a stuck
    // connection ("non-zero transaction depth").
    for n in 0..3 {
        let err = store
            .accept_orders(&[new_order(&format!("again{n}"), "acme", None)])
            .await
            .expect_err("still full");
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    }
    assert!(store.refusing_writes().is_some());
    // Room again.
    let mut writer = store.sqlite_writer().await;
    sqlx::query("PRAGMA max_page_count = 1073741823")
        .execute(&mut writer.conn)
        .await
        .expect("unlimit");
    drop(writer);
    store
        .accept_orders(&[new_order("after", "acme", None)])
        .await
        .expect("writes resume by themselves");
    assert!(store.refusing_writes().is_none());
    for id in accepted.iter().chain(std::iter::once(&"after".to_string())) {
        assert!(
            store.get_order(id, None).await.expect("get").is_some(),
            "{id} was accepted and is kept"
        );
    }
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    /// `None` (and one line saying so) where this process may not mount.
    fn mount(dir: &std::path::Path, size: &str) -> Option<SmallDisk> {
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status();
        if status.is_ok_and(|s| s.success()) {
            Some(SmallDisk(dir.to_path_buf()))
        } else {
            eprintln!(
                "store: the real full-disk scenario is skipped (needs to mount a tmpfs: root)"
            );
            None
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// The scenario on a real filesystem: the SQLite file on a small
/// tmpfs that fills up. Writes are refused while it is full (503 material,
/// not a stuck connection), and resume by themselves on the same `Store`
/// once space is freed; every accepted order is still there.
#[tokio::test]
async fn a_real_full_filesystem_is_survived() {
    let dir = tempfile::tempdir().expect("temp dir");
    let Some(_disk) = SmallDisk::mount(dir.path(), "4m") else {
        return;
    };
    let store = Store::connect(&format!(
        "sqlite://{}",
        dir.path().join("full.db").display()
    ))
    .await
    .expect("store");
    // Fill the disk but for a little room.
    let filler = dir.path().join("filler");
    let mut size = 0usize;
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&filler).expect("filler");
        let block = vec![7u8; 64 * 1024];
        while file.write_all(&block).is_ok() && file.sync_all().is_ok() {
            size += block.len();
        }
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .and_then(|f| f.set_len(size.saturating_sub(256 * 1024) as u64))
        .expect("leave some room");
    let mut accepted = Vec::new();
    let mut refused = None;
    for n in 0..100_000 {
        let id = format!("o{n}");
        let batch: Vec<NewOrder> = (0..20)
            .map(|k| new_order(&format!("{id}-{k}"), "acme", None))
            .collect();
        match store.accept_orders(&batch).await {
            Ok(_) => accepted.extend(batch.into_iter().map(|o| o.id)),
            Err(err) => {
                refused = Some(err);
                break;
            }
        }
    }
    let refused = refused.expect("the disk filled up");
    assert!(matches!(refused, StoreError::Unavailable(_)), "{refused:?}");
    assert!(store.refusing_writes().is_some());
    // Space again: the next write goes through, on the same store.
    std::fs::remove_file(&filler).expect("free space");
    store
        .accept_orders(&[new_order("after", "acme", None)])
        .await
        .expect("writes resume once there is room");
    store
        .set_meta("after", "yes")
        .await
        .expect("every kind of write resumes");
    assert!(store.refusing_writes().is_none());
    assert!(!accepted.is_empty());
    for id in accepted
        .iter()
        .map(|id| id.to_string())
        .chain(["after".to_string()])
    {
        assert!(
            store.get_order(&id, None).await.expect("get").is_some(),
            "{id} was accepted and is kept"
        );
    }
    store.close().await;
}
