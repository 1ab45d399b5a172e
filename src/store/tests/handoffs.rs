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
        // Ready at NOW: a look from NOW on finds it, one from later does not.
        let since = |from: Millis| {
            let store = store.clone();
            async move {
                store
                    .wave_orders_since("berlin", Some(from))
                    .await
                    .expect("since")
                    .len()
            }
        };
        assert_eq!(since(NOW).await, 1);
        assert_eq!(since(NOW + 1).await, 0);
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
            code: Some(format!("{}", 111_111 * (seq + 1))),
            wrong_codes: 0,
            failure: None,
            return_id: None,
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
            store
                .confirm_handoff("h1", Some("bike-2"), Some("111111"), 5, NOW)
                .await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(
            store
                .confirm_handoff("h1", Some("bike-1"), Some("999999"), 5, NOW)
                .await
                .expect("a wrong code is counted"),
            Confirmation::WrongCode {
                wrong_codes: 1,
                locked: false
            }
        );
        assert!(matches!(
            store
                .confirm_handoff("h1", Some("bike-1"), Some("111111"), 5, NOW)
                .await
                .expect("pickup"),
            Confirmation::Confirmed(_)
        ));
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
                .confirm_handoff("h1", Some("bike-1"), Some("111111"), 5, NOW)
                .await
                .is_err(),
            "a stop is confirmed once"
        );
        // An admin's confirmation (no code).
        store
            .confirm_handoff("h2", None, None, 5, NOW)
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

/// Accepts order `o1` and finishes its two jobs, so it is ready.
async fn ready_order(store: &Store) {
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
}

/// Order `o1` ready, with its pickup `h1` and drop-off `h2` planned for bike-1.
async fn ready_and_planned(store: &Store) {
    ready_order(store).await;
    store
        .save_wave(&pair("w1", "h1", "h2"), NOW)
        .await
        .expect("wave");
}

/// Order `id`'s promise as stored.
async fn promise_of(store: &Store, id: &str) -> Promise {
    store
        .get_order(id, None)
        .await
        .expect("get")
        .expect("order")
        .promise
}

/// How many events of `kind` the log holds (of `brand`, or every one).
async fn events_of_kind(store: &Store, brand: Option<&str>, kind: &str) -> usize {
    let quoted = format!("\"{kind}\"");
    store
        .events_after(brand, None, 1000)
        .await
        .expect("events")
        .iter()
        .filter(|e| e.payload.contains(&quoted))
        .count()
}

fn pair(wave: &str, pickup: &str, dropoff: &str) -> Vec<HandoffRecord> {
    [
        (pickup, HandoffKind::Pickup, 0),
        (dropoff, HandoffKind::Dropoff, 1),
    ]
    .into_iter()
    .map(|(id, kind, seq)| HandoffRecord {
        id: id.into(),
        wave: wave.into(),
        courier: "bike-1".into(),
        order_id: "o1".into(),
        kind,
        seq,
        place: "north".into(),
        location: Location::new(52.5, 13.4),
        eta_ms: NOW + seq,
        state: HandoffState::Planned,
        updated_ms: NOW,
        code: Some(format!("{id}-code")),
        wrong_codes: 0,
        failure: None,
        return_id: None,
    })
    .collect()
}

#[tokio::test]
async fn wrong_codes_lock_a_stop_until_an_operator_releases_it() {
    on_every_backend(|store| async move {
        ready_and_planned(&store).await;
        let wrong = |store: Store| async move {
            store
                .confirm_handoff("h1", Some("bike-1"), Some("nope"), 2, NOW)
                .await
                .expect("counted")
        };
        assert_eq!(
            wrong(store.clone()).await,
            Confirmation::WrongCode {
                wrong_codes: 1,
                locked: false
            }
        );
        assert_eq!(
            wrong(store.clone()).await,
            Confirmation::WrongCode {
                wrong_codes: 2,
                locked: true
            }
        );
        assert!(matches!(
            store
                .confirm_handoff("h1", Some("bike-1"), Some("h1-code"), 2, NOW)
                .await,
            Err(StoreError::Locked(_))
        ));
        assert!(
            store
                .wave_orders("berlin")
                .await
                .expect("wave orders")
                .is_empty(),
            "a locked stop is not planned again"
        );
        let released = store
            .release_handoff("h1", "operator:north (token t)", NOW)
            .await
            .expect("release");
        assert_eq!(
            (released.state, released.wrong_codes),
            (HandoffState::Planned, 0)
        );
        assert!(
            store
                .release_handoff("h1", "operator:north (token t)", NOW)
                .await
                .is_err()
        );
        let audit = store.list_audit(None, 10).await.expect("audit");
        assert!(
            audit
                .iter()
                .any(|a| a.action == "handoff.release" && a.target == "h1")
        );
        assert!(matches!(
            store
                .confirm_handoff("h1", Some("bike-1"), Some("h1-code"), 2, NOW)
                .await
                .expect("confirmed after release"),
            Confirmation::Confirmed(_)
        ));
        let kinds = outbox_kinds(&store).await;
        for kind in ["handoff.locked", "handoff.released", "handoff.confirmed"] {
            assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
        }
    })
    .await;
}

#[tokio::test]
async fn failed_attempts_are_planned_again_then_escalated() {
    on_every_backend(|store| async move {
        ready_and_planned(&store).await;
        store
            .confirm_handoff("h1", Some("bike-1"), Some("h1-code"), 5, NOW)
            .await
            .expect("pickup");
        // A failed drop-off: the parcel goes back; the order is ready and planned again.
        let failed = store
            .fail_handoff("h2", Some("bike-1"), FailureReason::NotHome, 2, NOW)
            .await
            .expect("failed");
        assert_eq!(
            (failed.handoff.state, failed.attempts, failed.escalated),
            (HandoffState::Failed, 1, false)
        );
        assert_eq!(failed.handoff.failure, Some(FailureReason::NotHome));
        let order = store
            .get_order("o1", None)
            .await
            .expect("get")
            .expect("order");
        assert_eq!(order.state, OrderState::Ready);
        assert_eq!(
            store
                .wave_orders("berlin")
                .await
                .expect("wave orders")
                .len(),
            1
        );
        assert!(
            store
                .fail_handoff("h2", Some("bike-1"), FailureReason::NotHome, 2, NOW)
                .await
                .is_err(),
            "a failed stop never changes"
        );
        // A failed pickup in the next wave: its drop-off is missed, and the
        // second failure escalates the order.
        store
            .save_wave(&pair("w2", "h3", "h4"), NOW)
            .await
            .expect("wave");
        let failed = store
            .fail_handoff("h3", None, FailureReason::Refused, 2, NOW)
            .await
            .expect("failed");
        assert_eq!((failed.attempts, failed.escalated), (2, true));
        let states: Vec<HandoffState> = store
            .order_handoffs("o1")
            .await
            .expect("handoffs")
            .iter()
            .map(|h| h.state)
            .collect();
        use HandoffState::{Done, Failed, Missed};
        assert_eq!(states, [Done, Failed, Failed, Missed]);
        assert!(
            store
                .wave_orders("berlin")
                .await
                .expect("wave orders")
                .is_empty(),
            "escalated"
        );
        let escalation = store
            .order_escalation("o1")
            .await
            .expect("read")
            .expect("escalated");
        assert_eq!(
            (escalation.reason, escalation.attempts),
            (FailureReason::Refused, 2)
        );
        assert_eq!(store.escalated_count().await.expect("count"), 1);
        let kinds = outbox_kinds(&store).await;
        assert_eq!(kinds.iter().filter(|k| *k == "handoff.failed").count(), 2);
        assert_eq!(kinds.iter().filter(|k| *k == "order.escalated").count(), 1);
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
            code: None,
            wrong_codes: 0,
            failure: None,
            return_id: None,
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

#[tokio::test]
async fn a_courier_off_duty_hands_back_its_pickups_and_is_left_out() {
    on_every_backend(|store| async move {
        ready_and_planned(&store).await;
        assert!(store.couriers_off_duty().await.expect("duty").is_empty());
        let change = store
            .set_courier_duty("bike-1", false, "op", NOW + 5)
            .await
            .expect("off duty");
        assert_eq!((change.released, change.brought_back), (1, 0));
        let off = store.couriers_off_duty().await.expect("duty");
        assert!(off.contains("bike-1") && off.len() == 1);
        // Both stops are missed and the order waits for the next wave.
        let states: Vec<HandoffState> = store
            .order_handoffs("o1")
            .await
            .expect("handoffs")
            .iter()
            .map(|h| h.state)
            .collect();
        assert_eq!(states, vec![HandoffState::Missed, HandoffState::Missed]);
        assert_eq!(store.wave_orders("berlin").await.expect("wave").len(), 1);
        // Back on duty: nothing to hand back; audited both times, one event each.
        assert_eq!(
            store
                .set_courier_duty("bike-1", true, "bike-1", NOW + 6)
                .await
                .expect("on duty"),
            DutyChange::default()
        );
        assert!(store.couriers_off_duty().await.expect("duty").is_empty());
        let audit = store.list_audit(None, 100).await.expect("audit");
        assert_eq!(
            audit.iter().filter(|a| a.action == "courier.duty").count(),
            2
        );
        assert_eq!(
            events_of_kind(&store, None, "courier.duty_changed").await,
            2
        );
    })
    .await;
}

#[tokio::test]
async fn a_courier_dropping_out_brings_its_parcels_back_for_another_courier() {
    on_every_backend(|store| async move {
        ready_and_planned(&store).await;
        store
            .confirm_handoff("h1", Some("bike-1"), Some("h1-code"), 5, NOW)
            .await
            .expect("picked up");
        assert!(store.wave_orders("berlin").await.expect("none").is_empty());
        let change = store
            .set_courier_duty("bike-1", false, "bike-1", NOW + 5)
            .await
            .expect("off duty");
        assert_eq!((change.released, change.brought_back), (0, 1));
        // The parcel is back at its factory: the order is ready, its
        // drop-off missed (not failed: no attempt counted), and the next
        // wave plans it with whoever is on duty, not only bike-1.
        let order = store
            .get_order("o1", None)
            .await
            .expect("read")
            .expect("order");
        assert_eq!(order.state, OrderState::Ready);
        let states: Vec<HandoffState> = store
            .order_handoffs("o1")
            .await
            .expect("handoffs")
            .iter()
            .map(|h| h.state)
            .collect();
        assert_eq!(states, vec![HandoffState::Done, HandoffState::Missed]);
        assert_eq!(store.wave_orders("berlin").await.expect("wave").len(), 1);
        assert!(
            store
                .carried_orders("berlin")
                .await
                .expect("none")
                .is_empty()
        );
        assert_eq!(
            events_of_kind(&store, Some("acme"), "handoff.missed").await,
            1
        );
        let payloads: Vec<String> = store
            .events_after(None, None, 1000)
            .await
            .expect("events")
            .into_iter()
            .map(|e| e.payload)
            .filter(|p| p.contains("\"courier.duty_changed\""))
            .collect();
        assert_eq!(payloads.len(), 1);
        assert!(
            payloads[0].contains("\"brought_back\":1"),
            "{}",
            payloads[0]
        );
        // Picked up again by another courier and delivered.
        let mut again = pair("w2", "h3", "h4");
        for stop in &mut again {
            stop.courier = "van-1".into();
        }
        store.save_wave(&again, NOW + 10).await.expect("wave");
        for stop in ["h3", "h4"] {
            store
                .confirm_handoff(
                    stop,
                    Some("van-1"),
                    Some(&format!("{stop}-code")),
                    5,
                    NOW + 20,
                )
                .await
                .expect("confirmed");
        }
        let order = store
            .get_order("o1", None)
            .await
            .expect("read")
            .expect("order");
        assert_eq!(order.state, OrderState::Delivered);
        // Going off duty again has nothing left to bring back.
        let change = store
            .set_courier_duty("bike-1", false, "bike-1", NOW + 30)
            .await
            .expect("off duty");
        assert_eq!(change, DutyChange::default());
    })
    .await;
}

#[tokio::test]
async fn a_late_courier_pushes_its_stops_back_and_names_deliveries_now_late() {
    on_every_backend(|store| async move {
        ready_and_planned(&store).await;
        // An hour late: still before the 48-hour deadline.
        let late = store
            .delay_courier("bike-1", 3_600_000)
            .await
            .expect("delay");
        assert!(late.is_empty());
        let etas: Vec<Millis> = store
            .order_handoffs("o1")
            .await
            .expect("handoffs")
            .iter()
            .map(|h| h.eta_ms)
            .collect();
        assert_eq!(etas, vec![NOW + 3_600_000, NOW + 3_600_001]);
        // Two days late: the drop-off now misses the deadline.
        let late = store
            .delay_courier("bike-1", 48 * 3_600_000)
            .await
            .expect("delay");
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].order_id.as_str(), "o1");
        assert!(late[0].eta_ms > late[0].deadline_ms);
        // Flagged once, with its event; a second flag changes nothing.
        let update = PromiseUpdate {
            order_id: late[0].order_id.clone(),
            brand: late[0].brand.clone(),
            deadline_ms: late[0].deadline_ms,
            eta_ready_ms: None,
            eta_delivery_ms: Some(late[0].eta_ms),
            at_risk: Some(AtRiskReason::NoCourierInTime),
        };
        assert_eq!(
            store
                .record_promises(std::slice::from_ref(&update), NOW + 7)
                .await
                .expect("flag"),
            1
        );
        assert_eq!(
            store
                .record_promises(&[update], NOW + 8)
                .await
                .expect("flag"),
            0
        );
        let order = store.get_order("o1", None).await.expect("get").expect("o1");
        assert_eq!(order.promise.at_risk.as_deref(), Some("no_courier_in_time"));
        assert_eq!(order.promise.at_risk_ms, Some(NOW + 7));
        assert_eq!(order.promise.eta_delivery_ms, Some(late[0].eta_ms));
        assert_eq!(order.promise.eta_ready_ms, Some(NOW + 7), "ready by then");
        assert_eq!(
            events_of_kind(&store, Some("acme"), "order.at_risk").await,
            1
        );
    })
    .await;
}

#[tokio::test]
async fn promises_of_many_orders_are_written_together_each_flagged_once() {
    on_every_backend(|store| async move {
        store
            .accept_orders(&[
                new_order("o1", "acme", None),
                new_order("o2", "acme", None),
                new_order("o3", "acme", None),
            ])
            .await
            .expect("accept");
        let update =
            |id: &str, ready: Option<Millis>, at_risk: Option<AtRiskReason>| PromiseUpdate {
                order_id: id.into(),
                brand: "acme".into(),
                deadline_ms: NOW + 1_000,
                eta_ready_ms: ready,
                eta_delivery_ms: ready.map(|ms| ms + 100),
                at_risk,
            };
        let backlog = Some(AtRiskReason::ProductionBacklog);
        let flagged = store
            .record_promises(
                &[
                    update("o1", Some(NOW + 10), None),
                    update("o2", Some(NOW + 20), backlog),
                    update("o3", None, Some(AtRiskReason::NoCourierInTime)),
                    // The same order again: the last estimate wins, the
                    // first reason given.
                    update("o1", Some(NOW + 30), backlog),
                    update("o2", Some(NOW + 25), Some(AtRiskReason::DeadlineClose)),
                ],
                NOW + 5,
            )
            .await
            .expect("record");
        assert_eq!(flagged, 3);
        let o1 = promise_of(&store, "o1").await;
        assert_eq!(o1.eta_ready_ms, Some(NOW + 30));
        assert_eq!(o1.eta_delivery_ms, Some(NOW + 130));
        assert_eq!(o1.at_risk.as_deref(), Some("production_backlog"));
        let o3 = promise_of(&store, "o3").await;
        assert_eq!(
            o3.eta_ready_ms,
            Some(NOW + 5),
            "never estimated: ready by now"
        );
        assert_eq!(o3.eta_delivery_ms, None);
        assert_eq!(o3.at_risk.as_deref(), Some("no_courier_in_time"));
        // Again, flagged for another reason and with no estimate: the first
        // reason stays, the estimates stay, no second event.
        let again = store
            .record_promises(
                &[update("o2", None, Some(AtRiskReason::DeadlineClose))],
                NOW + 6,
            )
            .await
            .expect("again");
        assert_eq!(again, 0);
        let o2 = promise_of(&store, "o2").await;
        assert_eq!(o2.eta_ready_ms, Some(NOW + 25));
        assert_eq!(o2.eta_delivery_ms, Some(NOW + 125));
        assert_eq!(o2.at_risk.as_deref(), Some("production_backlog"));
        assert_eq!(o2.at_risk_ms, Some(NOW + 5));
        assert_eq!(
            events_of_kind(&store, Some("acme"), "order.at_risk").await,
            3
        );
        // Publishing marks exactly the events named.
        let unpublished = store.unpublished(100).await.expect("outbox");
        assert!(unpublished.len() >= 6, "{unpublished:?}");
        let ids: Vec<String> = unpublished.iter().take(4).map(|e| e.id.clone()).collect();
        store
            .mark_published(&ids, NOW + 7)
            .await
            .expect("published");
        let left = store.unpublished(100).await.expect("outbox");
        assert_eq!(left.len(), unpublished.len() - 4);
        assert!(left.iter().all(|e| !ids.contains(&e.id)));
    })
    .await;
}

#[tokio::test]
async fn a_pickup_confirmed_while_it_is_being_missed_keeps_its_drop_off() {
    on_every_backend(|store| async move {
        ready_and_planned(&store).await;
        // The wave reads the overdue pickup...
        let rows = sqlx::query(
            "SELECT h.id, h.wave, h.order_id, h.return_id, o.brand FROM handoffs h JOIN orders o ON o.id = h.order_id \
             WHERE h.kind = 'pickup' AND h.state = 'planned'",
        )
        .fetch_all(store.reader())
        .await
        .expect("rows");
        assert_eq!(rows.len(), 1);
        // ...the late courier confirms it...
        store
            .confirm_handoff("h1", None, None, 5, NOW + 1)
            .await
            .expect("confirm");
        // ...then the wave misses what it read: nothing, the parcel is on board.
        let mut tx = store.begin().await.expect("tx");
        let missed = crate::store::handoffs::miss_pickups(&mut tx, &rows, NOW + 2)
            .await
            .expect("miss");
        tx.commit().await.expect("commit");
        assert_eq!(missed, 0);
        let states: Vec<(String, HandoffState)> = store
            .order_handoffs("o1")
            .await
            .expect("handoffs")
            .iter()
            .map(|h| (h.id.clone(), h.state))
            .collect();
        assert_eq!(
            states,
            vec![
                ("h1".to_string(), HandoffState::Done),
                ("h2".to_string(), HandoffState::Planned)
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn the_last_call_flags_undelivered_orders_once() {
    on_every_backend(|store| async move {
        ready_order(&store).await;
        store
            .accept_orders(&[new_order("o2", "acme", None)])
            .await
            .expect("accept");
        let deadline = NOW + 48 * 3_600_000;
        let last_call = deadline - crate::domain::promise::LAST_CALL_MS;
        // Before the last call: nothing.
        assert_eq!(
            store
                .flag_undelivered_by(deadline - 1, AtRiskReason::DeadlineClose, NOW)
                .await
                .expect("flag"),
            0
        );
        // At the last call, both orders (ready and accepted), once.
        assert_eq!(
            store
                .flag_undelivered_by(deadline, AtRiskReason::DeadlineClose, last_call)
                .await
                .expect("flag"),
            2
        );
        assert_eq!(
            store
                .flag_undelivered_by(deadline, AtRiskReason::DeadlineClose, last_call + 1)
                .await
                .expect("flag"),
            0
        );
        let order = store.get_order("o1", None).await.expect("get").expect("o1");
        assert_eq!(order.promise.at_risk.as_deref(), Some("deadline_close"));
        assert_eq!(order.promise.at_risk_ms, Some(last_call));
        let events = store
            .events_after(Some("acme"), None, 1000)
            .await
            .expect("events");
        let flags = events
            .iter()
            .filter(|e| e.payload.contains("\"order.at_risk\""))
            .count();
        assert_eq!(flags, 2);
    })
    .await;
}

#[tokio::test]
async fn a_rebuilt_wave_moves_planned_stops_by_compare_and_set_with_an_event_each() {
    on_every_backend(|store| async move {
        ready_and_planned(&store).await;
        let open = store.open_stops().await.expect("open stops");
        assert_eq!(open.len(), 2);
        assert_eq!(open[0].handoff.id, "h1");
        assert_eq!(open[0].brand.as_str(), "acme");
        assert_eq!(open[0].return_requested_ms, None);
        let moved = |from_wave: &str| StopMove {
            id: "h2".into(),
            order_id: "o1".into(),
            brand: "acme".into(),
            from_courier: "bike-1".into(),
            from_wave: from_wave.into(),
            to_courier: "bike-2".into(),
            wave: "w2".into(),
            seq: 3,
            eta_ms: NOW + 50,
        };
        // Moved from where it was: new courier, wave, place and ETA; the code stays.
        store
            .save_rebuilt_wave(&[moved("w1")], &[], NOW)
            .await
            .expect("rebuilt");
        let theirs = store.courier_schedule("bike-2").await.expect("schedule");
        assert_eq!(theirs.len(), 1, "{theirs:?}");
        assert_eq!(
            events_of_kind(&store, Some("acme"), "handoff.replanned").await,
            1
        );
        let (_, detail) = store
            .order_handoffs("o1")
            .await
            .expect("handoffs")
            .into_iter()
            .map(|h| (h.id.clone(), h))
            .find(|(id, _)| id == "h2")
            .expect("h2");
        assert_eq!(
            (
                detail.courier.as_str(),
                detail.wave.as_str(),
                detail.seq,
                detail.eta_ms
            ),
            ("bike-2", "w2", 3, NOW + 50)
        );
        assert_eq!(detail.code.as_deref(), Some("h2-code"));
        // From where it no longer is: a conflict, and nothing changes.
        let stale = store.save_rebuilt_wave(&[moved("w1")], &[], NOW).await;
        assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
        assert_eq!(
            events_of_kind(&store, Some("acme"), "handoff.replanned").await,
            1
        );
    })
    .await;
}

#[tokio::test]
async fn a_missed_pickup_takes_its_drop_off_along_even_when_a_rebuild_moved_it_to_a_later_wave() {
    on_every_backend(|store| async move {
        ready_and_planned(&store).await;
        let later = StopMove {
            id: "h2".into(),
            order_id: "o1".into(),
            brand: "acme".into(),
            from_courier: "bike-1".into(),
            from_wave: "w1".into(),
            to_courier: "bike-1".into(),
            wave: "w2".into(),
            seq: 4,
            eta_ms: NOW + 9,
        };
        store
            .save_rebuilt_wave(&[later], &[], NOW)
            .await
            .expect("rebuilt");
        let missed = store
            .miss_overdue_pickups("berlin", NOW + 1_000, NOW + 1_000)
            .await
            .expect("missed");
        assert_eq!(missed, 1);
        let states: Vec<HandoffState> = store
            .order_handoffs("o1")
            .await
            .expect("handoffs")
            .iter()
            .map(|h| h.state)
            .collect();
        assert_eq!(states, [HandoffState::Missed, HandoffState::Missed]);
        assert_eq!(store.wave_orders("berlin").await.expect("orders").len(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_drop_off_never_confirmed_is_missed_and_its_parcel_stays_with_its_courier() {
    on_every_backend(|store| async move {
        ready_and_planned(&store).await;
        store
            .confirm_handoff("h1", Some("bike-1"), Some("h1-code"), 5, NOW)
            .await
            .expect("picked up");
        // Not yet overdue: nothing happens.
        assert_eq!(
            store
                .miss_overdue_dropoffs("berlin", NOW, NOW)
                .await
                .expect("none"),
            0
        );
        assert!(
            store
                .carried_orders("berlin")
                .await
                .expect("none")
                .is_empty()
        );
        // Overdue: missed once, with its event; the order stays out for
        // delivery, waiting for a new drop-off by the same courier.
        let missed = store
            .miss_overdue_dropoffs("berlin", NOW + 1_000, NOW + 1_000)
            .await
            .expect("missed");
        assert_eq!(missed, 1);
        assert_eq!(
            store
                .miss_overdue_dropoffs("berlin", NOW + 1_000, NOW + 1_000)
                .await
                .expect("again"),
            0
        );
        assert_eq!(
            events_of_kind(&store, Some("acme"), "handoff.missed").await,
            1
        );
        let carried = store.carried_orders("berlin").await.expect("carried");
        assert_eq!(carried.len(), 1, "{carried:?}");
        assert_eq!(carried[0].order_id.as_str(), "o1");
        assert_eq!(carried[0].courier.as_str(), "bike-1");
        assert_eq!(carried[0].code.as_deref(), Some("h2-code"));
        assert!(store.wave_orders("berlin").await.expect("ready").is_empty());
        // A new drop-off planned: no longer waiting.
        let mut again = pair("w2", "h3", "h4").remove(1);
        again.code = carried[0].code.clone();
        store.save_wave(&[again], NOW + 2_000).await.expect("wave");
        assert!(
            store
                .carried_orders("berlin")
                .await
                .expect("none")
                .is_empty()
        );
    })
    .await;
}

#[tokio::test]
async fn a_parcel_brought_back_and_picked_up_again_is_carried_by_its_last_courier() {
    on_every_backend(|store| async move {
        // bike-1 picks it up; the customer is out: the parcel goes back to
        // its factory and the order is ready again.
        ready_and_planned(&store).await;
        store
            .confirm_handoff("h1", Some("bike-1"), Some("h1-code"), 5, NOW)
            .await
            .expect("picked up");
        store
            .fail_handoff("h2", Some("bike-1"), FailureReason::NotHome, 3, NOW + 10)
            .await
            .expect("not home");
        // van-1 picks it up the second time and never confirms the drop-off.
        let second: Vec<HandoffRecord> = pair("w2", "h3", "h4")
            .into_iter()
            .map(|mut stop| {
                stop.courier = "van-1".into();
                stop.eta_ms = NOW + 100 + stop.seq;
                stop
            })
            .collect();
        store.save_wave(&second, NOW + 20).await.expect("wave");
        store
            .confirm_handoff("h3", Some("van-1"), Some("h3-code"), 5, NOW + 30)
            .await
            .expect("picked up again");
        store
            .miss_overdue_dropoffs("berlin", NOW + 1_000, NOW + 1_000)
            .await
            .expect("missed");
        // One parcel, with van-1 (bike-1's pickup is history).
        let carried = store.carried_orders("berlin").await.expect("carried");
        assert_eq!(carried.len(), 1, "{carried:?}");
        assert_eq!(carried[0].courier.as_str(), "van-1");
        assert_eq!(carried[0].code.as_deref(), Some("h4-code"));
    })
    .await;
}

#[tokio::test]
async fn order_lines_are_read_for_the_orders_asked_for() {
    on_every_backend(|store| async move {
        store
            .accept_orders(&[new_order("o1", "acme", None), new_order("o2", "acme", None)])
            .await
            .expect("accept");
        let lines = store
            .order_lines(&["o1", "o2", "nope"])
            .await
            .expect("lines");
        assert_eq!(lines.len(), 2, "{lines:?}");
        let o1 = &lines["o1"];
        assert!(
            !o1.is_empty() && o1.iter().all(|l| l.quantity > 0),
            "{o1:?}"
        );
        assert!(store.order_lines(&[]).await.expect("none").is_empty());
    })
    .await;
}

/// PostgreSQL: an order another transaction holds (a step that locked it,
/// on this daemon or another) is skipped by a promise round, not waited
/// for, and written by the next round once it is free.
#[tokio::test]
async fn a_promise_round_skips_an_order_another_transaction_holds() {
    let Ok(base) = std::env::var("FABFLOW_TEST_POSTGRES_URL") else {
        eprintln!(
            "store: PostgreSQL promise skip skipped (set FABFLOW_TEST_POSTGRES_URL to run it)"
        );
        return;
    };
    if base.is_empty() {
        return;
    }
    let url = fresh_postgres_url(&base).await;
    let store = Store::connect(&url).await.expect("store");
    store
        .accept_orders(&[new_order("o1", "acme", None), new_order("o2", "acme", None)])
        .await
        .expect("accept");
    let update = |id: &str| PromiseUpdate {
        order_id: id.into(),
        brand: "acme".into(),
        deadline_ms: NOW + 1_000,
        eta_ready_ms: Some(NOW + 10),
        eta_delivery_ms: Some(NOW + 110),
        at_risk: Some(AtRiskReason::ProductionBacklog),
    };
    let mut holder = store.begin().await.expect("begin");
    crate::store::write::lock_order(&mut holder, Backend::Postgres, "o1")
        .await
        .expect("lock o1");
    let flagged = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        store.record_promises(&[update("o1"), update("o2")], NOW + 5),
    )
    .await
    .expect("the round waited for the held order")
    .expect("record");
    assert_eq!(flagged, 1);
    assert_eq!(promise_of(&store, "o1").await.at_risk, None);
    assert_eq!(promise_of(&store, "o1").await.eta_ready_ms, None);
    assert_eq!(promise_of(&store, "o2").await.eta_ready_ms, Some(NOW + 10));
    holder.rollback().await.expect("release o1");
    let flagged = store
        .record_promises(&[update("o1"), update("o2")], NOW + 6)
        .await
        .expect("record again");
    assert_eq!(flagged, 1, "o1 flagged now, o2 already was");
    assert_eq!(promise_of(&store, "o1").await.eta_ready_ms, Some(NOW + 10));
    assert_eq!(
        events_of_kind(&store, Some("acme"), "order.at_risk").await,
        2
    );
    store.close().await;
}
