use super::*;
use crate::domain::webhook::{AfterFailure, DeliveryState};

fn endpoint(id: &str, brand: &str, kinds: &[&str]) -> NewEndpoint {
    NewEndpoint {
        id: id.into(),
        brand: brand.into(),
        url: "https://hooks.example/in".into(),
        description: String::new(),
        kinds: kinds.iter().map(|k| k.to_string()).collect(),
        secret: "whsec_AAAA".into(),
    }
}

#[tokio::test]
async fn deliveries_are_queued_once_per_wanted_event_from_registration_on() {
    on_every_backend(|store| async move {
        // An event before registration is not delivered.
        let before = new_order("o-0", "acme", None);
        store.accept_orders(&[before]).await.expect("accept");
        store
            .create_endpoint(&endpoint("wh-all", "acme", &[]), NOW)
            .await
            .expect("endpoint");
        store
            .create_endpoint(&endpoint("wh-none", "acme", &["job.done"]), NOW)
            .await
            .expect("endpoint");
        store
            .create_endpoint(&endpoint("wh-zest", "zest", &["order.*"]), NOW)
            .await
            .expect("endpoint");
        let batch = vec![
            new_order("o-1", "acme", None),
            new_order("o-2", "acme", None),
            new_order("o-3", "zest", None),
        ];
        store.accept_orders(&batch).await.expect("accept");
        let queued = store.queue_deliveries(500, NOW).await.expect("queue");
        // acme's two order.accepted to wh-all, zest's one to wh-zest.
        assert_eq!(queued, 3);
        // Queuing again finds nothing new: the cursors moved.
        assert_eq!(store.queue_deliveries(500, NOW).await.expect("queue"), 0);
        let listed = store
            .list_deliveries("wh-all", None, None, 100)
            .await
            .expect("list");
        assert_eq!(listed.len(), 2);
        assert!(listed.iter().all(|d| d.kind == "order.accepted"));
        assert!(
            store
                .list_deliveries("wh-none", None, None, 100)
                .await
                .expect("list")
                .is_empty()
        );

        // Two workers read the same due delivery: only one claims it.
        let due = store.due_deliveries(NOW, 10).await.expect("due");
        assert_eq!(due.len(), 3);
        let first = &due[0].delivery;
        assert!(
            store
                .claim_delivery(first, NOW, NOW + 30_000)
                .await
                .expect("claim")
        );
        assert!(
            !store
                .claim_delivery(first, NOW, NOW + 30_000)
                .await
                .expect("claim")
        );
        assert_eq!(store.due_deliveries(NOW, 10).await.expect("due").len(), 2);
        // A failure with a retry puts it back at its time; a dead one stays dead.
        store
            .record_attempt(
                first.id,
                1,
                Err((Some(500), "boom".into(), AfterFailure::RetryAt(NOW + 5))),
            )
            .await
            .expect("record");
        let again = store.due_deliveries(NOW + 5, 10).await.expect("due");
        let retried = again
            .iter()
            .find(|d| d.delivery.id == first.id)
            .expect("due again");
        assert_eq!(retried.delivery.attempts, 1);
        assert_eq!(retried.delivery.first_attempt_ms, Some(NOW));
        assert_eq!(retried.delivery.last_status, Some(500));
        assert!(
            store
                .claim_delivery(&retried.delivery, NOW + 5, NOW + 60_000)
                .await
                .expect("claim")
        );
        store
            .record_attempt(
                first.id,
                2,
                Err((None, "refused".into(), AfterFailure::Dead)),
            )
            .await
            .expect("record");
        // A stale outcome (attempt 1) changes nothing.
        store
            .record_attempt(first.id, 1, Ok(200))
            .await
            .expect("record");
        let dead = store
            .list_deliveries(&first.endpoint_id, Some(DeliveryState::Dead), None, 10)
            .await
            .expect("list");
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].attempts, 2);
        // Replayed: pending from its first attempt; replaying it again is a conflict.
        let replayed = store
            .replay_delivery(&first.endpoint_id, first.id, "admin", NOW + 10)
            .await
            .expect("replay");
        assert_eq!(replayed.state, DeliveryState::Pending);
        assert_eq!(replayed.attempts, 0);
        assert!(matches!(
            store
                .replay_delivery(&first.endpoint_id, first.id, "admin", NOW + 10)
                .await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            store
                .replay_delivery("wh-zest", first.id + 1000, "admin", NOW)
                .await,
            Err(StoreError::NotFound(_))
        ));

        // Scoping: another brand's endpoint is not found.
        assert!(
            store
                .endpoint(Some("zest"), "wh-all")
                .await
                .expect("read")
                .is_none()
        );
        assert!(
            !store
                .delete_endpoint(Some("zest"), "wh-all", "brand", NOW)
                .await
                .expect("delete")
        );
        assert!(
            store
                .delete_endpoint(Some("acme"), "wh-all", "brand", NOW)
                .await
                .expect("delete")
        );
        assert!(
            store
                .list_deliveries("wh-all", None, None, 100)
                .await
                .expect("list")
                .is_empty()
        );
    })
    .await;
}

#[tokio::test]
async fn a_brand_has_at_most_the_allowed_endpoints_and_rotation_keeps_the_old_secret() {
    on_every_backend(|store| async move {
        for n in 0..MAX_ENDPOINTS_PER_BRAND {
            store
                .create_endpoint(&endpoint(&format!("wh-{n}"), "acme", &[]), NOW)
                .await
                .expect("endpoint");
        }
        assert!(matches!(
            store
                .create_endpoint(&endpoint("wh-over", "acme", &[]), NOW)
                .await,
            Err(StoreError::Conflict(_))
        ));
        let rotated = store
            .rotate_secret(
                Some("acme"),
                "wh-0",
                "whsec_BBBB",
                NOW + 1_000,
                "brand",
                NOW,
            )
            .await
            .expect("rotate");
        assert_eq!(rotated.secret, "whsec_BBBB");
        assert_eq!(rotated.previous_secret.as_deref(), Some("whsec_AAAA"));
        assert_eq!(rotated.previous_until_ms, Some(NOW + 1_000));
        assert!(matches!(
            store
                .rotate_secret(Some("zest"), "wh-0", "whsec_CCCC", NOW, "brand", NOW)
                .await,
            Err(StoreError::NotFound(_))
        ));
    })
    .await;
}
