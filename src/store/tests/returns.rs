//! Store scenarios: returns (requested, moved by their handoffs, inspected
//! into stock) and the stock that fills later orders.

use super::*;
use crate::domain::returns::{InspectionLine, RequestedLine};
use crate::domain::{DAY_MS, ReturnState};

/// Order `id` of three tees at factory north, accepted at NOW.
fn three_tees(id: &str) -> NewOrder {
    NewOrder {
        lines: vec![LineRequest {
            sku: "tee".into(),
            quantity: 3,
        }],
        ..new_order(id, "acme", None)
    }
}

/// Accepts `o1` (three tees), makes it, and delivers it at NOW.
async fn delivered_order(store: &Store) {
    store
        .accept_orders(&[three_tees("o1")])
        .await
        .expect("accept");
    finish_jobs(store, "o1").await;
    store
        .save_wave(&stops("w1", "o1", None, ["p1", "d1"]), NOW)
        .await
        .expect("wave");
    for id in ["p1", "d1"] {
        let code = format!("{id}-code");
        let confirmed = store
            .confirm_handoff(id, Some("bike-1"), Some(&code), 5, NOW)
            .await
            .expect("confirm");
        assert!(matches!(confirmed, Confirmation::Confirmed(_)));
    }
}

async fn finish_jobs(store: &Store, order: &str) {
    let jobs = store
        .list_jobs(&JobFilter {
            order_id: Some(order.into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("jobs");
    for job in jobs {
        store
            .schedule_jobs(&[(job.token, MachineId::new("m"))], NOW)
            .await
            .expect("schedule");
        store
            .transition_job(job.token, JobInput::Dispatch, NOW)
            .await
            .expect("dispatch");
        store
            .transition_job(
                job.token,
                JobInput::MachineFinished { good: 3, scrap: 0 },
                NOW,
            )
            .await
            .expect("done");
    }
}

/// A pickup and a drop-off (codes `<id>-code`), of an order's delivery or
/// of a return.
fn stops(wave: &str, order: &str, return_id: Option<&str>, ids: [&str; 2]) -> Vec<HandoffRecord> {
    [
        (ids[0], HandoffKind::Pickup, 0),
        (ids[1], HandoffKind::Dropoff, 1),
    ]
    .into_iter()
    .map(|(id, kind, seq)| HandoffRecord {
        id: id.into(),
        wave: wave.into(),
        courier: "bike-1".into(),
        order_id: order.into(),
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
        return_id: return_id.map(str::to_string),
    })
    .collect()
}

fn asking(id: &str, brand: Option<&str>, quantity: u32) -> NewReturn {
    NewReturn {
        id: id.into(),
        order_id: "o1".into(),
        brand: brand.map(str::to_string),
        lines: vec![RequestedLine { line: 0, quantity }],
        reason: "too small".into(),
        window_ms: 14 * DAY_MS,
    }
}

/// The pointers of a refused request.
async fn refused(store: &Store, request: &NewReturn, now: Millis) -> Vec<String> {
    match store.request_return(request, now).await.expect("request") {
        Ok(record) => panic!("accepted {record:?}"),
        Err(problems) => problems.into_iter().map(|p| p.pointer).collect(),
    }
}

async fn return_state(store: &Store, id: &str) -> Option<ReturnState> {
    store
        .get_return(id, None)
        .await
        .expect("get return")
        .map(|r| r.state)
}

#[tokio::test]
async fn a_return_is_picked_up_received_inspected_and_its_units_fill_a_later_order() {
    on_every_backend(|store| async move {
        delivered_order(&store).await;
        // Refusals: too many units, past the window, another brand's order.
        assert_eq!(
            refused(&store, &asking("r0", Some("acme"), 4), NOW + DAY_MS).await,
            vec!["/lines/0/quantity"]
        );
        assert_eq!(
            refused(&store, &asking("r0", Some("acme"), 1), NOW + 15 * DAY_MS).await,
            vec![""]
        );
        assert!(matches!(
            store
                .request_return(&asking("r0", Some("zest"), 1), NOW)
                .await,
            Err(StoreError::NotFound(_))
        ));
        let record = store
            .request_return(&asking("r1", Some("acme"), 3), NOW + DAY_MS)
            .await
            .expect("request")
            .expect("accepted");
        assert_eq!(record.state, ReturnState::Requested);
        assert_eq!(record.factory.as_str(), "north");
        // Every delivered unit is now on its way back.
        assert_eq!(
            refused(&store, &asking("r2", None, 1), NOW + DAY_MS).await,
            vec!["/lines/0/quantity"]
        );
        let waiting = store.wave_returns("berlin").await.expect("wave returns");
        assert_eq!(waiting.len(), 1);
        assert_eq!(waiting[0].return_id, "r1");
        store
            .save_wave(&stops("w2", "o1", Some("r1"), ["rp", "rd"]), NOW + DAY_MS)
            .await
            .expect("return wave");
        assert_eq!(
            return_state(&store, "r1").await,
            Some(ReturnState::PickupPlanned)
        );
        assert!(store.wave_returns("berlin").await.expect("wave").is_empty());
        assert!(
            store.wave_orders("berlin").await.expect("wave").is_empty(),
            "a delivered order is not delivered again"
        );
        assert!(matches!(
            store
                .confirm_handoff("rp", Some("bike-1"), Some("000000"), 5, NOW)
                .await
                .expect("counted"),
            Confirmation::WrongCode { .. }
        ));
        store
            .confirm_handoff("rp", Some("bike-1"), Some("rp-code"), 5, NOW)
            .await
            .expect("pickup");
        assert_eq!(
            return_state(&store, "r1").await,
            Some(ReturnState::PickedUp)
        );
        assert_eq!(
            store
                .get_order("o1", None)
                .await
                .expect("order")
                .map(|o| o.state),
            Some(OrderState::Delivered)
        );
        let good = [InspectionLine {
            line: 0,
            restocked: 2,
            scrapped: 1,
        }];
        assert!(matches!(
            store
                .inspect_return("r1", &good, "operator:north", NOW)
                .await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            store
                .fail_handoff("rd", Some("bike-1"), FailureReason::Refused, 3, NOW)
                .await,
            Err(StoreError::Conflict(_))
        ));
        store
            .confirm_handoff("rd", Some("bike-1"), Some("rd-code"), 5, NOW)
            .await
            .expect("drop-off");
        assert_eq!(
            return_state(&store, "r1").await,
            Some(ReturnState::Received)
        );
        let wrong = [InspectionLine {
            line: 0,
            restocked: 2,
            scrapped: 2,
        }];
        let problems = store
            .inspect_return("r1", &wrong, "operator:north", NOW)
            .await
            .expect("inspect")
            .expect_err("four units counted of three");
        assert_eq!(problems[0].pointer, "/lines/0");
        let inspected = store
            .inspect_return("r1", &good, "operator:north", NOW)
            .await
            .expect("inspect")
            .expect("accepted");
        assert_eq!(inspected.state, ReturnState::Inspected);
        let stock = store.list_stock(Some("north")).await.expect("stock");
        assert_eq!(
            stock
                .iter()
                .map(|s| (s.sku.as_str(), s.units))
                .collect::<Vec<_>>(),
            vec![("tee", 2)]
        );
        assert_eq!(
            store
                .list_audit(None, 100)
                .await
                .expect("audit")
                .last()
                .map(|a| a.action.clone()),
            Some("return.inspect".to_string())
        );

        // Two tees at north: taken from the shelf, no jobs, ready at once
        // (and said so, for the courier waves to look).
        let accepted = store
            .accept_orders_telling_ready(&[new_order("o2", "zest", None)])
            .await
            .expect("accept o2");
        assert!(accepted.made_ready);
        assert_eq!(accepted.outcomes, vec![AcceptOutcome::Created]);
        let o2 = store.get_order("o2", None).await.expect("o2").expect("o2");
        assert_eq!(o2.state, OrderState::Ready);
        let jobs = store
            .list_jobs(&JobFilter {
                order_id: Some("o2".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("jobs");
        assert!(jobs.is_empty(), "{jobs:?}");
        assert_eq!(store.list_stock(None).await.expect("stock")[0].units, 0);
        // The shelf is empty: the next order is made.
        let accepted = store
            .accept_orders_telling_ready(&[new_order("o3", "zest", None)])
            .await
            .expect("accept o3");
        assert!(!accepted.made_ready);
        let o3 = store.get_order("o3", None).await.expect("o3").expect("o3");
        assert_eq!(o3.state, OrderState::Accepted);
        let kinds = outbox_kinds(&store).await;
        for kind in [
            "return.requested",
            "return.pickup_planned",
            "return.picked_up",
            "return.received",
            "return.inspected",
            "stock.taken",
        ] {
            assert_eq!(
                kinds.iter().filter(|k| *k == kind).count(),
                1,
                "{kind} in {kinds:?}"
            );
        }
        let ready = kinds.iter().rposition(|k| k == "order.ready");
        let taken = kinds.iter().position(|k| k == "stock.taken");
        assert!(taken < ready, "{kinds:?}");
    })
    .await;
}

#[tokio::test]
async fn a_missed_or_failed_return_pickup_is_planned_again_and_a_return_can_be_cancelled() {
    on_every_backend(|store| async move {
        store
            .accept_orders(&[three_tees("o1")])
            .await
            .expect("accept");
        assert_eq!(
            refused(&store, &asking("r0", Some("acme"), 1), NOW).await,
            vec![""],
            "not delivered"
        );
        finish_jobs(&store, "o1").await;
        store
            .save_wave(&stops("w1", "o1", None, ["p1", "d1"]), NOW)
            .await
            .expect("wave");
        for id in ["p1", "d1"] {
            store
                .confirm_handoff(id, None, None, 5, NOW)
                .await
                .expect("confirm");
        }
        store
            .request_return(&asking("r1", None, 1), NOW)
            .await
            .expect("request")
            .expect("accepted");
        store
            .request_return(&asking("r2", None, 2), NOW)
            .await
            .expect("request")
            .expect("accepted");
        // Both returns in one wave; r1's pickup is never confirmed.
        let mut wave = stops("w2", "o1", Some("r1"), ["a1", "a2"]);
        wave.extend(stops("w2", "o1", Some("r2"), ["b1", "b2"]));
        store.save_wave(&wave, NOW).await.expect("wave");
        store
            .confirm_handoff("b1", None, None, 5, NOW)
            .await
            .expect("r2 picked up");
        let missed = store
            .miss_overdue_pickups("berlin", NOW + 10, NOW + 10)
            .await
            .expect("miss");
        assert_eq!(missed, 1);
        assert_eq!(
            return_state(&store, "r1").await,
            Some(ReturnState::Requested)
        );
        assert_eq!(
            return_state(&store, "r2").await,
            Some(ReturnState::PickedUp)
        );
        let schedule = store.courier_schedule("bike-1").await.expect("schedule");
        let planned: Vec<&str> = schedule
            .iter()
            .filter(|s| s.handoff.state == HandoffState::Planned)
            .map(|s| s.handoff.id.as_str())
            .collect();
        assert_eq!(planned, vec!["b2"], "r2's drop-off stays planned");
        // Planned again, then the customer is not home.
        store
            .save_wave(&stops("w3", "o1", Some("r1"), ["c1", "c2"]), NOW)
            .await
            .expect("wave");
        let failed = store
            .fail_handoff("c1", Some("bike-1"), FailureReason::NotHome, 1, NOW)
            .await
            .expect("fail");
        assert!(!failed.escalated, "returns are not escalated");
        assert_eq!(
            return_state(&store, "r1").await,
            Some(ReturnState::Requested)
        );
        assert!(
            store
                .get_order("o1", None)
                .await
                .expect("o1")
                .map(|o| o.state)
                == Some(OrderState::Delivered)
        );
        assert_eq!(store.wave_returns("berlin").await.expect("wave").len(), 1);
        // The brand gives up on it.
        assert!(matches!(
            store
                .cancel_return("r1", Some("zest"), "brand:zest", NOW)
                .await,
            Err(StoreError::NotFound(_))
        ));
        let cancelled = store
            .cancel_return("r1", Some("acme"), "brand:acme", NOW)
            .await
            .expect("cancel");
        assert_eq!(cancelled.state, ReturnState::Cancelled);
        assert!(matches!(
            store.cancel_return("r2", None, "admin", NOW).await,
            Err(StoreError::Transition(_))
        ));
        // A cancelled return's units may be asked for again.
        store
            .request_return(&asking("r3", None, 1), NOW)
            .await
            .expect("request")
            .expect("accepted");
        let listed = store
            .list_returns(&ReturnFilter {
                factories: Some(vec!["north".into()]),
                state: Some(ReturnState::Requested),
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(
            listed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            vec!["r3"]
        );
        let elsewhere = store
            .list_returns(&ReturnFilter {
                factories: Some(vec!["south".into()]),
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("list");
        assert!(elsewhere.is_empty());
        assert_eq!(store.order_returns("o1").await.expect("returns").len(), 3);
    })
    .await;
}

#[tokio::test]
async fn a_return_drop_off_never_confirmed_is_missed_and_the_parcel_stays_with_its_courier() {
    on_every_backend(|store| async move {
        delivered_order(&store).await;
        store
            .request_return(&asking("r1", Some("acme"), 3), NOW)
            .await
            .expect("request")
            .expect("accepted");
        store
            .save_wave(&stops("w2", "o1", Some("r1"), ["rp", "rd"]), NOW)
            .await
            .expect("return wave");
        // Planned, not picked up: a drop-off overdue is the pickup's business.
        assert_eq!(
            store
                .miss_overdue_dropoffs("berlin", NOW + 1_000, NOW + 1_000)
                .await
                .expect("none"),
            0
        );
        store
            .confirm_handoff("rp", Some("bike-1"), Some("rp-code"), 5, NOW)
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
                .carried_returns("berlin")
                .await
                .expect("none")
                .is_empty()
        );
        // Overdue: missed once, with its event; the return stays picked up,
        // waiting for a new drop-off at the factory by the same courier.
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
        let kinds = outbox_kinds(&store).await;
        assert_eq!(
            kinds.iter().filter(|k| *k == "handoff.missed").count(),
            1,
            "{kinds:?}"
        );
        assert_eq!(
            return_state(&store, "r1").await,
            Some(ReturnState::PickedUp)
        );
        let carried = store.carried_returns("berlin").await.expect("carried");
        assert_eq!(carried.len(), 1, "{carried:?}");
        assert_eq!(carried[0].return_id, "r1");
        assert_eq!(carried[0].order_id.as_str(), "o1");
        assert_eq!(carried[0].brand.as_str(), "acme");
        assert_eq!(carried[0].factory.as_str(), "north");
        assert_eq!(carried[0].courier.as_str(), "bike-1");
        assert_eq!(carried[0].requested_ms, NOW);
        assert_eq!(carried[0].code.as_deref(), Some("rd-code"));
        assert!(
            store
                .carried_returns("elsewhere")
                .await
                .expect("zone")
                .is_empty()
        );
        assert!(store.wave_returns("berlin").await.expect("wave").is_empty());
        assert!(
            store
                .carried_orders("berlin")
                .await
                .expect("orders")
                .is_empty()
        );
        // A new drop-off planned with the same code: no longer waiting, and
        // once confirmed the return is at its factory.
        let mut again = stops("w3", "o1", Some("r1"), ["unused", "rd2"]).remove(1);
        again.code = carried[0].code.clone();
        store.save_wave(&[again], NOW + 2_000).await.expect("wave");
        assert!(
            store
                .carried_returns("berlin")
                .await
                .expect("none")
                .is_empty()
        );
        store
            .confirm_handoff("rd2", Some("bike-1"), Some("rd-code"), 5, NOW + 3_000)
            .await
            .expect("drop-off");
        assert_eq!(
            return_state(&store, "r1").await,
            Some(ReturnState::Received)
        );
        assert!(
            store
                .carried_returns("berlin")
                .await
                .expect("none")
                .is_empty()
        );
    })
    .await;
}
