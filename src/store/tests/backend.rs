//! Store scenarios: The backend itself: SQLite pragmas.

use super::*;

#[tokio::test]
async fn sqlite_runs_with_wal_and_full_sync() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("p.db").display()))
        .await
        .expect("store");
    let mode: String = sqlx::query("PRAGMA journal_mode")
        .fetch_one(&store.write)
        .await
        .expect("pragma")
        .get(0);
    let sync: i64 = sqlx::query("PRAGMA synchronous")
        .fetch_one(&store.write)
        .await
        .expect("pragma")
        .get(0);
    assert_eq!((mode.as_str(), sync), ("wal", 2));
}
