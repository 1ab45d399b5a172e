//! Returns end to end, looked at only through the API and MQTT: an order
//! made on the simulated fleet is delivered, its brand asks for it back,
//! a planning wave plans the pickup at the customer and the drop-off at the
//! factory, the courier confirms both with their codes, the operator
//! inspects (2 restocked, 1 scrapped), and a later order of the SKU is ready
//! without any job, taking the restocked units. Then every refusal, each a
//! problem+json with its pointer.

mod support;

use fabflow::api::auth::Role;
use fabflow::config::{BrandReturnsConfig, Config, MqttConfig};
use fabflow::domain::intake::{JobPlan, LineRequest};
use fabflow::domain::{HandoffKind, HandoffState, Location};
use fabflow::store::{HandoffRecord, NewOrder};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use support::{Api, Running, Watch, wait_for};

const TIME_SCALE: f64 = 1000.0;
const LIMIT: Duration = Duration::from_secs(120);

fn order_body(reference: &str, quantity: u32) -> Value {
    json!({
        "external_ref": reference,
        "customer": {"name": "Ada", "lat": 52.52, "lon": 13.40},
        "lines": [{"sku": "tee-black-m", "quantity": quantity}],
    })
}

/// The last segment of `fabflow/v1/brands/<brand>/events/<kind>`.
fn brand_event_kind(topic: &str, _payload: &Value) -> Option<String> {
    topic
        .strip_prefix("fabflow/v1/brands/")
        .and_then(|rest| rest.split_once("/events/"))
        .map(|(_, kind)| kind.to_string())
}

/// The stop of `kind` still to be confirmed among `handoffs` (an order's or a
/// return's, as the caller sees them), for `return_id` (None: the delivery).
fn planned_stop(handoffs: &Value, kind: &str, return_id: Option<&str>) -> Option<Value> {
    handoffs.as_array()?.iter().find_map(|h| {
        (h["kind"] == kind && h["state"] == "planned" && h["return_id"].as_str() == return_id)
            .then(|| h.clone())
    })
}

/// Confirms the planned stop of `kind` of order `order` (or of its return
/// `return_id`) as its courier, with the code `holder` (who hands the
/// parcel over) sees, until one is confirmed. A stop missed meanwhile is
/// planned again by a later wave, and that one is confirmed.
async fn confirm_stop(
    running: &Running,
    holder: &Api,
    order: &str,
    kind: &str,
    return_id: Option<&str>,
) -> Value {
    wait_for(&format!("{kind} of {order} confirmed"), LIMIT, || async {
        let path = match return_id {
            Some(id) => format!("/v1/returns/{id}"),
            None => format!("/v1/orders/{order}"),
        };
        let (status, body) = holder.get(&path).await;
        assert_eq!(status, 200, "{body}");
        let stop = planned_stop(&body["handoffs"], kind, return_id)?;
        let code = stop["code"].as_str().expect("the holder sees the code");
        let courier = running
            .api(Role::Courier, stop["courier"].as_str().expect("courier"))
            .await;
        let id = stop["id"].as_str().expect("id");
        let (status, body) = courier
            .post(
                &format!("/v1/handoffs/{id}/confirm"),
                &json!({ "code": code }),
                None,
            )
            .await;
        (status == 200).then_some(body)
    })
    .await
}

async fn return_state(api: &Api, id: &str) -> String {
    let (status, body) = api.get(&format!("/v1/returns/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body["state"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_returned_order_is_picked_up_inspected_and_its_restocked_units_fill_a_later_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet = support::fleet(7, TIME_SCALE).await;
    let config = support::config(&fleet, &dir.path().join("returns.db"), TIME_SCALE);
    let running = Running::start(config).await;
    let brand = running.api(Role::Brand, "acme").await;
    let admin = running.api(Role::Admin, "*").await;
    let watch = Watch::start(
        &running.observer(),
        "fabflow/v1/brands/acme/events/#",
        brand_event_kind,
    )
    .await;

    let (status, created) = brand
        .post("/v1/orders", &order_body("first", 3), Some("first"))
        .await;
    assert_eq!(status, 201, "{created}");
    let order = created["id"].as_str().expect("order id").to_string();
    let factory = created["factory"].as_str().expect("factory").to_string();
    let operator = running.api(Role::Operator, &factory).await;

    // Made on the fleet, then delivered by a courier with both codes.
    confirm_stop(&running, &operator, &order, "pickup", None).await;
    confirm_stop(&running, &brand, &order, "dropoff", None).await;
    let (_, delivered) = brand.get(&format!("/v1/orders/{order}")).await;
    assert_eq!(delivered["state"], "delivered", "{delivered}");

    // The brand asks for all three back.
    let (status, requested) = brand
        .post(
            &format!("/v1/orders/{order}/returns"),
            &json!({"lines": [{"line": 0, "quantity": 3}], "reason": "too small"}),
            None,
        )
        .await;
    assert_eq!(status, 201, "{requested}");
    assert_eq!(requested["state"], "requested");
    assert_eq!(requested["factory"], factory.as_str());
    let back = requested["id"].as_str().expect("return id").to_string();

    // A wave plans the pickup at the customer and the drop-off at the
    // factory; the customer's code reaches the courier through the brand,
    // the factory's through the operator.
    wait_for("the return's pickup planned", LIMIT, || async {
        (return_state(&brand, &back).await == "pickup_planned").then_some(())
    })
    .await;
    let (_, seen) = operator.get(&format!("/v1/returns/{back}")).await;
    let pickup = planned_stop(&seen["handoffs"], "pickup", Some(&back)).expect("pickup");
    assert!(
        pickup.get("code").is_none(),
        "operators do not see the customer's code"
    );
    let courier_id = pickup["courier"].as_str().expect("courier").to_string();
    let courier = running.api(Role::Courier, &courier_id).await;
    let (_, schedule) = courier
        .get(&format!("/v1/couriers/{courier_id}/schedule"))
        .await;
    let stops: Vec<&Value> = schedule["stops"]
        .as_array()
        .map(|stops| {
            stops
                .iter()
                .filter(|s| s["return_id"] == back.as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(stops.len(), 2, "{schedule}");
    assert_eq!(stops[0]["kind"], "pickup");
    assert_eq!(stops[0]["place"], "customer");
    assert_eq!(stops[1]["place"], factory.as_str());

    // Inspection before the parcel is at the factory is a conflict.
    let inspection = json!({"lines": [{"line": 0, "restocked": 2, "scrapped": 1}]});
    let (status, problem) = operator
        .post(&format!("/v1/returns/{back}/inspection"), &inspection, None)
        .await;
    assert_eq!(status, 409, "{problem}");

    confirm_stop(&running, &brand, &order, "pickup", Some(&back)).await;
    assert_eq!(return_state(&brand, &back).await, "picked_up");
    confirm_stop(&running, &operator, &order, "dropoff", Some(&back)).await;
    assert_eq!(return_state(&brand, &back).await, "received");
    let (_, still) = brand.get(&format!("/v1/orders/{order}")).await;
    assert_eq!(
        still["state"], "delivered",
        "the order itself stays delivered"
    );
    assert_eq!(still["returns"][0]["id"], back.as_str());

    // Four units counted of three: refused, with the line's pointer.
    let (status, problem) = operator
        .post(
            &format!("/v1/returns/{back}/inspection"),
            &json!({"lines": [{"line": 0, "restocked": 2, "scrapped": 2}]}),
            None,
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["pointer"], "/lines/0");
    let elsewhere = running.api(Role::Operator, "nowhere").await;
    let (status, _) = elsewhere
        .post(&format!("/v1/returns/{back}/inspection"), &inspection, None)
        .await;
    assert_eq!(status, 404, "another factory's operator");
    let (status, inspected) = operator
        .post(&format!("/v1/returns/{back}/inspection"), &inspection, None)
        .await;
    assert_eq!(status, 200, "{inspected}");
    assert_eq!(inspected["state"], "inspected");
    assert_eq!(inspected["inspection"][0]["restocked"], 2);
    assert_eq!(inspected["inspection"][0]["scrapped"], 1);
    let (_, audit) = admin.get("/v1/audit?limit=500").await;
    assert!(
        audit["items"].as_array().is_some_and(|items| items
            .iter()
            .any(|a| a["action"] == "return.inspect" && a["target"] == back.as_str())),
        "{audit}"
    );
    let (status, stock) = operator.get(&format!("/v1/stock?factory={factory}")).await;
    assert_eq!(status, 200, "{stock}");
    assert_eq!(
        stock,
        json!([{"factory": factory, "sku": "tee-black-m", "units": 2, "updated_at": stock[0]["updated_at"]}])
    );

    // A later order of two tees at that factory takes them: no job, ready.
    let (status, later) = brand
        .post("/v1/orders", &order_body("later", 2), Some("later"))
        .await;
    assert_eq!(status, 201, "{later}");
    assert_eq!(later["factory"], factory.as_str());
    let later_id = later["id"].as_str().expect("id");
    let (_, later) = brand.get(&format!("/v1/orders/{later_id}")).await;
    assert_eq!(later["state"], "ready", "{later}");
    assert_eq!(later["jobs"], json!([]));
    let (_, stock) = operator.get(&format!("/v1/stock?factory={factory}")).await;
    assert_eq!(stock[0]["units"], 0, "{stock}");

    // Every step is on the brand's event log and its MQTT topics.
    let (status, events) = brand.get("/v1/events?limit=500").await;
    assert_eq!(status, 200, "{events}");
    let kinds: Vec<&str> = events["items"]
        .as_array()
        .map(|items| items.iter().filter_map(|e| e["kind"].as_str()).collect())
        .unwrap_or_default();
    for kind in [
        "return.requested",
        "return.pickup_planned",
        "return.picked_up",
        "return.received",
        "return.inspected",
        "stock.taken",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    assert!(
        events["items"].as_array().is_some_and(|items| items
            .iter()
            .filter(|e| e["kind"].as_str().is_some_and(|k| k.starts_with("return.")))
            .all(|e| e["brand"] == "acme"
                && e["subject"]["type"] == "return"
                && e["subject"]["id"] == back.as_str())),
        "{events}"
    );
    watch
        .wait_for(
            "return events on the brand's topics",
            &[
                ("return.requested", 1),
                ("return.picked_up", 1),
                ("return.received", 1),
                ("return.inspected", 1),
            ],
        )
        .await;
    // Every event of the run matches its published schema.
    let kinds = support::assert_events_match_schemas(&admin).await;
    for kind in [
        "order.accepted",
        "job.done",
        "handoff.confirmed",
        "order.delivered",
        "return.inspected",
        "stock.taken",
    ] {
        assert!(kinds.contains(kind), "no {kind} among {kinds:?}");
    }
    watch.stop().await;
    running.stop().await;
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_return_drop_off_never_confirmed_is_planned_again_for_the_courier_with_the_parcel() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet = support::fleet(8, TIME_SCALE).await;
    let config = support::config(&fleet, &dir.path().join("unconfirmed.db"), TIME_SCALE);
    let running = Running::start(config).await;
    let brand = running.api(Role::Brand, "acme").await;
    let (status, created) = brand
        .post("/v1/orders", &order_body("kept", 1), Some("kept"))
        .await;
    assert_eq!(status, 201, "{created}");
    let order = created["id"].as_str().expect("order id").to_string();
    let factory = created["factory"].as_str().expect("factory").to_string();
    let operator = running.api(Role::Operator, &factory).await;
    confirm_stop(&running, &operator, &order, "pickup", None).await;
    confirm_stop(&running, &brand, &order, "dropoff", None).await;
    let (status, requested) = brand
        .post(
            &format!("/v1/orders/{order}/returns"),
            &json!({"lines": [{"line": 0, "quantity": 1}], "reason": "too small"}),
            None,
        )
        .await;
    assert_eq!(status, 201, "{requested}");
    let back = requested["id"].as_str().expect("return id").to_string();

    // Picked up at the customer; the drop-off at the factory, as its
    // operator sees it (with the code), is never confirmed.
    confirm_stop(&running, &brand, &order, "pickup", Some(&back)).await;
    let (_, seen) = operator.get(&format!("/v1/returns/{back}")).await;
    let first = planned_stop(&seen["handoffs"], "dropoff", Some(&back)).expect("drop-off");
    let picked = seen["handoffs"]
        .as_array()
        .and_then(|h| {
            h.iter()
                .find(|h| h["kind"] == "pickup" && h["state"] == "done")
        })
        .cloned()
        .expect("the pickup done");
    // It is missed, and a new one is planned at the factory for the same
    // courier (the parcel is on its bike), with the code the operator has.
    let again = wait_for("the return's drop-off planned again", LIMIT, || async {
        let (_, seen) = operator.get(&format!("/v1/returns/{back}")).await;
        planned_stop(&seen["handoffs"], "dropoff", Some(&back)).filter(|s| s["id"] != first["id"])
    })
    .await;
    assert_eq!(again["courier"], picked["courier"], "{again}");
    assert_eq!(again["code"], first["code"], "{again}");
    // In the courier's schedule it is a stop at the factory.
    let courier_id = again["courier"].as_str().expect("courier");
    let courier = running.api(Role::Courier, courier_id).await;
    let (_, schedule) = courier
        .get(&format!("/v1/couriers/{courier_id}/schedule"))
        .await;
    let stop = schedule["stops"]
        .as_array()
        .and_then(|stops| stops.iter().find(|s| s["id"] == again["id"]))
        .cloned()
        .unwrap_or_else(|| panic!("{} not in {schedule}", again["id"]));
    assert_eq!(stop["place"], factory.as_str(), "{stop}");
    let (_, seen) = operator.get(&format!("/v1/returns/{back}")).await;
    assert_eq!(seen["state"], "picked_up", "{seen}");
    assert!(
        seen["handoffs"].as_array().is_some_and(|h| h
            .iter()
            .any(|h| h["id"] == first["id"] && h["state"] == "missed")),
        "{seen}"
    );

    // Confirmed with the operator's code: the return reaches the factory.
    confirm_stop(&running, &operator, &order, "dropoff", Some(&back)).await;
    assert_eq!(return_state(&brand, &back).await, "received");
    let admin = running.api(Role::Admin, "*").await;
    let kinds = support::assert_events_match_schemas(&admin).await;
    assert!(kinds.contains("handoff.missed"), "{kinds:?}");
    running.stop().await;
    fleet.shutdown().await;
}

/// The demo network without machines and without waves (they would race
/// the store set-up), on a fast clock; brand `brief` has a one-day window.
fn refusals_config(db: &std::path::Path) -> Config {
    let mut config = Config::demo().expect("demo config");
    config.time_scale = 20_000.0;
    config.database.url = format!("sqlite://{}", db.display());
    config.mqtt = MqttConfig::Embedded {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    for zone in &mut config.zones {
        zone.planning_cron = "0 0 0 1 1 * 2099".into();
    }
    config.machines.clear();
    config.returns.brands = vec![BrandReturnsConfig {
        brand: "brief".into(),
        window_days: 1,
    }];
    config
}

/// An order of three tees for `brand` at factory north (stored as intake
/// would: there are no machines here to place it by).
fn new_order(id: &str, brand: &str, now: i64) -> NewOrder {
    NewOrder {
        id: id.into(),
        brand: brand.into(),
        external_ref: None,
        customer_name: "Ada".into(),
        location: Location::new(52.52, 13.40),
        zone: "berlin".into(),
        factory: "north".into(),
        lines: vec![LineRequest {
            sku: "tee-black-m".into(),
            quantity: 3,
        }],
        deadline_ms: now + 48 * 3_600_000,
        accepted_ms: now,
        jobs: vec![JobPlan {
            line_index: 0,
            step_index: 0,
            process: "dtg_print".into(),
            recipe: 11,
            material: "cotton_tee".into(),
            quantity: 3,
            seconds_per_unit: 60.0,
            due_ms: now + 3_600_000,
        }],
        idempotency: None,
        follows: false,
    }
}

/// Marks `order` delivered now, as a courier would have (pickup and
/// drop-off confirmed), straight in the store.
async fn deliver(running: &Running, order: &str) {
    let store = &running.daemon.store;
    let now = running.daemon.clock.now_ms();
    let jobs = store
        .list_jobs(&fabflow::store::JobFilter {
            order_id: Some(order.into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("jobs");
    for job in jobs {
        store
            .schedule_jobs(&[(job.token, fabflow::domain::MachineId::new("m"))], now)
            .await
            .expect("schedule");
        store
            .transition_job(job.token, fabflow::domain::JobInput::Dispatch, now)
            .await
            .expect("dispatch");
        store
            .transition_job(
                job.token,
                fabflow::domain::JobInput::MachineFinished {
                    good: job.quantity,
                    scrap: 0,
                },
                now,
            )
            .await
            .expect("done");
    }
    let stops: Vec<HandoffRecord> = [(HandoffKind::Pickup, 0), (HandoffKind::Dropoff, 1)]
        .into_iter()
        .map(|(kind, seq)| HandoffRecord {
            id: format!("{order}-{seq}"),
            wave: format!("wave-{order}"),
            courier: "bike-1".into(),
            order_id: order.into(),
            kind,
            seq,
            place: "north".into(),
            location: Location::new(52.52, 13.40),
            eta_ms: now,
            state: HandoffState::Planned,
            updated_ms: now,
            code: None,
            wrong_codes: 0,
            failure: None,
            return_id: None,
        })
        .collect();
    store.save_wave(&stops, now).await.expect("wave");
    for stop in &stops {
        store
            .confirm_handoff(&stop.id, None, None, 5, now)
            .await
            .expect("confirm");
    }
}

/// Status, then each error's pointer.
async fn refused(api: &Api, order: &str, body: Value) -> (u16, Vec<String>, Value) {
    let (status, problem) = api
        .post(&format!("/v1/orders/{order}/returns"), &body, None)
        .await;
    let pointers = problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["pointer"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    (status, pointers, problem)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returns_are_refused_when_not_delivered_too_late_too_many_or_not_the_brands() {
    let dir = tempfile::tempdir().expect("temp dir");
    let running = Running::start(refusals_config(&dir.path().join("refusals.db"))).await;
    let acme = running.api(Role::Brand, "acme").await;
    let brief = running.api(Role::Brand, "brief").await;
    let zest = running.api(Role::Brand, "zest").await;
    let place = |brand: &'static str, reference: &'static str| {
        let store = running.daemon.store.clone();
        let now = running.daemon.clock.now_ms();
        async move {
            let id = format!("order-{reference}");
            store
                .accept_orders(&[new_order(&id, brand, now)])
                .await
                .expect("accept");
            id
        }
    };
    let three = json!({"lines": [{"line": 0, "quantity": 3}], "reason": "too small"});

    // Not delivered.
    let open = place("acme", "open").await;
    let (status, pointers, problem) = refused(&acme, &open, three.clone()).await;
    assert_eq!((status, pointers), (422, vec![String::new()]), "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("accepted")),
        "{problem}"
    );
    assert_eq!(
        problem["type"], "https://fabflow.dev/problems/validation",
        "{problem}"
    );

    // Another brand's order is not found.
    let (status, _, problem) = refused(&zest, &open, three.clone()).await;
    assert_eq!(status, 404, "{problem}");

    // More than was delivered, then more than is left.
    deliver(&running, &open).await;
    let four = json!({"lines": [{"line": 0, "quantity": 4}], "reason": "too small"});
    let (status, pointers, problem) = refused(&acme, &open, four).await;
    assert_eq!(
        (status, pointers),
        (422, vec!["/lines/0/quantity".to_string()]),
        "{problem}"
    );
    let two = json!({"lines": [{"line": 0, "quantity": 2}], "reason": "too small"});
    let (status, _, body) = refused(&acme, &open, two.clone()).await;
    assert_eq!(status, 201, "{body}");
    let (status, pointers, problem) = refused(&acme, &open, two).await;
    assert_eq!(
        (status, pointers),
        (422, vec!["/lines/0/quantity".to_string()]),
        "{problem}"
    );
    assert!(
        problem["errors"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("2 already returned")),
        "{problem}"
    );
    // A line the order does not have, and no reason.
    let (status, pointers, problem) = refused(
        &acme,
        &open,
        json!({"lines": [{"line": 5, "quantity": 1}], "reason": " "}),
    )
    .await;
    assert_eq!(
        (status, pointers),
        (
            422,
            vec!["/reason".to_string(), "/lines/0/line".to_string()]
        ),
        "{problem}"
    );

    // Brand `brief` has one day; the window closes on the domain clock.
    let late = place("brief", "late").await;
    deliver(&running, &late).await;
    let delivered_ms = running.daemon.clock.now_ms();
    wait_for("a day and a minute on the domain clock", LIMIT, || async {
        (running.daemon.clock.now_ms() > delivered_ms + 86_460_000).then_some(())
    })
    .await;
    let (status, pointers, problem) = refused(&brief, &late, three.clone()).await;
    assert_eq!((status, pointers), (422, vec![String::new()]), "{problem}");
    assert!(
        problem["errors"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("window of 1 days closed")),
        "{problem}"
    );
    // acme's window (14 days by default) is still open for its order.
    let one = json!({"lines": [{"line": 0, "quantity": 1}], "reason": "stain"});
    let (status, _, body) = refused(&acme, &open, one).await;
    assert_eq!(status, 201, "{body}");
    running.stop().await;
}
