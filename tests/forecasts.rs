//! Demand forecasts as brands and operators read them: accepted orders are
//! counted from the event log into daily demand (exactly, once each, across
//! a restart), forecasts and recommended runs are served per brand, and an
//! operator reads the expected load of their factories.

mod support;

use fabflow::api::auth::Role;
use fabflow::runtime::forecasts::day_of;
use serde_json::{Value, json};
use std::time::Duration;
use support::{Running, wait_for};

fn order(reference: &str, sku: &str, quantity: u32) -> Value {
    json!({
        "external_ref": reference,
        "customer": {"name": "Ada", "lat": 52.52, "lon": 13.40},
        "lines": [{"sku": sku, "quantity": quantity}]
    })
}

/// Units of `brand` counted so far.
async fn counted(running: &Running, brand: &str) -> i64 {
    running
        .daemon
        .store
        .demand(Some(brand), None, None)
        .await
        .expect("demand")
        .iter()
        .map(|row| row.units)
        .sum()
}

fn pointers(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|e| e["pointer"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_orders_become_forecasts_and_runs_for_their_brand_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    // One simulated day per 2 real seconds.
    let scale = 43_200.0;
    let fleet = support::fleet(21, scale).await;
    let mut config = support::config(&fleet, &dir.path().join("forecast.db"), scale);
    // Refits every 6 simulated hours (half a real second).
    config.forecasts.refit_cron = "0 0 */6 * * *".into();
    let running = Running::start(config.clone()).await;
    let brand_token = running.token(Role::Brand, "shop").await;
    let shop = running.api(Role::Brand, "shop").await;
    let other = running.api(Role::Brand, "other").await;
    // The observer's login is made (and shown) at the first start only.
    let first_observer = running.observer();

    // Orders on several days: 3 tees and a mug a day.
    let mut submitted = 0;
    let mut days = std::collections::BTreeSet::new();
    for n in 0..12 {
        for (sku, quantity) in [("tee-black-m", 3), ("mug-white", 1)] {
            let (status, body) = shop
                .post(
                    "/v1/orders",
                    &order(&format!("s-{n}-{sku}"), sku, quantity),
                    None,
                )
                .await;
            assert_eq!(status, 201, "{body}");
            submitted += i64::from(quantity);
        }
        days.insert(day_of(running.daemon.clock.now_ms()));
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let (status, body) = other
        .post("/v1/orders", &order("o-1", "tee-black-m", 7), None)
        .await;
    assert_eq!(status, 201, "{body}");
    assert!(days.len() >= 3, "orders fell on {} days", days.len());

    // Every unit counted once, also after a restart.
    wait_for("demand counted", Duration::from_secs(30), || async {
        (counted(&running, "shop").await == submitted).then_some(())
    })
    .await;
    running.stop().await;
    let running = Running::start(config).await;
    let shop = support::Api::new(running.base.clone(), brand_token);
    let other = running.api(Role::Brand, "other").await;
    let (status, body) = shop
        .post("/v1/orders", &order("after", "tee-black-m", 2), None)
        .await;
    assert_eq!(status, 201, "{body}");
    submitted += 2;
    wait_for(
        "demand counted after restart",
        Duration::from_secs(30),
        || async { (counted(&running, "shop").await == submitted).then_some(()) },
    )
    .await;
    assert_eq!(counted(&running, "other").await, 7);
    // Production is counted too, from each line's last job: once every order
    // is made, the brand has made exactly what it sold.
    wait_for("production counted", Duration::from_secs(90), || async {
        let produced: i64 = running
            .daemon
            .store
            .demand(Some("shop"), None, None)
            .await
            .expect("demand")
            .iter()
            .map(|row| row.produced)
            .sum();
        assert!(produced <= submitted, "{produced} made of {submitted} sold");
        (produced == submitted).then_some(())
    })
    .await;

    // The refit publishes the brand's forecasts, retained, where only the
    // brand (and the observer) reads.
    let observer = fabflow::runtime::mqtt::BrokerAddress {
        username: first_observer.username.clone(),
        password: first_observer.password.clone(),
        ..running.daemon.mqtt.clone()
    };
    let mut mqtt = support::connect(&observer, Some(support::login(&observer)))
        .await
        .expect("observer connects");
    mqtt.subscribe(&["fabflow/v1/brands/shop/forecasts/#"])
        .await;
    let seen = tokio::time::timeout(
        Duration::from_secs(30),
        mqtt.until(|topic, payload| {
            topic == "fabflow/v1/brands/shop/forecasts/tee-black-m"
                && payload["history_days"].as_u64() >= Some(2)
        }),
    )
    .await
    .expect("a published forecast");
    let (_, published) = seen.last().cloned().expect("a message");
    assert_eq!(published["brand"], "shop", "{published}");
    assert_eq!(
        published["days"].as_array().map(Vec::len),
        Some(14),
        "{published}"
    );
    mqtt.stop().await;

    // The brand's forecasts: its two SKUs, a week ahead, finite and >= 0.
    let (status, list) = shop.get("/v1/forecasts?horizon_days=7").await;
    assert_eq!(status, 200, "{list}");
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let skus: Vec<&str> = items.iter().filter_map(|i| i["sku"].as_str()).collect();
    assert_eq!(skus, ["mug-white", "tee-black-m"], "{list}");
    for item in &items {
        assert_eq!(item["brand"], "shop", "{item}");
        assert!(item["history_days"].as_u64() >= Some(2), "{item}");
        let days = item["days"].as_array().expect("days");
        assert_eq!(days.len(), 7, "{item}");
        for day in days {
            let (units, lower, upper) = (
                day["units"].as_f64().expect("units"),
                day["lower"].as_f64().expect("lower"),
                day["upper"].as_f64().expect("upper"),
            );
            assert!(units.is_finite() && units >= 0.0, "{day}");
            assert!(lower <= upper && lower >= 0.0, "{day}");
        }
    }
    // Tees sell three times as many units as mugs: the forecasts say so.
    let total = |sku: &str| -> f64 {
        items
            .iter()
            .find(|i| i["sku"] == sku)
            .and_then(|i| i["days"].as_array())
            .map_or(0.0, |d| d.iter().filter_map(|d| d["units"].as_f64()).sum())
    };
    assert!(total("tee-black-m") > total("mug-white"), "{list}");

    // Another brand sees only its own; an operator sees factory load.
    let (_, theirs) = other.get("/v1/forecasts").await;
    for item in theirs["items"].as_array().cloned().unwrap_or_default() {
        assert_eq!(item["brand"], "other", "{item}");
    }
    let operator = running.api(Role::Operator, "*").await;
    let (status, load) = operator.get("/v1/forecasts").await;
    assert_eq!(status, 200, "{load}");
    let load_items = load["items"].as_array().cloned().unwrap_or_default();
    assert!(!load_items.is_empty(), "{load}");
    for item in &load_items {
        assert!(item.get("brand").is_none(), "{item}");
        assert!(item["factory"].is_string(), "{item}");
    }
    let courier = running.api(Role::Courier, "bike-1").await;
    assert_eq!(courier.get("/v1/forecasts").await.0, 403);

    // A recommended run: pre-orders are a floor, stock nets the run out.
    let today = day_of(running.daemon.clock.now_ms()).expect("today");
    let event = today + chrono::Days::new(10);
    let (status, run) = shop
        .get(&format!(
            "/v1/forecasts/run?sku=tee-black-m&event_date={event}&event_days=2&pre_orders=500"
        ))
        .await;
    assert_eq!(status, 200, "{run}");
    assert!(run["target"].as_u64() >= Some(500), "{run}");
    assert_eq!(run["quantity"], run["target"], "{run}");
    assert!(run["expected_demand"].as_f64() >= Some(500.0), "{run}");
    let (status, run) = shop
        .get(&format!(
            "/v1/forecasts/run?sku=tee-black-m&event_date={event}&stock_on_hand=100000"
        ))
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["quantity"], 0, "{run}");
    assert!(run["expected_leftover"].as_f64() > Some(0.0), "{run}");

    // Bad requests say which field.
    let past = today - chrono::Days::new(3);
    let cases = [
        (
            "/v1/forecasts?horizon_days=0".to_string(),
            400,
            "horizon_days",
        ),
        // Well-formed, refused by a rule (an event already past, another
        // brand): 422, as a schema-valid request must not be called malformed.
        (
            format!("/v1/forecasts/run?sku=tee-black-m&event_date={past}"),
            422,
            "event_date",
        ),
        (
            format!("/v1/forecasts/run?sku=tee-black-m&event_date={event}&service_level=1.5"),
            400,
            "service_level",
        ),
        (
            format!("/v1/forecasts/run?sku=tee-black-m&event_date={event}&brand=other"),
            422,
            "brand",
        ),
    ];
    for (path, status, pointer) in cases {
        let (got, problem) = shop.get(&path).await;
        assert_eq!(got, status, "{path}: {problem}");
        assert!(
            pointers(&problem).contains(&pointer.to_string()),
            "{path}: {problem}"
        );
    }
    running.stop().await;
    fleet.shutdown().await;
}

/// Pre-orders on an upcoming sales event (issue 8, item 3): stored and
/// shown with the event, checked against the catalog (each unknown SKU
/// named by its JSON pointer), and the event's plan never recommends less
/// than them; a SKU pre-ordered but never sold is planned from its
/// pre-orders alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_orders_on_an_event_are_a_floor_of_its_plan() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet = support::fleet(23, 60.0).await;
    let config = support::config(&fleet, &dir.path().join("pre.db"), 60.0);
    let running = Running::start(config).await;
    let shop = running.api(Role::Brand, "shop").await;
    let today = day_of(running.daemon.clock.now_ms()).expect("day");
    let starts_on = today + chrono::Days::new(10);

    let (status, problem) = shop
        .put(
            "/v1/sales-events/xmas",
            &json!({"name": "Xmas market", "starts_on": starts_on, "days": 2,
                    "pre_orders": {"mug-white": 5, "no-such/sku": 1, "keychain": 2_000_000}}),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    let mut got = pointers(&problem);
    got.sort();
    assert_eq!(
        got,
        ["/pre_orders/keychain", "/pre_orders/no-such~1sku"],
        "{problem}"
    );

    let (status, event) = shop
        .put(
            "/v1/sales-events/xmas",
            &json!({"name": "Xmas market", "starts_on": starts_on, "days": 2,
                    "pre_orders": {"mug-white": 5, "keychain": 3}}),
        )
        .await;
    assert_eq!(status, 201, "{event}");
    assert_eq!(event["pre_orders"], json!({"keychain": 3, "mug-white": 5}));
    let (status, again) = shop.get("/v1/sales-events/xmas").await;
    assert_eq!((status, &again["pre_orders"]), (200, &event["pre_orders"]));

    let (status, plan) = shop
        .get("/v1/forecasts/events/xmas?service_level=0.98&use_stock=false")
        .await;
    assert_eq!(status, 200, "{plan}");
    let skus = plan["skus"].as_array().cloned().unwrap_or_default();
    for (sku, units) in [("mug-white", 5), ("keychain", 3)] {
        let line = skus
            .iter()
            .find(|s| s["sku"] == sku)
            .unwrap_or_else(|| panic!("{sku} is planned: {plan}"));
        assert_eq!(line["pre_orders"], units, "{line}");
        assert_eq!(
            line["quantity"], units,
            "never sold: its pre-orders: {line}"
        );
        assert_eq!(line["expected_demand"].as_f64(), Some(f64::from(units)));
    }
    running.stop().await;
    fleet.shutdown().await;
}
