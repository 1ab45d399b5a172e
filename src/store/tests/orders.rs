//! Store scenarios: Orders: intake with idempotency keys, large batches, imports that share one fate.

use super::*;

#[tokio::test]
async fn orders_are_accepted_with_jobs_and_events_and_keys_replay() {
    on_every_backend(|store| async move {
        let batch = [
            new_order("o1", "acme", Some("k1")),
            new_order("o2", "acme", Some("k1")),
            new_order("o3", "zest", None),
        ];
        let mut reused = batch[1].clone();
        reused.idempotency = batch[0].idempotency.clone();
        let outcomes = store
            .accept_orders(&[batch[0].clone(), reused.clone(), batch[2].clone()])
            .await
            .expect("accept");
        assert_eq!(
            outcomes,
            vec![
                AcceptOutcome::Created,
                AcceptOutcome::Replayed {
                    status: 201,
                    response: "{\"id\":\"o1\"}".into()
                },
                AcceptOutcome::Created
            ]
        );
        // Same key, different body: refused, nothing stored.
        let outcomes = store
            .accept_orders(&[batch[1].clone()])
            .await
            .expect("accept");
        assert_eq!(outcomes, vec![AcceptOutcome::KeyReused]);
        assert!(store.get_order("o2", None).await.expect("get").is_none());

        let order = store
            .get_order("o1", Some("acme"))
            .await
            .expect("get")
            .expect("o1");
        assert_eq!(order.state, OrderState::Accepted);
        assert_eq!(order.lines[0].sku, "tee");
        // Another brand's order does not exist for this brand.
        assert!(
            store
                .get_order("o3", Some("acme"))
                .await
                .expect("get")
                .is_none()
        );
        let acme = store
            .list_orders(&OrderFilter {
                brand: Some("acme".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(
            acme.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(),
            vec!["o1"]
        );
        let all = store
            .list_orders(&OrderFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(all.len(), 2);
        let page = store
            .list_orders(&OrderFilter {
                after: Some("o1".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(
            page.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(),
            vec!["o3"]
        );

        let jobs = store
            .list_jobs(&JobFilter {
                order_id: Some("o1".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("jobs");
        assert_eq!(jobs.len(), 2);
        assert!(jobs.iter().all(|job| job.state == JobState::Pending));
        assert_ne!(jobs[0].token, jobs[1].token);
        assert_eq!(
            outbox_kinds(&store).await,
            vec!["order.accepted", "order.accepted"]
        );
    })
    .await;
}

/// `orders` accepted orders, each with its two jobs under tokens of their
/// own and its one `order.accepted` event: nothing stored twice.
async fn assert_stored_once(store: &Store, orders: i64) {
    let counts = store.order_counts().await.expect("counts");
    assert_eq!(counts.get(&OrderState::Accepted), Some(&orders));
    let jobs = store
        .list_jobs(&JobFilter {
            limit: 5_000,
            ..Default::default()
        })
        .await
        .expect("jobs");
    assert_eq!(jobs.len() as i64, 2 * orders);
    let tokens: std::collections::BTreeSet<u32> = jobs.iter().map(|j| j.token.0).collect();
    assert_eq!(tokens.len() as i64, 2 * orders, "tokens are unique");
    assert_eq!(store.outbox_backlog().await.expect("backlog"), orders);
}

#[tokio::test]
async fn large_batches_are_split_into_statements_and_keys_still_replay() {
    on_every_backend(|store| async move {
        let batch: Vec<NewOrder> = (0..1_200)
            .map(|i| new_order(&format!("o{i:05}"), "acme", Some(&format!("k{i}"))))
            .collect();
        let outcomes = store.accept_orders(&batch).await.expect("accept");
        assert!(outcomes.iter().all(|o| *o == AcceptOutcome::Created));
        let again = store.accept_orders(&batch).await.expect("replay");
        assert!(
            again
                .iter()
                .all(|o| matches!(o, AcceptOutcome::Replayed { .. })),
            "every key replays"
        );
        assert_stored_once(&store, 1_200).await;
    })
    .await;
}

/// A batch of new keys with one stored before (in the second statement's
/// chunk of keys): the stored one replays, the others are created once,
/// and nothing the first attempt at the batch wrote is left behind (the
/// SQLite write of new keys is undone to its savepoint and redone).
#[tokio::test]
async fn a_batch_mixing_a_stored_key_with_new_ones_creates_each_new_order_once() {
    on_every_backend(|store| async move {
        store
            .accept_orders(&[new_order("old", "acme", Some("k0700"))])
            .await
            .expect("first");
        let mut batch: Vec<NewOrder> = (0..800)
            .map(|i| new_order(&format!("n{i:05}"), "acme", Some(&format!("k{i:04}"))))
            .collect();
        // The same body as the stored one: a replay.
        batch[700] = new_order("old", "acme", Some("k0700"));
        let outcomes = store.accept_orders(&batch).await.expect("accept");
        for (i, outcome) in outcomes.iter().enumerate() {
            match i {
                700 => assert!(
                    matches!(outcome, AcceptOutcome::Replayed { .. }),
                    "{outcome:?}"
                ),
                _ => assert_eq!(*outcome, AcceptOutcome::Created, "order {i}"),
            }
        }
        assert_stored_once(&store, 800).await;
        // Every new key replays now.
        let again = store.accept_orders(&batch).await.expect("replay");
        assert!(
            again
                .iter()
                .all(|o| matches!(o, AcceptOutcome::Replayed { .. }))
        );
    })
    .await;
}

#[tokio::test]
async fn followers_share_the_fate_of_their_leader() {
    on_every_backend(|store| async move {
        let file = |suffix: &str, hash: &str| {
            let mut first = new_order(&format!("f1{suffix}"), "acme", Some("import-1"));
            if let Some(idem) = first.idempotency.as_mut() {
                idem.request_hash = hash.into();
            }
            let mut second = new_order(&format!("f2{suffix}"), "acme", None);
            second.follows = true;
            vec![first, second]
        };
        let created = store.accept_orders(&file("", "h1")).await.expect("import");
        assert_eq!(
            created,
            vec![AcceptOutcome::Created, AcceptOutcome::Created]
        );
        // The same file again: replayed, nothing new.
        let again = store
            .accept_orders(&file("-again", "h1"))
            .await
            .expect("replay");
        assert!(
            again
                .iter()
                .all(|o| matches!(o, AcceptOutcome::Replayed { .. })),
            "{again:?}"
        );
        // Another file under the same key: refused whole.
        let other = store
            .accept_orders(&file("-other", "h2"))
            .await
            .expect("refuse");
        assert_eq!(
            other,
            vec![AcceptOutcome::KeyReused, AcceptOutcome::KeyReused]
        );
        let orders = store
            .list_orders(&OrderFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(
            orders.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(),
            vec!["f1", "f2"]
        );
    })
    .await;
}

/// Two daemons on one PostgreSQL database take the same Idempotency-Key at
/// once (a client retrying at the next daemon): one creates the order, the
/// other replays it; neither fails on the key's unique index (the loser's
/// transaction runs again and finds the key).
#[tokio::test]
async fn two_daemons_taking_one_key_at_once_create_once_and_replay() {
    let Ok(base) = std::env::var("FABFLOW_TEST_POSTGRES_URL") else {
        eprintln!("store: PostgreSQL key race skipped (set FABFLOW_TEST_POSTGRES_URL to run it)");
        return;
    };
    if base.is_empty() {
        return;
    }
    let url = fresh_postgres_url(&base).await;
    let first = Store::connect(&url).await.expect("first daemon's store");
    let second = Store::connect(&url).await.expect("second daemon's store");
    for i in 0..20 {
        let key = format!("race-{i}");
        let a = new_order(&format!("race-a-{i}"), "acme", Some(&key));
        let mut b = new_order(&format!("race-b-{i}"), "acme", Some(&key));
        // The same request (same hash): the second is a replay of the first.
        b.idempotency = a.idempotency.clone();
        let (a, b) = ([a], [b]);
        let (one, two) = tokio::join!(first.accept_orders(&a), second.accept_orders(&b));
        let mut outcomes = vec![
            one.expect("first daemon").remove(0),
            two.expect("second daemon").remove(0),
        ];
        outcomes.sort_by_key(|o| matches!(o, AcceptOutcome::Created));
        assert!(
            matches!(outcomes[1], AcceptOutcome::Created)
                && matches!(outcomes[0], AcceptOutcome::Replayed { .. }),
            "round {i}: {outcomes:?}"
        );
    }
    second.close().await;
    first.close().await;
}

/// SQLite intake's one-query transaction (BEGIN to COMMIT in one round
/// trip): taken only once the shelves were seen empty; it stores the
/// orders, their jobs and events like the careful way; a stored key fails
/// it whole, nothing of it stays, and the careful way then replays.
#[tokio::test]
async fn sqlite_takes_a_batch_in_one_query_once_the_shelves_were_seen_empty() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("one.db").display());
    let store = Store::connect(&url).await.expect("store");
    let first = [new_order("o1", "acme", Some("k1"))];
    assert!(
        store.accept_in_one_query(&first).await.is_none(),
        "the shelves were never looked at"
    );
    store.accept_orders(&first).await.expect("careful way");
    // The careful way found no stock, and says so for a second; said again
    // here, so that a slow machine does not outlast it.
    store.stock.set_empty(true);
    let batch = [
        new_order("o2", "acme", Some("k2")),
        new_order("o3", "zest", None),
    ];
    let outcomes = store
        .accept_in_one_query(&batch)
        .await
        .expect("taken")
        .expect("stored");
    assert_eq!(outcomes.outcomes, vec![AcceptOutcome::Created; 2]);
    assert_stored_once(&store, 3).await;
    // A stored key (o1's, same body) among new ones: the query fails whole...
    let mixed = [
        new_order("o4", "acme", Some("k4")),
        new_order("o1", "acme", Some("k1")),
    ];
    store.stock.set_empty(true);
    assert!(store.accept_in_one_query(&mixed).await.is_none());
    assert_stored_once(&store, 3).await;
    // ...and the careful way (through the rolled-back writer) replays.
    let outcomes = store.accept_orders(&mixed).await.expect("accept");
    assert_eq!(outcomes[0], AcceptOutcome::Created);
    assert!(matches!(outcomes[1], AcceptOutcome::Replayed { .. }));
    assert_stored_once(&store, 4).await;
    let events = outbox_kinds(&store).await;
    assert_eq!(events, vec!["order.accepted"; 4]);
    store.close().await;
}

/// The promise watch's reads give back every field as stored: floats to
/// the last bit, absent estimates as absent, text with quotes and accents
/// as written; only orders in the making and jobs not finished.
#[tokio::test]
async fn orders_in_making_and_open_jobs_read_back_exactly() {
    on_every_backend(|store| async move {
        let mut order = new_order("o\"1", "acme", None);
        order.location = Location::new(52.540_512_345_678_91, 0.1 + 0.2);
        order.factory = "süd \"west\"".into();
        for job in &mut order.jobs {
            job.seconds_per_unit = 0.1 + 0.7;
            job.process = "dtg \\ print".into();
        }
        let other = new_order("o2", "zest", None);
        store
            .accept_orders(&[order.clone(), other])
            .await
            .expect("accept");
        store
            .write_statement(sqlx::query(
                "UPDATE orders SET state = 'ready' WHERE id = 'o2'",
            ))
            .await
            .expect("o2 ready");
        let orders = store.orders_in_making().await.expect("orders");
        assert_eq!(
            orders,
            vec![OrderInMaking {
                id: order.id.clone(),
                brand: order.brand.clone(),
                factory: order.factory.clone(),
                location: order.location,
                deadline_ms: order.deadline_ms,
                eta_ready_ms: None,
                eta_delivery_ms: None,
                at_risk: None,
            }]
        );
        let mut jobs = store.open_jobs().await.expect("jobs");
        jobs.sort_by_key(|job| (job.order_id.to_string(), job.step));
        assert_eq!(jobs.len(), 4, "{jobs:?}");
        let mine = &jobs[..2];
        assert!(mine.iter().all(|job| job.order_id == order.id));
        assert_eq!(mine[0].seconds, 2.0 * (0.1 + 0.7));
        assert_eq!(mine[1].process, "dtg \\ print");
        assert_eq!(mine[1].factory, order.factory);
        assert_eq!(mine[0].due_ms, order.jobs[0].due_ms);
        assert_eq!((mine[0].line, mine[1].step), (0, 1));
        assert_eq!(mine[0].state, JobState::Pending);
    })
    .await;
}
