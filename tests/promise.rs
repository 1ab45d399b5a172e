//! The promise, at intake and after, seen through the API and MQTT: an
//! accepted order's reply carries its estimated ready and delivery times; an
//! order the network cannot make in time is accepted, flagged at once with
//! its reason (`order.at_risk`, once, to its brand and its factory's
//! operator); a ready order no courier can reach by its deadline is flagged by
//! the planning wave long before the deadline, and still routed.

mod support;

use fabflow::api::auth::Role;
use fabflow::domain::{ProcessStep, Sku};
use serde_json::{Value, json};
use std::time::Duration;
use support::{Running, Watch, wait_for};

const TIME_SCALE: f64 = 1000.0;
const LIMIT: Duration = Duration::from_secs(120);

fn order_body(sku: &str, quantity: u32) -> Value {
    json!({
        "customer": {"name": "Ada", "lat": 52.52, "lon": 13.40},
        "lines": [{"sku": sku, "quantity": quantity}],
    })
}

fn time(value: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap_or_default())
        .unwrap_or_else(|err| panic!("{value} is not RFC 3339: {err}"))
}

/// `fabflow/v1/brands/<brand>/events/<kind>` → kind.
fn brand_event_kind(topic: &str, _payload: &Value) -> Option<String> {
    topic
        .strip_prefix("fabflow/v1/brands/")
        .and_then(|rest| rest.split_once("/events/"))
        .map(|(_, kind)| kind.to_string())
}

/// The brand's `order.at_risk` events for `order`, from the event log.
async fn at_risk_events(api: &support::Api, order: &str) -> Vec<Value> {
    api.all_events()
        .await
        .into_iter()
        .filter(|e| e["kind"] == "order.at_risk" && e["order_id"] == order)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_that_cannot_be_made_in_time_is_accepted_and_flagged_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet = support::fleet(21, TIME_SCALE).await;
    let mut config = support::config(&fleet, &dir.path().join("promise.db"), TIME_SCALE);
    // A banner takes 50 minutes of printing a unit: 100 of them are 83 hours.
    config.skus.push(Sku {
        code: "banner".into(),
        name: "Printed banner".into(),
        route: vec![ProcessStep {
            process: "dtg_print".into(),
            recipe: 11,
            material: "cotton_tee".into(),
            seconds_per_unit: 3000.0,
        }],
        volume_l: None,
    });
    let running = Running::start(config).await;
    let brand = running.api(Role::Brand, "promise-brand").await;
    let watch = Watch::start(
        &running.observer(),
        "fabflow/v1/brands/+/events/#",
        brand_event_kind,
    )
    .await;

    // An ordinary order: estimated before its deadline, not at risk.
    let (status, fine) = brand
        .post("/v1/orders", &order_body("tee-black-m", 2), None)
        .await;
    assert_eq!(status, 201, "{fine}");
    let fine_id = fine["id"].as_str().expect("id").to_string();
    let stored = wait_for("the ordinary order's estimate", LIMIT, || async {
        let (_, order) = brand.get(&format!("/v1/orders/{fine_id}")).await;
        order
            .get("estimated_delivery_at")
            .is_some()
            .then_some(order)
    })
    .await;
    assert!(stored.get("at_risk").is_none(), "{stored}");
    assert!(time(&stored["estimated_ready_at"]) <= time(&stored["estimated_delivery_at"]));
    assert!(time(&stored["estimated_delivery_at"]) <= time(&stored["deadline"]));

    // 100 banners: accepted, and the reply already says why it is at risk.
    let (status, doomed) = brand
        .post("/v1/orders", &order_body("banner", 100), None)
        .await;
    assert_eq!(status, 201, "{doomed}");
    assert_eq!(
        doomed["at_risk"]["reason"], "production_backlog",
        "{doomed}"
    );
    assert!(time(&doomed["estimated_delivery_at"]) > time(&doomed["deadline"]));
    let doomed_id = doomed["id"].as_str().expect("id").to_string();

    // Stored with its time, and one event, on the log and on MQTT.
    let flagged = wait_for("the flag stored", LIMIT, || async {
        let (_, order) = brand.get(&format!("/v1/orders/{doomed_id}")).await;
        order["at_risk"]["since"].is_string().then_some(order)
    })
    .await;
    assert_eq!(flagged["at_risk"]["reason"], "production_backlog");
    assert!(
        flagged["at_risk"]["detail"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
    assert!(time(&flagged["at_risk"]["since"]) < time(&flagged["deadline"]));
    watch
        .wait_for("order.at_risk on the brand topic", &[("order.at_risk", 1)])
        .await;
    let events = at_risk_events(&brand, &doomed_id).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["data"]["reason"], "production_backlog");
    // Later rounds of the watch do not flag it again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(at_risk_events(&brand, &doomed_id).await.len(), 1);
    assert_eq!(watch.count("order.at_risk"), 1);
    assert!(at_risk_events(&brand, &fine_id).await.is_empty());

    // The factory's operator sees the flag; another brand does not see the order.
    let operator = running
        .api(
            Role::Operator,
            flagged["factory"].as_str().expect("factory"),
        )
        .await;
    let (status, seen) = operator.get(&format!("/v1/orders/{doomed_id}")).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["at_risk"]["reason"], "production_backlog");
    let other = running.api(Role::Brand, "other-brand").await;
    assert_eq!(other.get(&format!("/v1/orders/{doomed_id}")).await.0, 404);

    watch.stop().await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wave_flags_an_order_no_courier_reaches_in_time_and_still_routes_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet = support::fleet(22, TIME_SCALE).await;
    let mut config = support::config(&fleet, &dir.path().join("far.db"), TIME_SCALE);
    // Every courier starts 800 km north: at 15 km/h (and 1.3 for roads) the
    // first pickup is three days away. The direct ride the intake estimate
    // counts is short, so only the wave can see it.
    for courier in &mut config.couriers {
        courier.lat += 7.2;
    }
    let running = Running::start(config).await;
    let brand = running.api(Role::Brand, "far-brand").await;

    let (status, order) = brand
        .post("/v1/orders", &order_body("mug-white", 1), None)
        .await;
    assert_eq!(status, 201, "{order}");
    assert!(order.get("at_risk").is_none(), "{order}");
    let id = order["id"].as_str().expect("id").to_string();

    let flagged = wait_for("the wave's flag", LIMIT, || async {
        let (_, order) = brand.get(&format!("/v1/orders/{id}")).await;
        order["at_risk"]["since"].is_string().then_some(order)
    })
    .await;
    assert_eq!(
        flagged["at_risk"]["reason"], "no_courier_in_time",
        "{flagged}"
    );
    // Flagged long before the deadline, and still planned: late beats never.
    assert!(time(&flagged["at_risk"]["since"]) < time(&flagged["deadline"]));
    let (_, detail) = brand.get(&format!("/v1/orders/{id}")).await;
    let handoffs = detail["handoffs"].as_array().cloned().unwrap_or_default();
    assert!(handoffs.iter().any(|h| h["kind"] == "dropoff"), "{detail}");
    assert!(time(&flagged["estimated_delivery_at"]) > time(&flagged["deadline"]));
    let events = at_risk_events(&brand, &id).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let admin = running.api(Role::Admin, "*").await;
    let kinds = support::assert_events_match_schemas(&admin).await;
    assert!(kinds.contains("order.at_risk"), "{kinds:?}");

    running.stop().await;
}

/// The couriers with a planned pickup of `order`.
async fn pickup_couriers(api: &support::Api, order: &str) -> Vec<String> {
    let (_, detail) = api.get(&format!("/v1/orders/{order}")).await;
    detail["handoffs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|h| h["kind"] == "pickup" && h["state"] == "planned")
        .filter_map(|h| h["courier"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_courier_who_drops_out_has_its_pickups_planned_with_the_others() {
    // Slower clock: a pickup counts as missed two simulated hours after its
    // ETA (72 s here), so only the drop-out moves stops.
    const SLOW: f64 = 100.0;
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet = support::fleet(23, SLOW).await;
    let mut config = support::config(&fleet, &dir.path().join("duty.db"), SLOW);
    for zone in &mut config.zones {
        zone.planning_cron = "0 */5 * * * *".into();
    }
    let running = Running::start(config).await;
    let brand = running.api(Role::Brand, "duty-brand").await;
    let admin = running.api(Role::Admin, "*").await;

    let mut ids = Vec::new();
    for _ in 0..3 {
        let (status, order) = brand
            .post("/v1/orders", &order_body("mug-white", 1), None)
            .await;
        assert_eq!(status, 201, "{order}");
        ids.push(order["id"].as_str().expect("id").to_string());
    }
    let planned = wait_for("every order's pickup planned", LIMIT, || async {
        let mut all = Vec::new();
        for id in &ids {
            let couriers = pickup_couriers(&admin, id).await;
            all.push(couriers.first()?.clone());
        }
        Some(all)
    })
    .await;
    let leaving = planned[0].clone();
    let theirs: Vec<&String> = ids
        .iter()
        .zip(&planned)
        .filter(|(_, c)| **c == leaving)
        .map(|(id, _)| id)
        .collect();

    // Refusals first: another courier, a body that is not a duty.
    let other = running.api(Role::Courier, "not-a-courier-here").await;
    let (status, _) = other
        .post(
            &format!("/v1/couriers/{leaving}/duty"),
            &json!({"on_duty": false}),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let courier = running.api(Role::Courier, &leaving).await;
    let (status, problem) = courier
        .post(
            &format!("/v1/couriers/{leaving}/duty"),
            &json!({"on_duty": "no"}),
            None,
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["pointer"], "/on_duty", "{problem}");

    // It picks one parcel up first: on board when it drops out.
    let carried = theirs[0].clone();
    let (_, detail) = admin.get(&format!("/v1/orders/{carried}")).await;
    let pickup = detail["handoffs"]
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|h| h["kind"] == "pickup" && h["state"] == "planned")
        })
        .cloned()
        .expect("a planned pickup");
    let (status, confirmed) = courier
        .post(
            &format!(
                "/v1/handoffs/{}/confirm",
                pickup["id"].as_str().expect("id")
            ),
            &json!({ "code": pickup["code"].as_str().expect("admins see codes") }),
            None,
        )
        .await;
    assert_eq!(status, 200, "{confirmed}");
    let (_, order) = admin.get(&format!("/v1/orders/{carried}")).await;
    assert_eq!(order["state"], "out_for_delivery", "{order}");

    // The courier drops out: its pickups go back, the parcel on board is
    // brought back to its factory, and all are planned with others.
    let (status, duty) = courier
        .post(
            &format!("/v1/couriers/{leaving}/duty"),
            &json!({"on_duty": false}),
            None,
        )
        .await;
    assert_eq!(status, 200, "{duty}");
    assert_eq!(duty["on_duty"], false);
    assert_eq!(duty["released"], theirs.len() - 1, "{duty}");
    assert_eq!(duty["brought_back"], 1, "{duty}");
    for id in theirs {
        let now_with = wait_for("the pickup planned with another courier", LIMIT, || async {
            pickup_couriers(&admin, id).await.first().cloned()
        })
        .await;
        assert_ne!(now_with, leaving, "order {id}");
    }
    let (_, order) = admin.get(&format!("/v1/orders/{carried}")).await;
    assert_eq!(order["state"], "ready", "{order}");
    let (_, schedule) = admin.get(&format!("/v1/couriers/{leaving}/schedule")).await;
    let stops = schedule["stops"].as_array().cloned().unwrap_or_default();
    assert!(stops.iter().all(|s| s["state"] != "planned"), "{schedule}");
    let kinds = support::assert_events_match_schemas(&admin).await;
    assert!(kinds.contains("courier.duty_changed"), "{kinds:?}");
    let (_, audit) = admin.get("/v1/audit?limit=500").await;
    assert!(
        audit["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|a| a["action"] == "courier.duty")),
        "{audit}"
    );

    running.stop().await;
}
