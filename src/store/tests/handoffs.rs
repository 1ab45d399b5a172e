//! Store scenarios: Handoffs: waves, confirmations, missed pickups.

use super::*;

#[tokio::test]
async fn waves_and_confirmed_handoffs_deliver_orders() {
    on_every_backend(|store| async move {
        store
            .accept_orders(&[new_order("o1", "acme", None)])
            .await
            .expect("accept");
        for _ in 0..2 {
            let ready = store.schedulable_jobs(10).await.expect("schedulable");
            let token = ready[0].token;
            store
                .schedule_jobs(&[(token, MachineId::new("m"))], NOW)
                .await
                .expect("schedule");
            store
                .transition_job(token, JobInput::Dispatch, NOW)
                .await
                .expect("dispatch");
            store
                .transition_job(token, JobInput::MachineFinished { good: 2, scrap: 0 }, NOW)
                .await
                .expect("done");
        }
        let waiting = store.wave_orders("berlin").await.expect("wave orders");
        assert_eq!(waiting.len(), 1);
        let stop = |id: &str, kind, seq| HandoffRecord {
            id: id.into(),
            wave: "w1".into(),
            courier: "bike-1".into(),
            order_id: "o1".into(),
            kind,
            seq,
            place: "north".into(),
            location: Location::new(52.5, 13.4),
            eta_ms: NOW + seq,
            state: HandoffState::Planned,
            updated_ms: NOW,
        };
        store
            .save_wave(
                &[
                    stop("h1", HandoffKind::Pickup, 0),
                    stop("h2", HandoffKind::Dropoff, 1),
                ],
                NOW,
            )
            .await
            .expect("save wave");
        assert!(
            store
                .wave_orders("berlin")
                .await
                .expect("wave orders")
                .is_empty(),
            "planned orders are not replanned"
        );
        assert_eq!(
            store
                .courier_schedule("bike-1")
                .await
                .expect("schedule")
                .len(),
            2
        );
        assert!(
            store
                .courier_schedule("bike-2")
                .await
                .expect("schedule")
                .is_empty()
        );
        assert!(matches!(
            store.confirm_handoff("h1", Some("bike-2"), NOW).await,
            Err(StoreError::NotFound(_))
        ));
        store
            .confirm_handoff("h1", Some("bike-1"), NOW)
            .await
            .expect("pickup");
        assert_eq!(
            store
                .get_order("o1", None)
                .await
                .expect("get")
                .map(|o| o.state),
            Some(OrderState::OutForDelivery)
        );
        assert!(
            store
                .confirm_handoff("h1", Some("bike-1"), NOW)
                .await
                .is_err(),
            "a stop is confirmed once"
        );
        store
            .confirm_handoff("h2", None, NOW)
            .await
            .expect("drop-off");
        assert_eq!(
            store
                .get_order("o1", None)
                .await
                .expect("get")
                .map(|o| o.state),
            Some(OrderState::Delivered)
        );
    })
    .await;
}

#[tokio::test]
async fn overdue_pickups_are_missed_and_their_orders_planned_again() {
    on_every_backend(|store| async move {
        store
            .accept_orders(&[new_order("o1", "acme", None)])
            .await
            .expect("accept");
        for _ in 0..2 {
            let token = store.schedulable_jobs(10).await.expect("schedulable")[0].token;
            store
                .schedule_jobs(&[(token, MachineId::new("m"))], NOW)
                .await
                .expect("schedule");
            store
                .transition_job(token, JobInput::Dispatch, NOW)
                .await
                .expect("dispatch");
            store
                .transition_job(token, JobInput::MachineFinished { good: 2, scrap: 0 }, NOW)
                .await
                .expect("done");
        }
        let stop = |id: &str, kind, seq, eta_ms| HandoffRecord {
            id: id.into(),
            wave: "w1".into(),
            courier: "bike-1".into(),
            order_id: "o1".into(),
            kind,
            seq,
            place: "north".into(),
            location: Location::new(52.5, 13.4),
            eta_ms,
            state: HandoffState::Planned,
            updated_ms: NOW,
        };
        store
            .save_wave(
                &[
                    stop("h1", HandoffKind::Pickup, 0, NOW + 10),
                    stop("h2", HandoffKind::Dropoff, 1, NOW + 20),
                ],
                NOW,
            )
            .await
            .expect("wave");
        assert_eq!(
            store
                .miss_overdue_pickups("berlin", NOW, NOW)
                .await
                .expect("miss"),
            0,
            "not overdue yet"
        );
        assert_eq!(
            store
                .miss_overdue_pickups("elsewhere", NOW + 100, NOW)
                .await
                .expect("miss"),
            0
        );
        assert_eq!(
            store
                .miss_overdue_pickups("berlin", NOW + 100, NOW)
                .await
                .expect("miss"),
            1
        );
        let states: Vec<HandoffState> = store
            .order_handoffs("o1")
            .await
            .expect("handoffs")
            .iter()
            .map(|h| h.state)
            .collect();
        assert_eq!(states, vec![HandoffState::Missed, HandoffState::Missed]);
        assert_eq!(
            store
                .wave_orders("berlin")
                .await
                .expect("wave orders")
                .len(),
            1,
            "planned again"
        );
        assert!(
            store
                .courier_schedule("bike-1")
                .await
                .expect("schedule")
                .is_empty()
        );
        let kinds = outbox_kinds(&store).await;
        assert_eq!(kinds.iter().filter(|k| *k == "handoff.missed").count(), 2);
    })
    .await;
}
