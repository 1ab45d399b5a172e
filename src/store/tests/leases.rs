//! Store scenarios: several daemons on one database: leases and their
//! epochs, fenced writes, outbox claims; on SQLite, one daemon per file.

use super::*;
use std::time::{Duration, Instant};

/// Waits (with a generous deadline) until the database clock has passed `ms`.
async fn until_db_clock_passes(store: &Store, ms: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.db_now_ms().await.expect("db clock") <= ms {
        assert!(Instant::now() < deadline, "database clock stands still");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_lease_has_one_owner_and_every_new_owner_a_higher_epoch() {
    on_every_backend(|store| async move {
        let first = store
            .acquire_lease("factory/north", "d1", 60_000, false)
            .await
            .expect("acquire")
            .expect("free lease taken");
        assert_eq!(first.epoch, 1);
        // Held and unexpired: nobody else gets it, not even by asking again.
        let other = store
            .acquire_lease("factory/north", "d2", 60_000, false)
            .await
            .expect("acquire");
        assert_eq!(other, None);
        assert!(store.renew_lease(&first, 60_000).await.expect("renew"));
        // Released: the next owner gets it at once, with a higher epoch.
        assert!(store.release_lease(&first).await.expect("release"));
        let second = store
            .acquire_lease("factory/north", "d2", 60_000, false)
            .await
            .expect("acquire")
            .expect("released lease taken");
        assert_eq!(second.epoch, 2);
        // The former owner can neither renew nor release it.
        assert!(!store.renew_lease(&first, 60_000).await.expect("renew"));
        assert!(!store.release_lease(&first).await.expect("release"));
        // An expired lease (database clock) is free; a forced take (SQLite's
        // single daemon) does not wait for expiry. Both raise the epoch.
        let short = store
            .acquire_lease("zone/berlin", "d1", 1, false)
            .await
            .expect("acquire")
            .expect("taken");
        let leases = store.leases().await.expect("leases");
        let expires = leases
            .iter()
            .find(|l| l.name == "zone/berlin")
            .expect("stored")
            .expires_ms;
        until_db_clock_passes(&store, expires).await;
        assert!(!store.renew_lease(&short, 60_000).await.expect("renew"));
        let taken = store
            .acquire_lease("zone/berlin", "d2", 60_000, false)
            .await
            .expect("acquire")
            .expect("expired lease taken");
        assert_eq!(taken.epoch, short.epoch + 1);
        let forced = store
            .acquire_lease("zone/berlin", "d3", 60_000, true)
            .await
            .expect("acquire")
            .expect("forced");
        assert_eq!(
            (forced.owner.as_str(), forced.epoch),
            ("d3", taken.epoch + 1)
        );
    })
    .await;
}

#[tokio::test]
async fn a_daemon_that_lost_its_lease_commits_nothing() {
    on_every_backend(|store| async move {
        store
            .accept_orders(&[new_order("o1", "acme", None)])
            .await
            .expect("accept");
        let token = store.schedulable_jobs(10).await.expect("schedulable")[0].token;
        let machine = MachineId::new("dtg-1");
        store
            .register_machines(
                &[MachineSpec {
                    id: machine.clone(),
                    factory: crate::domain::FactoryId::new("north"),
                    model: "acme-dtg-200".into(),
                    address: "127.0.0.1:1502".into(),
                    capabilities: vec!["dtg_print".into()],
                    materials: vec!["cotton_tee".into()],
                }],
                NOW,
            )
            .await
            .expect("machine");
        report_idle(&store, "dtg-1").await;
        let lease = store
            .acquire_lease("factory/north", "d1", 60_000, false)
            .await
            .expect("acquire")
            .expect("taken");
        let old = store.fenced(lease.clone());
        // While held, fenced writes go through.
        assert_eq!(
            old.schedule_jobs(&[(token, machine.clone())], NOW)
                .await
                .expect("schedule"),
            1
        );
        old.transition_job(token, JobInput::Dispatch, NOW)
            .await
            .expect("dispatch under the lease");
        let events_before = outbox_kinds(&store).await.len();
        // Another daemon takes over (here: the lease released and taken).
        store.release_lease(&lease).await.expect("release");
        let new_lease = store
            .acquire_lease("factory/north", "d2", 60_000, false)
            .await
            .expect("acquire")
            .expect("taken over");
        // The former owner's job transitions, progress and machine reports
        // are all refused, and nothing of them is written.
        let refused = old
            .transition_job(token, JobInput::MachineStarted, NOW)
            .await;
        assert!(matches!(refused, Err(StoreError::Fenced(_))), "{refused:?}");
        let refused = old.dispatch_job(token, None, NOW).await;
        assert!(matches!(refused, Err(StoreError::Fenced(_))), "{refused:?}");
        let refused = old
            .observe_machine(
                "dtg-1",
                MachineInput::Reported(crate::domain::Reported::Running),
                Some(token.0),
                None,
                NOW,
            )
            .await;
        assert!(matches!(refused, Err(StoreError::Fenced(_))), "{refused:?}");
        let job = store.get_job(token).await.expect("get").expect("job");
        assert_eq!(job.state, JobState::Dispatched);
        assert_eq!(outbox_kinds(&store).await.len(), events_before);
        // The new owner's handle writes.
        let new = store.fenced(new_lease);
        let moved = new
            .transition_job(token, JobInput::MachineStarted, NOW)
            .await
            .expect("new owner moves the job");
        assert_eq!(moved.job.state, JobState::Running);
    })
    .await;
}

#[tokio::test]
async fn daemons_are_live_while_their_heartbeat_runs() {
    on_every_backend(|store| async move {
        store.heartbeat("d2", 60_000).await.expect("heartbeat");
        store.heartbeat("d1", 60_000).await.expect("heartbeat");
        store.heartbeat("d1", 60_000).await.expect("renewed");
        store.heartbeat("d3", 1).await.expect("heartbeat");
        let now = store.db_now_ms().await.expect("clock");
        until_db_clock_passes(&store, now + 1).await;
        assert_eq!(store.live_daemons().await.expect("live"), ["d1", "d2"]);
        store.leave("d1").await.expect("leave");
        assert_eq!(store.live_daemons().await.expect("live"), ["d2"]);
    })
    .await;
}

#[tokio::test]
async fn outbox_rows_are_claimed_by_one_daemon_at_a_time() {
    on_every_backend(|store| async move {
        for id in ["o1", "o2", "o3"] {
            store
                .accept_orders(&[new_order(id, "acme", None)])
                .await
                .expect("accept");
        }
        let total = store.outbox_backlog().await.expect("backlog");
        assert!(total >= 3, "{total}");
        let first = store
            .claim_unpublished("d1", 2, 60_000)
            .await
            .expect("claim");
        assert_eq!(first.len(), 2);
        // The other daemon gets the rest, never the claimed ones.
        let second = store
            .claim_unpublished("d2", 1_000, 60_000)
            .await
            .expect("claim");
        assert_eq!(first.len() + second.len(), total as usize);
        assert!(second.iter().all(|row| !first.contains(row)));
        // Its own claims come back to the claimer (its retries).
        let again = store
            .claim_unpublished("d1", 1_000, 60_000)
            .await
            .expect("claim");
        assert_eq!(again, first);
        // Published rows are nobody's; unstamped rows of a daemon whose
        // claim ran out go to another one (at least once).
        let ids: Vec<String> = first.iter().map(|row| row.id.clone()).collect();
        store.mark_published(&ids, NOW).await.expect("stamp");
        let short = store
            .claim_unpublished("d2", 1_000, 1)
            .await
            .expect("claim");
        assert_eq!(short, second);
        let now = store.db_now_ms().await.expect("clock");
        until_db_clock_passes(&store, now + 1).await;
        let taken = store
            .claim_unpublished("d3", 1_000, 60_000)
            .await
            .expect("claim");
        assert_eq!(taken, second);
    })
    .await;
}

/// A publisher's next batch starts after the last row it sent (those it
/// has not stamped yet are skipped), oldest first, on either backend.
#[tokio::test]
async fn the_next_rows_to_publish_start_after_the_last_one_sent() {
    on_every_backend(|store| async move {
        for id in ["o1", "o2", "o3", "o4"] {
            store
                .accept_orders(&[new_order(id, "acme", None)])
                .await
                .expect("accept");
        }
        let all = store
            .next_to_publish("d1", 0, 1_000, 60_000)
            .await
            .expect("rows");
        assert!(all.len() >= 4, "{}", all.len());
        assert!(all.windows(2).all(|pair| pair[0].seq < pair[1].seq));
        let after = store
            .next_to_publish("d1", all[1].seq, 1_000, 60_000)
            .await
            .expect("rows");
        assert_eq!(after, all[2..]);
        let one = store
            .next_to_publish("d1", all[1].seq, 1, 60_000)
            .await
            .expect("rows");
        assert_eq!(one, all[2..3]);
        let none = store
            .next_to_publish("d1", all[all.len() - 1].seq, 1_000, 60_000)
            .await
            .expect("rows");
        assert!(none.is_empty(), "{none:?}");
    })
    .await;
}

#[tokio::test]
async fn daemons_draining_at_once_never_share_a_row() {
    on_every_backend(|store| async move {
        for index in 0..40 {
            store
                .accept_orders(&[new_order(&format!("o{index}"), "acme", None)])
                .await
                .expect("accept");
        }
        let total = store.outbox_backlog().await.expect("backlog") as usize;
        let claim = |daemon: &'static str| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let rows = store
                        .claim_unpublished(daemon, 3, 60_000)
                        .await
                        .expect("claim");
                    let fresh: Vec<String> = rows
                        .into_iter()
                        .map(|row| row.id)
                        .filter(|id| !mine.contains(id))
                        .collect();
                    if fresh.is_empty() {
                        return mine;
                    }
                    // Stamped as the publisher does once the broker has them.
                    store.mark_published(&fresh, NOW).await.expect("stamp");
                    mine.extend(fresh);
                }
            })
        };
        let (a, b) = (claim("d1"), claim("d2"));
        let (a, b) = (a.await.expect("d1"), b.await.expect("d2"));
        assert_eq!(a.len() + b.len(), total);
        assert!(a.iter().all(|id| !b.contains(id)));
    })
    .await;
}

#[tokio::test]
async fn a_second_daemon_on_a_sqlite_file_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("one.db");
    let url = format!("sqlite://{}", path.display());
    let first = Store::connect_as(&url, "north-host-41")
        .await
        .expect("first daemon");
    let second = Store::connect_as(&url, "south-host-42").await;
    let Err(StoreError::InUse(message)) = second else {
        panic!("a second daemon on the same file must be refused, got {second:?}");
    };
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("north-host-41"), "{message}");
    // Once the first is closed, the file is free for the next daemon.
    first.close().await;
    let next = Store::connect_as(&url, "south-host-42")
        .await
        .expect("after the first closed");
    next.close().await;
}

#[tokio::test]
async fn renewals_pass_a_fenced_transaction_and_take_overs_wait_for_it() {
    on_every_backend(|store| async move {
        if store.backend != Backend::Postgres {
            return; // SQLite has one writer: nothing runs beside a transaction.
        }
        let lease = store
            .acquire_lease("factory/north", "d1", 60_000, false)
            .await
            .expect("acquire")
            .expect("taken");
        let fenced = store.fenced(lease.clone());
        let tx = fenced.begin().await.expect("a fenced transaction");
        // The owner renews while its transaction is open.
        let renewed =
            tokio::time::timeout(Duration::from_secs(20), store.renew_lease(&lease, 60_000))
                .await
                .expect("the renewal waited for the fenced transaction");
        assert!(renewed.expect("renew"), "renewed");
        // Released (as when handed over), then taken by another daemon:
        // the take waits for the open transaction to end.
        assert!(store.release_lease(&lease).await.expect("release"));
        let other = store.clone();
        let take = tokio::spawn(async move {
            other
                .acquire_lease("factory/north", "d2", 60_000, false)
                .await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!take.is_finished(), "the take-over did not wait");
        tx.commit().await.expect("commit");
        let taken = take.await.expect("task").expect("acquire");
        assert_eq!(taken.map(|f| f.epoch), Some(lease.epoch + 1));
    })
    .await;
}
