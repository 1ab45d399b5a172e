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

/// An order's promise from intake is stored with it: one at risk is
/// flagged in the same transaction, its `order.at_risk` event right after
/// its `order.accepted`; an order stock fills a line of keeps no estimate
/// (the work it counted will not be done) and gets no flag.
#[tokio::test]
async fn the_promise_given_at_intake_is_stored_and_an_order_at_risk_flagged_with_it() {
    on_every_backend(|store| async move {
        let promise = |at_risk: Option<&str>| Promise {
            eta_ready_ms: Some(NOW + 3_600_000),
            eta_delivery_ms: Some(NOW + 7_200_000),
            at_risk: at_risk.map(str::to_string),
            at_risk_ms: at_risk.map(|_| NOW + 1),
        };
        // Two tees on north's shelf: exactly what o3 asks for.
        store
            .write_statement(sqlx::query(
                "INSERT INTO stock (factory, sku, units, updated_ms) VALUES ('north', 'tee', 2, 0)",
            ))
            .await
            .expect("stock");
        let mut doomed = new_order("o1", "acme", None);
        doomed.promise = promise(Some("production_backlog"));
        let mut fine = new_order("o2", "acme", None);
        fine.promise = promise(None);
        let mut shelved = new_order("o3", "acme", None);
        shelved.promise = promise(Some("production_backlog"));
        // o3 first, so the shelf goes to it.
        let outcomes = store
            .accept_orders(&[shelved, doomed.clone(), fine.clone()])
            .await
            .expect("accept");
        assert_eq!(outcomes, vec![AcceptOutcome::Created; 3]);

        let stored = |id: &'static str| {
            let store = store.clone();
            async move { store.get_order(id, None).await.expect("get").expect(id) }
        };
        assert_eq!(stored("o1").await.promise, doomed.promise);
        assert_eq!(stored("o2").await.promise, fine.promise);
        let o3 = stored("o3").await;
        assert_eq!(o3.state, OrderState::Ready);
        assert_eq!(o3.promise, Promise::default());

        let events: Vec<(String, String, serde_json::Value)> = store
            .unpublished(100)
            .await
            .expect("outbox")
            .into_iter()
            .map(|row| {
                let payload: serde_json::Value =
                    serde_json::from_str(&row.payload).expect("payload");
                let order = payload["order_id"].as_str().unwrap_or("").to_string();
                (order, row.kind, payload["data"].clone())
            })
            .filter(|(_, kind, _)| kind.starts_with("order."))
            .collect();
        let of = |id: &str| -> Vec<&str> {
            events
                .iter()
                .filter(|(order, _, _)| order == id)
                .map(|(_, kind, _)| kind.as_str())
                .collect()
        };
        assert_eq!(of("o1"), ["order.accepted", "order.at_risk"]);
        assert_eq!(of("o2"), ["order.accepted"]);
        assert!(!of("o3").contains(&"order.at_risk"), "{:?}", of("o3"));
        let (_, _, data) = events
            .iter()
            .find(|(order, kind, _)| order == "o1" && kind == "order.at_risk")
            .expect("o1's flag");
        assert_eq!(data["reason"], "production_backlog");
        assert_eq!(data["deadline_ms"], NOW + 48 * 3_600_000);
    })
    .await;
}
