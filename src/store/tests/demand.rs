//! Demand counting (with units asked back) and brands' sales events.

use super::*;

fn demand_row(day: &str, units: i64, produced: i64, returned: i64) -> DemandRow {
    DemandRow {
        brand: "acme".into(),
        sku: "tee".into(),
        factory: "north".into(),
        day: day.into(),
        units,
        produced,
        returned,
    }
}

#[tokio::test]
async fn demand_adds_units_made_and_asked_back_once_per_cursor_move() {
    on_every_backend(|store| async move {
        store
            .count_demand(0, 5, &[demand_row("2026-12-01", 3, 0, 0)])
            .await
            .expect("first count");
        store
            .count_demand(5, 9, &[demand_row("2026-12-01", 2, 4, 1)])
            .await
            .expect("second count");
        // A pass that read from an old cursor adds nothing.
        assert!(matches!(
            store
                .count_demand(5, 12, &[demand_row("2026-12-01", 100, 0, 0)])
                .await,
            Err(StoreError::Conflict(_))
        ));
        let rows = store.demand(Some("acme"), None, None).await.expect("rows");
        assert_eq!(rows, vec![demand_row("2026-12-01", 5, 4, 1)]);
        assert_eq!(store.demand_cursor().await.expect("cursor"), 9);
    })
    .await;
}

#[tokio::test]
async fn sales_events_are_created_replaced_listed_by_brand_and_deleted() {
    on_every_backend(|store| async move {
        let event =
            |brand: &str, id: &str, starts_on: &str, footfall: Option<i64>| SalesEventRecord {
                brand: brand.into(),
                id: id.into(),
                name: format!("Market {id}"),
                starts_on: starts_on.into(),
                days: 2,
                footfall,
                pre_orders: Default::default(),
                updated_ms: NOW,
            };
        assert!(
            store
                .put_sales_event(&event("acme", "b", "2026-12-12", None), "test")
                .await
                .expect("put")
        );
        assert!(
            store
                .put_sales_event(&event("acme", "a", "2026-12-05", Some(400)), "test")
                .await
                .expect("put")
        );
        assert!(
            store
                .put_sales_event(&event("zest", "a", "2026-12-01", None), "test")
                .await
                .expect("put")
        );
        // Replaced with pre-orders, which are kept and read back.
        let mut replaced = event("acme", "b", "2026-12-19", Some(900));
        replaced.pre_orders = [("tee-black-m".to_string(), 12), ("mug".to_string(), 3)].into();
        assert!(
            !store
                .put_sales_event(&replaced, "test")
                .await
                .expect("replace")
        );
        let acme = store.sales_events(Some("acme")).await.expect("list");
        assert_eq!(
            acme,
            vec![event("acme", "a", "2026-12-05", Some(400)), replaced]
        );
        assert_eq!(store.sales_events(None).await.expect("all").len(), 3);
        assert!(
            store
                .delete_sales_event("acme", "a", "test", 0)
                .await
                .expect("delete")
        );
        assert!(
            !store
                .delete_sales_event("acme", "a", "test", 0)
                .await
                .expect("again")
        );
        assert_eq!(
            store.sales_events(Some("zest")).await.expect("zest").len(),
            1
        );
    })
    .await;
}

/// A reader following the log for some kinds gets every event in order,
/// with the payloads of those kinds only, from its cursor and up to its
/// limit.
#[tokio::test]
async fn the_log_read_for_some_kinds_keeps_every_seq_and_their_payloads_only() {
    on_every_backend(|store| async move {
        let orders = [new_order("o1", "acme", None), new_order("o2", "acme", None)];
        store.accept_orders(&orders).await.expect("accept");
        store
            .cancel_order("o1", Some("acme"), "brand:acme", NOW)
            .await
            .expect("cancel");
        let log = store.events_after(None, None, 100).await.expect("log");
        let kinds: Vec<String> = log
            .iter()
            .map(|event| {
                let envelope: serde_json::Value =
                    serde_json::from_str(&event.payload).expect("envelope");
                envelope["kind"].as_str().expect("kind").to_string()
            })
            .collect();
        assert_eq!(kinds[..2], ["order.accepted", "order.accepted"]);
        assert!(kinds[2..].iter().all(|kind| kind != "order.accepted"));
        let expected: Vec<(i64, Option<String>)> = log
            .iter()
            .zip(&kinds)
            .map(|(event, kind)| {
                (
                    event.seq,
                    (kind == "order.accepted").then(|| event.payload.clone()),
                )
            })
            .collect();
        let read = store
            .events_of_kinds_after(&["order.accepted", "job.done"], 0, 100)
            .await
            .expect("read");
        assert_eq!(read, expected);
        // From a cursor, up to a limit.
        let read = store
            .events_of_kinds_after(&["order.accepted"], log[0].seq, 1)
            .await
            .expect("read");
        assert_eq!(read, expected[1..2]);
        // No kinds: every seq, no payload.
        let read = store
            .events_of_kinds_after(&[], 0, 100)
            .await
            .expect("read");
        assert!(read.iter().all(|(_, payload)| payload.is_none()));
        assert_eq!(read.len(), log.len());
    })
    .await;
}
